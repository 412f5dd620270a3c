"""Outbound HTTP of the MDM server: APNs pushes and webhook events.

Both are network calls that must never run inside a store transaction (a slow APNs would hold the
database's write lock) and must never fail a device's request. They run on a small thread pool after
the transaction commits, or inline when the service is built ``synchronous=True`` (tests, benchmarks
that want to observe a push right after the API call returned).
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["PushOutcome", "send_push", "Dispatcher", "post_webhook", "WebhookSubscription", "webhook_targets"]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class PushOutcome:
    """What APNs said to one notification after retries: ``status`` 0 means no HTTP answer at all."""

    token_hex: str
    status: int
    apns_id: str | None = None
    reason: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def unregistered(self) -> bool:
        """410: the token is dead until the device sends a new TokenUpdate."""
        return self.status == 410


def send_push(
    http: httpx.Client,
    apns_url: str,
    *,
    token_hex: str,
    push_magic: str,
    topic: str,
    headers: dict[str, str] | None = None,
    max_attempts: int = 5,
    deadline_s: float = 5.0,
    base_delay_s: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> PushOutcome:
    """POST ``{"mdm": PushMagic}`` as Apple's provider API wants it, retrying 429/5xx with backoff.

    Retries are bounded both in count and in wall time so a dead APNs cannot pile up threads.
    """
    url = f"{apns_url.rstrip('/')}/3/device/{token_hex}"
    body = json.dumps({"mdm": push_magic}, separators=(",", ":")).encode()
    request_headers = {
        "apns-topic": topic,
        "apns-push-type": "mdm",
        "apns-priority": "10",
        "content-type": "application/json",
        **(headers or {}),
    }
    started = time.monotonic()
    attempt = 0
    outcome = PushOutcome(token_hex, 0, reason="not sent")
    while attempt < max_attempts:
        attempt += 1
        retry_after: float | None = None
        try:
            response = http.post(url, content=body, headers=request_headers, timeout=5.0)
        except httpx.HTTPError as exc:
            outcome = PushOutcome(token_hex, 0, reason=f"{type(exc).__name__}: {exc}"[:200], attempts=attempt)
        else:
            reason = None
            if response.status_code != 200:
                try:
                    reason = str(response.json().get("reason"))
                except (ValueError, AttributeError):
                    reason = response.text[:200] or None
            outcome = PushOutcome(
                token_hex, response.status_code, response.headers.get("apns-id"), reason, attempt
            )
            if response.status_code not in RETRY_STATUSES:
                return outcome
            try:
                retry_after = float(response.headers.get("retry-after", ""))
            except ValueError:
                retry_after = None
        delay = retry_after if retry_after is not None else base_delay_s * (4 ** (attempt - 1))
        delay = min(delay, 2.0)
        if attempt >= max_attempts or time.monotonic() - started + delay > deadline_s:
            break
        sleep(delay)
    return outcome


@dataclass(frozen=True)
class WebhookSubscription:
    """A webhook receiver that wants only some event topics (``mdm.TokenUpdate``…); ``None``: all.

    Every event costs the receiver a request, so a receiver names the topics it acts on: a plain URL
    string in the webhook list still receives everything, as NanoMDM's webhook does.
    """

    url: str
    topics: frozenset[str] | None = None

    def wants(self, topic: str, request_type: str | None = None) -> bool:
        """``mdm.Connect:EraseDevice`` subscribes to the reports of one kind of command only."""
        if self.topics is None or topic in self.topics:
            return True
        return request_type is not None and f"{topic}:{request_type}" in self.topics


def webhook_targets(subscriptions: Any, topic: str, request_type: str | None = None) -> list[str]:
    """The URLs (plain strings or :class:`WebhookSubscription`) that want an event of ``topic``."""
    out = []
    for item in subscriptions or ():
        if isinstance(item, WebhookSubscription):
            if item.wants(topic, request_type):
                out.append(item.url)
        else:
            out.append(item)
    return out


def post_webhook(http: httpx.Client, url: str, event: dict[str, Any], timeout: float = 3.0) -> int:
    """Best effort: the status code, or 0 when the receiver could not be reached."""
    try:
        return http.post(url, json=event, timeout=timeout).status_code
    except httpx.HTTPError:
        return 0


class Dispatcher:
    """Runs after-commit work on a few threads (or inline), and lets tests wait until it is done."""

    def __init__(self, *, synchronous: bool, workers: int = 8) -> None:
        self.synchronous = synchronous
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers
        self._lock = threading.Lock()
        self._pending: set[Future[Any]] = set()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self.synchronous:
            try:
                fn(*args)
            except Exception:  # after-commit work must never fail the device's request
                pass
            return
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="mdm-outbound")
            # In the context of the request that queued it (contextvars), as if it ran inline: whatever
            # a caller keeps there (a trace of the request, say) follows the work onto the thread.
            future = self._pool.submit(contextvars.copy_context().run, fn, *args)
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait (with a deadline) until every submitted job has finished; True if all did."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            for future in pending:
                try:
                    future.result(timeout=max(remaining, 0.001))
                except Exception:
                    pass

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=False)
