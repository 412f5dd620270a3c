"""Device streams: each simulated device holds one connection to the push gateway and wakes on a push.

A real device keeps one persistent connection to APNs and is woken through it within a second of a
push. The simulation's devices do the same over HTTP: ``GET /events?token=<hex>`` on the gateway's
device listener answers ``text/event-stream`` and stays open; every notification for the token is one
event (``id:`` the apns-id, ``data:`` the notification as JSON), an idle stream gets a comment line
every :data:`KEEPALIVE_S` seconds.

**Why server-sent events, not WebSocket**: delivery goes one way (APNs to device); SSE is plain
HTTP/1.1 that any client reads line by line (``curl -N``, httpx, a browser's ``EventSource``, a
gevent socket in Locust), needs no upgrade handshake or framing of its own, and costs the server one
small protocol object per device. The HTTP/1.1 parsing is ``h11`` (python-hyper's sans-I/O HTTP/1.1,
the one httpx and hypercorn use); after the request is read, each event is one chunk.

What is pending stays in the store: a stream takes it atomically (so two streams of one token never
both get a notification), first when it opens (what was stored while the device was away, minus what
expired) and then whenever the process's :class:`~.fanout.Fanout` wakes it. The comment ``: connected``
follows that first look: from then on the device is online, and an ``apns-expiration: 0`` push is
delivered rather than dropped as one that came while it was away.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Protocol

import h11

from .service import valid_token

if TYPE_CHECKING:
    from .gateway import APNsGateway

__all__ = ["DeviceStreamProtocol", "Feed", "KEEPALIVE_S", "MAX_FEED_BUFFER", "event_bytes"]

#: A comment line on an idle stream this often, so proxies and clients keep it open.
KEEPALIVE_S = 15.0
_MAX_REQUEST_HEAD = 8 * 1024
#: What a feed's reader may leave unread before the gateway hangs up on it (it reconnects and starts
#: from a fresh snapshot): a stalled browser tab must not hold the process's memory.
MAX_FEED_BUFFER = 8 * 1_048_576


class Feed(Protocol):
    """Another kind of event stream on the device listener, by path (``GET /sim-events``): the same
    one loop and one small object per connection, for readers that are not devices (a live page).

    The gateway parses the request; the feed decides who may read (:meth:`admit`: the status, the
    APNs-style reason of a refusal, and headers to add, such as ``Access-Control-Allow-Origin``) and
    writes events to its subscribers with :meth:`DeviceStreamProtocol.send`. :meth:`run` is started on
    the gateway's loop with the gateway's executor for store work."""

    def admit(self, query: str, origin: str | None) -> tuple[int, str, list[tuple[str, str]]]: ...

    def subscribe(self, stream: DeviceStreamProtocol) -> None: ...

    def unsubscribe(self, stream: DeviceStreamProtocol) -> None: ...

    async def run(self, loop: asyncio.AbstractEventLoop, executor: Any) -> None: ...


def event_bytes(notification: dict[str, Any]) -> bytes:
    """One server-sent event for one notification."""
    return f"id: {notification['apns_id']}\nevent: push\ndata: {json.dumps(notification)}\n\n".encode()


class DeviceStreamProtocol(asyncio.Protocol):
    """One device connection: read one request, then stream its token's notifications until it closes."""

    __slots__ = ("gateway", "transport", "conn", "token", "feed", "_taking", "_again")

    def __init__(self, gateway: APNsGateway) -> None:
        self.gateway = gateway
        self.transport: asyncio.Transport | None = None
        self.conn: h11.Connection | None = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_REQUEST_HEAD)
        self.token: str | None = None
        self.feed: Feed | None = None
        self._taking = False
        self._again = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # Until its request has arrived: the gateway's timer closes a connection that never sends one.
        self.gateway.awaiting_head[self] = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gateway.awaiting_head.pop(self, None)
        if self.token is not None:
            self.gateway.fanout.unsubscribe(self.token, self.wake)
            self.gateway.device_streams.discard(self)
        if self.feed is not None:
            self.feed.unsubscribe(self)
            self.gateway.feed_streams.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or self.token is not None or self.feed is not None:
            return  # the stream is open: whatever else the reader sends is not read
        try:
            conn.receive_data(data)
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            # h11 hints 501 for a Transfer-Encoding it does not implement: still the device's
            # malformed request, refused as one (the gateway answers no 5xx for what it was sent).
            hint = exc.error_status_hint
            self._refuse(hint if hint < 500 else 400, "BadRequest")
            return
        if event is h11.NEED_DATA:
            return
        if isinstance(event, h11.Request):
            self.gateway.awaiting_head.pop(self, None)
            self._request(event)
        else:
            self._close()

    # -- the request -------------------------------------------------------------------------------
    def _request(self, request: h11.Request) -> None:
        target = request.target.decode("ascii", "replace")
        path, _, query = target.partition("?")
        feed = self.gateway.feeds.get(path.rstrip("/"))
        if feed is not None:
            self._open_feed(feed, request, query)
            return
        if path.rstrip("/") not in ("/events", "/apple/apns/events"):
            self._refuse(404, "BadPath")
            return
        if request.method != b"GET":
            self._refuse(405, "MethodNotAllowed")
            return
        token = (urllib.parse.parse_qs(query).get("token") or [""])[0]
        if not valid_token(token):
            self._refuse(400, "BadDeviceToken")
            return
        assert self.conn is not None and self.transport is not None
        head = self.conn.send(h11.Response(status_code=200, reason=b"OK", headers=[
            ("content-type", "text/event-stream"), ("cache-control", "no-cache"), ("x-accel-buffering", "no"),
        ]))  # fmt: skip
        self.transport.write(head or b"")
        self.token = token.lower()
        self.gateway.fanout.subscribe(self.token, self.wake)
        self.gateway.device_streams.add(self)
        self._take(connecting=True)

    def _open_feed(self, feed: Feed, request: h11.Request, query: str) -> None:
        """A feed's reader: admitted (or refused) by the feed, then written to by it until it hangs up."""
        if request.method != b"GET":
            self._refuse(405, "MethodNotAllowed")
            return
        origins = [value for name, value in request.headers if name == b"origin"]
        origin = origins[0].decode("latin-1") if len(origins) == 1 else None
        if len(origins) > 1:
            self._refuse(400, "BadRequest")
            return
        status, reason, extra = feed.admit(query, origin)
        if status != 200:
            self._refuse(status, reason, extra)
            return
        assert self.conn is not None and self.transport is not None
        head = self.conn.send(h11.Response(status_code=200, reason=b"OK", headers=[
            ("content-type", "text/event-stream"), ("cache-control", "no-cache"), ("x-accel-buffering", "no"), *extra,
        ]))  # fmt: skip
        self.transport.write(head or b"")
        self.feed = feed
        self.gateway.feed_streams.add(self)
        feed.subscribe(self)

    def send(self, data: bytes) -> bool:
        """Write events to a feed's reader; False (and the connection closed) when it is gone or has let
        :data:`MAX_FEED_BUFFER` pile up unread."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > MAX_FEED_BUFFER:
            self._close()
            return False
        self._write(data)
        return True

    def _refuse(self, status: int, reason: str, extra: list[tuple[str, str]] | None = None) -> None:
        body = json.dumps({"reason": reason}).encode()
        conn = self.conn
        if conn is not None and self.transport is not None:
            try:
                head = conn.send(h11.Response(status_code=status, headers=[
                    ("content-type", "application/json"), ("content-length", str(len(body))), ("connection", "close"),
                    *(extra or []),
                ]))  # fmt: skip
                self.transport.write((head or b"") + body)
            except h11.LocalProtocolError:
                pass
        self._close()

    # -- delivery ----------------------------------------------------------------------------------
    def wake(self) -> None:
        """A push may be waiting: take it (one take at a time; a wake meanwhile means one more)."""
        if self._taking:
            self._again = True
            return
        self._take(connecting=False)

    def _take(self, *, connecting: bool) -> None:
        self._taking = True
        self._again = False
        future = self.gateway.take(self.token or "", connecting=connecting)
        future.add_done_callback(self._connected if connecting else self._taken)

    def _connected(self, future: asyncio.Future[list[dict[str, Any]]]) -> None:
        """The first look is over: what was stored while the device was away is delivered (or dropped,
        expired or "now or never"), so from ``: connected`` on the device is online. Said only now, a
        push sent after the device saw it is never taken for one that came while it was away."""
        self._write(b": connected\n\n")
        self._taken(future)

    def _taken(self, future: asyncio.Future[list[dict[str, Any]]]) -> None:
        self._taking = False
        try:
            notifications = future.result()
        except Exception:  # the store was busy: the next wake (or reconnect) looks again
            notifications = []
        for notification in notifications:
            self._write(event_bytes(notification))
            self.gateway.delivered(notification)
        if self._again and self.transport is not None:
            self._take(connecting=False)

    def keepalive(self) -> None:
        self._write(b": keepalive\n\n")

    def _write(self, data: bytes) -> None:
        conn, transport = self.conn, self.transport
        if conn is None or transport is None or transport.is_closing():
            return
        chunk = conn.send(h11.Data(data=data))
        if chunk:
            transport.write(chunk)

    def close(self) -> None:
        """End the stream cleanly (server shutdown): the last chunk, then the connection."""
        conn, transport = self.conn, self.transport
        if conn is not None and transport is not None and not transport.is_closing():
            try:
                transport.write(conn.send(h11.EndOfMessage()) or b"")
            except h11.LocalProtocolError:
                pass
        self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
