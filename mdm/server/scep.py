"""The MDM server's SCEP service (RFC 8894): how a device gets the identity it checks in with.

The enrollment profile's ``com.apple.security.scep`` payload sends the device here with a one-time
challenge. The MDM CA (EC, fast to sign with) cannot take part in SCEP's RSA key transport, so a
registration authority does: an RSA certificate issued by the MDM CA, to which requests are
encrypted and with which answers are signed. ``GetCACert`` therefore answers the RA and the CA as a
certs-only PKCS#7 (``application/x-x509-ca-ra-cert``), as Microsoft's NDES does.

Rules, all here:

* a challenge is one-time, expires (an hour by default), and may be tied to one enrollment: the
  subject common name (the UDID) the profile asked the device to put in its CSR;
* a PKCSReq is signed by a self-signed certificate of the CSR's own key; a RenewalReq by a current
  identity this CA issued, for the same subject (no challenge needed);
* a challenge made with ``pending_seconds`` answers PENDING until that much *world* time has passed,
  then a CertPoll (GetCertInitial) gets the certificate;
* anything wrong is a CertRep FAILURE with RFC 8894's failInfo: badMessageCheck (signature,
  envelope), badRequest (challenge, CSR, subject), badAlg, badCertId (an unknown poll). Only a message
  too broken to answer (no transaction to answer to) is an HTTP 400.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol import scep
from mdm.protocol.randomness import Randomness
from mdm.protocol.x509 import CertificateAuthority, fingerprint_sha256, verify_issued_by

from . import scep_store as q

__all__ = ["SCEPService", "SCEPReply", "CHALLENGE_TTL", "RA_CONTENT_TYPE", "PKI_CONTENT_TYPE"]

CHALLENGE_TTL = 3600.0
RA_CONTENT_TYPE = "application/x-x509-ca-ra-cert"
PKI_CONTENT_TYPE = "application/x-pki-message"
#: The digests we answer with: the request's if it is one of these, else SHA-256.
_ANSWER_DIGESTS = ("sha1", "sha256", "sha512")


@dataclass(frozen=True)
class SCEPReply:
    """What a PKIOperation produced: the CertRep, and (for logs and tests) its status."""

    der: bytes
    status: scep.PKIStatus
    fail_info: scep.FailInfo | None = None
    reason: str = ""
    certificate: x509.Certificate | None = None


def _digest(challenge: str) -> str:
    return hashlib.sha256(challenge.encode("utf-8")).hexdigest()


def _common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = values[0].value if values else None
    return value if isinstance(value, str) else None


class SCEPService:
    """SCEP over one store and clock, issuing from the MDM CA through an RSA registration authority.

    ``ca`` and ``ra`` are callables so the MDM server keeps making (and persisting) them its own way;
    ``on_issued(db, cert, subject_cn, now, renews=…)`` records an issued identity in the same transaction
