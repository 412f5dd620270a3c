"""A device's persistent connection to the push gateway, as bytes in and notifications out (sans-I/O).

A real iPhone keeps one connection to APNs open and is woken through it within a second of a push;
it never asks "anything for me?". Simulated devices do the same against the gateway's device-stream
listener: one ``GET <stream URL>/events?token=<hex>`` answered with ``text/event-stream`` that stays
open, one server-sent event per notification (``event: push``, ``data:`` the notification as JSON with
``"payload": {"mdm": "<PushMagic>"}``) and comment lines (``: connected``, ``: keepalive``) otherwise.

Like the device itself (DESIGN.md rule 5) this module never touches a socket: :class:`PushStream`
says which bytes to send (:meth:`PushStream.request_bytes`) and turns whatever bytes arrive into
notifications (:meth:`PushStream.feed`). Drivers own the socket: an asyncio protocol in the fleet
runner, a (gevent) blocking socket in Locust and the ``mdmsim device`` command. The HTTP/1.1 response
(status line, chunked body) is read by ``h11``, the sans-I/O HTTP library the gateway speaks with;
the event stream inside it by :class:`EventStreamParser`, written to the WHATWG rules for
``text/event-stream`` (lines end in CR, LF or CRLF; ``:`` starts a comment; a blank line ends an
event; one leading space after the colon is dropped).

Everything read is bounded: an event line longer than :data:`MAX_LINE` or a response head larger
than :data:`MAX_HEAD` ends the stream with an error instead of growing without limit.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

import h11

from .machine import USER_AGENT

__all__ = [
    "EventStreamParser",
    "PushStream",
    "ServerSentEvent",
    "StreamAddress",
    "stream_address",
    "reachable_stream_url",
    "MAX_LINE",
    "MAX_HEAD",
]

#: The longest event line read (a notification is at most 4 KB of payload plus its envelope).
MAX_LINE = 64 * 1024
#: The largest response head read before the stream starts (or a refusal's body).
MAX_HEAD = 16 * 1024


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: its type (``message`` when the server named none), data and id."""

    event: str
    data: str
    id: str | None = None


