"""Production serving of a world with gunicorn (gthread workers).

An in-memory world lives in one process, so it is built before gunicorn forks and served by one
worker with many threads. A world kept in a data directory is opened again by each worker after the
fork (SQLite connections must not cross a fork) and several workers share the files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication


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
