"""What a device does with a ``com.apple.security.scep`` payload: get an identity from a SCEP server.

The steps follow what iOS does (``MCNewSCEPPayloadHandler``, summed up in the project's facts):
GetCACert (one DER certificate, or an RA and the CA as certs-only PKCS#7, checked against
``CAFingerprint``), GetCACaps (POST if ``POSTPKIOperation``; AES if offered, else DES3; SHA-512 >
SHA-256 > SHA-1), an RSA key of ``Keysize`` bits, a CSR with the payload's ``Subject``,
``SubjectAltName``, ``Key Usage`` and the challenge, signed into a PKCSReq by a throwaway self-signed
certificate; then the CertRep: SUCCESS installs the identity, FAILURE ends with its failInfo, PENDING
polls (CertPoll) up to ``Retries`` more times, ``RetryDelay`` seconds apart.

Sans-I/O like the rest of the device: :func:`obtain_identity` yields :class:`Request` and receives
:class:`Response`. A device cannot sleep on the world clock, so PENDING returns with the time of the
next poll and the progress kept in ``progress`` (a plain dict the device stores); run again once the
world clock has passed that time, it polls where it left off. Renewal is the same exchange as a
RenewalReq signed with the current identity.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AttributeOID, NameOID

from mdm.protocol import scep
from mdm.protocol.mobileconfig import SCEPPayload
from mdm.protocol.x509 import PrivateKey, cert_from_pem, cert_to_pem, is_ca, key_from_pem, key_to_pem

from .machine import Flow, Request

__all__ = ["SCEPResult", "obtain_identity", "SCEP_NAME_SHORTCUTS"]

#: Apple's Subject shortcuts (C, L, ST, O, OU, CN); anything else must be a dotted OID.
SCEP_NAME_SHORTCUTS = {
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
}
DEFAULT_KEYSIZE = 1024  # Apple's documented default
DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAY = 10
MAX_RESPONSE = 256 * 1024


@dataclass
class SCEPResult:
    """``issued`` (with the identity), ``pending`` (poll again at ``retry_at``), or ``failed`` (``reason``)."""

    status: Literal["issued", "pending", "failed"]
    reason: str = ""
    certificate: x509.Certificate | None = None
    key: PrivateKey | None = None
    retry_at: datetime | None = None
    issuer: str = ""


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _url(base: str, operation: str, message: str | None = None) -> str:
    query = {"operation": operation}
    if message:
        query["message"] = message
    return base + ("&" if "?" in base else "?") + urllib.parse.urlencode(query)


def subject_name(subject: list[Any] | None, default_cn: str) -> x509.Name:
    """Apple's ``Subject`` (an array of RDNs, each an array of ``[type, value]`` pairs) as a Name."""
    if not subject:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, default_cn)])
    rdns = []
    for rdn in subject:
        if not isinstance(rdn, list) or not rdn:
            raise _Refused("the SCEP payload's Subject is not an array of arrays")
        attrs = []
        for pair in rdn:
            if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(v, str) for v in pair):
                raise _Refused("each Subject entry is a [type, value] pair of strings")
            kind, value = pair
            try:
                oid = SCEP_NAME_SHORTCUTS.get(kind.upper()) or x509.ObjectIdentifier(kind)
            except ValueError:
                raise _Refused(f"unknown Subject attribute {kind!r}") from None
            attrs.append(x509.NameAttribute(oid, value))
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(rdns)


def _alt_names(spec: dict[str, Any] | None) -> list[x509.GeneralName]:
    if not spec:
        return []
    names: list[x509.GeneralName] = []
    kinds = {"dNSName": x509.DNSName, "rfc822Name": x509.RFC822Name, "uniformResourceIdentifier": x509.UniformResourceIdentifier}
    for key, make in kinds.items():
        values = spec.get(key)
        for value in [values] if isinstance(values, str) else (values or []):
            if isinstance(value, str) and value:
                names.append(make(value))
    return names


def _fingerprint_matches(expected: bytes, certs: list[x509.Certificate]) -> bool:
    """``CAFingerprint`` names its hash only by its length: SHA-256, SHA-1 or MD5."""
    algorithm = {32: hashlib.sha256, 20: hashlib.sha1, 16: hashlib.md5}.get(len(expected))
    if algorithm is None:
        return False
    return any(
        hmac.compare_digest(algorithm(c.public_bytes(serialization.Encoding.DER)).digest(), expected) for c in certs
    )


def _recipient(certs: list[x509.Certificate]) -> x509.Certificate:
    """Whom to encrypt to: the RA (a non-CA RSA certificate) when there is one, else the CA."""
    rsa_certs = [c for c in certs if isinstance(c.public_key(), rsa.RSAPublicKey)]
    for cert in rsa_certs:
        if not is_ca(cert):
            return cert
    if rsa_certs:
        return rsa_certs[0]
    raise _Refused("the SCEP server offers no RSA certificate to encrypt the request to")