class EventStreamParser:
    """``text/event-stream`` bytes in, :class:`ServerSentEvent` objects out; comments are dropped."""

    __slots__ = ("_buffer", "_event", "_data", "_id", "_cr", "last_event_id")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._cr = False  # the previous chunk ended in CR: a LF first in the next one belongs to it
        self.last_event_id: str | None = None

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Events completed by ``data``; :class:`ValueError` once a line grows past :data:`MAX_LINE`."""
        if self._cr and data[:1] == b"\n":
            data = data[1:]
        if data:
            self._cr = data[-1:] == b"\r"
        buffer = self._buffer
        buffer += data
        events: list[ServerSentEvent] = []
        start = 0
        while True:
            lf, cr = buffer.find(b"\n", start), buffer.find(b"\r", start)
            if lf < 0 and cr < 0:
                break
            end = lf if cr < 0 or (0 <= lf < cr) else cr
            line = bytes(buffer[start:end])
            start = end + (2 if buffer[end : end + 2] == b"\r\n" else 1)
            event = self._line(line.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        del buffer[:start]
        if len(buffer) > MAX_LINE:
            raise ValueError(f"an event-stream line longer than {MAX_LINE} bytes")
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: ": connected", ": keepalive"
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None  # "retry" and unknown fields are ignored, as EventSource ignores them

    def _dispatch(self) -> ServerSentEvent | None:
        data, event, self._data, self._event = self._data, self._event, [], ""
        if self._id is not None:
            self.last_event_id = self._id
        if not data:
            return None
        return ServerSentEvent(event or "message", "\n".join(data), self.last_event_id)


@dataclass(frozen=True, slots=True)
class StreamAddress:
    """Where a device's stream connects and what it asks for."""

    scheme: str
    host: str
    port: int
    target: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def stream_address(stream_url: str, token: str) -> StreamAddress:
    """The connection for ``token``'s stream at ``stream_url`` (the gateway's device listener, e.g.
    ``http://127.0.0.1:40123``, or a world's ``…/apple/apns``): ``<path>/events?token=<hex>``."""
    parts = urllib.parse.urlsplit(stream_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {stream_url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path.rstrip("/")
    query = urllib.parse.urlencode({"token": token})
    return StreamAddress(parts.scheme, parts.hostname, port, f"{path}/events?{query}")


_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"})


def reachable_stream_url(advertised: str, server_url: str) -> str:
    """The advertised stream URL as a client that reached the world at ``server_url`` can reach it.

    A world served on every interface advertises its stream listener on loopback (the address it
    knows works); a device on another host (a Locust worker elsewhere) reaches the listener's port
    through the host it reached the world by, so that host replaces a loopback or unspecified one.
    """
    stream, server = urllib.parse.urlsplit(advertised), urllib.parse.urlsplit(server_url)
    if stream.hostname not in _LOCAL_HOSTS or not server.hostname or server.hostname in _LOCAL_HOSTS:
        return advertised
    host = f"[{server.hostname}]" if ":" in server.hostname else server.hostname
    netloc = f"{host}:{stream.port}" if stream.port else host
    return urllib.parse.urlunsplit(stream._replace(netloc=netloc))


class PushStream:
    """One device stream as a state machine: :meth:`request_bytes` once, then :meth:`feed` what arrives.

    ``connected`` turns true when the gateway answered 200 with an event stream: from then on it holds
    the device's subscription, so a push accepted after that instant reaches this stream (and what was
    stored while the device was away arrives as the stream's first events). ``closed`` turns true when
    the stream ended (the server closed it, refused it, or sent something unreadable); ``error`` then
    says why, for the device's transcript. Only ``push`` events (or unnamed ones, the WSGI server's
    convenience stream) whose data is a JSON object are notifications; anything else is ignored.
    """

    __slots__ = ("address", "_conn", "_events", "connected", "closed", "error", "_refusal", "_status")

    def __init__(self, stream_url: str, token: str) -> None:
        self.address = stream_address(stream_url, token)
        self._conn: h11.Connection | None = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self._events: EventStreamParser | None = None
        self.connected = False
        self.closed = False
        self.error: str | None = None
        self._refusal: bytearray | None = None
        self._status = 0

    def request_bytes(self) -> bytes:
        """The request that opens the stream (send it once, right after connecting)."""
        assert self._conn is not None
        headers = [("Host", self.address.host_header), ("Accept", "text/event-stream"),
                   ("Cache-Control", "no-cache"), ("User-Agent", USER_AGENT)]  # fmt: skip
        head = self._conn.send(h11.Request(method="GET", target=self.address.target, headers=headers)) or b""
        return head + (self._conn.send(h11.EndOfMessage()) or b"")

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The notifications ``data`` completed; ``b""`` means the connection reached its end."""
        conn = self._conn
        if conn is None:
            return []
        out: list[dict[str, Any]] = []
        try:
            conn.receive_data(data)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    break
                if isinstance(event, h11.Response):
                    self._response(event)
                elif isinstance(event, h11.Data):
                    self._body(bytes(event.data), out)
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    self._end("the push gateway closed the stream")
                    break
                # an h11.InformationalResponse (1xx) carries nothing for us
        except (h11.RemoteProtocolError, ValueError) as exc:
            # h11 calls a connection that ends inside a chunked body a protocol error: for a stream
            # that is how the gateway going away looks, not an unreadable answer.
            self._end("the push gateway closed the stream" if not data else f"unreadable push stream: {exc}"[:200])
        return out

    def _response(self, response: h11.Response) -> None:
        self._status = response.status_code
        kind = dict(response.headers).get(b"content-type", b"").split(b";")[0].strip().lower()
        if response.status_code == 200 and kind == b"text/event-stream":
            self.connected = True
            self._events = EventStreamParser()
        else:
            self._refusal = bytearray()

    def _body(self, data: bytes, out: list[dict[str, Any]]) -> None:
        if self._events is None:
            if self._refusal is not None and len(self._refusal) < 512:
                self._refusal += data[: 512 - len(self._refusal)]
            return
        for event in self._events.feed(data):
            if event.event not in ("push", "message"):
                continue
            try:
                notification = json.loads(event.data)
            except ValueError:
                continue
            if isinstance(notification, dict):
                out.append(notification)

    def _end(self, why: str) -> None:
        if self._refusal is not None:
            snippet = self._refusal.decode("utf-8", "replace").strip()
            why = f"the push gateway refused the stream: HTTP {self._status}" + (f": {snippet}" if snippet else "")
        self.error = self.error or why
        self.closed = True
        self.connected = False
        self._conn = None
        self._events = None

    def connection_lost(self, reason: str | None = None) -> None:
        """The driver's socket failed or closed (without a clean end from the server)."""
        if not self.closed:
            self._end(reason or "the connection to the push gateway was lost")
