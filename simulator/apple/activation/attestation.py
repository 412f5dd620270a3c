"""Apple's Enterprise Attestation CA: the certificates that say which device holds a Secure Enclave key.

With Managed Device Attestation (iOS 16+) a device that makes a hardware-bound key for an ACME payload
asks Apple for an *attestation*: a leaf certificate for that key, issued by Apple's Enterprise
Attestation Sub CA under the **Apple Enterprise Attestation Root CA** (P-384), whose extensions carry
what Apple knows of the device: serial number, UDID, OS and sepOS versions, and the freshness code
the device asked for (SHA-256 of the ACME challenge token). An ACME server trusts the root and nothing
else: the device cannot forge the leaf, because only Apple signs it (FACTS-apple-2025 §C.5).

How a device asks is private between the Secure Enclave and Apple. Here it is an HTTP request a real
party answers, so the device never imports Apple's code (DESIGN.md rule 1):
``POST /apple/activation/attestation`` with a CMS SignedData, signed by the device's Apple identity
(the one MachineInfo is signed with, issued by the device CA), over a plist::

    PublicKey      data    the new key's SubjectPublicKeyInfo (EC P-256 or P-384, as the SEP makes)
    FreshnessCode  data    1..64 bytes the leaf must carry (ACME: SHA-256 of the challenge token)
    OSVersion      string  e.g. 17.4
    sepOSVersion   string
    KeyProof       data    ECDSA-SHA256 by the new key over FreshnessCode || PublicKey

The serial and UDID come from the signer certificate, never from the request: a device can only be
attested as itself. The answer is JSON ``{"x5c": [base64 leaf DER, base64 intermediate DER]}``.
The root is published at ``GET /apple/activation/attestation-root.pem`` (and named in ``/_sim/``) so
a user's own ACME server (step-ca's ``attestationRoots``, say) can trust this world's devices.

The CA lives in Apple's store like the device CA: made once (from the seed when there is one),
first writer wins, so every worker process of a world issues under the same root. The root's key is
not kept: as Apple's, it signs its sub CA once and goes offline.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol import cms
from mdm.protocol.acme import attestation_extensions
from mdm.protocol.plist import PlistError, loads
from mdm.protocol.randomness import Randomness
from mdm.protocol.x509 import cert_from_pem, cert_to_der, cert_to_pem, key_from_pem, key_to_pem

from . import store as activation_store

__all__ = ["AttestationAuthority", "AttestationRefused", "ROOT_NAME", "SUB_CA_NAME"]

ROOT_NAME = "Apple Enterprise Attestation Root CA (mdmsim)"
SUB_CA_NAME = "Apple Enterprise Attestation Sub CA 1 (mdmsim)"
#: Apple's root is valid 2022-02-16 → 2047-02-20; a world's root spans the same 25 years from its start.
ROOT_DAYS = 25 * 365
SUB_CA_DAYS = 15 * 365
#: An ACME attestation is made with its key and checked minutes later; a week is plenty.
LEAF_DAYS = 7
MAX_FRESHNESS = 64
_REQUEST_TYPES = {"PublicKey": bytes, "FreshnessCode": bytes, "OSVersion": str, "sepOSVersion": str, "KeyProof": bytes}


class AttestationRefused(ValueError):
    """A request Apple's attestation service refuses; ``reason`` is the short 400 body."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Apple Inc."),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "California"),
    ])


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                         encipher_only=False, decipher_only=False)


