"""Keys and certificates for every party: Apple's device CA, the MDM CA, push and token certificates.

Time is always passed in (DESIGN rule 4): a certificate issued "now" by a world whose clock has been
moved must carry the world's time, or validity checks in the same world would disagree with it.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from collections.abc import Sequence
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .randomness import Randomness

__all__ = [
    "PrivateKey",
    "PublicKey",
    "CertificateAuthority",
    "new_private_key",
    "make_name",
    "self_signed",
    "cert_to_pem",
    "cert_to_der",
    "cert_from_pem",
    "cert_from_der",
    "key_to_pem",
    "key_from_pem",
    "verify_issued_by",
    "fingerprint_sha256",
    "is_ca",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

#: OID 0.9.2342.19200300.100.1.1: Apple puts the push topic (``com.apple.mgmt.…``) in the push
#: certificate's UID attribute, and MDM servers read it from there.
UID_OID = NameOID.USER_ID
#: Every MDM push topic starts so; a UID without it is not an MDM push certificate.
MDM_TOPIC_PREFIX = "com.apple.mgmt."


def push_topic(cert: x509.Certificate, *, mdm_only: bool = True) -> str | None:
    """The push topic of a push certificate: its subject's UID attribute, read the one way every party
    reads it (Apple's gateway, the MDM server, the controller). ``mdm_only`` insists on an MDM topic
    (``com.apple.mgmt.…``); ``None`` when there is no such UID."""
    values = cert.subject.get_attributes_for_oid(UID_OID)
    value = values[0].value if values else None
    if not isinstance(value, str) or not value:
        return None
    return value if not mdm_only or value.startswith(MDM_TOPIC_PREFIX) else None


def new_private_key(kind: Literal["ec", "rsa"] = "ec", rsa_bits: int = 2048) -> PrivateKey:
    """A fresh key. EC P-256 by default because it is ~100× faster to make than RSA; use ``"rsa"`` where
    Apple requires it (certificates that receive an enveloped server token, push certificates)."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise ValueError(f"unknown key kind {kind!r}")


def make_name(
    subject: x509.Name | str, *, uid: str | None = None, organization: str | None = None
) -> x509.Name:
    """An ``x509.Name``; a plain string is taken as the common name."""
    if isinstance(subject, x509.Name):
        if uid is None and organization is None:
            return subject
        attrs = list(subject)
    else:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, subject)]
    if organization is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if uid is not None:
        attrs.insert(0, x509.NameAttribute(UID_OID, uid))
    return x509.Name(attrs)


def _utc(now: _dt.datetime) -> _dt.datetime:
    if now.tzinfo is None:
        return now.replace(tzinfo=_dt.UTC)
    return now.astimezone(_dt.UTC)


def _key_usage(public_key: PublicKey, *, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(public_key, rsa.RSAPublicKey) and not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    now: _dt.datetime,
    days: float,
    serial: int | None,
) -> x509.CertificateBuilder:
    start = _utc(now).replace(microsecond=0)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def self_signed(
    key: PrivateKey,
    cn: str | x509.Name,
    now: _dt.datetime,
    days: float = 365,
    *,
    is_ca: bool = False,
    uid: str | None = None,
) -> x509.Certificate:
    """A self-signed certificate, e.g. the one an MDM vendor uploads to the portal for its server token."""
    name = make_name(cn, uid=uid)
    pub = key.public_key()
    b = (
        _builder(name, name, pub, now, days, None)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(_key_usage(pub, ca=is_ca), critical=True)
    )
    return b.sign(key, hashes.SHA256())


