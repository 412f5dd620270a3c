"""The Push Certificates Portal's rules: issue, renew, revoke, and "is this certificate current?".

The rules that matter to everyone downstream:

* A **new** certificate gets a **new topic** (``com.apple.mgmt.External.<uuid>``, CN ``APSP:<uuid>``).
  Devices enroll with the topic, so a new topic cuts off every device enrolled under the old one.
* A **renewal** (same Apple ID, new CSR) keeps the topic and issues a new certificate (new serial, new
  key, new expiry); the old certificate is *replaced*. That is why admins are told to renew, never
  to create a new one.
* A certificate is valid for one year of *world* time, so a test moves the clock past expiry in
  milliseconds.
* :meth:`PushCertificateService.is_current` is what APNs asks before accepting a push: issued by our
  CA, known, not revoked, not expired, and the latest certificate of its topic.

All state lives in the store (DESIGN rule 3; tables and SQL in :mod:`.store`); the CA is created on
first use and kept there, so every process and every restart trusts the same one. With a ``seed`` the
CA key (``apple-push-ca``), each new topic (``push-topic:<n>``, the labels seeded worlds have always
used) and each certificate's id and serial number (``pushcert:<topic>:generation:<g>:…``) are derived.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.isotime import iso_from_timestamp
from mdm.protocol.randomness import Randomness
from mdm.protocol.x509 import (
    UID_OID,
    CertificateAuthority,
    cert_from_pem,
    cert_to_pem,
    fingerprint_sha256,
    push_topic,
    verify_issued_by,
)

from . import store as pushcert_store
from .store import MIGRATIONS, open_pushcert_store

__all__ = [
    "MIGRATIONS",
    "open_pushcert_store",
    "PushCertError",
    "PushCertificateService",
    "CurrentCheck",
    "parse_csr",
    "topic_of",
    "CA_NAME",
    "VALIDITY_DAYS",
]

#: Apple issues MDM push certificates from "Apple Application Integration 2 Certification Authority";
#: the suffix keeps anyone from mistaking ours for Apple's.
CA_NAME = "Apple Application Integration 2 Certification Authority (mdmsim)"
VALIDITY_DAYS = 365
TOPIC_PREFIX = "com.apple.mgmt.External."
MAX_CSR_BYTES = 65_536
MIN_RSA_BITS = 2048
_APPLE_ID = re.compile(r"^[^@\s]{1,200}@[^@\s]{1,200}$")


class PushCertError(Exception):
    """A request the portal refuses: ``status`` (400/403/404/409) and a sentence for a person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class CurrentCheck:
    """Why a certificate is (not) current. ``code`` is one word APNs maps to Apple's reason strings."""

    ok: bool
    code: str
    message: str

    def as_tuple(self) -> tuple[bool, str]:
        """``(ok, "<code>: <message>")``: the shape APNs' ``certificate_check`` hook expects."""
        return self.ok, f"{self.code}: {self.message}"


def parse_csr(data: bytes | str) -> x509.CertificateSigningRequest:
    """A PEM (or DER) CSR whose self-signature verifies, with an RSA key of at least 2048 bits.

    The self-signature is the requester's proof that it holds the private key; Apple's push
    certificates are RSA, so an EC or short key is refused here rather than at first push.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if not raw.strip():
        raise PushCertError(400, "no certificate signing request was given: upload the CSR file")
    if len(raw) > MAX_CSR_BYTES:
        raise PushCertError(400, f"the certificate signing request is larger than {MAX_CSR_BYTES} bytes")
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(raw.strip())
        else:
            csr = x509.load_der_x509_csr(raw)
    except ValueError:
        raise PushCertError(
            400, "the file is not a certificate signing request (expected PEM '-----BEGIN CERTIFICATE REQUEST-----' or DER)"
        ) from None
    try:
        valid = csr.is_signature_valid
    except Exception:  # an unsupported signature algorithm is as bad as a wrong signature
        valid = False
    if not valid:
        raise PushCertError(
            400,
            "the certificate signing request's signature does not verify: it was not signed by the "
            "key it contains (was it edited after it was made?)",
        )
    key = csr.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        raise PushCertError(400, f"MDM push certificates need an RSA key of at least {MIN_RSA_BITS} bits")
    return csr


def topic_of(cert: x509.Certificate) -> str | None:
    """The push topic: the certificate subject's UID attribute (any topic Apple issued)."""
    return push_topic(cert, mdm_only=False)



