"""Serving a world on real sockets: werkzeug's threaded server in tests, gunicorn in production.

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
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from gunicorn.app.base import BaseApplication
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .in_process import IN_PROCESS_URL
from .tls import issue_server_pair, server_context, tls_now, write_pair

__all__ = ["ServedWorld", "serve_threaded", "WorldApplication", "gunicorn_options", "default_workers", "World"]


class World(Protocol):
    """What serving needs of a world (:class:`simulator.world.World` is the one), named here so that
    this module, which ``world.py`` imports, does not import ``world.py`` back."""

    control: Any
    closed: bool
    wsgi: Any

    @property
    def tls_ca(self) -> Any: ...


class ServedWorld:
    """A world on a real port: ``.url``, ``.world``, and every attribute of the world."""

    def __init__(self, world: World, server: BaseWSGIServer, scheme: str = "http") -> None:
        self.world = world
        self.server = server
        host, port = server.server_address[:2]
        self.url = f"{scheme}://{host}:{port}"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.world, name)


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without a log line per request (``/_sim/traffic`` counts them instead)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@contextlib.contextmanager
def serve_threaded(world: World, host: str, port: int, *, tls: bool) -> Iterator[ServedWorld]:
    """The world on werkzeug's threaded server while the block runs; its URL is the world's meanwhile.

    With ``tls`` the certificate comes from the world's TLS CA. ``ssl`` loads keys only from files,
    so the pair goes to a private temporary directory that is removed as soon as the context holds it."""
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
    previous = world.control.get_setting("public_url")
    world.control.set_setting("public_url", served.url)
    thread = threading.Thread(target=server.serve_forever, name="mdmsim-serve", daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        if not world.closed:
            world.control.set_setting("public_url", previous or IN_PROCESS_URL)


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