@dataclass
class _Job:
    """One SCEP exchange's inputs (see :func:`obtain_identity`)."""

    payload: SCEPPayload
    now: Callable[[], datetime]
    progress: dict[str, Any]
    make_key: Callable[[int], rsa.RSAPrivateKey]
    default_cn: str
    trust: tuple[str, ...] | None
    renew_with: tuple[x509.Certificate, PrivateKey] | None


def obtain_identity(
    payload: SCEPPayload,
    *,
    now: Callable[[], datetime],
    progress: dict[str, Any],
    make_key: Callable[[int], rsa.RSAPrivateKey],
    default_cn: str,
    trust: tuple[str, ...] | None = None,
    renew_with: tuple[x509.Certificate, PrivateKey] | None = None,
) -> Flow[SCEPResult]:
    """Run the SCEP exchange for ``payload``; ``progress`` keeps a PENDING request between runs.

    ``make_key(bits)`` makes the RSA key (a seeded world derives it; a fleet may hand out pooled
    keys). ``renew_with`` makes it a RenewalReq signed by that identity instead of a PKCSReq.
    """
    job = _Job(payload, now, progress, make_key, default_cn, trust, renew_with)
    try:
        return (yield from _run(job))
    except _Refused as refused:
        progress.clear()
        return SCEPResult("failed", refused.reason)


def _run(job: _Job) -> Flow[SCEPResult]:
    payload, progress = job.payload, job.progress
    if (payload.key_type or "RSA") != "RSA":
        raise _Refused(f"SCEP Key Type {payload.key_type!r} is not supported (only RSA)")
    if not progress.get("transaction_id"):
        yield from _start(job)
    elif progress.get("retry_at") and job.now() < datetime.fromisoformat(progress["retry_at"]):
        return SCEPResult("pending", "waiting to poll the SCEP server again",
                          retry_at=datetime.fromisoformat(progress["retry_at"]))
    return (yield from _exchange(payload, job.now, progress, job.trust))


def _start(job: _Job) -> Flow[None]:
    payload, trust, renew_with = job.payload, job.trust, job.renew_with
    answer = yield Request("GET", _url(payload.url, "GetCACert", payload.name), trust=trust)
    if answer.status != 200:
        raise _Refused(f"GetCACert failed: {answer.describe()}")
    kind = answer.header("content-type").split(";")[0].strip().lower()
    try:
        if kind == "application/x-x509-ca-cert":
            certs = [x509.load_der_x509_certificate(answer.body)]
        elif kind == "application/x-x509-ca-ra-cert":
            certs = scep.parse_certs_only(answer.body)
        else:
            raise _Refused(f"GetCACert answered {kind or 'no content type'}, not a CA certificate")
    except (ValueError, scep.SCEPError) as exc:
        raise _Refused(f"GetCACert answered something that is not a certificate: {exc}") from None
    if not certs:
        raise _Refused("GetCACert answered no certificate")
    if payload.ca_fingerprint and not _fingerprint_matches(payload.ca_fingerprint, certs):
        raise _Refused("the SCEP server's CA does not match the payload's CAFingerprint")
    caps_answer = yield Request("GET", _url(payload.url, "GetCACaps", payload.name), trust=trust)
    caps = scep.parse_caps(caps_answer.body.decode("utf-8", "replace")) if caps_answer.status == 200 else set()
    upper = {c.upper() for c in caps}
    bits = payload.keysize or DEFAULT_KEYSIZE
    if bits not in (1024, 2048, 4096):
        raise _Refused(f"SCEP Keysize {bits} is not 1024, 2048 or 4096")
    key = job.make_key(bits)
    subject = subject_name(payload.subject, job.default_cn)
    csr = _csr(payload, key, subject, challenge=None if renew_with else payload.challenge)
    if renew_with is not None:
        signer_cert, signer_key = renew_with
    else:
        signer_cert, signer_key = _self_signed(key, subject, job.now()), key
    job.progress.update({
        "transaction_id": scep.transaction_id(key.public_key()),
        "ca_certs": [cert_to_pem(c).decode() for c in certs],
        "recipient": cert_to_pem(_recipient(certs)).decode(),
        "post": "POSTPKIOPERATION" in upper or "SCEPSTANDARD" in upper,
        "cipher": "aes128" if "AES" in upper else "des3",
        "digest": "sha512" if "SHA-512" in upper else "sha256" if "SHA-256" in upper else "sha1",
        "key": key_to_pem(key).decode(),
        "signer_cert": cert_to_pem(signer_cert).decode(),
        "signer_key": key_to_pem(signer_key).decode(),
        "csr": base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode(),
        "subject": base64.b64encode(subject.public_bytes()).decode(),
        "message_type": scep.MessageType.RENEWAL_REQ.value if renew_with else scep.MessageType.PKCS_REQ.value,
        "attempts": 0,
    })