class PushCertificateService:
    """Apple's push certificate issuer over one store and the world clock."""

    def __init__(self, store: Store, clock: Clock, *, seed: int | None = None) -> None:
        self.store = store
        self.clock = clock
        self.seed = seed
        self.random = Randomness(seed)
        self._ca_cache: tuple[bytes, CertificateAuthority] | None = None
        # CA signature checks by fingerprint: immutable facts, so caching them is always correct.
        self._signed_by_ca: dict[str, bool] = {}

    # == the CA ===================================================================================
    def certificate_authority(self) -> CertificateAuthority:
        """Apple's push CA, made on first use and kept in the store (first writer wins)."""
        with self.store.read() as db:
            cert_pem = pushcert_store.setting(db, "ca_cert")
        if cert_pem is None:
            ca = CertificateAuthority.create(
                CA_NAME,
                self.clock.now(),
                key=self.random.ec_key("apple-push-ca"),
                days=3650,
                organization="Apple Inc.",
            )
            new_cert, new_key = ca.to_pem()
            with self.store.transaction() as db:
                pushcert_store.put_setting_once(db, "ca_cert", new_cert)
                pushcert_store.put_setting_once(db, "ca_key", new_key)
                cert_pem = pushcert_store.setting(db, "ca_cert")
        cert_pem = bytes(cert_pem)
        cached = self._ca_cache
        if cached is not None and cached[0] == cert_pem:
            return cached[1]
        with self.store.read() as db:
            key_pem = bytes(pushcert_store.setting(db, "ca_key"))
        ca = CertificateAuthority.from_pem(cert_pem, key_pem)
        self._ca_cache = (cert_pem, ca)
        return ca

    def ca_certificate_pem(self) -> bytes:
        return cert_to_pem(self.certificate_authority().certificate)

    # == issue, renew, revoke =====================================================================
    def create(self, apple_id: Any, csr_pem: Any) -> dict[str, Any]:
        """A new push certificate with a **new topic**; the record plus ``certificate`` (PEM)."""
        apple_id = _check_apple_id(apple_id)
        csr = parse_csr(_check_text(csr_pem))
        with self.store.transaction() as db:
            issued = pushcert_store.certificate_count(db)
            topic_uuid = self.random.uuid(f"push-topic:{issued}").upper()
            cert_id = self._issue(db, apple_id, csr, topic_uuid, generation=1, renewed_from=None)
        return self.get(cert_id, with_pem=True)

    def renew(self, cert_id: str, apple_id: Any, csr_pem: Any) -> dict[str, Any]:
        """Renew ``cert_id``'s topic for the same Apple ID: same topic, new serial, key and expiry.

        Renewing any certificate of the topic renews the topic (the portal lists them together), but
        a revoked topic cannot be renewed: the customer must create a new certificate.
        """
        apple_id = _check_apple_id(apple_id)
        csr = parse_csr(_check_text(csr_pem))
        with self.store.transaction() as db:
            row = _row(db, cert_id)
            if row["apple_id"].lower() != apple_id.lower():
                raise PushCertError(
                    403,
                    "this certificate belongs to another Apple ID: sign in with the Apple ID that created "
                    "it to renew it (renewing with another Apple ID is not possible; a new certificate "
                    "would change the push topic)",
                )
            latest = pushcert_store.latest(db, row["topic"])
            if latest["revoked_at"] is not None:
                raise PushCertError(
                    409,
                    "this certificate was revoked and cannot be renewed: create a new certificate "
                    "(devices will have to enroll again under its new topic)",
                )
            topic_uuid = row["topic"][len(TOPIC_PREFIX) :]
            new_id = self._issue(
                db,
                row["apple_id"],
                csr,
                topic_uuid,
                generation=latest["generation"] + 1,
                renewed_from=latest["id"],
            )
        return self.get(new_id, with_pem=True)

    def revoke(self, cert_id: str) -> dict[str, Any]:
        """Revoke one certificate; APNs refuses it from now on (idempotent)."""
        with self.store.transaction() as db:
            _row(db, cert_id)
            pushcert_store.revoke(db, cert_id, self.clock.timestamp())
            self._forget_checks(db)
        return self.get(cert_id)

    def _issue(
        self,
        db: sqlite3.Connection,
        apple_id: str,
        csr: x509.CertificateSigningRequest,
        topic_uuid: str,
        *,
        generation: int,
        renewed_from: str | None,
    ) -> str:
        """Issue and record the ``generation``-th certificate of a topic for a checked CSR; its id."""
        topic = TOPIC_PREFIX + topic_uuid
        label = f"pushcert:{topic}:generation:{generation}"
        subject = x509.Name(
            [
                x509.NameAttribute(UID_OID, topic),
                x509.NameAttribute(NameOID.COMMON_NAME, f"APSP:{topic_uuid}"),
                x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            ]
        )
        now = self.clock.now()
        # parse_csr checked the self-signature and the RSA key, as issue_for_csr would; issue() also
        # takes the serial number, derived in a seeded world (as x509.random_serial_number otherwise).
        cert = self.certificate_authority().issue(
            csr.public_key(),
            subject=subject,
            now=now,
            days=VALIDITY_DAYS,
            client_auth=True,
            serial=int.from_bytes(self.random.bytes(20, f"{label}:serial"), "big") >> 1,
        )
        self._forget_checks(db)
        cert_id = self.random.uuid(f"{label}:id")
        pushcert_store.insert_certificate(
            db,
            {
                "id": cert_id,
                "apple_id": apple_id,
                "topic": topic,
                "generation": generation,
                "serial": format(cert.serial_number, "x"),
                "fingerprint": fingerprint_sha256(cert),
                "pem": cert_to_pem(cert).decode(),
                "not_before": cert.not_valid_before_utc.timestamp(),
                "not_after": cert.not_valid_after_utc.timestamp(),
                "issued_at": now.timestamp(),
                "renewed_from": renewed_from,
            },
        )
        return cert_id

    # == reading ==================================================================================
    def list(self, apple_id: str | None = None) -> list[dict[str, Any]]:
        """Every certificate (or one Apple ID's), newest first."""
        with self.store.read() as db:
            rows = pushcert_store.certificates(db, apple_id)
            latest = pushcert_store.latest_generations(db)
        return [self._render(r, latest) for r in rows]

    def get(self, cert_id: str, *, with_pem: bool = False) -> dict[str, Any]:
        with self.store.read() as db:
            row = _row(db, cert_id)
            latest = pushcert_store.latest_generations(db, row["topic"])
        out = self._render(row, latest)
        if with_pem:
            out["certificate"] = row["pem"]
        return out

    def pem(self, cert_id: str) -> str:
        with self.store.read() as db:
            return str(_row(db, cert_id)["pem"])

    def _render(self, row: sqlite3.Row, latest: dict[str, tuple[int, str]]) -> dict[str, Any]:
        newest_generation, newest_id = latest.get(row["topic"], (row["generation"], row["id"]))
        return {
            "id": row["id"],
            "apple_id": row["apple_id"],
            "service": "Mobile Device Management",
            "topic": row["topic"],
            "serial": row["serial"],
            "not_before": iso_from_timestamp(row["not_before"]),
            "not_after": iso_from_timestamp(row["not_after"]),
            "issued_at": iso_from_timestamp(row["issued_at"]),
            "status": self._status(row, newest_generation),
            "renewed_from": row["renewed_from"],
            "replaced_by": newest_id if row["generation"] < newest_generation else None,
            "revoked_at": iso_from_timestamp(row["revoked_at"]),
        }

    def _status(self, row: sqlite3.Row, newest_generation: int) -> str:
        if row["revoked_at"] is not None:
            return "revoked"
        if row["generation"] < newest_generation:
            return "replaced"
        if row["not_after"] <= self.clock.timestamp():
            return "expired"
        return "active"

    # == for APNs =================================================================================
    def check(self, cert: x509.Certificate) -> CurrentCheck:
        """Whether APNs should accept this certificate now, and why not (a code and a sentence)."""
        fingerprint = fingerprint_sha256(cert)
        signed = self._signed_by_ca.get(fingerprint)
        if signed is None:
            signed = verify_issued_by(cert, self.certificate_authority().certificate)
            if len(self._signed_by_ca) > 10_000:
                self._signed_by_ca.clear()
            self._signed_by_ca[fingerprint] = signed
        if not signed:
            return CurrentCheck(False, "untrusted", "not issued by Apple's push certification authority")
        found = self.store.cached(f"{_CHECK_MEMO}{fingerprint}", lambda: self._record_and_latest(fingerprint))
        if found is None:
            return CurrentCheck(False, "unknown", "Apple has no record of this certificate")
        row, latest = found
        now = self.clock.timestamp()
        if row["revoked_at"] is not None:
            return CurrentCheck(False, "revoked", f"revoked at {iso_from_timestamp(row['revoked_at'])}")
        if now >= row["not_after"]:
            return CurrentCheck(False, "expired", f"expired at {iso_from_timestamp(row['not_after'])}")
        if now < row["not_before"]:
            return CurrentCheck(False, "not-yet-valid", f"valid from {iso_from_timestamp(row['not_before'])}")
        if latest["id"] != row["id"]:
            return CurrentCheck(False, "replaced", f"renewed: serial {latest['serial']} replaces it")
        return CurrentCheck(True, "current", f"current push certificate for {row['topic']}")

    def _record_and_latest(self, fingerprint: str) -> tuple[sqlite3.Row, sqlite3.Row] | None:
        with self.store.read() as db:
            row = pushcert_store.certificate_by_fingerprint(db, fingerprint)
            return None if row is None else (row, pushcert_store.latest(db, row["topic"]))

    def _forget_checks(self, db: sqlite3.Connection) -> None:
        """Inside a transaction that issues or revokes: every memoised check may now answer otherwise
        (a renewal replaces its predecessor), and there are only a handful of certificates."""
        for fingerprint in pushcert_store.fingerprints(db):
            self.store.forget(f"{_CHECK_MEMO}{fingerprint}")

    def is_current(self, cert: x509.Certificate) -> tuple[bool, str]:
        """APNs' ``certificate_check`` hook: ``(ok, "<code>: <sentence>")``.

        Codes: ``current``, ``untrusted``, ``unknown``, ``revoked``, ``expired``, ``not-yet-valid``,
        ``replaced``. APNs answers ``untrusted`` and ``unknown`` with ``BadCertificate`` and the rest with
        ``Forbidden``.
        """
        return self.check(cert).as_tuple()

    def checker(self) -> Callable[[x509.Certificate], tuple[bool, str]]:
        """:meth:`is_current` as a plain callable, for ``APNsService(certificate_check=...)``."""
        return self.is_current

    def certificate(self, cert_id: str) -> x509.Certificate:
        return cert_from_pem(self.pem(cert_id))


def _row(db: sqlite3.Connection, cert_id: str) -> sqlite3.Row:
    row = pushcert_store.certificate(db, cert_id)
    if row is None:
        raise PushCertError(404, f"no push certificate {cert_id!r}"[:200])
    return row


_CHECK_MEMO = "pushcert-check:"  # + fingerprint: (record, latest of its topic), or None when unknown


def _check_apple_id(value: Any) -> str:
    if not isinstance(value, str) or not _APPLE_ID.match(value.strip()):
        raise PushCertError(400, "apple_id must be the Apple ID (an e-mail address) that owns the certificate")
    return value.strip()


def _check_text(value: Any) -> str | bytes:
    if value is None:
        return b""  # parse_csr says what is missing
    if isinstance(value, str | bytes):
        return value
    raise PushCertError(400, "csr must be the text of the certificate signing request (PEM)")
