"""The load runners' HTTP client: httpcore's connection pool over plain asyncio protocols.

Why not ``httpx.AsyncClient``, which the rest of mdmsim uses: a fleet is only useful while it is
not the bottleneck, and every device exchange paid ~790 µs of client CPU in httpx (request and
response models, URL normalisation, cookie and auth hooks, anyio's cancel scopes around every socket
read), about half of a simulated device's cost. The same requests through httpcore's pool, the
layer under httpx, with a network backend written on asyncio's ``Protocol`` cost ~380 µs
(``/_sim/bench/page``, 64 concurrent clients, same machine, same run). httpcore documents network
backends as its extension point; the one here is small: a buffer, a waiter and flow control.

What the fleet gives up is nothing it used: no cookies (devices must not share a jar anyway), no
redirects (a device's flow sees a 3xx as the real device would), HTTP/1.1 only.
"""

from __future__ import annotations

import asyncio
import json as _json
import socket
import ssl
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore

__all__ = ["AsyncioBackend", "LoadClient", "LoadHTTPError", "LoadResponse", "MAX_RESPONSE_BYTES"]

#: The most a load client reads of one response body (an enrollment profile is a few KB).
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_PAUSE_READING_AT = 256 * 1024  # buffered bytes no one asked for yet: stop reading the socket
_SAFE_TARGET = "/?&=%:@!$'()*+,;~-._"


class _Protocol(asyncio.Protocol):
    """Bytes from the socket into a buffer; wakes the one reader a connection has (HTTP/1.1)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None  # set while the transport asks us to pause writing
        self.eof = False
        self.error: BaseException | None = None
        self.reading_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _PAUSE_READING_AT and self.transport is not None and not self.reading_paused:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)


async def _wait(future: asyncio.Future[None], timeout: float | None, error: type[Exception]) -> None:
    """Await ``future``; ``error`` after ``timeout`` seconds (one timer, no task per wait)."""
    if timeout is None:
        await future
        return

    def expire() -> None:
        if not future.done():
            future.set_exception(error(f"no progress in {timeout:g} s"))

    timer = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        await future
    finally:
        timer.cancel()


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self.transport = transport
        self.protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        p = self.protocol
        while not p.buffer:
            if p.eof:
                if p.error is not None:
                    raise httpcore.ReadError(str(p.error) or type(p.error).__name__)
                return b""
            p.waiter = asyncio.get_running_loop().create_future()
            try:
                await _wait(p.waiter, timeout, httpcore.ReadTimeout)
            finally:
                p.waiter = None
        if len(p.buffer) <= max_bytes:
            data = bytes(p.buffer)
            p.buffer.clear()
        else:
            data = bytes(p.buffer[:max_bytes])
            del p.buffer[:max_bytes]
        if p.reading_paused and len(p.buffer) < _PAUSE_READING_AT // 4:
            p.reading_paused = False
            self.transport.resume_reading()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self.transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self.transport.write(buffer)
        drained = self.protocol.drained
        if drained is not None:
            await _wait(drained, timeout, httpcore.WriteTimeout)

    async def aclose(self) -> None:
        self.transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            tls = await asyncio.wait_for(
                loop.start_tls(self.transport, self.protocol, ssl_context, server_hostname=server_hostname),
                timeout)
        except TimeoutError as exc:
            self.transport.close()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from exc
        except (ssl.SSLError, OSError, ConnectionError) as exc:
            self.transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        if tls is None:
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self.transport = tls  # type: ignore[assignment]
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # an idle pooled connection with data or EOF waiting is stale
            return self.protocol.eof or bool(self.protocol.buffer)
        key = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername",
               "socket": "socket"}.get(info)
        return self.transport.get_extra_info(key) if key else None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on asyncio transports (TCP_NODELAY is asyncio's default)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(_Protocol, host, port,
                                       local_addr=(local_address, 0) if local_address else None),
                timeout)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"no connection within {timeout:g} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock: socket.socket | None = transport.get_extra_info("socket")
        for option in socket_options or ():
            if sock is not None:
                sock.setsockopt(*option)
        return _Stream(transport, protocol)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("load clients connect over TCP only")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class LoadHTTPError(Exception):
    """A request that got no HTTP response; ``timeout`` when it ran out of time. The cause is chained."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


@dataclass(slots=True)
class LoadResponse:
    status_code: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", " as httpx does
    content: bytes

    def json(self) -> Any:
        return _json.loads(self.content)


_ERRORS = (httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProtocolError,
           httpcore.UnsupportedProtocol, httpcore.ProxyError, OSError)


class LoadClient:
    """A small pool of keep-alive connections shared by many simulated devices (never cookies)."""

    def __init__(self, *, max_connections: int = 4, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = 60.0, max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_connections=max_connections,
            max_keepalive_connections=max_connections, network_backend=AsyncioBackend())

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      content: bytes | None = None, json: Any = None,
                      timeout: float | None = None) -> LoadResponse:
        """Send one request and read the whole response (at most ``max_response_bytes``)."""
        header_list = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        if json is not None:
            content = _json.dumps(json, separators=(",", ":")).encode()
            header_list.append((b"Content-Type", b"application/json"))
        t = self.timeout if timeout is None else timeout
        try:
            async with self._pool.stream(  # adds Host and Content-Length
                method, _encoded(url), headers=header_list, content=content,
                extensions={"timeout": {"connect": t, "read": t, "write": t, "pool": t}},
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_stream():
                    body += chunk
                    if len(body) > self.max_response_bytes:
                        raise LoadHTTPError(f"response body over {self.max_response_bytes} bytes")
        except _ERRORS as exc:
            raise LoadHTTPError(str(exc) or type(exc).__name__,
                                timeout=isinstance(exc, httpcore.TimeoutException)) from exc
        merged: dict[str, str] = {}
        for name, value in response.headers:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            merged[key] = f"{merged[key]}, {text}" if key in merged else text
        return LoadResponse(response.status, merged, bytes(body))

    async def get(self, url: str, **kwargs: Any) -> LoadResponse:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> LoadResponse:
        return await self.request("POST", url, **kwargs)

    async def aclose(self) -> None:
        await self._pool.aclose()


def _encoded(url: str) -> str:
    """``url`` with any character HTTP forbids in a request target percent-encoded (httpx did this)."""
    if url.isascii() and " " not in url:
        return url
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=urllib.parse.quote(parts.path, safe=_SAFE_TARGET),
                                                  query=urllib.parse.quote(parts.query, safe=_SAFE_TARGET)))
