"""The provider API as Apple serves it: HTTP/2 only, over TLS, the push certificate as client certificate.

``POST /3/device/<hex token>`` at the root, as on ``api.push.apple.com``. Every rule of a push is
:meth:`~.service.APNsService.send`'s; this module is the HTTP/2 side of it, written on the ``h2``
state machine (python-hyper's sans-I/O HTTP/2, the one hypercorn and httpx use) over an asyncio
protocol. Not hypercorn itself: an ASGI application never sees the TLS client certificate (hypercorn
0.18 puts nothing of it in the scope), which is how Apple knows the provider, and Apple's ``GOAWAY``
with a JSON reason has no ASGI counterpart.

What Apple does and this does too:

* TLS 1.2 or later, ALPN ``h2``; a client certificate is asked for and, when given, must chain to the
  Push Certificates Portal's CA (the handshake fails otherwise, as Apple's does); whether it is
  *current* (not revoked, expired or replaced) is the service's question, asked on the world clock.
* A client that speaks HTTP/1.1 gets a ``GOAWAY`` (PROTOCOL_ERROR) and a closed connection.
* 1,000 concurrent streams per connection; request bodies are read up to one byte more than
  Apple's 4 KB limit and the rest is discarded (413 ``PayloadTooLarge``).
* ``GOAWAY`` with ``{"reason": …}``: ``Shutdown`` when the server stops, ``IdleTimeout`` after
  :data:`IDLE_TIMEOUT_S` without a request, and the last reason after :data:`MAX_REFUSALS` refusals
  in a row (Apple disconnects providers that keep sending bad requests).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from cryptography import x509

from .service import MAX_PAYLOAD, PushResult, valid_apns_id

if TYPE_CHECKING:
    from .gateway import APNsGateway

__all__ = ["ProviderProtocol", "IDLE_TIMEOUT_S", "MAX_REFUSALS", "MAX_CONCURRENT_STREAMS"]

MAX_CONCURRENT_STREAMS = 1000
#: The most header bytes (HPACK-decoded) one request may carry.
MAX_HEADER_LIST = 8 * 1024
#: A provider connection without a request this long is closed with GOAWAY IdleTimeout.
IDLE_TIMEOUT_S = 3600.0
#: Refusals in a row (410 not counted, as Apple does not count it) before Apple hangs up.
MAX_REFUSALS = 100
_PATH = "/3/device/"
_SINGLE = ("apns-id", "apns-topic", "apns-push-type", "apns-expiration", "apns-priority", "apns-collapse-id")
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclass
class _Stream:
    headers: list[tuple[str, str]]
    body: bytearray = field(default_factory=bytearray)


class ProviderProtocol(asyncio.Protocol):
    """One provider connection: h2 frames in, pushes to the service, Apple's answers out."""

    def __init__(self, gateway: APNsGateway) -> None:
        self.gateway = gateway
        self.transport: asyncio.Transport | None = None
        self.certificate: x509.Certificate | None = None
        self.conn = h2.connection.H2Connection(
            # Headers stay bytes in h2 (``header_encoding=None``): h2 would decode them as strict
            # UTF-8 inside ``receive_data`` and raise out of it, killing the connection, for one byte.
            h2.config.H2Configuration(client_side=False, header_encoding=None, validate_inbound_headers=True)
        )
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
            # A push's headers are a few hundred bytes; h2's default (64 KB) times 1,000 streams was
            # 64 MB a connection could make us hold.
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
        })  # fmt: skip
        self.streams: dict[int, _Stream] = {}
        self._answering: set[asyncio.Task[None]] = set()  # held here: the loop keeps tasks only weakly
        self.refusals = 0
        self.last_active = time.monotonic()
        self.closing = False
        self.negotiated_h2 = False
        self._checked_preface = False

    # -- asyncio -----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.negotiated_h2 = ssl_object.selected_alpn_protocol() == "h2"
            der = ssl_object.getpeercert(binary_form=True)
            if der:
                self.certificate = self.gateway.parse_certificate(der)
        self.gateway.provider_connections.add(self)
        self.conn.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gateway.provider_connections.discard(self)
        self.streams.clear()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if not self._checked_preface:
            # ALPN chose h2, or the client speaks it with prior knowledge; anything else (HTTP/1.1) is
            # answered as an HTTP/2-only server answers it: GOAWAY, then the connection is closed.
            self._checked_preface = True
            if not self.negotiated_h2 and not _H2_PREFACE.startswith(data[: len(_H2_PREFACE)]):
                self.goaway(h2.errors.ErrorCodes.PROTOCOL_ERROR, None)
                return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()  # h2 queued its GOAWAY
            self._close()
            return
        for event in events:
            self._event(event)
        self._flush()

    # -- h2 events ---------------------------------------------------------------------------------
    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = [_text(n, v) for n, v in event.headers or ()]  # type: ignore[arg-type]
            if self.certificate is None and self.gateway.service.certificate_check is not None:
                # Refused before its body is read: an anonymous client holds nothing of ours.
                refusal = self._refusal(headers) or PushResult(403, reason="MissingProviderToken")
                named = dict(headers)
                self._respond(event.stream_id, refusal, named.get("apns-id"), head=named.get(":method") == "HEAD")
                if not event.stream_ended:
                    try:
                        self.conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.NO_ERROR)
                    except h2.exceptions.ProtocolError:
                        pass
                return
            self.streams[event.stream_id] = _Stream(headers)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None and len(stream.body) <= MAX_PAYLOAD:
                stream.body += event.data[: MAX_PAYLOAD + 1 - len(stream.body)]
            if event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                task = asyncio.ensure_future(self._answer(event.stream_id, stream))
                self._answering.add(task)
                task.add_done_callback(self._answering.discard)
        elif isinstance(event, h2.events.StreamReset):
            self.streams.pop(event.stream_id, None)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._close()

    async def _answer(self, stream_id: int, stream: _Stream) -> None:
        result = self._refusal(stream.headers)
        headers = dict(stream.headers)
        if result is None:
            token = headers[":path"][len(_PATH):]
            fields = {k: v for k, v in headers.items() if not k.startswith(":")}
            result = await self.gateway.send(
                token, bytes(stream.body), fields, certificate=self.certificate, authority=headers.get(":authority"),
            )  # fmt: skip
        self._respond(stream_id, result, headers.get("apns-id"), head=headers.get(":method") == "HEAD")

    def _refusal(self, headers: list[tuple[str, str]]) -> PushResult | None:
        """What Apple says before a push reaches the service: method, path, repeated headers."""
        pseudo = dict(h for h in headers if h[0].startswith(":"))
        path = pseudo.get(":path", "").split("?", 1)[0]
        if pseudo.get(":method") != "POST":
            return PushResult(405, reason="MethodNotAllowed")
        if not path.startswith(_PATH) or "/" in path[len(_PATH):]:
            return PushResult(404, reason="BadPath")
        if path == _PATH:
            return PushResult(400, reason="MissingDeviceToken")
        names = [name for name, _ in headers if name in _SINGLE]
        if len(names) != len(set(names)):
            return PushResult(400, reason="DuplicateHeaders")
        return None

    def _respond(self, stream_id: int, result: PushResult, requested_id: str | None = None, *,
                 head: bool = False) -> None:  # fmt: skip
        """Apple's answer on the stream. A refusal carries the ``apns-id`` the provider sent too (a
        well-formed one): aioapns matches every response, refusals included, to its request by it.
        The answer to a HEAD has no body (HTTP semantics; h2 clients reject one as a protocol error)."""
        if self.transport is None or self.transport.is_closing():
            return
        echoed = requested_id if valid_apns_id(requested_id) else None
        apns_id = result.apns_id or echoed or self.gateway.new_apns_id()
        body = result.body()
        try:
            if body is None:
                self.conn.send_headers(stream_id, [(":status", "200"), ("apns-id", apns_id)], end_stream=True)
            else:
                data = json.dumps(body, separators=(",", ":")).encode()
                self.conn.send_headers(
                    stream_id,
                    [(":status", str(result.status)), ("apns-id", apns_id), ("content-type", "application/json"),
                     ("content-length", str(len(data)))], end_stream=head,
                )  # fmt: skip
                if not head:
                    self.conn.send_data(stream_id, data, end_stream=True)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            return  # the client reset the stream or went away meanwhile
        self._flush()
        if result.status in (200, 410):
            self.refusals = 0
        else:
            self.refusals += 1
            if self.refusals >= MAX_REFUSALS:
                self.goaway(h2.errors.ErrorCodes.NO_ERROR, result.reason)

    # -- closing -----------------------------------------------------------------------------------
    def goaway(self, code: int, reason: str | None) -> None:
        """Send GOAWAY (with ``{"reason": …}`` as its debug data) and close the connection."""
        if self.closing:
            return
        self.closing = True
        data = json.dumps({"reason": reason}).encode() if reason else b""
        try:
            self.conn.close_connection(error_code=code, additional_data=data)
        except h2.exceptions.ProtocolError:
            pass
        self._flush()
        self._close()

    def idle_for(self, now: float) -> float:
        return now - self.last_active

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _text(name: bytes, value: bytes) -> tuple[str, str]:
    """A header as text. A value that is not UTF-8 (``apns-topic: \\xff``) is then refused by the rule
    that reads it (no such topic, no such token), as any other wrong value is, not by the connection."""
    return name.decode("utf-8", "replace"), value.decode("utf-8", "replace")


def certificate_parser(cache_size: int = 1024) -> Callable[[bytes], x509.Certificate | None]:
    """DER → certificate, remembered: a provider reconnects with the same certificate again and again."""
    cache: dict[bytes, Any] = {}

    def parse(der: bytes) -> x509.Certificate | None:
        found = cache.get(der)
        if found is None:
            try:
                found = x509.load_der_x509_certificate(der)
            except ValueError:
                return None
            if len(cache) >= cache_size:
                cache.clear()
            cache[der] = found
        return found  # type: ignore[no-any-return]

    return parse
