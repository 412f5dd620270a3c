"""The tenant's Apple MDM push certificate, as Intune handles it (Graph ``applePushNotificationCertificate``).

The admin's steps, and why each rule exists:

1. **Download the CSR.** The controller makes an RSA 2048 key and a CSR for it, and hands out the same
   CSR until a certificate is uploaded: an admin who downloads twice must not invalidate the first file.
2. **Get the certificate from Apple** (Push Certificates Portal, with a company Apple ID).
3. **Upload it.** The certificate must be for the waiting key (or be the certificate in use, uploaded
   again); otherwise 400, because a certificate without its key is useless. The controller hands
   certificate and key to the MDM server (``PUT {mdm_api_url}/push-certificate``), which pushes with
   it and puts its topic in every enrollment profile; only when the MDM server took it is it stored.
4. **Renew every year** with the same Apple ID: same topic, devices keep working. A certificate with
   another topic is accepted (Intune does too), but every device enrolled under the old topic is
   unreachable until it enrolls again, and the controller says so (``topicChanged``, a count, and
   ``reenrollmentRequired`` on each imported device).

Without a certificate no DEP enrollment profile can be created: a device enrolled now would get a
topic no one can push to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol import x509 as mx509
from mdm.protocol.isotime import iso_from_timestamp, isoformat
from mdm.protocol.randomness import Randomness

from .errors import GraphError
from .store import devices as device_table
from .store import push_certificate as push_table

__all__ = ["PushCertificates", "EXPIRY_WARNING_DAYS", "MISSING_MESSAGE"]

EXPIRY_WARNING_DAYS = 30
MAX_CERT_CHARS = 65_536
ODATA_TYPE = "#microsoft.graph.applePushNotificationCertificate"
GRAPH_PATH = "deviceManagement/applePushNotificationCertificate"
MISSING_MESSAGE = (
    "Upload an Apple MDM push certificate before creating enrollment profiles: download the CSR from "
    f"{GRAPH_PATH}/downloadApplePushNotificationCertificateSigningRequest, create the certificate at "
    f"Apple's Push Certificates Portal and upload it to {GRAPH_PATH}"
)



class PushCertificates:
    """The push-certificate rules over the controller's store (table ``push_certificate``)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        http: httpx.Client,
        mdm_api_url: Callable[[], str] | None = None,
        organization: str = "mdmsim",
        seed: int | None = None,
    ) -> None:
        self.seed = seed
        self.random = Randomness(seed)
        self.store = store
        self.clock = clock
        self.http = http
        self.mdm_api_url = mdm_api_url
        self.organization = organization

    # == CSR ======================================================================================
    def signing_request(self) -> str:
        """The CSR waiting for Apple's certificate; made (with a new key) when none is waiting."""
        with self.store.read() as db:
            row = push_table.get(db)
        if row is not None and row["pending_csr_pem"]:
            return str(row["pending_csr_pem"])
        return self.new_signing_request(replace=False)

    def new_signing_request(self, *, replace: bool = True) -> str:
        """A new RSA 2048 key and its CSR. RSA because Apple issues push certificates for RSA keys.

        The key is made outside the transaction (it takes tens of milliseconds); with ``replace``
        False a CSR another request stored meanwhile wins, so concurrent downloads agree on one.
        """
        key = self.random.rsa_key("push-csr")
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, f"{self.organization} MDM push"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization),
                    ]
                )
            )
            .sign(key, hashes.SHA256())
        )
        csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode()
        key_pem = mx509.key_to_pem(key).decode()
        with self.store.transaction() as db:
            row = push_table.ensure(db, self.random.uuid("controller:push-certificate"))
            if not replace and row["pending_csr_pem"]:
                return str(row["pending_csr_pem"])
            push_table.set_pending(db, key_pem, csr_pem)
        return csr_pem

    # == upload ===================================================================================
    def upload(self, body: Any) -> dict[str, Any]:
        """Take Apple's certificate, give it (with its key) to the MDM server, keep it.

        A refused upload is recorded (``certificateUploadStatus: failed`` and the reason) and leaves
        the certificate in use untouched.
        """
        try:
            cert, cert_pem, key_pem, apple_id, used_pending = self._check_upload(body)
            topic = mx509.push_topic(cert)
            assert topic is not None
            self._deliver(cert_pem, key_pem)
        except GraphError as exc:
            self._record_failure(exc.message)
            raise
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            old_topic = push_table.ensure(db, self.random.uuid("controller:push-certificate"))["topic"]
            changed = old_topic is not None and old_topic != topic
            affected = device_table.count_unreachable(db, topic) if changed else 0
            upload = push_table.Upload(
                cert_pem=cert_pem,
                key_pem=key_pem,
                apple_identifier=apple_id,
                topic=topic,
                serial=format(cert.serial_number, "x"),
                not_after=cert.not_valid_after_utc.timestamp(),
                used_pending=used_pending,
                previous_topic=old_topic if changed else None,
            )
            push_table.record_upload(db, upload, now)
        out = self.get()
        out["topicChanged"] = changed
        if changed:
            out["previousTopicIdentifier"] = old_topic
            out["devicesRequiringReenrollmentCount"] = affected
            message = (
                f"The push topic changed from {old_topic} to {topic}: {affected} enrolled device(s) under the "
                "old topic cannot be reached until they enroll again. Renew the existing certificate "
                "with the same Apple ID to keep the topic."
            )
            if message not in out["warnings"]:
                out["warnings"].insert(0, message)
        return out

    def _check_upload(self, body: Any) -> tuple[x509.Certificate, str, str, str, bool]:
        if not isinstance(body, dict):
            raise GraphError(400, "badRequest", "the body must be a JSON object {appleIdentifier, certificate}")
        text, apple_id = body.get("certificate"), body.get("appleIdentifier")
        if not isinstance(apple_id, str) or "@" not in apple_id or len(apple_id) > 320:
            raise GraphError(400, "badRequest", "appleIdentifier must be the Apple ID used at Apple's Push Certificates Portal")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_CERT_CHARS:
            raise GraphError(400, "badRequest", "certificate must be the PEM text of the .pem file from Apple")
        try:
            cert = mx509.cert_from_pem(text.strip().encode())
        except ValueError:
            raise GraphError(
                400, "invalidCertificate", "certificate is not a PEM certificate: upload the .pem Apple issued"
            ) from None
        if mx509.push_topic(cert) is None:
            raise GraphError(
                400,
                "invalidCertificate",
                "this is not an Apple MDM push certificate (its subject has no com.apple.mgmt.* UID)",
            )
        if cert.not_valid_after_utc.timestamp() <= self.clock.timestamp():
            raise GraphError(
                400,
                "certificateExpired",
                f"the certificate expired at {isoformat(cert.not_valid_after_utc)}: renew it at Apple's "
                "Push Certificates Portal and upload the new one",
            )
        with self.store.read() as db:
            row = push_table.get(db)
        numbers = cert.public_key().public_numbers()
        for column, pending in (("pending_key_pem", True), ("key_pem", False)):
            pem = row[column] if row is not None else None
            if pem and mx509.key_from_pem(pem).public_key().public_numbers() == numbers:
                return cert, mx509.cert_to_pem(cert).decode(), str(pem), apple_id.strip(), pending
        raise GraphError(
            400,
            "certificateDoesNotMatchRequest",
            "the certificate was not issued for this tenant's certificate signing request: download the CSR "
            f"from {GRAPH_PATH}/downloadApplePushNotificationCertificateSigningRequest, upload that one to Apple "
            "and upload the certificate Apple returns",
        )

    def _deliver(self, cert_pem: str, key_pem: str) -> None:
        """Hand certificate and key to the MDM server, which pushes with them (before storing them)."""
        if self.mdm_api_url is None:
            return  # no MDM server configured (tests of the controller alone): kept, not delivered
        url = f"{self.mdm_api_url().rstrip('/')}/push-certificate"
        try:
            response = self.http.put(url, json={"certificate": cert_pem, "key": key_pem}, timeout=10.0)
        except httpx.HTTPError as exc:
            raise GraphError(503, "mdmServerUnreachable", f"the MDM server could not be reached: {type(exc).__name__}") from None
        if response.status_code >= 300:
            try:
                reason = str(response.json().get("error"))
            except (ValueError, AttributeError):
                reason = response.text[:200]
            raise GraphError(
                400, "mdmServerRejected", f"the MDM server refused the certificate ({response.status_code}: {reason})"
            )

    def _record_failure(self, reason: str) -> None:
        with self.store.transaction() as db:
            push_table.ensure(db, self.random.uuid("controller:push-certificate"))
            push_table.record_failure(db, reason[:500], self.clock.timestamp())

    # == reading ==================================================================================
    def topic(self) -> str | None:
        """The topic of the certificate in use (None before the first upload)."""
        with self.store.read() as db:
            row = push_table.get(db)
        return row["topic"] if row is not None and row["cert_pem"] else None

    def require(self) -> None:
        """Refuse (400) what must not happen without a push certificate: creating enrollment profiles."""
        if self.topic() is None:
            raise GraphError(400, "applePushNotificationCertificateRequired", MISSING_MESSAGE)

    def get(self) -> dict[str, Any]:
        """Graph's ``applePushNotificationCertificate`` plus the warnings an admin must see."""
        now = self.clock.timestamp()
        with self.store.read() as db:
            row = push_table.get(db)
            topic = row["topic"] if row is not None and row["cert_pem"] else None
            stale = device_table.count_unreachable(db, topic) if topic is not None else 0
        not_after = row["not_after"] if topic is not None and row is not None else None
        expired = not_after is not None and not_after <= now
        days_left = int((not_after - now) // 86400) if not_after is not None and not expired else None
        soon = days_left is not None and days_left < EXPIRY_WARNING_DAYS
        warnings: list[str] = []
        if topic is None:
            warnings.append(MISSING_MESSAGE)
        if expired:
            warnings.append(
                f"The Apple MDM push certificate expired at {iso_from_timestamp(not_after)}: devices cannot be woken. Renew "
                f"it at Apple's Push Certificates Portal with the same Apple ID ({row['apple_identifier']}) "
                "and upload the renewed certificate; enrolled devices keep working without enrolling again."
            )
        elif soon:
            warnings.append(
                f"The Apple MDM push certificate expires in {days_left} day(s), at {iso_from_timestamp(not_after)}: renew "
                f"it with the same Apple ID ({row['apple_identifier']}) before then."
            )
        if stale:
            warnings.append(
                f"{stale} enrolled device(s) enrolled under another push topic than {topic} cannot be reached "
                "until they enroll again."
            )
        return {
            "@odata.type": ODATA_TYPE,
            "id": row["graph_id"] if row is not None else None,
            "appleIdentifier": row["apple_identifier"] if topic is not None else None,
            "topicIdentifier": topic,
            "expirationDateTime": iso_from_timestamp(not_after),
            "certificateSerialNumber": row["serial"] if topic is not None else None,
            "lastModifiedDateTime": iso_from_timestamp(row["modified_at"]) if row is not None else None,
            "certificateUploadStatus": row["upload_status"] if row is not None else "notUploaded",
            "certificateUploadFailureReason": row["failure_reason"] if row is not None else None,
            "expired": expired,
            "expiryWarning": bool(soon),
            "daysUntilExpiration": days_left,
            "topicChanged": bool(row is not None and row["previous_topic"] and stale),
            "previousTopicIdentifier": row["previous_topic"] if row is not None else None,
            "devicesRequiringReenrollmentCount": stale,
            "warnings": warnings,
        }
