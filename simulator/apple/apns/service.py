"""Apple's push gateway (``api.push.apple.com``) as far as MDM uses it, plus delivery to simulated devices.

Providers ``POST /3/device/<hex token>`` with ``{"mdm": "<PushMagic>"}``; APNs keeps only the newest
pending notification per device (a second push replaces the first) and answers with Apple's reason
strings.

**Provider certificates.** Real APNs knows the provider by the TLS client certificate (the MDM push
certificate). Over plain HTTP this simulation carries it in the header ``X-Mdmsim-Client-Cert:
<base64 DER>`` instead: a stand-in for the TLS client certificate, nothing more (a TLS listener would
take it from the handshake). With a ``certificate_check`` the gateway refuses a push unless the
certificate is current (403 ``ExpiredProviderToken`` for an expired one, ``BadCertificate`` for a
revoked, replaced or unknown one, ``MissingProviderToken`` without one) and the ``apns-topic`` is the
certificate's UID (400 ``TopicDisallowed``).

**Token → topic.** A device token belongs to the topic it was made for. APNs learns the pair when the
device registers (``POST /devices/<token>/register`` ``{"topic": …}``) or, for devices that never
register, from the first accepted push (trust on first use). A push for another topic then gets 400
``DeviceTokenNotForTopic``: how devices enrolled under an old topic become unreachable.

Simulated devices collect their notifications with :meth:`APNsService.take` (in process) or
``GET /events`` (over HTTP, as Fleet's APNs mock does).

State lives in its own small SQLite store so several worker processes agree on what is pending; waits
never hold a transaction (see :mod:`simulator.apple.apns.http`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sqlite3
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.isotime import isoformat
from mdm.protocol.x509 import push_topic

__all__ = [
    "MIGRATIONS",
    "open_apns_store",
    "APNsService",
    "PushResult",
    "valid_token",
    "MAX_PAYLOAD",
    "CLIENT_CERT_HEADER",
    "CertificateCheck",
]

#: The simulation's stand-in for the TLS client certificate: base64 of the push certificate's DER.
CLIENT_CERT_HEADER = "X-Mdmsim-Client-Cert"
#: ``(ok, "<code>: <sentence>")`` for a provider certificate; code ``expired`` → ExpiredProviderToken.
CertificateCheck = Callable[[x509.Certificate], tuple[bool, str]]
MAX_TOPIC = 255

MIGRATIONS = [
    """
    -- Newest-only: one pending notification per device token.
    CREATE TABLE pending (
        token TEXT PRIMARY KEY,
        apns_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        push_type TEXT,
        priority INTEGER NOT NULL,
        payload TEXT NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE TABLE unregistered (
        token TEXT PRIMARY KEY,
        at REAL NOT NULL
    );
    CREATE TABLE stats (
        token TEXT PRIMARY KEY,
        accepted INTEGER NOT NULL DEFAULT 0,
        coalesced INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0
    );
    """,
    """
    -- Which topic each device token was made for (registered by the device, or learnt from the first
    -- accepted push); ``source`` says which.
    CREATE TABLE token_topics (
        token TEXT PRIMARY KEY,
        topic TEXT NOT NULL,
        source TEXT NOT NULL,
        bound_at REAL NOT NULL
    );
    """,
]

#: Apple's limit for a notification payload (4 KB; VoIP 5 KB does not apply to MDM).
MAX_PAYLOAD = 4096
PUSH_TYPES = frozenset(
    {
        "alert",
        "background",
        "location",
        "voip",
        "complication",
        "fileprovider",
        "mdm",
        "liveactivity",
        "pushtotalk",
        "widgets",
        "controls",
    }
)
_TOKEN = re.compile(r"^[0-9a-fA-F]{64}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def open_apns_store(path: str | Path | None = None) -> Store:
    return Store(path, MIGRATIONS)


def valid_token(token: str) -> bool:
    """Device tokens are 32 bytes, written as 64 hex digits in the path."""
    return bool(_TOKEN.match(token or ""))


@dataclass(frozen=True)
class PushResult:
    """Apple's answer: 200 with ``apns_id``, or a status with ``{"reason": …}`` (and a timestamp for 410)."""

    status: int
    apns_id: str | None = None
    reason: str | None = None
    timestamp_ms: int | None = None

    def body(self) -> dict[str, Any] | None:
        if self.status == 200:
            return None
        out: dict[str, Any] = {"reason": self.reason}
        if self.timestamp_ms is not None:
            out["timestamp"] = self.timestamp_ms
        return out


class APNsService:
    """The push gateway's rules; ``http.create_app`` puts Apple's URLs on it.

    ``certificate_check`` is Apple's own answer to "is this push certificate current?" (the world
    injects the Push Certificates Portal's ``is_current``). ``None`` accepts every provider and any
    topic, as before provider certificates existed (tests of the gateway alone, external MDMs).
    """

    def __init__(self, store: Store, clock: Clock, *, certificate_check: CertificateCheck | None = None) -> None:
        self.store = store
        self.clock = clock
        self.certificate_check = certificate_check

    # -- provider side ------------------------------------------------------------------------------
    def authenticate(self, headers: Mapping[str, str]) -> str | PushResult:
        """The topic the provider's certificate allows (``""``: any, no check configured), or Apple's
        refusal. ``headers`` are lower-cased."""
        if self.certificate_check is None:
            return ""
        raw = headers.get(CLIENT_CERT_HEADER.lower(), "").strip()
        if not raw:
            return PushResult(403, reason="MissingProviderToken")
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError):
            return PushResult(403, reason="BadCertificate")
        ok, why = self.certificate_check(cert)
        if not ok:
            code = why.split(":", 1)[0].strip()
            return PushResult(403, reason="ExpiredProviderToken" if code == "expired" else "BadCertificate")
        topic = push_topic(cert, mdm_only=False)
        if topic is None:
            return PushResult(403, reason="BadCertificate")
        return topic

    def send(self, token: str, body: bytes, headers: Mapping[str, str]) -> PushResult:
        """Accept one notification, in the order Apple checks a request (path, headers, then payload)."""
        headers = {k.lower(): v for k, v in headers.items()}
        if not valid_token(token):
            return self._reject(token, 400, "BadDeviceToken")
        token = token.lower()
        allowed = self.authenticate(headers)
        if isinstance(allowed, PushResult):
            return self._reject(token, allowed.status, allowed.reason or "BadCertificate")
        topic = headers.get("apns-topic", "")
        if not topic:
            return self._reject(token, 400, "MissingTopic")
        if allowed and topic != allowed:
            return self._reject(token, 400, "TopicDisallowed")
        push_type = headers.get("apns-push-type")
        if push_type is not None and push_type not in PUSH_TYPES:
            return self._reject(token, 400, "InvalidPushType")
        if push_type == "mdm" and not topic.startswith("com.apple.mgmt."):
            return self._reject(token, 400, "BadTopic")
        priority_text = headers.get("apns-priority", "10")
        if priority_text not in ("1", "5", "10"):
            return self._reject(token, 400, "BadPriority")
        apns_id = headers.get("apns-id")
        if apns_id is not None and not _UUID.match(apns_id):
            return self._reject(token, 400, "BadMessageId")
        if not body.strip():
            return self._reject(token, 400, "PayloadEmpty")
        if len(body) > MAX_PAYLOAD:
            return self._reject(token, 413, "PayloadTooLarge")
        payload = (
            _mdm_payload(body)
            if push_type == "mdm" or topic.startswith("com.apple.mgmt.")
            else (_json_object(body))
        )
        if payload is None:
            # Apple documents no reason for a malformed body; BadPayload names what is wrong.
            return self._reject(token, 400, "BadPayload")
        apns_id = (apns_id or str(uuid.uuid4())).upper()
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            row = db.execute("SELECT at FROM unregistered WHERE token = ?", (token,)).fetchone()
            if row is not None:
                _count(db, token, "rejected")
                return PushResult(410, reason="Unregistered", timestamp_ms=int(row[0] * 1000))
            bound = db.execute("SELECT topic FROM token_topics WHERE token = ?", (token,)).fetchone()
            if bound is not None and bound[0] != topic:
                _count(db, token, "rejected")
                return PushResult(400, reason="DeviceTokenNotForTopic")
            if bound is None:
                db.execute(
                    "INSERT INTO token_topics (token, topic, source, bound_at) VALUES (?, ?, 'first-push', ?)",
                    (token, topic, now),
                )
            replaced = db.execute("SELECT 1 FROM pending WHERE token = ?", (token,)).fetchone() is not None
            db.execute(
                "INSERT OR REPLACE INTO pending "
                "(token, apns_id, topic, push_type, priority, payload, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token, apns_id, topic, push_type, int(priority_text), json.dumps(payload), now),
            )
            _count(db, token, "accepted")
            if replaced:
                _count(db, token, "coalesced")
        return PushResult(200, apns_id=apns_id)

    def _reject(self, token: str, status: int, reason: str) -> PushResult:
        if valid_token(token):
            with self.store.transaction() as db:
                _count(db, token.lower(), "rejected")
        return PushResult(status, reason=reason)

    # -- device side --------------------------------------------------------------------------------
    def pending(self, token: str) -> list[dict[str, Any]]:
        """The notification waiting for this device, without delivering it (a list of at most one)."""
        with self.store.read() as db:
            rows = db.execute("SELECT * FROM pending WHERE token = ?", (token.lower(),)).fetchall()
        return [_notification(r) for r in rows]

    def take(self, token: str) -> list[dict[str, Any]]:
        """Deliver: return and remove what is pending, atomically (two pollers never both get it)."""
        token = token.lower()
        with self.store.transaction() as db:
            rows = db.execute("DELETE FROM pending WHERE token = ? RETURNING *", (token,)).fetchall()
            if rows:
                _count(db, token, "delivered", len(rows))
        return [_notification(r) for r in rows]

    # -- simulation control -------------------------------------------------------------------------
    def unregister(self, token: str) -> None:
        """From now on pushes to ``token`` get 410 Unregistered (the app was deleted, the device wiped)."""
        token = token.lower()
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO unregistered (token, at) VALUES (?, ?)",
                (token, self.clock.timestamp()),
            )
            db.execute("DELETE FROM pending WHERE token = ?", (token,))

    def register(self, token: str, topic: str | None = None) -> None:
        """The device (again) accepts pushes on ``token``; with ``topic``, the token is bound to it.

        A device makes a new token for each enrollment; binding here is how a device that re-enrolls
        under a new topic (or a simulator re-using a token) tells APNs which topic it now belongs to.
        """
        token = token.lower()
        with self.store.transaction() as db:
            db.execute("DELETE FROM unregistered WHERE token = ?", (token,))
            if topic:
                db.execute(
                    "INSERT OR REPLACE INTO token_topics (token, topic, source, bound_at) "
                    "VALUES (?, ?, 'registered', ?)",
                    (token, topic[:MAX_TOPIC], self.clock.timestamp()),
                )

    def token_topic(self, token: str) -> str | None:
        """The topic a token belongs to, once APNs has learnt it."""
        with self.store.read() as db:
            row = db.execute("SELECT topic FROM token_topics WHERE token = ?", (token.lower(),)).fetchone()
        return str(row[0]) if row is not None else None

    def stats(self, token: str | None = None) -> dict[str, Any]:
        """Counters per token (or summed): accepted, coalesced, rejected, delivered."""
        with self.store.read() as db:
            if token is not None:
                row = db.execute("SELECT * FROM stats WHERE token = ?", (token.lower(),)).fetchone()
                keys = ("accepted", "coalesced", "rejected", "delivered")
                return {k: (row[k] if row is not None else 0) for k in keys}
            row = db.execute(
                "SELECT COALESCE(SUM(accepted),0) a, COALESCE(SUM(coalesced),0) c, "
                "COALESCE(SUM(rejected),0) r, "
                "COALESCE(SUM(delivered),0) d, (SELECT COUNT(*) FROM pending) p FROM stats"
            ).fetchone()
        return {
            "accepted": row["a"],
            "coalesced": row["c"],
            "rejected": row["r"],
            "delivered": row["d"],
            "pending": row["p"],
        }


def _count(db: sqlite3.Connection, token: str, column: str, n: int = 1) -> None:
    db.execute(
        f"INSERT INTO stats (token, {column}) VALUES (?, ?) "  # column is one of four literals
        f"ON CONFLICT (token) DO UPDATE SET {column} = {column} + excluded.{column}",
        (token, n),
    )


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _mdm_payload(body: bytes) -> dict[str, Any] | None:
    """An MDM push is exactly ``{"mdm": "<PushMagic>"}``: nothing else, a non-empty string."""
    value = _json_object(body)
    if value is None or set(value) != {"mdm"} or not isinstance(value["mdm"], str) or not value["mdm"]:
        return None
    return value


def _notification(row: sqlite3.Row) -> dict[str, Any]:
    from datetime import UTC, datetime

    return {
        "apns_id": row["apns_id"],
        "token": row["token"],
        "topic": row["topic"],
        "push_type": row["push_type"],
        "priority": row["priority"],
        "payload": json.loads(row["payload"]),
        "received_at": isoformat(datetime.fromtimestamp(row["received_at"], UTC)),
    }