class AttestationAuthority:
    """The root (certificate only) and the sub CA (certificate and key) in Apple's store."""

    def __init__(self, store: Store, clock: Clock, *, device_ca: x509.Certificate, seed: int | None = None) -> None:
        self.store = store
        self.clock = clock
        self.device_ca = device_ca
        self.random = Randomness(seed)
        with self.store.transaction() as db:
            stored = activation_store.attestation_ca(db)
            if stored is None:
                stored = self._create()
                activation_store.save_attestation_ca(db, *stored)
        self._root = cert_from_pem(stored[0])
        self._sub = cert_from_pem(stored[1])
        self._sub_key = key_from_pem(stored[2])

    def _create(self) -> tuple[bytes, bytes, bytes]:
        start = self.clock.now().replace(microsecond=0) - _dt.timedelta(days=365)
        root_key = self.random.ec_key("apple-attestation-root", ec.SECP384R1())
        sub_key = self.random.ec_key("apple-attestation-sub-ca", ec.SECP384R1())
        root_name, sub_name = _name(ROOT_NAME), _name(SUB_CA_NAME)
        root = (
            x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(self._serial("root"))
            .not_valid_before(start).not_valid_after(start + _dt.timedelta(days=ROOT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA384())
        )
        sub = (
            x509.CertificateBuilder().subject_name(sub_name).issuer_name(root_name)
            .public_key(sub_key.public_key()).serial_number(self._serial("sub-ca"))
            .not_valid_before(start).not_valid_after(start + _dt.timedelta(days=SUB_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(sub_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA384())
        )
        return cert_to_pem(root), cert_to_pem(sub), key_to_pem(sub_key)

    def _serial(self, label: str) -> int:
        return int.from_bytes(self.random.bytes(20, f"apple-attestation:{label}:serial"), "big") >> 1

    def keep(self) -> None:
        """Store this CA again after its store was wiped: ACME servers out there trust its root."""
        with self.store.transaction() as db:
            activation_store.save_attestation_ca(db, cert_to_pem(self._root), cert_to_pem(self._sub),
                                                 key_to_pem(self._sub_key))

    @property
    def root(self) -> x509.Certificate:
        return self._root

    @property
    def sub_ca(self) -> x509.Certificate:
        return self._sub

    def root_pem(self) -> bytes:
        return cert_to_pem(self._root)

    # -- attesting a key -----------------------------------------------------------------------------
    def attest_request(self, body: bytes) -> dict[str, Any]:
        """``POST /attestation``: the signed request in, ``{"x5c": [leaf, sub CA]}`` (base64 DER) out."""
        return {"x5c": [base64.b64encode(der).decode("ascii") for der in self.attest(body)]}

    def attest(self, signed: bytes) -> list[bytes]:
        """The attestation chain (DER leaf, DER sub CA) for the key a device's signed request names."""
        if not signed or signed[:1] != b"\x30":
            raise AttestationRefused("ATTESTATION_REQUEST_NOT_SIGNED")
        now = self.clock.now()
        try:
            verified = cms.verify(signed, trust_roots=[self.device_ca], now=now, max_size=16_384)
        except cms.CMSError:
            raise AttestationRefused("DEVICE_IDENTITY_NOT_TRUSTED") from None
        signer = verified.signer
        udid = _attribute(signer.subject, NameOID.COMMON_NAME)
        serial = _attribute(signer.subject, NameOID.SERIAL_NUMBER)
        if not udid or not serial:
            raise AttestationRefused("DEVICE_IDENTITY_NOT_TRUSTED")
        try:
            request = loads(verified.content, max_size=16_384, types=_REQUEST_TYPES)
        except PlistError:
            raise AttestationRefused("MALFORMED_ATTESTATION_REQUEST") from None
        if set(_REQUEST_TYPES) - set(request):
            raise AttestationRefused("MALFORMED_ATTESTATION_REQUEST")
        freshness, spki = request["FreshnessCode"], request["PublicKey"]
        if not 0 < len(freshness) <= MAX_FRESHNESS or not all(
                0 < len(request[k]) <= 32 for k in ("OSVersion", "sepOSVersion")):
            raise AttestationRefused("MALFORMED_ATTESTATION_REQUEST")
        try:
            public_key = serialization.load_der_public_key(spki)
        except (ValueError, TypeError):
            raise AttestationRefused("UNSUPPORTED_KEY") from None
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name not in ("secp256r1", "secp384r1"):
            raise AttestationRefused("UNSUPPORTED_KEY")  # the Secure Enclave makes P-256 and P-384 keys
        try:
            public_key.verify(request["KeyProof"], freshness + spki, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            raise AttestationRefused("KEY_PROOF_INVALID") from None
        leaf = self._leaf(public_key, serial=serial, udid=udid, os_version=request["OSVersion"],
                          sepos_version=request["sepOSVersion"], freshness=freshness, now=now)
        return [cert_to_der(leaf), cert_to_der(self._sub)]

    def _leaf(self, public_key: ec.EllipticCurvePublicKey, *, serial: str, udid: str, os_version: str,
              sepos_version: str, freshness: bytes, now: _dt.datetime) -> x509.Certificate:
        spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        digest = hashlib.sha256(spki).hexdigest()
        start = now.replace(microsecond=0) - _dt.timedelta(minutes=1)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, digest),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Apple Inc.")]))
            .issuer_name(self._sub.subject).public_key(public_key)
            .serial_number(self._serial(f"leaf:{udid}:{digest}:{freshness.hex()}"))
            .not_valid_before(start).not_valid_after(start + _dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._sub.public_key()),  # type: ignore[arg-type]
                           critical=False)
        )
        for extension in attestation_extensions(serial_number=serial, udid=udid, os_version=os_version,
                                                sepos_version=sepos_version, freshness=freshness):
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(self._sub_key, hashes.SHA384())  # type: ignore[arg-type]


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    value = values[0].value if values else None
    return value if isinstance(value, str) else None