(``renews``: the identity a RenewalReq renews, else None), so
    the server recognises the device at its first check-in.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        ca: Callable[[], CertificateAuthority],
        ra: Callable[[], tuple[x509.Certificate, rsa.RSAPrivateKey]],
        on_issued: Callable[..., None] | None = None,
        identity_days: float = 365,
        challenge_ttl: float = CHALLENGE_TTL,
        seed: int | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self._ca = ca
        self._ra = ra
        self._on_issued = on_issued
        self.identity_days = identity_days
        self.challenge_ttl = challenge_ttl
        self.random = Randomness(seed)
        self._ca_certs: tuple[tuple[bytes, bytes], bytes] | None = None

    # -- GetCACaps, GetCACert ---------------------------------------------------------------------------
    def caps(self) -> str:
        return "\n".join(scep.DEFAULT_CAPS) + "\n"

    def ca_certs(self) -> bytes:
        """The RA and the CA, certs-only (what GetCACert answers with ``RA_CONTENT_TYPE``).

        Every enrolling device asks first; the answer is built once per (RA, CA) pair and kept, since
        building it with asn1crypto costs about as much as the rest of that request."""
        ra_cert, _ = self._ra()
        ca_cert = self._ca().certificate
        key = (ra_cert.fingerprint(hashes.SHA256()), ca_cert.fingerprint(hashes.SHA256()))
        cached = self._ca_certs
        if cached is None or cached[0] != key:
            cached = self._ca_certs = (key, scep.certs_only([ra_cert, ca_cert]))
        return cached[1]

    # -- challenges ----------------------------------------------------------------------------------------
    def new_challenge(self, subject_cn: str | None = None, *, pending_seconds: float = 0.0, label: str = "") -> str:
        """A one-time challenge, valid ``challenge_ttl`` seconds of world time; tied to ``subject_cn``
        (the CSR must name it) when given. ``label`` names it for seeded runs (an enrollment's UDID)."""
        name = label or subject_cn or "tool"
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            # numbered from what the store holds (not a per-process counter): every worker of a seeded
            # world draws the next challenge in the same series, and never one already given out
            for n in range(q.count_challenges(db), 1_000_000):
                challenge = self.random.urlsafe(24, f"mdm:scep-challenge:{name}:{n}")
                if not q.challenge_exists(db, _digest(challenge)):
                    break
            q.insert_challenge(db, _digest(challenge), subject_cn, now, now + self.challenge_ttl, float(pending_seconds))
        return challenge

    def challenge_request(self, data: Any) -> dict[str, Any]:
        """``POST /mdm/api/v1/scep/challenges``: ``{}`` or ``{"subject_cn", "pending_seconds"}`` → the
        challenge and how long it lives; :class:`scep.SCEPError` says what is wrong with the body."""
        if data is None:
            data = {}
        if not isinstance(data, dict) or set(data) - {"subject_cn", "pending_seconds"}:
            raise scep.SCEPError('send {} or {"subject_cn": "…", "pending_seconds": n}')
        subject = data.get("subject_cn")
        pending = data.get("pending_seconds", 0)
        if subject is not None and (not isinstance(subject, str) or not 0 < len(subject) <= 256):
            raise scep.SCEPError("subject_cn must be a string of 1 to 256 characters")
        if not isinstance(pending, int | float) or isinstance(pending, bool) or not 0 <= pending <= 86400:
            raise scep.SCEPError("pending_seconds must be a number of seconds from 0 to 86400")
        challenge = self.new_challenge(subject, pending_seconds=float(pending))
        return {"challenge": challenge, "expires_in": int(self.challenge_ttl)}

    # -- PKIOperation ---------------------------------------------------------------------------------------
    def pki_operation(self, body: bytes) -> SCEPReply:
        """Answer a pkiMessage with a CertRep. SCEPError only when there is nothing to answer to."""
        request = scep.parse_pki_message(body)  # SCEPError: no signed transaction to answer
        try:
            if request.message_type in (scep.MessageType.PKCS_REQ, scep.MessageType.RENEWAL_REQ):
                return self._enroll(request)
            if request.message_type is scep.MessageType.CERT_POLL:
                return self._poll(request)
            raise scep.SCEPError(f"messageType {request.message_type.value} is not supported here")
        except scep.SCEPError as exc:
            return self._reply(request, scep.PKIStatus.FAILURE, fail_info=exc.fail_info, reason=exc.reason)

    def _enroll(self, request: scep.PKIMessage) -> SCEPReply:
        ra_cert, ra_key = self._ra()
        csr_der = scep.open_envelope(request.content, ra_cert, ra_key)
        try:
            csr = x509.load_der_x509_csr(csr_der)
        except ValueError:
            raise scep.SCEPError("the envelope does not hold a PKCS#10 request") from None
        if not csr.is_signature_valid:
            raise scep.SCEPError("the CSR's signature does not verify", scep.FailInfo.BAD_MESSAGE_CHECK)
        now = self.clock.now()
        signer = request.signer
        if request.message_type is scep.MessageType.RENEWAL_REQ:
            ca = self._ca()
            if not verify_issued_by(signer, ca.certificate) or not (
                signer.not_valid_before_utc <= now <= signer.not_valid_after_utc
            ):
                raise scep.SCEPError("a renewal is signed by a current identity this CA issued")
            if signer.subject != csr.subject:
                raise scep.SCEPError("a renewal keeps the subject of the identity it renews")
        elif _spki(signer.public_key()) != _spki(csr.public_key()):
            raise scep.SCEPError("the request is not signed with the key of its CSR")
        fingerprint = fingerprint_sha256(signer)
        with self.store.read() as db:
            earlier = q.get_transaction(db, request.transaction_id, fingerprint)
        if earlier is not None and earlier["csr"] == csr_der:  # the same request again (a lost answer)
            if earlier["certificate"] is not None:
                return self._success(request, x509.load_der_x509_certificate(earlier["certificate"]))
            return self._poll(request, earlier)
        pending = 0.0
        if request.message_type is scep.MessageType.PKCS_REQ:
            pending = self._use_challenge(csr, now.timestamp())
        if pending > 0:
            with self.store.transaction() as db:
                q.put_transaction(db, request.transaction_id, fingerprint, "pending", csr_der,
                                  now.timestamp() + pending, now.timestamp())
            return self._reply(request, scep.PKIStatus.PENDING, reason=f"pending for {pending:g} s of world time")
        return self._success(request, self._issue(request, fingerprint, csr, csr_der))

    def _use_challenge(self, csr: x509.CertificateRequest, now: float) -> float:
        challenge = scep.challenge_password(csr)
        if not challenge:
            raise scep.SCEPError("the CSR has no challengePassword")
        with self.store.transaction() as db:
            outcome = q.claim_challenge(db, _digest(challenge), now)
            if outcome is None:
                raise scep.SCEPError("the challenge is not one this server gave out")
            state, row = outcome
            if state == "used":
                raise scep.SCEPError("the challenge was used already")
            if state == "expired":
                raise scep.SCEPError("the challenge has expired")
            bound = row["subject_cn"]
            if bound is not None and not hmac.compare_digest(bound.encode(), (_common_name(csr.subject) or "").encode()):
                # the claim is rolled back with the transaction: a mismatched CSR does not spend the challenge
                raise scep.SCEPError("the CSR's subject is not the one this challenge was made for")
            return float(row["pending_seconds"])

    def _poll(self, request: scep.PKIMessage, row: object = None) -> SCEPReply:
        """A CertPoll (or a PKCSReq sent again) for a transaction we answered PENDING."""
        fingerprint = fingerprint_sha256(request.signer)
        if row is None:
            ra_cert, ra_key = self._ra()
            scep.parse_issuer_and_subject(scep.open_envelope(request.content, ra_cert, ra_key))
            with self.store.read() as db:
                row = q.get_transaction(db, request.transaction_id, fingerprint)
        if row is None:
            raise scep.SCEPError("no pending request with this transactionID", scep.FailInfo.BAD_CERT_ID)
        if row["certificate"] is not None:
            return self._success(request, x509.load_der_x509_certificate(row["certificate"]))
        if self.clock.timestamp() < row["ready_at"]:
            return self._reply(request, scep.PKIStatus.PENDING, reason="still pending")
        csr = x509.load_der_x509_csr(row["csr"])
        return self._success(request, self._issue(request, fingerprint, csr, row["csr"]))

    def _issue(
        self, request: scep.PKIMessage, fingerprint: str, csr: x509.CertificateRequest, csr_der: bytes
    ) -> x509.Certificate:
        now = self.clock.now()
        ca = self._ca()
        cert = ca.issue(csr.public_key(), subject=csr.subject, now=now, days=self.identity_days)
        with self.store.transaction() as db:
            q.put_transaction(db, request.transaction_id, fingerprint, "issued", csr_der, now.timestamp(),
                              now.timestamp(), cert.public_bytes(Encoding.DER))
            if self._on_issued is not None:
                renews = request.signer if request.message_type is scep.MessageType.RENEWAL_REQ else None
                self._on_issued(db, cert, _common_name(csr.subject), now.timestamp(), renews=renews)
        return cert

    # -- CertRep ----------------------------------------------------------------------------------------------
    def _success(self, request: scep.PKIMessage, cert: x509.Certificate) -> SCEPReply:
        if not isinstance(request.signer.public_key(), rsa.RSAPublicKey):
            return self._reply(request, scep.PKIStatus.FAILURE, fail_info=scep.FailInfo.BAD_ALG,
                               reason="the requester's certificate needs an RSA key to receive its certificate")
        content = scep.envelope(scep.certs_only([cert]), [request.signer], scep.content_cipher(request.content))
        return self._reply(request, scep.PKIStatus.SUCCESS, content=content, certificate=cert)

    def _reply(
        self,
        request: scep.PKIMessage,
        status: scep.PKIStatus,
        *,
        fail_info: scep.FailInfo | None = None,
        reason: str = "",
        content: bytes = b"",
        certificate: x509.Certificate | None = None,
    ) -> SCEPReply:
        ra_cert, ra_key = self._ra()
        digest = request.digest_algorithm if request.digest_algorithm in _ANSWER_DIGESTS else "sha256"
        der = scep.sign_pki_message(
            message_type=scep.MessageType.CERT_REP,
            transaction_id=request.transaction_id,
            signer_cert=ra_cert,
            signer_key=ra_key,
            content=content,
            sender_nonce=scep.new_nonce(),
            recipient_nonce=request.sender_nonce,
            pki_status=status,
            fail_info=fail_info if status is scep.PKIStatus.FAILURE else None,
            digest=digest,
        )
        return SCEPReply(der, status, fail_info, reason, certificate)


def _spki(public_key: object) -> bytes:
    from cryptography.hazmat.primitives.serialization import PublicFormat

    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]
