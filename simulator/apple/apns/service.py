"""Apple's push gateway (``api.push.apple.com``) as far as MDM uses it, plus delivery to simulated devices.

Providers ``POST /3/device/<hex token>`` with ``{"mdm": "<PushMagic>"}``; APNs keeps only the newest
pending notification per device (a second push replaces the first) and answers with Apple's reason
strings.

**Provider certificates.** Real APNs knows the provider by the TLS client certificate (the MDM push
certificate). The HTTP/2 listener (:mod:`.provider`) hands :meth:`APNsService.send` the certificate
from the TLS handshake; over the plain-HTTP convenience path under ``/apple/apns`` it travels in the
header ``X-Mdmsim-Client-Cert: <base64 DER>`` instead. With a ``certificate_check`` the gateway refuses
a push unless the certificate is current: 403 ``MissingProviderToken`` without one, ``BadCertificate``
for one Apple never issued, ``Forbidden`` for a revoked, expired or replaced one,
``BadCertificateEnvironment`` for a production certificate sent to the sandbox host; ``apns-topic``
may be left out (an MDM push certificate has one topic, its subject's UID) and must otherwise be that
topic (400 ``TopicDisallowed``).

**Storage.** Apple keeps one notification per device and topic while the device is away (the
newest), for ``apns-expiration`` (UNIX seconds on the world clock; 30 days when absent); ``0`` means
"now or never": delivered to a device whose stream is open when it arrives, dropped otherwise. A
token that gets more than :data:`BURST_LIMIT` pushes within :data:`BURST_WINDOW_S` seconds is
answered 429 ``TooManyRequests`` (Apple: "too many requests were made consecutively to the same
device token"). Every accepted push is announced to :meth:`APNsService.add_listener` listeners after
its transaction commits: that is how device streams wake (:mod:`.fanout`).

**Token → topic.** A device token belongs to the topic it was made for. APNs learns the pair when the
device registers (``POST /devices/<token>/register`` ``{"topic": …}``) or, for devices that never
register, from the first accepted push (trust on first use). A push for another topic then gets 400
``DeviceTokenNotForTopic``: how devices enrolled under an old topic become unreachable.

**Delivery.** Simulated devices collect their notifications with :meth:`APNsService.take` (in
process) or ``GET /events`` (over HTTP, as Fleet's APNs mock does), which waits with
:meth:`APNsService.wait_for_notifications` ("the next notification for token T, up to N seconds") or
streams with :meth:`APNsService.watch`. Waiting polls the store every 50 ms against a deadline and
holds no store transaction or lock meanwhile, so one slow device never blocks pushes to others.

State lives in a SQLite store (its own, or Apple's; tables and SQL in :mod:`.store`) so several worker
processes agree on what is pending. With a ``seed``, an ``apns-id`` the provider did not send is
derived from the token and the push's number (``apns:<token>:notification:<n>``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.isotime import isoformat
from mdm.protocol.randomness import Randomness
from mdm.protocol.x509 import push_topic

from . import store as apns_store
from .store import MIGRATIONS, open_apns_store

log = logging.getLogger("mdmsim.apns")

__all__ = [
    "MIGRATIONS",
    "open_apns_store",
    "APNsError",
    "APNsService",
    "PushResult",
    "valid_token",
    "valid_apns_id",
    "MAX_PAYLOAD",
    "MAX_TOPIC",
    "CLIENT_CERT_HEADER",
    "CertificateCheck",
    "POLL_INTERVAL_S",
    "MAX_LONG_POLL_S",
    "DEFAULT_STREAM_S",
    "MAX_STREAM_S",
    "DEFAULT_STORAGE_S",
    "BURST_LIMIT",
    "BURST_WINDOW_S",
    "SANDBOX_HOSTS",
    "PushListener",
    "PushRequest",
]

#: The simulation's stand-in for the TLS client certificate: base64 of the push certificate's DER.
CLIENT_CERT_HEADER = "X-Mdmsim-Client-Cert"
#: ``(ok, "<code>: <sentence>")`` for a provider certificate (``revoked``, ``expired``… → 403 Forbidden).
CertificateCheck = Callable[[x509.Certificate], tuple[bool, str]]
MAX_TOPIC = 255
#: How often a waiting device's store row is looked at, and the longest waits a device may ask for.
POLL_INTERVAL_S = 0.05
MAX_LONG_POLL_S = 30.0
DEFAULT_STREAM_S = 300.0
MAX_STREAM_S = 3600.0

#: Apple stores a notification for an offline device at most 30 days (FACTS B.3).
DEFAULT_STORAGE_S = 30 * 86_400.0
#: ``apns-collapse-id`` may be at most 64 bytes (``BadCollapseId``).
MAX_COLLAPSE_ID = 64
#: More pushes than this to one token within the window (wall seconds) get 429 TooManyRequests. Apple
#: publishes no number; an MDM server pushes once per queued command batch, far below it.
BURST_LIMIT = 100
BURST_WINDOW_S = 10.0
#: The development gateway's names: a production certificate there gets BadCertificateEnvironment.
SANDBOX_HOSTS = frozenset({"api.sandbox.push.apple.com", "api.development.push.apple.com"})
#: Refusal reasons for a certificate Apple issued but no longer honours.
_FORBIDDEN = frozenset({"revoked", "expired", "not-yet-valid", "replaced"})
#: Called with ``(token, sequence number)`` after a push is stored and committed.
PushListener = Callable[[str, int], None]

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


def valid_token(token: str) -> bool:
    """Device tokens are 32 bytes, written as 64 hex digits in the path."""
    return bool(_TOKEN.match(token or ""))


def valid_apns_id(apns_id: str | None) -> bool:
    """``apns-id`` is a canonical UUID (8-4-4-4-12 hex digits, either case)."""
    return bool(_UUID.match(apns_id or ""))


class APNsError(Exception):
    """A device-side request APNs refuses: ``status`` and Apple-style ``reason`` (``BadDeviceToken``…)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


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


