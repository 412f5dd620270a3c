"""The push gateway's async server: the HTTP/2 provider listener and the device-stream listener in one loop.

``mdmsim serve`` and ``World.serve()`` run one :class:`APNsGateway` per server process, on a thread of
its own (:class:`GatewayThread`) beside the WSGI server that serves every other party. One event loop
holds thousands of idle device connections for the price of a small object each, which a thread per
connection never could; the store work (a push, a take) runs on a few executor threads so a busy
SQLite never stalls the loop.

Listening sockets may be handed in already bound (``mdmsim serve --workers N`` binds them before
gunicorn forks, and each worker's gateway accepts on the same sockets, as gunicorn's workers do on its
own), or bound here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509

from mdm.protocol.x509 import CertificateAuthority, cert_to_pem, key_to_pem, new_private_key

from .fanout import Fanout
from .provider import IDLE_TIMEOUT_S, ProviderProtocol, certificate_parser
from .service import APNsService, PushRequest, PushResult
from .streams import KEEPALIVE_S, DeviceStreamProtocol, Feed

__all__ = [
    "APNsGateway",
    "GatewayThread",
    "APPLE_PUSH_HOSTS",
    "provider_ssl_context",
    "bind",
    "X509_V_FLAG_NO_CHECK_TIME",
]

log = logging.getLogger("mdmsim.apns")

#: The names an unmodified provider dials: production, sandbox, and the legacy development name.
APPLE_PUSH_HOSTS = ("api.push.apple.com", "api.sandbox.push.apple.com", "api.development.push.apple.com")
#: OpenSSL's flag to skip validity dates: a world's clock is not the wall clock (a test moves it a
#: year ahead), so whether a push certificate is current is asked of the Push Certificates Portal on
#: the world clock, not of OpenSSL on the machine's.
X509_V_FLAG_NO_CHECK_TIME = 0x200000
#: The most pushes (or stream looks) written in one group commit.
MAX_GROUP = 256
#: A device-listener connection must send its request within this long (checked every KEEPALIVE_S).
HEAD_TIMEOUT_S = 10.0
#: The gateway's timer: each tick sends keep-alives to one slice of the device streams.
TICK_S = 0.25


def provider_ssl_context(tls_ca: CertificateAuthority, push_ca_pem: bytes, now: Any, directory: Path) -> ssl.SSLContext:
    """TLS for the provider listener: a server certificate from the world's TLS CA naming Apple's push
    hosts and loopback, TLS 1.2+, ALPN ``h2`` only, client certificates asked for and checked against
    the Push Certificates Portal's CA. ``directory`` (private) receives the key file ``ssl`` needs."""
    hosts = [*APPLE_PUSH_HOSTS, "localhost"]
    key = new_private_key("ec")
    cert = tls_ca.issue(key.public_key(), subject=APPLE_PUSH_HOSTS[0], now=now, days=397, client_auth=False,
                        server_auth=True, san_dns=hosts, san_ip=["127.0.0.1", "::1"])  # fmt: skip
    cert_file, key_file = directory / "apns-server.pem", directory / "apns-server.key"
    cert_file.write_bytes(cert_to_pem(cert) + cert_to_pem(tls_ca.certificate))
    key_file.touch(mode=0o600)
    key_file.write_bytes(key_to_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    context.set_alpn_protocols(["h2"])
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= X509_V_FLAG_NO_CHECK_TIME
    context.load_verify_locations(cadata=push_ca_pem.decode())
    return context


def bind(host: str, port: int, *, backlog: int = 4096, listen: bool = True, reuse_port: bool = False) -> socket.socket:
    """A TCP socket on ``host:port`` (``port`` 0: any free one), listening unless told otherwise.

    ``reuse_port``: several processes bind the same port and the kernel spreads new connections
    evenly among those listening (a socket that only reserves the port, not listening, gets none)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), port))
    if listen:
        sock.listen(backlog)
    sock.setblocking(False)
    return sock


class APNsGateway:
    """Both listeners of one process over one :class:`~.service.APNsService`.

    ``feeds``: other event streams the device listener serves by path (:class:`~.streams.Feed`; the
    world's live device feed at ``/sim-events``), so a page watching devices costs the loop what a
    device does, and no WSGI thread."""

    def __init__(self, service: APNsService, *, provider_ssl: ssl.SSLContext | None = None,
                 watch_store: bool = False, redis_url: str | None = None, redis_channel: str | None = None,
                 executor_threads: int = 4, feeds: Mapping[str, Feed] | None = None,
                 publisher: Any = None) -> None:  # fmt: skip
        self.service = service
        #: A listener that publishes each accepted push (Redis), for as long as the gateway runs.
        self.publisher = publisher
        self.feeds: dict[str, Feed] = dict(feeds or {})
        self.feed_streams: set[DeviceStreamProtocol] = set()
        self.provider_ssl = provider_ssl
        self.watch_store = watch_store
        self.redis_url = redis_url
        self.redis_channel = redis_channel
        self.executor = concurrent.futures.ThreadPoolExecutor(executor_threads, thread_name_prefix="apns-store")
        self.parse_certificate = certificate_parser()
        self.provider_connections: set[ProviderProtocol] = set()
        self.device_streams: set[DeviceStreamProtocol] = set()
        #: Device-listener connections whose request has not arrived yet, with when they connected.
        self.awaiting_head: dict[DeviceStreamProtocol, float] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.fanout: Fanout = None  # type: ignore[assignment]  # made on the loop, in start()
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self.device_port: int | None = None
        self.provider_port: int | None = None
        self._sends: list[tuple[PushRequest, asyncio.Future[PushResult]]] = []
        self._sending = False
        self._takes: list[tuple[tuple[str, bool], asyncio.Future[list[dict[str, Any]]]]] = []
        self._taking = False
        self.delivered_count = 0
        self.on_delivery: Callable[[dict[str, Any]], None] | None = None

    # -- life cycle ---------------------------------------------------------------------------------
    async def start(self, *, device: socket.socket | None, provider: socket.socket | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.fanout = Fanout(self.loop)
        self.service.add_listener(self.fanout.notify_threadsafe)
        if self.publisher is not None:
            self.service.add_listener(self.publisher)
        if device is not None:
            server = await self.loop.create_server(lambda: DeviceStreamProtocol(self), sock=device, backlog=4096)
            self._servers.append(server)
            self.device_port = int(device.getsockname()[1])
        if provider is not None:
            if self.provider_ssl is None:
                raise ValueError("the provider listener needs a TLS context (provider_ssl_context)")
            server = await self.loop.create_server(
                lambda: ProviderProtocol(self), sock=provider, ssl=self.provider_ssl, backlog=4096,
                ssl_handshake_timeout=10,
            )  # fmt: skip
            self._servers.append(server)
            self.provider_port = int(provider.getsockname()[1])
        self._tasks.append(asyncio.ensure_future(self._ticker()))
        if self.watch_store:
            self._tasks.append(asyncio.ensure_future(self.fanout.watch_store(self.service.store, self.executor)))
        if self.redis_url and self.redis_channel:
            self._tasks.append(asyncio.ensure_future(self.fanout.follow_redis(self.redis_url, self.redis_channel)))
        for feed in self.feeds.values():
            self._tasks.append(asyncio.ensure_future(feed.run(self.loop, self.executor)))

    async def stop(self) -> None:
        """GOAWAY ``Shutdown`` to providers, the last chunk to devices, then stop listening."""
        self.service.remove_listener(self.fanout.notify_threadsafe)
        if self.publisher is not None:
            self.service.remove_listener(self.publisher)
            self.publisher.close()
        for server in self._servers:
            server.close()
        for connection in list(self.provider_connections):
            connection.goaway(0, "Shutdown")
        for stream in [*self.device_streams, *self.feed_streams]:
            stream.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.sleep(0)  # let the transports write what they hold
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _ticker(self) -> None:
        """One timer for every connection: keep-alives for device streams, IdleTimeout for providers.

        The keep-alives are spread over the period, a slice of the streams every
        :data:`TICK_S`: writing to ten thousand streams at once held the loop long enough to show in
        the push-to-delivery p99 (585 ms against 56 ms with 2,000 streams, benchmarks/apns_streams.py)."""
        slices = max(1, round(KEEPALIVE_S / TICK_S))
        turn = 0
        streams: list[DeviceStreamProtocol] = []
        while True:
            await asyncio.sleep(TICK_S)
            if turn % slices == 0:
                streams = [*self.device_streams, *self.feed_streams]
                now = time.monotonic()
                for connection in list(self.provider_connections):
                    if connection.idle_for(now) > IDLE_TIMEOUT_S:
                        connection.goaway(0, "IdleTimeout")
                for waiting, since in list(self.awaiting_head.items()):
                    if now - since > HEAD_TIMEOUT_S:  # connected, never asked for anything
                        self.awaiting_head.pop(waiting, None)
                        waiting.close()
            for stream in streams[turn % slices :: slices]:
                stream.keepalive()
            turn += 1

    # -- work for the protocols ---------------------------------------------------------------------
    async def send(self, token: str, body: bytes, headers: dict[str, str], *,
                   certificate: x509.Certificate | None, authority: str | None) -> PushResult:  # fmt: skip
        """Queue a push for the next group commit (:meth:`APNsService.send_many`) and await its answer."""
        assert self.loop is not None
        answer: asyncio.Future[PushResult] = self.loop.create_future()
        # Over TLS the handshake names the provider: the stand-in header never does.
        self._sends.append((PushRequest(token, body, headers, certificate, authority, stand_in=False), answer))
        if not self._sending:
            self._write_sends()
        return await answer

    def _write_sends(self) -> None:
        """One group at a time: what queued while a group was being written is the next group."""
        assert self.loop is not None
        batch, self._sends = self._sends[:MAX_GROUP], self._sends[MAX_GROUP:]
        self._sending = True
        requests = [request for request, _ in batch]
        future = self.loop.run_in_executor(self.executor, self.service.send_many, requests)

        def done(result: asyncio.Future[list[PushResult]]) -> None:
            try:
                answers = result.result()
            except Exception:
                log.exception("a group of %d pushes failed", len(batch))
                answers = [PushResult(500, reason="InternalServerError")] * len(batch)
            for (_, answer), value in zip(batch, answers, strict=True):
                if not answer.done():
                    answer.set_result(value)
            self._sending = False
            if self._sends:
                self._write_sends()

        future.add_done_callback(done)

    def take(self, token: str, *, connecting: bool) -> asyncio.Future[list[dict[str, Any]]]:
        """Queue a stream's look at the store for the next group (:meth:`APNsService.take_many`)."""
        assert self.loop is not None
        answer: asyncio.Future[list[dict[str, Any]]] = self.loop.create_future()
        self._takes.append(((token, connecting), answer))
        if not self._taking:
            self._take_group()
        return answer

    def _take_group(self) -> None:
        assert self.loop is not None
        batch, self._takes = self._takes[:MAX_GROUP], self._takes[MAX_GROUP:]
        self._taking = True
        future = self.loop.run_in_executor(self.executor, self.service.take_many, [look for look, _ in batch])

        def done(result: asyncio.Future[list[list[dict[str, Any]]]]) -> None:
            try:
                found = result.result()
            except Exception as exc:  # a busy store: the streams look again on their next wake
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
            else:
                for (_, answer), notifications in zip(batch, found, strict=True):
                    if not answer.done():
                        answer.set_result(notifications)
            self._taking = False
            if self._takes:
                self._take_group()

        future.add_done_callback(done)

    def delivered(self, notification: dict[str, Any]) -> None:
        self.delivered_count += 1
        if self.on_delivery is not None:
            self.on_delivery(notification)

    @staticmethod
    def new_apns_id() -> str:
        return str(uuid.uuid4()).upper()

    def stats(self) -> dict[str, int]:
        return {"device_streams": len(self.device_streams), "provider_connections": len(self.provider_connections),
                "delivered": self.delivered_count, "wakes": self.fanout.wakes if self.fanout is not None else 0,
                "feed_streams": len(self.feed_streams)}  # fmt: skip


class GatewayThread:
    """An :class:`APNsGateway` on its own event loop in a daemon thread (beside a WSGI server)."""

    def __init__(self, gateway: APNsGateway, *, device: socket.socket | None, provider: socket.socket | None) -> None:
        self.gateway = gateway
        self._sockets = (device, provider)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mdmsim-apns", daemon=True)

    def start(self) -> GatewayThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.gateway.start(device=self._sockets[0], provider=self._sockets[1]))
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self.gateway.stop(), self._loop)
        with contextlib.suppress(Exception):
            future.result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
