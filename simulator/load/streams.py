"""Device push streams for the fleet runner: one asyncio connection per device, held for the run.

A fleet device holds one connection to the push gateway's device listener from the moment it is
enrolled until the run ends, as a real device holds its APNs connection; the admin's command then
reaches it as a push on that connection, not through a poll. The stream's bytes are read by the
device's own sans-I/O :class:`~simulator.device.push_stream.PushStream`; this module adds only the
socket: an :class:`asyncio.Protocol` with slots (thousands of idle streams cost a transport, a socket
and a small parser each) and awaitables for "subscribed" and "a push arrived".
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from simulator.device.push_stream import PushStream

__all__ = ["AsyncPushStream", "open_push_stream"]


class AsyncPushStream(asyncio.Protocol):
    """One device's stream: notifications are kept until :meth:`wait` takes them."""

    __slots__ = ("stream", "transport", "pending", "_waiter")

    def __init__(self, stream: PushStream) -> None:
        self.stream = stream
        self.transport: asyncio.Transport | None = None
        self.pending: list[dict[str, Any]] = []
        self._waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.stream.request_bytes())

    def data_received(self, data: bytes) -> None:
        notes = self.stream.feed(data)
        if notes:
            self.pending.extend(notes)
        if self.stream.closed and self.transport is not None:
            self.transport.close()
        self._wake()

    def eof_received(self) -> bool:
        self.stream.feed(b"")
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.stream.connection_lost(f"the connection to the push gateway failed: {exc}" if exc else None)
        self.transport = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- for the device's driver ---------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self.stream.closed

    @property
    def error(self) -> str | None:
        return self.stream.error

    async def _until(self, ready: Any, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready() and not self.stream.closed:
            left = deadline - loop.time()
            if left <= 0:
                return
            self._waiter = loop.create_future()
            timer = loop.call_later(left, self._wake)
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None

    async def subscribed(self, timeout: float) -> bool:
        """Wait until the gateway holds this device's subscription (True) or the stream failed."""
        await self._until(lambda: self.stream.connected, timeout)
        return self.stream.connected

    async def wait(self, timeout: float) -> list[dict[str, Any]]:
        """The notifications that arrived, waiting up to ``timeout`` seconds for the first; ``[]``
        when none came or the stream ended (:attr:`closed`, :attr:`error`)."""
        await self._until(lambda: self.pending, timeout)
        out, self.pending = self.pending, []
        return out

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.stream.connection_lost("closed by the device")


async def open_push_stream(stream_url: str, token: str, *, timeout: float,
                           ssl_context: ssl.SSLContext | None = None) -> AsyncPushStream:  # fmt: skip
    """Connect ``token``'s stream and wait until it is subscribed; a failed one comes back closed
    with :attr:`~AsyncPushStream.error` set (never an exception: a fleet counts it and goes on)."""
    stream = PushStream(stream_url, token)
    protocol = AsyncPushStream(stream)
    address = stream.address
    loop = asyncio.get_running_loop()
    context = (ssl_context or ssl.create_default_context()) if address.scheme == "https" else None
    try:
        await asyncio.wait_for(
            loop.create_connection(lambda: protocol, address.host, address.port, ssl=context), timeout
        )
    except TimeoutError:
        stream.connection_lost(f"no connection to the push gateway within {timeout:g} s")
        return protocol
    except OSError as exc:
        stream.connection_lost(f"cannot connect to the push gateway: {exc}")
        return protocol
    if not await protocol.subscribed(timeout) and not stream.closed:
        stream.connection_lost(f"the push gateway did not answer within {timeout:g} s")
        protocol.close()
    return protocol