@dataclass(frozen=True)
class PushRequest:
    """One provider request as the service checks it (the HTTP layer has parsed it)."""

    token: str
    body: bytes
    headers: Mapping[str, str]
    certificate: x509.Certificate | None = None
    authority: str | None = None
    #: Whether the ``X-Mdmsim-Client-Cert`` stand-in may name the provider: only for a caller inside
    #: the world's process (our MDM server). A certificate is public; over a socket only the TLS
    #: handshake, which proves its key, names a provider.
    stand_in: bool = True


@dataclass(frozen=True)
class _Accepted:
    """A push that passed every check made before storing it."""

    token: str
    topic: str
    push_type: str | None
    priority: int
    apns_id: str | None
    expiration: int | None
    collapse_id: str | None
    payload: str


class APNsService:
    """The push gateway's rules; ``http.create_app`` puts Apple's URLs on it.

    ``certificate_check`` is Apple's own answer to "is this push certificate current?" (the world
    injects the Push Certificates Portal's ``is_current``). ``None`` accepts every provider and any
    topic, as before provider certificates existed (tests of the gateway alone, external MDMs).
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        certificate_check: CertificateCheck | None = None,
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.clock = clock
        self.certificate_check = certificate_check
        self.random = Randomness(seed)
        self._sleep = sleep
        self._monotonic = monotonic
        self._listeners: list[PushListener] = []
        self._bursts: dict[str, tuple[float, int]] = {}
        self._burst_lock = threading.Lock()
        self.burst_limit = BURST_LIMIT

    def add_listener(self, listener: PushListener) -> None:
        """``listener(token, seq)`` runs after every accepted push has committed (never inside the
        transaction, never failing the push): the in-memory fan-out, a Redis publisher."""
        self._listeners.append(listener)

    def remove_listener(self, listener: PushListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _announce(self, token: str, seq: int) -> None:
        for listener in self._listeners:
            try:
                listener(token, seq)
            except Exception:  # a broken fan-out must not fail the provider's push; the store has it
                pass

    def _burst(self, token: str) -> bool:
        """True when this push is one too many in the token's current window (per process)."""
        now = self._monotonic()
        with self._burst_lock:
            start, n = self._bursts.get(token, (now, 0))
            if now - start >= BURST_WINDOW_S:
                start, n = now, 0
            n += 1
            if len(self._bursts) > 100_000:
                self._bursts.clear()
            self._bursts[token] = (start, n)
        return n > self.burst_limit

    # -- provider side ------------------------------------------------------------------------------
    def authenticate(self, headers: Mapping[str, str], certificate: x509.Certificate | None = None, *,
                     stand_in: bool = True) -> str | PushResult:  # fmt: skip
        """The topic the provider's certificate allows (``""``: any, no check configured), or Apple's
        refusal. ``certificate`` comes from the TLS handshake; without it, from the stand-in header
        when ``stand_in`` allows it (``headers`` are lower-cased)."""
        if self.certificate_check is None:
            return ""
        if certificate is None and not stand_in:
            return PushResult(403, reason="MissingProviderToken")
        if certificate is None:
            raw = headers.get(CLIENT_CERT_HEADER.lower(), "").strip()
            if not raw:
                return PushResult(403, reason="MissingProviderToken")
            try:
                certificate = x509.load_der_x509_certificate(base64.b64decode(raw, validate=True))
            except (binascii.Error, ValueError):
                return PushResult(403, reason="BadCertificate")
        ok, why = self.certificate_check(certificate)
        if not ok:
            code = why.split(":", 1)[0].strip()
            return PushResult(403, reason="Forbidden" if code in _FORBIDDEN else "BadCertificate")
        topic = push_topic(certificate, mdm_only=False)
        if topic is None:
            return PushResult(403, reason="BadCertificate")
        return topic

    def send(
        self,
        token: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        certificate: x509.Certificate | None = None,
        authority: str | None = None,
        stand_in: bool = True,
    ) -> PushResult:
        """Accept one notification, in the order Apple checks a request (path, certificate, headers,
        then payload). ``authority`` is the host the provider asked for (``:authority``/``Host``);
        ``stand_in``: see :attr:`PushRequest.stand_in`."""
        return self.send_many([PushRequest(token, body, headers, certificate, authority, stand_in)])[0]

    def send_many(self, requests: Sequence[PushRequest]) -> list[PushResult]:
        """:meth:`send` for several pushes with one write transaction (a group commit).

        The HTTP/2 listener hands over what arrived while the previous group was being written: with
        two processes taking turns at SQLite's write lock, one lock per push cost waits (SQLite's busy
        handler sleeps 1, 2, 5, 10… ms) that showed in the delivery p99. Answers are in request order,
        each exactly what :meth:`send` would have said alone."""
        results: list[PushResult | None] = []
        accepted: list[tuple[int, _Accepted]] = []
        rejected: list[str] = []
        for request in requests:
            try:
                checked = self._check(request)
            except Exception:  # one malformed push must never fail the others of its group
                log.exception("push check failed")
                checked = PushResult(400, reason="BadPayload")
            if isinstance(checked, _Accepted):
                accepted.append((len(results), checked))
                results.append(None)
            else:
                if valid_token(request.token):
                    rejected.append(request.token.lower())
                results.append(checked)
        if not accepted and not rejected:
            return [r for r in results if r is not None]
        now = self.clock.timestamp()
        announced: list[tuple[str, int]] = []
        with self.store.transaction() as db:
            for token in rejected:
                apns_store.count(db, token, "rejected")
            for index, push in accepted:
                result, seq = self._store_one(db, push, now)
                results[index] = result
                if seq is not None:
                    announced.append((push.token, seq))
        for token, seq in announced:
            self._announce(token, seq)
        return [r for r in results if r is not None]

    def _check(self, request: PushRequest) -> PushResult | _Accepted:
        """Everything Apple checks before storing: a refusal, or the push ready to store."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        token, body = request.token, request.body
        if not valid_token(token):
            return PushResult(400, reason="BadDeviceToken")
        token = token.lower()
        allowed = self.authenticate(headers, request.certificate, stand_in=request.stand_in)
        if isinstance(allowed, PushResult):
            return PushResult(allowed.status, reason=allowed.reason or "BadCertificate")
        authority = request.authority
        if allowed and authority and authority.rsplit(":", 1)[0].lower() in SANDBOX_HOSTS:
            # The Push Certificates Portal issues production MDM certificates only.
            return PushResult(403, reason="BadCertificateEnvironment")
        topic = headers.get("apns-topic", "") or allowed
        if not topic:
            return PushResult(400, reason="MissingTopic")
        if allowed and topic != allowed:
            return PushResult(400, reason="TopicDisallowed")
        push_type = headers.get("apns-push-type")
        if push_type is not None and push_type not in PUSH_TYPES:
            return PushResult(400, reason="InvalidPushType")
        if push_type == "mdm" and not topic.startswith("com.apple.mgmt."):
            return PushResult(400, reason="BadTopic")
        priority_text = headers.get("apns-priority", "10")
        if priority_text not in ("1", "5", "10"):
            return PushResult(400, reason="BadPriority")
        apns_id = headers.get("apns-id")
        if apns_id is not None and not valid_apns_id(apns_id):
            return PushResult(400, reason="BadMessageId")
        expiration = _expiration(headers.get("apns-expiration"))
        if expiration is False:
            return PushResult(400, reason="BadExpirationDate")
        collapse_id = headers.get("apns-collapse-id")
        if collapse_id is not None and len(collapse_id.encode()) > MAX_COLLAPSE_ID:
            return PushResult(400, reason="BadCollapseId")
        if not body.strip():
            return PushResult(400, reason="PayloadEmpty")
        if len(body) > MAX_PAYLOAD:
            return PushResult(413, reason="PayloadTooLarge")
        payload = (
            _mdm_payload(body)
            if push_type == "mdm" or topic.startswith("com.apple.mgmt.")
            else (_json_object(body))
        )
        if payload is None:
            # Apple documents no reason for a malformed body; BadPayload names what is wrong.
            return PushResult(400, reason="BadPayload")
        if self._burst(token):
            return PushResult(429, reason="TooManyRequests")
        return _Accepted(token, topic, push_type, int(priority_text), apns_id, expiration, collapse_id,
                         json.dumps(payload))  # fmt: skip

    def _store_one(self, db: sqlite3.Connection, push: _Accepted, now: float) -> tuple[PushResult, int | None]:
        """Store one checked push inside the caller's transaction: Apple's answer, and its sequence
        number when it was stored (``None``: refused after all, 410 or another topic's token)."""
        token = push.token
        expires_at = now + DEFAULT_STORAGE_S if push.expiration is None else float(push.expiration)
        immediate = expires_at <= now  # 0 (or a moment already past): deliver now or drop
        unregistered = apns_store.unregistered_at(db, token)
        if unregistered is not None:
            apns_store.count(db, token, "rejected")
            return PushResult(410, reason="Unregistered", timestamp_ms=int(unregistered * 1000)), None
        bound = apns_store.token_topic(db, token)
        if bound is not None and bound != push.topic:
            apns_store.count(db, token, "rejected")
            return PushResult(400, reason="DeviceTokenNotForTopic"), None
        if bound is None:
            apns_store.bind_topic(db, token, push.topic, "first-push", now)
        apns_id = push.apns_id
        if apns_id is None:
            number = apns_store.accepted(db, token) + 1
            apns_id = self.random.uuid(f"apns:{token}:notification:{number}").upper()
        # One the provider sent is echoed as sent: clients (aioapns) find their request by it.
        replaced = apns_store.has_pending(db, token)
        seq = apns_store.put_pending(
            db, token, apns_id, push.topic, push.push_type, push.priority, push.payload, now,
            expires_at=expires_at, immediate=immediate, collapse_id=push.collapse_id,
        )  # fmt: skip
        apns_store.count(db, token, "accepted")
        if replaced:
            apns_store.count(db, token, "coalesced")
        return PushResult(200, apns_id=apns_id), seq

    # -- device side --------------------------------------------------------------------------------
    def pending(self, token: str) -> list[dict[str, Any]]:
        """The notification waiting for this device, without delivering it (a list of at most one)."""
        with self.store.read() as db:
            rows = apns_store.pending(db, token.lower())
        return [_notification(r) for r in rows]

    def take(self, token: str, *, connecting: bool = False) -> list[dict[str, Any]]:
        """Deliver: return and remove what is pending, atomically (two streams never both get it).

        Expired notifications are dropped, not delivered; so are "now or never" ones (``apns-expiration:
        0``) when ``connecting``: the device was away when they came (a stream's first look)."""
        return self.take_many([(token, connecting)])[0]

    def take_many(self, looks: Sequence[tuple[str, bool]]) -> list[list[dict[str, Any]]]:
        """:meth:`take` for several ``(token, connecting)`` looks, with one read to find which have
        anything and one write transaction for those that do (most looks find nothing)."""
        tokens = [token.lower() for token, _ in looks]
        with self.store.read() as db:
            waiting = {t for t in set(tokens) if apns_store.has_pending(db, t)}
        out: list[list[dict[str, Any]]] = [[] for _ in looks]
        if not waiting:
            return out
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            for index, (token, (_, connecting)) in enumerate(zip(tokens, looks, strict=True)):
                if token not in waiting:
                    continue
                rows = apns_store.take_pending(db, token)
                if not rows:
                    continue
                live = [r for r in rows if not _stale(r, now, connecting)]
                if live:
                    apns_store.count(db, token, "delivered", len(live))
                if len(live) < len(rows):
                    apns_store.count(db, token, "expired", len(rows) - len(live))
                out[index] = [_notification(r) for r in live]
        return out

    def wait_for_notifications(self, token: str, timeout_s: float | None = None) -> list[dict[str, Any]]:
        """Deliver what is pending for ``token``, waiting up to ``timeout_s`` seconds (default 0, at most
        :data:`MAX_LONG_POLL_S`) for the next notification; ``[]`` when none came in time.

        ``BadDeviceToken`` for a malformed token, ``BadWait`` for a negative or unreadable (NaN) wait.
        The wait holds no transaction: each look is one :meth:`take`.
        """
        deadline = self._monotonic() + self._wait_time(token, timeout_s, 0.0, MAX_LONG_POLL_S)
        while True:
            notifications = self.take(token)
            if notifications or self._monotonic() >= deadline:
                return notifications
            self._sleep(min(POLL_INTERVAL_S, max(deadline - self._monotonic(), 0)))

    def stream_duration(self, token: str, duration_s: float | None = None) -> float:
        """How long a notification stream for ``token`` stays open (default :data:`DEFAULT_STREAM_S`,
        at most :data:`MAX_STREAM_S`); refused like :meth:`wait_for_notifications`."""
        return self._wait_time(token, duration_s, DEFAULT_STREAM_S, MAX_STREAM_S)

    def watch(self, token: str, duration_s: float, *, idle_s: float) -> Iterator[list[dict[str, Any]]]:
        """A stream of deliveries for ``token`` for ``duration_s`` seconds: each batch as it is taken,
        and an empty batch whenever ``idle_s`` pass without one (a stream's keep-alive). The last look
        happens at the deadline, so a zero duration still delivers what is pending."""
        deadline = self._monotonic() + duration_s
        while True:
            left = max(deadline - self._monotonic(), 0.0)
            batch = self.wait_for_notifications(token, min(left, idle_s, MAX_LONG_POLL_S))
            if batch:
                yield batch
            if self._monotonic() >= deadline:
                return
            if not batch:
                yield []

    @staticmethod
    def _wait_time(token: str, wait: float | None, default: float, maximum: float) -> float:
        if not valid_token(token):
            raise APNsError(400, "BadDeviceToken")
        wait = default if wait is None else wait
        if math.isnan(wait) or wait < 0:
            raise APNsError(400, "BadWait")
        return min(wait, maximum)

    # -- devices (un)registering --------------------------------------------------------------------
    def unregister(self, token: str) -> None:
        """From now on pushes to ``token`` get 410 Unregistered (the app was deleted, the device wiped)."""
        with self.store.transaction() as db:
            apns_store.mark_unregistered(db, token.lower(), self.clock.timestamp())

    def register(self, token: str, topic: str | None = None) -> None:
        """The device (again) accepts pushes on ``token``; with ``topic``, the token is bound to it.

        A device makes a new token for each enrollment; binding here is how a device that re-enrolls
        under a new topic (or a simulator re-using a token) tells APNs which topic it now belongs to.
        """
        token = token.lower()
        with self.store.transaction() as db:
            apns_store.clear_unregistered(db, token)
            if topic:
                apns_store.bind_topic(db, token, topic[:MAX_TOPIC], "registered", self.clock.timestamp())

    def unregister_device(self, token: str) -> dict[str, Any]:
        """``POST /devices/<token>/unregister``: :meth:`unregister`, after checking the token."""
        if not valid_token(token):
            raise APNsError(400, "BadDeviceToken")
        self.unregister(token)
        return {"token": token.lower(), "unregistered": True}

    def register_device(self, token: str, body: bytes = b"") -> dict[str, Any]:
        """``POST /devices/<token>/register``: an optional JSON ``{"topic": …}`` binds the token to the
        topic it was made for (without it, APNs learns the topic from the first accepted push).

        ``BadDeviceToken``, ``BadPayload`` (not JSON) and ``BadTopic`` (not a string of 1 to
        :data:`MAX_TOPIC` characters), in that order.
        """
        if not valid_token(token):
            raise APNsError(400, "BadDeviceToken")
        topic = None
        if body.strip():
            try:
                value = json.loads(body)
            except (UnicodeDecodeError, ValueError, RecursionError):
                raise APNsError(400, "BadPayload") from None
            topic = value.get("topic") if isinstance(value, dict) else None
            if topic is not None and (not isinstance(topic, str) or not 0 < len(topic) <= MAX_TOPIC):
                raise APNsError(400, "BadTopic")
        self.register(token, topic)
        return {"token": token.lower(), "unregistered": False, "topic": self.token_topic(token)}

    def token_topic(self, token: str) -> str | None:
        """The topic a token belongs to, once APNs has learnt it."""
        with self.store.read() as db:
            return apns_store.token_topic(db, token.lower())

    def stats(self, token: str | None = None) -> dict[str, Any]:
        """Counters per token (or summed): accepted, coalesced, rejected, delivered."""
        with self.store.read() as db:
            if token is not None:
                return apns_store.token_stats(db, token.lower())
            return apns_store.total_stats(db)


def _expiration(text: str | None) -> int | None | bool:
    """``apns-expiration``: ``None`` when absent, UNIX seconds, or ``False`` when not a number."""
    if text is None:
        return None
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 12:  # '²'.isdigit() is True; int('²') fails
        return False
    return int(text)


def _stale(row: sqlite3.Row, now: float, connecting: bool) -> bool:
    if row["immediate"]:
        return connecting
    return row["expires_at"] is not None and row["expires_at"] < now


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
    return {
        "apns_id": row["apns_id"],
        "token": row["token"],
        "topic": row["topic"],
        "push_type": row["push_type"],
        "priority": row["priority"],
        "payload": json.loads(row["payload"]),
        "received_at": isoformat(datetime.fromtimestamp(row["received_at"], UTC)),
        "collapse_id": row["collapse_id"],
    }