def _csr(
    payload: SCEPPayload, key: rsa.RSAPrivateKey, subject: x509.Name, challenge: str | None
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if challenge:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode("utf-8"))
    alt = _alt_names(payload.subject_alt_name)
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    usage = payload.key_usage or 0
    if usage:
        builder = builder.add_extension(key_usage(usage), critical=True)
    return builder.sign(key, hashes.SHA256())


def _self_signed(key: rsa.RSAPrivateKey, subject: x509.Name, at: datetime) -> x509.Certificate:
    """The throwaway identity a first request is signed with (RFC 8894 §2.3)."""
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - timedelta(minutes=5)).not_valid_after(at + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def _exchange(
    payload: SCEPPayload, now: Callable[[], datetime], progress: dict[str, Any], trust: tuple[str, ...] | None
) -> Flow[SCEPResult]:
    """Send the request (or a CertPoll after PENDING) and read the CertRep."""
    recipient = cert_from_pem(progress["recipient"])
    signer_cert, signer_key = cert_from_pem(progress["signer_cert"]), key_from_pem(progress["signer_key"])
    polling = progress["attempts"] > 0
    if polling:
        ca = next((c for c in map(cert_from_pem, progress["ca_certs"]) if is_ca(c)), recipient)
        inner = scep.issuer_and_subject(ca.subject, scep.name_from_der(base64.b64decode(progress["subject"])))
        kind = scep.MessageType.CERT_POLL
    else:
        inner = base64.b64decode(progress["csr"])
        kind = scep.MessageType(progress["message_type"])
    nonce = scep.new_nonce()
    message = scep.sign_pki_message(
        message_type=kind, transaction_id=progress["transaction_id"], signer_cert=signer_cert, signer_key=signer_key,
        content=scep.envelope(inner, [recipient], progress["cipher"]), sender_nonce=nonce, digest=progress["digest"],
    )
    if progress["post"]:
        request = Request("POST", _url(payload.url, "PKIOperation"), {"Content-Type": "application/x-pki-message"},
                          message, trust=trust)
    else:
        request = Request("GET", _url(payload.url, "PKIOperation", base64.b64encode(message).decode()), trust=trust)
    answer = yield request
    progress["attempts"] += 1
    if answer.status != 200:
        raise _Refused(f"PKIOperation failed: {answer.describe()}")
    if len(answer.body) > MAX_RESPONSE:
        raise _Refused("the CertRep is too large")
    try:
        reply = scep.parse_pki_message(answer.body)
    except scep.SCEPError as exc:
        raise _Refused(f"the CertRep could not be read: {exc.reason}") from None
    known = [cert_from_pem(p) for p in progress["ca_certs"]]
    if reply.signer not in known:
        raise _Refused("the CertRep is not signed by the SCEP server's CA or RA")
    if reply.message_type is not scep.MessageType.CERT_REP or reply.transaction_id != progress["transaction_id"]:
        raise _Refused("the CertRep answers another transaction")
    if reply.recipient_nonce is not None and not hmac.compare_digest(reply.recipient_nonce, nonce):
        raise _Refused("the CertRep's recipientNonce is not our senderNonce")
    if reply.pki_status is scep.PKIStatus.FAILURE:
        label = reply.fail_info.label if reply.fail_info is not None else "no failInfo"
        raise _Refused(f"the SCEP server refused the request: {label}")
    if reply.pki_status is scep.PKIStatus.PENDING:
        retries = payload.retries if payload.retries is not None else DEFAULT_RETRIES
        if progress["attempts"] > retries:
            raise _Refused(f"the SCEP request was still pending after {progress['attempts']} attempts")
        configured = payload.retry_delay if payload.retry_delay is not None else DEFAULT_RETRY_DELAY
        delay = 0 if progress["attempts"] == 1 else configured  # iOS retries once at once, then waits
        retry_at = now() + timedelta(seconds=delay)
        progress["retry_at"] = retry_at.isoformat()
        return SCEPResult("pending", "the SCEP server answered PENDING", retry_at=retry_at)
    if reply.pki_status is not scep.PKIStatus.SUCCESS:
        raise _Refused("the CertRep has no pkiStatus")
    key = key_from_pem(progress["key"])
    try:
        certs = scep.parse_certs_only(scep.open_envelope(reply.content, signer_cert, signer_key))
    except scep.SCEPError as exc:
        raise _Refused(f"the issued certificate could not be read: {exc.reason}") from None
    mine = next((c for c in certs if c.public_key() == key.public_key()), None)
    if mine is None:
        raise _Refused("the CertRep holds no certificate for our key")
    progress.clear()
    return SCEPResult("issued", certificate=mine, key=key, issuer=mine.issuer.rfc4514_string())


def key_usage(flags: int) -> x509.KeyUsage:
    """A payload's ``Key Usage``/``UsageFlags`` bits (1 signing, 4 encryption) as the CSR's extension."""
    return x509.KeyUsage(
        digital_signature=bool(flags & 1), content_commitment=False, key_encipherment=bool(flags & 4),
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
