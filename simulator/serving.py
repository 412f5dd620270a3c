"""Serving a world on real sockets: werkzeug's threaded server in tests, gunicorn in production.

Beside either, each server process runs the push gateway's async server (:mod:`simulator.apple.apns.gateway`)
on a thread of its own: the device-stream listener always (devices hold a stream and wake on a push),
and the HTTP/2 provider listener when an APNs port is asked for.

``World.serve()`` runs werkzeug's threaded server for the length of a ``with`` block (tests, the
demo, the pytest plugin's ``mdmsim_server``). ``mdmsim serve`` runs gunicorn (gthread workers): an
in-memory world lives in one process, so it is built before gunicorn forks and served by one worker
with many threads; a world kept in a data directory is opened again by each worker after the fork
(SQLite connections must not cross a fork) and several workers share the files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from gunicorn.app.base import BaseApplication
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .apple.apns.fanout import RedisPublisher, redis_channel
from .apple.apns.gateway import APNsGateway, GatewayThread, bind, provider_ssl_context
from .in_process import IN_PROCESS_URL
from .live import FEED_PATH, LiveFeed
from .tls import issue_server_pair, server_context, tls_now, write_pair
from .wake import PushWaker

__all__ = [
    "ServedWorld",
    "serve_threaded",
    "WorldApplication",
    "gunicorn_options",
    "default_workers",
    "World",
    "GatewaySockets",
    "start_gateway",
    "PortDispatch",
]


class World(Protocol):
    """What serving needs of a world (:class:`simulator.world.World` is the one), named here so that
    this module, which ``world.py`` imports, does not import ``world.py`` back."""

    control: Any
    closed: bool
    wsgi: Any
    apns: Any
    fleet: Any
    clock: Any

    @property
    def url(self) -> str: ...

    def party_wsgi(self, party: str = "dep") -> Any: ...

    pushcert: Any

    @property
    def tls_ca(self) -> Any: ...


class ServedWorld:
    """A world on a real port: ``.url``, ``.world``, and every attribute of the world."""

    def __init__(self, world: World, server: BaseWSGIServer, scheme: str = "http") -> None:
        self.world = world
        self.server = server
        host, port = server.server_address[:2]
        self.url = f"{scheme}://{host}:{port}"
        #: The push gateway's listeners: device streams (``/events?token=…``) and, when asked for, the
        #: HTTP/2 provider API (``https://…/3/device/<token>``, push certificate as client certificate).
        self.apns_stream_url: str | None = None
        self.apns_url: str | None = None
        self.gateway: APNsGateway | None = None
        #: DEP alone at the root of a port of its own (``dep_port``), as on mdmenrollment.apple.com.
        self.dep_root_url: str | None = None

    @property
    def dep_url(self) -> str:
        """Where a DEP client starts: the root of DEP's own port when it has one, else the world's
        ``/apple/dep`` on the main port (a served world is used as the world is: ``dep_url`` is never None)."""
        return self.dep_root_url or self.world.dep_url

    def __getattr__(self, name: str) -> Any:
        return getattr(self.world, name)


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without a log line per request (``/_sim/traffic`` counts them instead)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class PortDispatch:
    """WSGI: a request that arrived on one of the server's other ports goes to that port's app.

    ``mdmsim serve --dep-port P`` binds gunicorn to both ports; gunicorn puts the listening socket's
    port in ``SERVER_PORT``, so DEP alone answers at the root of P, as ``mdmenrollment.apple.com``
    does, while the main port serves every party by path."""

    def __init__(self, default: Callable[..., Any], by_port: dict[int, Callable[..., Any]]) -> None:
        self.default = default
        self.by_port = {str(port): app for port, app in by_port.items()}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.by_port.get(str(environ.get("SERVER_PORT", "")), self.default)(environ, start_response)


class GatewaySockets:
    """The gateway's ports, chosen before anything forks: devices, and providers if asked.

    ``per_process=False`` (one process): listening sockets, used as they are. ``per_process=True``
    (gunicorn's workers): the ports are only reserved here (bound with ``SO_REUSEPORT``, not
    listening) and each worker listens on them itself (:meth:`listeners`), so the kernel spreads
    device connections evenly over the workers; with one shared socket, whichever worker woke first
    took them in batches, and one process can hold at most so many open files."""

    def __init__(self, host: str, *, device_port: int = 0, apns_port: int | None = None,
                 per_process: bool = False) -> None:  # fmt: skip
        self.host = host
        self.per_process = per_process
        listen = not per_process
        self.device = bind(host, device_port, listen=listen, reuse_port=per_process)
        self.provider = bind(host, apns_port, listen=listen, reuse_port=per_process) if apns_port is not None else None

    def listeners(self) -> tuple[socket.socket, socket.socket | None]:
        """Listening sockets for this process's gateway (its own, to close without touching others')."""
        if not self.per_process:
            return self.device.dup(), self.provider.dup() if self.provider is not None else None
        device = bind(self.host, self.device.getsockname()[1], reuse_port=True)
        provider = None
        if self.provider is not None:
            provider = bind(self.host, self.provider.getsockname()[1], reuse_port=True)
        return device, provider

    def urls(self) -> tuple[str, str | None]:
        """``(device stream URL, provider URL)`` as clients on this machine reach them."""
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        stream = f"http://{host}:{self.device.getsockname()[1]}"
        provider = f"https://{host}:{self.provider.getsockname()[1]}" if self.provider is not None else None
        return stream, provider

    def close(self) -> None:
        for sock in (self.device, self.provider):
            if sock is not None:
                sock.close()


def start_gateway(world: World, sockets: GatewaySockets, *, watch_store: bool = False,
                  redis_url: str | None = None) -> GatewayThread:  # fmt: skip
    """The world's push gateway on ``sockets``, on a thread of this process, with the world's live
    device feed (:mod:`simulator.live`) on its device listener.

    With ``redis_url`` every push this process accepts is published on the world's channel and every
    push published there wakes this process's streams; ``watch_store`` makes the process look in the
    store for pushes other processes accepted (several workers, no Redis)."""
    context = None
    if sockets.provider is not None:
        directory = Path(tempfile.mkdtemp(prefix="mdmsim-apns-"))
        try:
            context = provider_ssl_context(world.tls_ca, world.pushcert.ca_certificate_pem(), tls_now(), directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    channel = publisher = None
    if redis_url:
        channel = redis_channel(world_channel_id(world))
        publisher = RedisPublisher(redis_url, channel)  # the gateway adds it, and removes it when it stops
    feed = LiveFeed(world.fleet.devices, now=world.clock.now, world_url=lambda: world.url,
                    token=lambda: world.control.get_setting("api_token"))
    gateway = APNsGateway(world.apns, provider_ssl=context, watch_store=watch_store, redis_url=redis_url,
                          redis_channel=channel, feeds={FEED_PATH: feed}, publisher=publisher)  # fmt: skip
    device, provider = sockets.listeners()
    return GatewayThread(gateway, device=device, provider=provider).start()


def world_channel_id(world: World) -> str:
    """One id per world, kept in its control store: every process of the world uses the same channel."""
    found = world.control.get_setting("world_id")
    if not found:
        found = os.urandom(8).hex()
        world.control.set_setting("world_id", found)
    return str(found)


def advertise_gateway(world: World, sockets: GatewaySockets) -> None:
    """Tell the world (``/_sim/`` ``urls``) where devices stream and providers push."""
    stream, provider = sockets.urls()
    world.control.set_setting("apns_stream_url", stream)
    world.control.set_setting("apns_provider_url", provider or "")


@contextlib.contextmanager
def serve_threaded(world: World, host: str, port: int, *, tls: bool, apns_port: int | None = None,
                   redis_url: str | None = None, wake_devices: bool = False,
                   dep_port: int | None = None) -> Iterator[ServedWorld]:  # fmt: skip
    """The world on werkzeug's threaded server while the block runs; its URL is the world's meanwhile.

    With ``tls`` the certificate comes from the world's TLS CA. ``ssl`` loads keys only from files,
    so the pair goes to a private temporary directory that is removed as soon as the context holds it.
    The push gateway runs beside it: device streams on a free port, the HTTP/2 provider API on
    ``apns_port`` (0: a free one) when given. ``wake_devices``: the world's own devices wake on their
    push (:class:`~simulator.wake.PushWaker`), as in ``mdmsim serve``. ``dep_port`` (0: a free one)
    serves DEP alone at the root of a second port (``served.dep_url`` then), as ``mdmsim serve --dep-port``."""
    context = None
    if tls:
        world.control.set_setting("tls_anchor_pem", "")
        cert_pem, key_pem = issue_server_pair(world.tls_ca, host, tls_now())
        cert_file, key_file = write_pair(cert_pem, key_pem)
        try:
            context = server_context(cert_file, key_file)
        finally:
            shutil.rmtree(cert_file.parent, ignore_errors=True)
    server = make_server(host, port, world.wsgi, threaded=True, request_handler=_QuietHandler, ssl_context=context)
    served = ServedWorld(world, server, scheme="https" if tls else "http")
    servers = [server]
    sockets: GatewaySockets | None = None
    try:
        if dep_port is not None:
            dep_server = make_server(host, dep_port, world.party_wsgi("dep"), threaded=True,
                                     request_handler=_QuietHandler, ssl_context=context)  # fmt: skip
            servers.append(dep_server)
            served.dep_root_url = f"{'https' if tls else 'http'}://{host}:{dep_server.server_address[1]}"
        sockets = GatewaySockets(host, apns_port=apns_port)
        gateway = start_gateway(world, sockets, redis_url=redis_url)
    except BaseException:  # a port in use, say: nothing of this attempt stays open
        if sockets is not None:
            sockets.close()
        for each in servers:
            each.server_close()
        raise
    served.gateway = gateway.gateway
    served.apns_stream_url, served.apns_url = sockets.urls()
    waker = PushWaker(world) if wake_devices else None
    if waker is not None:
        world.apns.add_listener(waker)
    previous = world.control.get_setting("public_url")
    world.control.set_setting("public_url", served.url)
    advertise_gateway(world, sockets)
    if served.dep_root_url:
        world.control.set_setting("dep_root_url", served.dep_root_url)
    threads = [threading.Thread(target=s.serve_forever, name="mdmsim-serve", daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield served
    finally:
        for each, thread in zip(servers, threads, strict=True):
            each.shutdown()
            each.server_close()
            thread.join(timeout=5)
        gateway.stop()
        sockets.close()
        if waker is not None:
            world.apns.remove_listener(waker)
            waker.close()
        if not world.closed:
            world.control.set_setting("public_url", previous or IN_PROCESS_URL)
            world.control.set_setting("apns_stream_url", "")
            world.control.set_setting("apns_provider_url", "")
            world.control.set_setting("dep_root_url", "")


class WorldApplication(BaseApplication):
    """gunicorn driven from Python: ``load`` builds (or returns) the WSGI app of a world."""

    def __init__(self, load: Callable[[], Any], options: dict[str, Any]) -> None:
        self._load = load
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        assert self.cfg is not None
        for key, value in self._options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        return self._load()


def gunicorn_options(
    host: str, port: int, *, workers: int, threads: int, preload: bool, quiet: bool = False
) -> dict[str, Any]:
    return {
        "bind": f"{'[' + host + ']' if ':' in host else host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "preload_app": preload,
        "keepalive": 30,
        "timeout": 120,
        "graceful_timeout": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning" if quiet else "info",
        "proc_name": "mdmsim",
    }


def default_workers() -> int:
    return max(2, os.cpu_count() or 2)
