"""ACME (RFC 8555) with ``device-attest-01`` as Apple devices speak it: the codecs both sides share.

An enrollment profile's ``com.apple.security.acme`` payload (iOS 16+) sends a device to an ACME server.
With ``HardwareBound`` and ``Attest`` it makes its key in the Secure Enclave and proves, with a
certificate chain from Apple's Enterprise Attestation CA, which device it is and that the key lives
there: it answers the ``device-attest-01`` challenge of its ``permanent-identifier`` order with
``{"attObj": base64url(CBOR {"fmt": "apple", "attStmt": {"x5c": [leaf, intermediate]}})}``, the
leaf's key being the new key and its extensions carrying Apple's device properties
(FACTS-apple-2025 §C.5):

========================  ======================================================================
``1.2.840.113635.100.8.9.1``   serial number
``1.2.840.113635.100.8.9.2``   UDID
``1.2.840.113635.100.8.10.1``  OS version
``1.2.840.113635.100.8.10.2``  sepOS version
``1.2.840.113635.100.8.11.1``  freshness code: SHA-256 of the challenge ``token``
========================  ======================================================================

each as the raw bytes of the extension value, no inner ASN.1 (how step-ca and nanoca read them).

What lives here, without I/O: JWS (flattened JSON serialization, the protected header RFC 8555 §6.2
asks for) signed and checked with josepy; problem documents; the attestation object (CBOR, cbor2);
Apple's attestation extensions; a certificate-chain walk to given roots; the ``PermanentIdentifier``
subject alternative name (RFC 4043) an issued certificate names its identifier with.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2
import josepy as jose
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = [
    "ACMEProblem",
    "ACMEPayloadError",
    "APPLE_OIDS",
    "CERT_CHAIN_CONTENT_TYPE",
    "DEVICE_ATTEST_01",
    "DeviceAttestation",
    "ERROR_PREFIX",
    "JOSE_CONTENT_TYPE",
    "PERMANENT_IDENTIFIER",
    "PROBLEM_CONTENT_TYPE",
    "SUPPORTED_ALGORITHMS",
    "SignedRequest",
    "attestation_extensions",
    "attestation_object",
    "b64url",
    "b64url_decode",
    "freshness_code",
    "jwk_of",
    "jwk_thumbprint",
    "parse_jws",
    "permanent_identifier_name",
    "public_key_sha256",
    "read_attestation_object",
    "read_device_attestation",
    "sign_jws",
    "verify_chain",
    "verify_jws",
]

JOSE_CONTENT_TYPE = "application/jose+json"
PROBLEM_CONTENT_TYPE = "application/problem+json"
CERT_CHAIN_CONTENT_TYPE = "application/pem-certificate-chain"
ERROR_PREFIX = "urn:ietf:params:acme:error:"
PERMANENT_IDENTIFIER = "permanent-identifier"
DEVICE_ATTEST_01 = "device-attest-01"
#: JWS algorithms a server here accepts: what josepy verifies and Apple's and certbot's clients send.
SUPPORTED_ALGORITHMS = ("ES256", "ES384", "ES512", "RS256")
_CURVE_OF_ALG = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}

#: Apple's attestation extensions (apple/device-management ``DevicePropertiesAttestation``).
APPLE_OIDS = {
    "serial_number": x509.ObjectIdentifier("1.2.840.113635.100.8.9.1"),
    "udid": x509.ObjectIdentifier("1.2.840.113635.100.8.9.2"),
    "os_version": x509.ObjectIdentifier("1.2.840.113635.100.8.10.1"),
    "sepos_version": x509.ObjectIdentifier("1.2.840.113635.100.8.10.2"),
    "freshness_code": x509.ObjectIdentifier("1.2.840.113635.100.8.11.1"),
}
#: id-on-permanentIdentifier (RFC 4043), the otherName step-ca gives device-attest-01 certificates.
PERMANENT_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.3")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
#: CBOR nesting an attestation object needs (a map of a map of an array); more is not an attestation.
_MAX_X5C = 8


class ACMEProblem(Exception):
    """An RFC 7807 problem document of RFC 8555's kind (``kind`` is the part after ``…:error:``)."""

    def __init__(
        self,
        kind: str,
        detail: str,
        status: int = 400,
        *,
        subproblems: Sequence[ACMEProblem] = (),
        identifier: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail[:500]
        self.status = status
        self.subproblems = list(subproblems)
        self.identifier = dict(identifier) if identifier is not None else None
        self.extra = dict(extra or {})

    @property
    def type(self) -> str:
        return ERROR_PREFIX + self.kind

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "detail": self.detail, "status": self.status}
        if self.identifier is not None:
            out["identifier"] = self.identifier
        if self.subproblems:
            out["subproblems"] = [p.to_dict() for p in self.subproblems]
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ACMEProblem | None:
        """A problem document read back (a client's view); None if ``data`` is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            return None
        kind = data["type"].removeprefix(ERROR_PREFIX)
        status = data.get("status") if isinstance(data.get("status"), int) else 400
        detail = data.get("detail") if isinstance(data.get("detail"), str) else ""
        subs = [p for p in (cls.from_dict(s) for s in data.get("subproblems") or [] if isinstance(s, dict)) if p]
        return cls(kind, detail, status, subproblems=subs)


class ACMEPayloadError(ValueError):
    """A ``com.apple.security.acme`` payload a device cannot act on."""


# -- base64url ------------------------------------------------------------------------------------------
def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: Any, what: str = "value") -> bytes:
    """Strict base64url without padding; :class:`ACMEProblem` ``malformed`` otherwise."""
    if not isinstance(text, str) or not _B64URL.match(text) or len(text) % 4 == 1:
        raise ACMEProblem("malformed", f"{what} is not base64url without padding")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ACMEProblem("malformed", f"{what} is not base64url") from None


# -- JWS ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedRequest:
    """A JWS POST body as RFC 8555 §6.2 has it, parsed but not yet verified."""

    protected: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes
    alg: str
    nonce: str
    url: str
    jwk: dict[str, Any] | None
    kid: str | None

    @property
    def post_as_get(self) -> bool:
        """An empty payload: RFC 8555's POST-as-GET (§6.3)."""
        return self.payload == b""

    def json_payload(self) -> dict[str, Any]:
        """The payload as a JSON object; ``{}`` for POST-as-GET; ``malformed`` otherwise."""
        if self.post_as_get:
            return {}
        try:
            value = json.loads(self.payload)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ACMEProblem("malformed", "the JWS payload is not JSON") from None
        if not isinstance(value, dict):
            raise ACMEProblem("malformed", "the JWS payload is not a JSON object")
        return value


