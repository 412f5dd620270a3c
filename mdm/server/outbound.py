"""What the MDM server sends out after a request committed: APNs pushes and webhook events.

The transport (retries, the thread pool, subscriptions) is :mod:`mdm.server.push`; this module holds
the rules around it: who can be pushed (enrolled, with a token APNs has not refused), what a push's
outcome does to the enrollment (a 410 marks the token dead until the next TokenUpdate), and which
webhook receivers get which event. Nothing here runs inside a store transaction, and nothing here can
fail a device's request (:class:`~mdm.server.push.Dispatcher` swallows after-commit errors).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

import httpx

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.checkin import CheckinMessage
from mdm.protocol.commands import CommandResult
from mdm.protocol.isotime import isoformat
from mdm.protocol.randomness import Randomness
from mdm.protocol.webhook import acknowledge_event, checkin_event

from . import store as q
from .identity import IdentityService
from .push import Dispatcher, PushOutcome, WebhookSubscription, post_webhook, send_push, webhook_targets

__all__ = ["Outbound"]


class Outbound:
    """APNs pushes and webhook events, on :class:`Dispatcher` threads (or inline when synchronous)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        random: Randomness,
        identity: IdentityService,
        *,
        http: httpx.Client,
        apns_url: Callable[[], str],
        webhook_urls: Callable[[], Iterable[str | WebhookSubscription]],
        synchronous: bool,
        workers: int,
    ) -> None:
        self.store = store
        self.clock = clock
        self.random = random
        self.identity = identity
        self.http = http
        self.apns_url = apns_url
        self.webhook_urls = webhook_urls
        self.dispatcher = Dispatcher(synchronous=synchronous, workers=workers)

    # -- pushes --------------------------------------------------------------------------------------
    def push(self, targets: Sequence[str]) -> None:
        """Wake enrollments over APNs (after commit, off the request thread unless synchronous)."""
        with self.store.read() as db:
            rows = q.pushable_enrollments(db, list(targets))
        topic = self.identity.topic
        url = self.apns_url()
        for row in rows:
            self.dispatcher.submit(self._push_one, url, topic, row["id"], row["token_hex"], row["push_magic"])

    def push_now(self, target: str) -> PushOutcome | None:
        """Push one enrollment on the calling thread and return what APNs said (None: not push-able)."""
        with self.store.read() as db:
            rows = q.pushable_enrollments(db, [target])
        if not rows:
            return None
        row = rows[0]
        return self._push_one(self.apns_url(), self.identity.topic, target, row["token_hex"], row["push_magic"])

    def _push_one(self, url: str, topic: str, eid: str, token_hex: str, push_magic: str) -> PushOutcome:
        outcome = send_push(
            self.http,
            url,
            token_hex=token_hex,
            push_magic=push_magic,
            topic=topic,
            headers=self.identity.push_headers(),
        )
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            q.record_push(
                db,
                enrollment_id=eid,
                token_hex=token_hex,
                ok=outcome.ok,
                status=outcome.status,
                error=f"{outcome.status} {outcome.reason or ''}".strip(),
                unregistered=outcome.unregistered,
                now=now,
            )
        return outcome

    # -- webhooks ------------------------------------------------------------------------------------
    def checkin_committed(self, msg: CheckinMessage, raw: bytes, url_params: Mapping[str, str] | None) -> None:
        """Tell the receivers that want ``mdm.<MessageType>`` about a check-in that was stored."""
        topic = f"mdm.{msg.message_type}"
        urls = webhook_targets(self.webhook_urls(), topic)
        if not urls:
            return
        event = checkin_event(
            msg.message_type,
            udid=msg.udid,
            enrollment_id=msg.enrollment_id,
            raw=raw,
            url_params=url_params,
            **self._event_stamp(topic, msg.udid or msg.enrollment_id, raw),
        )
        for url in urls:
            self.dispatcher.submit(post_webhook, self.http, url, event)

    def connect_committed(
        self, result: CommandResult, raw: bytes, url_params: Mapping[str, str] | None, request_type: str | None
    ) -> None:
        """Tell the receivers of ``mdm.Connect`` (or of ``mdm.Connect:<RequestType>``) about a report."""
        urls = webhook_targets(self.webhook_urls(), "mdm.Connect", request_type)
        if not urls:
            return
        event = acknowledge_event(
            udid=result.udid,
            enrollment_id=result.enrollment_id,
            status=result.status,
            command_uuid=result.command_uuid,
            request_type=request_type,
            raw=raw,
            url_params=url_params,
            **self._event_stamp("mdm.Connect", result.udid or result.enrollment_id, raw),
        )
        for url in urls:
            self.dispatcher.submit(post_webhook, self.http, url, event)

    def _event_stamp(self, topic: str, sender: str | None, raw: bytes) -> dict[str, str]:
        """``event_id`` and ``created_at``. Seeded, the id is labelled by what the event is about (topic,
        sender, instant, message digest), so a replay gives the same ids whatever thread sends them."""
        now = self.clock.now()
        label = ""
        if self.random.seeded:  # the digest is only worth computing when the label is used
            label = f"mdm:{sender}:event:{topic}:{now.timestamp()!r}:{hashlib.sha256(raw).hexdigest()[:32]}"
        return {"event_id": self.random.uuid(label), "created_at": isoformat(now)}

    # -- lifecycle -----------------------------------------------------------------------------------
    def wait(self, timeout: float = 10.0) -> bool:
        """Block (bounded) until queued pushes and webhook posts are done: for tests and drivers."""
        return self.dispatcher.drain(timeout)

    def close(self) -> None:
        self.dispatcher.close()
