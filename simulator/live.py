"""The world's live device feed: server-sent events of every device change, for pages that draw devices.

The dashboard's Simulated devices page subscribes to ``GET /sim-events`` on the push gateway's device
listener (:class:`~simulator.apple.apns.streams.Feed`): the same async server that holds the devices'
own push streams, so a page costs one small object and no WSGI thread. Every device is written by one
method, :meth:`simulator.device.store.DeviceStore.save`, which numbers each save (``change_seq``); one
poll per process (:data:`POLL_S`, only while someone reads) asks the store what changed since the last
number and sends each changed device as :func:`simulator.device.screens.live_view` draws it. The store is
the source, not an in-process announcement, so a device saved by another gunicorn worker (or by
``mdmsim device`` on the same data directory) shows up all the same.

Events: ``snapshot`` (every device, when a reader connects or after a reset), ``devices`` (those that
changed), ``clock`` (the world's time, every second: a page shows where the simulation is), ``reset``
(the world went back to its seed). Each ``data:`` line is JSON.

Who may read: anyone while the world has no admin token (loopback), otherwise the holder of its
ticket (:func:`simulator.admin_token.stream_ticket`, part of the URL ``/_sim/`` advertises). Browsers
on another origin are answered ``Access-Control-Allow-Origin`` for the dashboard's origin only: the
world's own address, or loopback under another name on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mdm.protocol.isotime import isoformat

from .admin_token import stream_ticket, ticket_matches
from .apple.apns.streams import DeviceStreamProtocol
from .device.screens import live_view
from .device.store import DeviceStore

__all__ = ["LiveFeed", "FEED_PATH", "POLL_S", "MAX_READERS", "MAX_SNAPSHOT", "events_url", "allowed_origin"]

FEED_PATH = "/sim-events"
#: How often a process with readers asks its store what changed: a tenth of a second is below what an
#: eye notices, and one indexed query per process.
POLL_S = 0.1
#: Readers per process: a live page per admin, not a public broadcast.
MAX_READERS = 64
#: Devices in one snapshot (and per poll): the page shows at most this many.
MAX_SNAPSHOT = 2000
_CLOCK_EVERY = 10  # polls
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
log = logging.getLogger("mdmsim.live")


def events_url(stream_url: str | None, token: str | None) -> str | None:
    """The feed's URL as ``/_sim/`` advertises it: on the device listener, with the ticket when the
    world has a token."""
    if not stream_url:
        return None
    url = stream_url.rstrip("/") + FEED_PATH
    return f"{url}?ticket={stream_ticket(token)}" if token else url


def allowed_origin(origin: str, world_url: str) -> bool:
    """Whether a page at ``origin`` is the world's dashboard: the world's own origin, or loopback under
    another name (``localhost`` for ``127.0.0.1``) with the same scheme and port; any host on that
    scheme and port when the world is bound to every address."""
    try:
        page, world = urlsplit(origin), urlsplit(world_url)
        same_port = (page.port or _default_port(page.scheme)) == (world.port or _default_port(world.scheme))
    except ValueError:
        return False
    if page.scheme != world.scheme or not same_port or page.path not in ("", "/"):
        return False
    host, expected = (page.hostname or "").lower(), (world.hostname or "").lower()
    if expected in ("0.0.0.0", "::"):
        # Bound to every address: the page is reached by whatever name the machine has; such a bind
        # always has an API token, so the feed's ticket is what admits a reader.
        return True
    return host == expected or (host in _LOOPBACK and expected in _LOOPBACK)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class LiveFeed:
    """:class:`~simulator.apple.apns.streams.Feed` of device changes, for one process's gateway.

    ``now`` is the world clock, ``world_url`` and ``token`` are read on every admission (the world is
    served, and may get a token, after the gateway starts)."""

    def __init__(self, devices: DeviceStore, *, now: Callable[[], datetime], world_url: Callable[[], str],
                 token: Callable[[], str | None], poll_s: float = POLL_S) -> None:  # fmt: skip
        self.devices = devices
        self.now = now
        self.world_url = world_url
        self.token = token
        self.poll_s = poll_s
        #: each reader, and the last change number it has been sent (None: its snapshot is on the way)
        self.readers: dict[DeviceStreamProtocol, int | None] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.executor: Executor | None = None

    # -- the Feed protocol --------------------------------------------------------------------------
    def admit(self, query: str, origin: str | None) -> tuple[int, str, list[tuple[str, str]]]:
        ticket = (parse_qs(query).get("ticket") or [""])[0]
        if not ticket_matches(ticket, self.token() or None):
            return 403, "Forbidden", []
        headers: list[tuple[str, str]] = [("vary", "origin")]
        if origin is not None:
            if not allowed_origin(origin, self.world_url()):
                return 403, "Forbidden", headers
            headers.append(("access-control-allow-origin", origin))
        if len(self.readers) >= MAX_READERS:
            return 429, "TooManyRequests", [*headers, ("retry-after", "5")]
        return 200, "", headers

    def subscribe(self, stream: DeviceStreamProtocol) -> None:
        self.readers[stream] = None
        stream.send(b"retry: 2000\n: connected\n\n")
        self._send_snapshot(stream)

    def unsubscribe(self, stream: DeviceStreamProtocol) -> None:
        self.readers.pop(stream, None)

    async def run(self, loop: asyncio.AbstractEventLoop, executor: Any) -> None:
        """Poll the store while someone reads; send what changed (runs until cancelled)."""
        self.loop, self.executor = loop, executor
        turn = 0
        while True:
            await asyncio.sleep(self.poll_s)
            turn += 1
            ready = [since for since in self.readers.values() if since is not None]
            if not ready:
                continue
            try:
                last, changes = await loop.run_in_executor(executor, self._changes, min(ready))
            except Exception as exc:  # a busy store: look again next time
                log.debug("live feed: %s", exc)
                continue
            if last < max(ready):  # the numbers went back: the world was reset to its seed
                for stream in list(self.readers):
                    if stream.send(_event("reset", {})):
                        self._send_snapshot(stream)
                continue
            self._broadcast(changes)
            if turn % _CLOCK_EVERY == 0:
                clock = _event("clock", {"now": isoformat(self.now())})
                for stream in list(self.readers):
                    stream.send(clock)

    # -- work ---------------------------------------------------------------------------------------
    def _changes(self, since: int) -> tuple[int, list[tuple[int, dict[str, Any]]]]:
        """(the last change number, the views of the devices changed after ``since``), on the executor."""
        last = self.devices.last_change()
        if last <= since:
            return last, []
        return last, [(seq, live_view(state)) for seq, state in self.devices.changed_since(since, MAX_SNAPSHOT)]

    def _broadcast(self, changes: list[tuple[int, dict[str, Any]]]) -> None:
        if not changes:
            return
        newest = changes[-1][0]
        for stream, since in list(self.readers.items()):
            if since is None:
                continue
            views = [view for seq, view in changes if seq > since]
            if views and not stream.send(_event("devices", {"devices": views, "now": isoformat(self.now())})):
                continue
            self.readers[stream] = max(since, newest)

    def _send_snapshot(self, stream: DeviceStreamProtocol) -> None:
        """Every device, then changes from the snapshot's number on (the executor does the store work)."""
        self.readers[stream] = None
        loop, executor = self.loop, self.executor
        if loop is None:  # subscribed before run() started: the first poll cannot come before it
            loop = asyncio.get_running_loop()
        future = loop.run_in_executor(executor, self._changes, 0)

        def done(result: asyncio.Future[tuple[int, list[tuple[int, dict[str, Any]]]]]) -> None:
            if stream not in self.readers:
                return
            try:
                last, changes = result.result()
            except Exception as exc:
                log.debug("live feed snapshot: %s", exc)
                with contextlib.suppress(Exception):
                    stream.close()
                return
            body = {"devices": [view for _seq, view in changes], "now": isoformat(self.now()), "seq": last}
            if stream.send(_event("snapshot", body)):
                self.readers[stream] = last

        future.add_done_callback(done)