def parse_jws(body: bytes) -> SignedRequest:
    """Read a flattened JWS and its protected header; ``malformed`` or ``badSignatureAlgorithm`` if
    it is not the JWS RFC 8555 allows (one signature, alg/nonce/url protected, exactly one of jwk/kid)."""
    try:
        outer = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ACMEProblem("malformed", "the request body is not a JWS in JSON serialization") from None
    if not isinstance(outer, dict):
        raise ACMEProblem("malformed", "the request body is not a JWS in JSON serialization")
    if "signatures" in outer:
        raise ACMEProblem("malformed", "the JWS must use the flattened JSON serialization (one signature)")
    if outer.get("header"):
        raise ACMEProblem("malformed", "the JWS must not have an unprotected header")
    protected_b64, payload_b64, signature_b64 = outer.get("protected"), outer.get("payload"), outer.get("signature")
    if not isinstance(protected_b64, str) or not isinstance(payload_b64, str) or not isinstance(signature_b64, str):
        raise ACMEProblem("malformed", "the JWS needs protected, payload and signature strings")
    try:
        protected = json.loads(b64url_decode(protected_b64, "the protected header"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ACMEProblem("malformed", "the protected header is not JSON") from None
    if not isinstance(protected, dict):
        raise ACMEProblem("malformed", "the protected header is not a JSON object")
    payload = b64url_decode(payload_b64, "the payload")
    signature = b64url_decode(signature_b64, "the signature")
    alg = protected.get("alg")
    if not isinstance(alg, str) or alg not in SUPPORTED_ALGORITHMS:
        raise ACMEProblem("badSignatureAlgorithm", f"the JWS algorithm must be one of {', '.join(SUPPORTED_ALGORITHMS)}",
                          extra={"algorithms": list(SUPPORTED_ALGORITHMS)})
    nonce, url = protected.get("nonce"), protected.get("url")
    if not isinstance(nonce, str) or not nonce:
        raise ACMEProblem("badNonce", "the protected header has no nonce")
    if not isinstance(url, str) or not url:
        raise ACMEProblem("malformed", "the protected header has no url")
    jwk, kid = protected.get("jwk"), protected.get("kid")
    if (jwk is None) == (kid is None):
        raise ACMEProblem("malformed", "the protected header must have exactly one of jwk and kid")
    if jwk is not None and not isinstance(jwk, dict):
        raise ACMEProblem("malformed", "jwk must be a JSON object")
    if kid is not None and not isinstance(kid, str):
        raise ACMEProblem("malformed", "kid must be a string")
    return SignedRequest(protected, payload, f"{protected_b64}.{payload_b64}".encode("ascii"), signature,
                         alg, nonce, url, jwk, kid)


def _public_jwk(jwk_json: Mapping[str, Any]) -> tuple[jose.JWK, rsa.RSAPublicKey | ec.EllipticCurvePublicKey]:
    """The JWK and the ``cryptography`` key inside it (josepy wraps keys in a comparable proxy)."""
    try:
        jwk = jose.JWK.from_json(dict(jwk_json))
    except (jose.DeserializationError, jose.UnrecognizedTypeError, ValueError, TypeError, KeyError, OverflowError):
        raise ACMEProblem("malformed", "jwk is not a JSON Web Key josepy can read") from None
    key = getattr(jwk.key, "_wrapped", jwk.key)
    if "d" in jwk_json or not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ACMEProblem("malformed", "jwk must be an RSA or EC public key (no private parameters)")
    return jwk, key


def verify_jws(request: SignedRequest, jwk_json: Mapping[str, Any]) -> None:
    """The signature is ``request.alg`` by the key ``jwk_json``; ``malformed`` or
    ``badSignatureAlgorithm`` otherwise (the algorithm must fit the key: ES256 a P-256 key…)."""
    key = _public_jwk(jwk_json)[1]
    curve = _CURVE_OF_ALG.get(request.alg)
    if curve is not None:
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve:
            raise ACMEProblem("badSignatureAlgorithm", f"{request.alg} needs an EC {curve} key",
                              extra={"algorithms": list(SUPPORTED_ALGORITHMS)})
    elif not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise ACMEProblem("badSignatureAlgorithm", f"{request.alg} needs an RSA key of 2048 bits or more",
                          extra={"algorithms": list(SUPPORTED_ALGORITHMS)})
    try:
        ok = jose.JWASignature.from_json(request.alg).verify(key, request.signing_input, request.signature)
    except (InvalidSignature, ValueError, TypeError, jose.Error):
        ok = False
    if not ok:
        raise ACMEProblem("malformed", "the JWS signature does not verify")


def jwk_thumbprint(jwk_json: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url): an account's key, named."""
    return b64url(_public_jwk(jwk_json)[0].thumbprint())


def jwk_of(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> dict[str, Any]:
    """The public JWK of an account key."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return jose.JWKEC(key=key.public_key()).to_json()  # type: ignore[no-any-return]
    return jose.JWKRSA(key=key.public_key()).to_json()  # type: ignore[no-any-return]


def _alg_for(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[key.curve.name]


def sign_jws(
    payload: bytes, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *, nonce: str, url: str, kid: str | None = None
) -> bytes:
    """A flattened JWS as an ACME client sends it: ``jwk`` until the account exists, ``kid`` after."""
    alg = _alg_for(key)
    protected: dict[str, Any] = {"alg": alg, "nonce": nonce, "url": url}
    if kid is None:
        protected["jwk"] = jwk_of(key)
    else:
        protected["kid"] = kid
    protected_b64 = b64url(json.dumps(protected, separators=(",", ":")).encode())
    payload_b64 = b64url(payload)
    signature = jose.JWASignature.from_json(alg).sign(key, f"{protected_b64}.{payload_b64}".encode("ascii"))
    return json.dumps({"protected": protected_b64, "payload": payload_b64, "signature": b64url(signature)}).encode()


# -- the attestation object -----------------------------------------------------------------------------
def attestation_object(chain: Sequence[bytes]) -> bytes:
    """CBOR ``{"fmt": "apple", "attStmt": {"x5c": [leaf, intermediate, …]}}`` (DER certificates)."""
    return cbor2.dumps({"fmt": "apple", "attStmt": {"x5c": [bytes(c) for c in chain]}})


def read_attestation_object(data: bytes) -> list[x509.Certificate]:
    """The certificates of an Apple attestation object, leaf first; ``badAttestationStatement``
    for anything that is not one (as step-ca's ``deviceAttest01Validate`` refuses it)."""
    def refuse(detail: str) -> ACMEProblem:
        return ACMEProblem("badAttestationStatement", detail)

    if not data:
        raise refuse("attObj is empty")
    try:
        obj = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError, MemoryError, EOFError):
        raise refuse("attObj is not CBOR") from None
    if not isinstance(obj, dict):
        raise refuse("attObj is not a CBOR map")
    fmt = obj.get("fmt")
    if fmt != "apple":
        raise refuse(f"attestation format {str(fmt)[:40]!r} is not supported (only apple)")
    statement = obj.get("attStmt")
    x5c = statement.get("x5c") if isinstance(statement, dict) else None
    if not isinstance(x5c, list) or not x5c:
        raise refuse("attStmt has no x5c certificates")
    if len(x5c) > _MAX_X5C or not all(isinstance(c, bytes) for c in x5c):
        raise refuse("x5c must be a short array of DER certificates")
    certs = []
    for der in x5c:
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except ValueError:
            raise refuse("an x5c entry is not a DER certificate") from None
    return certs


# -- Apple's device properties -------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceAttestation:
    """What an attestation leaf says: the device, its software, the freshness code and the key."""

    serial_number: str | None
    udid: str | None
    os_version: str | None
    sepos_version: str | None
    freshness_code: bytes | None
    key_sha256: str
    not_after: _dt.datetime = field(compare=False)


def freshness_code(token: str) -> bytes:
    """What a device puts in ``…8.11.1`` for an ACME challenge: SHA-256 of its ``token``."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def public_key_sha256(public_key: Any) -> str:
    """Hex SHA-256 of a public key's SubjectPublicKeyInfo: "the attested key" as the server remembers it."""
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def attestation_extensions(
    *, serial_number: str, udid: str, os_version: str, sepos_version: str, freshness: bytes
) -> list[x509.UnrecognizedExtension]:
    """Apple's attestation extensions, each value the raw bytes (no inner ASN.1), as Apple encodes them."""
    values = {
        "serial_number": serial_number.encode(), "udid": udid.encode(), "os_version": os_version.encode(),
        "sepos_version": sepos_version.encode(), "freshness_code": bytes(freshness),
    }
    return [x509.UnrecognizedExtension(APPLE_OIDS[name], value) for name, value in values.items()]


def read_device_attestation(leaf: x509.Certificate) -> DeviceAttestation:
    """Apple's device properties from an attestation leaf (absent ones are None)."""
    raw: dict[str, bytes] = {}
    for ext in leaf.extensions:
        for name, oid in APPLE_OIDS.items():
            if ext.oid == oid and isinstance(ext.value, x509.UnrecognizedExtension):
                raw[name] = ext.value.value

    def text(name: str) -> str | None:
        value = raw.get(name)
        return value.decode("utf-8", "replace") if value is not None else None

    return DeviceAttestation(
        serial_number=text("serial_number"), udid=text("udid"), os_version=text("os_version"),
        sepos_version=text("sepos_version"), freshness_code=raw.get("freshness_code"),
        key_sha256=public_key_sha256(leaf.public_key()), not_after=leaf.not_valid_after_utc,
    )


def _valid_at(cert: x509.Certificate, now: _dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def verify_chain(
    chain: Sequence[x509.Certificate], roots: Iterable[x509.Certificate], now: _dt.datetime
) -> x509.Certificate:
    """Walk from ``chain[0]`` through the other certificates (CAs) to one of ``roots``, every
    certificate valid at ``now``; the root reached, or ``badAttestationStatement`` saying why not."""
    roots = list(roots)
    if not chain:
        raise ACMEProblem("badAttestationStatement", "no certificate to verify")
    current = chain[0]
    intermediates = list(chain[1:])
    for _ in range(len(chain) + 1):
        if not _valid_at(current, now):
            raise ACMEProblem("badAttestationStatement",
                              f"{current.subject.rfc4514_string()[:120]} is not valid at {now.isoformat()}")
        root = next((r for r in roots if _issued_by(current, r)), None)
        if root is not None:
            if not _valid_at(root, now):
                raise ACMEProblem("badAttestationStatement", "the attestation root is not valid now")
            return root
        issuer = next((c for c in intermediates if _is_ca(c) and _issued_by(current, c)), None)
        if issuer is None:
            raise ACMEProblem("badAttestationStatement",
                              "the attestation does not chain to a trusted attestation root")
        intermediates.remove(issuer)
        current = issuer
    raise ACMEProblem("badAttestationStatement", "the attestation chain is too long")


# -- the issued certificate -----------------------------------------------------------------------------
def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def permanent_identifier_name(value: str) -> x509.OtherName:
    """The SAN ``otherName`` PermanentIdentifier ``{identifierValue}`` (RFC 4043) for an order's identifier."""
    return x509.OtherName(PERMANENT_IDENTIFIER_OID, _der(0x30, _der(0x0C, value.encode("utf-8"))))