class CertificateAuthority:
    """A CA certificate and its key: Apple's device CA, the MDM identity CA, a fake push CA."""

    def __init__(self, certificate: x509.Certificate, key: PrivateKey) -> None:
        if certificate.public_key().public_numbers() != key.public_key().public_numbers():
            raise ValueError("CA key does not match CA certificate")
        self.certificate = certificate
        self.key = key

    @classmethod
    def create(
        cls,
        common_name: str,
        now: _dt.datetime,
        *,
        key: PrivateKey | None = None,
        days: float = 3650,
        organization: str | None = None,
    ) -> CertificateAuthority:
        """A new self-signed root CA valid from ``now`` for ``days``."""
        key = key or new_private_key("ec")
        name = make_name(common_name, organization=organization)
        cert = self_signed(key, name, now, days, is_ca=True)
        return cls(cert, key)

    def issue(
        self,
        public_key: PublicKey,
        *,
        subject: x509.Name | str,
        now: _dt.datetime,
        days: float = 365,
        uid: str | None = None,
        client_auth: bool = True,
        server_auth: bool = False,
        san_dns: Sequence[str] = (),
        is_ca: bool = False,
        serial: int | None = None,
        san_ip: Sequence[str] = (),
    ) -> x509.Certificate:
        """Sign a certificate for ``public_key``; ``uid`` sets the UID attribute (push topics).

        ``san_ip`` adds IP-address SANs: TLS clients match an address like ``127.0.0.1`` only against
        those, never against a DNS name, so a server certificate for a bind address needs one."""
        name = make_name(subject, uid=uid)
        ca_pub = self.certificate.public_key()
        b = (
            _builder(name, self.certificate.subject, public_key, now, days, serial)
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .add_extension(_key_usage(public_key, ca=is_ca), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_pub), critical=False)
        )
        usages = []
        if client_auth:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        if server_auth:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if usages and not is_ca:
            b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        if san_dns or san_ip:
            names: list[x509.GeneralName] = [x509.DNSName(n) for n in san_dns]
            names += [x509.IPAddress(ipaddress.ip_address(a)) for a in san_ip]
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return b.sign(self.key, hashes.SHA256())

    def issue_for_csr(
        self,
        csr: x509.CertificateSigningRequest,
        now: _dt.datetime,
        days: float = 365,
        *,
        subject: x509.Name | str | None = None,
        uid: str | None = None,
        client_auth: bool = True,
        server_auth: bool = False,
        san_dns: Sequence[str] = (),
    ) -> x509.Certificate:
        """Issue for a CSR after checking its self-signature (proof the requester holds the key)."""
        if not csr.is_signature_valid:
            raise ValueError("CSR signature is not valid")
        pub = csr.public_key()
        if not isinstance(pub, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise ValueError("CSR key must be RSA or EC")
        return self.issue(
            pub,
            subject=subject if subject is not None else csr.subject,
            now=now,
            days=days,
            uid=uid,
            client_auth=client_auth,
            server_auth=server_auth,
            san_dns=san_dns,
        )

    def to_pem(self) -> tuple[bytes, bytes]:
        """``(certificate PEM, unencrypted PKCS#8 key PEM)`` for a party's store."""
        return cert_to_pem(self.certificate), key_to_pem(self.key)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
        return cls(cert_from_pem(cert_pem), key_from_pem(key_pem))


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_to_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def cert_from_pem(pem: bytes | str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def cert_from_der(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def key_to_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def key_from_pem(pem: bytes | str, *, validate: bool = False) -> PrivateKey:
    """Load a key a party stored itself. RSA consistency checks cost ~70 ms a key and these keys were
    made by :func:`new_private_key`, so they are skipped unless ``validate`` (for keys from outside)."""
    key = serialization.load_pem_private_key(
        pem.encode() if isinstance(pem, str) else pem, password=None, unsafe_skip_rsa_key_validation=not validate
    )
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("only RSA and EC keys are supported")
    return key


def verify_issued_by(cert: x509.Certificate, issuer_cert: x509.Certificate) -> bool:
    """True if ``issuer_cert``'s subject is ``cert``'s issuer and its key made ``cert``'s signature."""
    try:
        cert.verify_directly_issued_by(issuer_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def is_ca(cert: x509.Certificate) -> bool:
    """True if the certificate's basic constraints allow it to issue certificates."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the DER certificate: a stable id for stores and logs."""
    return cert.fingerprint(hashes.SHA256()).hex()


def seeded_key(seed: int | None, label: str) -> PrivateKey:
    """A P-256 key derived from ``(seed, label)``: ``--seed`` replays the same world, keys included,
    and costs no key generation. Random without a seed. (:meth:`Randomness.ec_key`.)"""
    return Randomness(seed).ec_key(label)


def seeded_uuid(seed: int | None, label: str) -> str:
    """A UUID derived from ``(seed, label)``; random without a seed. (:meth:`Randomness.uuid`.)"""
    return Randomness(seed).uuid(label)


def seeded_rsa_key(seed: int | None, label: str, bits: int = 2048) -> PrivateKey:
    """An RSA key derived from ``(seed, label)`` (cached per process); fresh and random without a seed.
    (:meth:`Randomness.rsa_key`.)"""
    return Randomness(seed).rsa_key(label, bits)
