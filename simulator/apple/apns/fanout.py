"""Waking device streams when a push arrives: in memory within a process, through Redis or the store across them.

The store stays the truth for what is pending (:mod:`.store`); the fan-out only says "token T may have
something now". A stream that is woken takes from the store, so a lost or repeated wake-up costs
nothing but a look: a wake for a token nobody streams here is ignored, and a stream that connects
takes what was stored while it was away.

Three sources of wake-ups, one :class:`Fanout` per process:

* **local**: the process's own :class:`~.service.APNsService` announces each push it accepted
  (``add_listener``), from whatever thread accepted it;
* **Redis** (``mdmsim serve --redis URL``): every process that accepts a push publishes its token on
  the world's channel, every process holding streams subscribes: processes on several hosts share
  one world's pushes;
* **the store** (several worker processes on one data directory, no Redis): one watcher per process
  asks the store every :data:`WATCH_INTERVAL_S` which tokens got a push since the last look. One
  query per process, not one loop per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from mdm.platform.storage import Store

from . import store as apns_store

__all__ = ["Fanout", "RedisPublisher", "redis_channel", "WATCH_INTERVAL_S"]

#: How often a process holding streams looks for pushes other processes stored (no Redis).
WATCH_INTERVAL_S = 0.05
log = logging.getLogger("mdmsim.apns")

Wake = Callable[[], None]


def redis_channel(world_id: str) -> str:
    """The pub/sub channel of one world's pushes (several worlds may share a Redis server)."""
    return f"mdmsim:apns:{world_id}"


class Fanout:
    """Which device streams this process holds, by token, and waking them (on the loop's thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._streams: dict[str, set[Wake]] = {}
        self.wakes = 0

    def __len__(self) -> int:
        return sum(len(s) for s in self._streams.values())

    def subscribe(self, token: str, wake: Wake) -> None:
        self._streams.setdefault(token, set()).add(wake)

    def unsubscribe(self, token: str, wake: Wake) -> None:
        streams = self._streams.get(token)
        if streams is not None:
            streams.discard(wake)
            if not streams:
                del self._streams[token]

    def holds(self, token: str) -> bool:
        return token in self._streams

    def notify(self, token: str) -> None:
        """Wake every stream of ``token`` held here (loop thread only)."""
        for wake in tuple(self._streams.get(token, ())):
            self.wakes += 1
            wake()

    def notify_threadsafe(self, token: str, _seq: int = 0) -> None:
        """:meth:`notify` from any thread: an :class:`~.service.APNsService` listener."""
        if token in self._streams:  # a racy read, harmless: the store keeps what a missed wake missed
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self.loop.call_soon_threadsafe(self.notify, token)

    # -- across processes ----------------------------------------------------------------------------
    async def watch_store(self, store: Store, executor: Executor, interval_s: float = WATCH_INTERVAL_S) -> None:
        """Wake streams for pushes any process stored, by their sequence numbers (runs until cancelled)."""

        def last() -> int:
            with store.read() as db:
                return apns_store.last_sequence(db)

        def since(seq: int) -> list[tuple[str, int]]:
            with store.read() as db:
                return apns_store.pending_since(db, seq)

        seen = await self.loop.run_in_executor(executor, last)
        while True:
            await asyncio.sleep(interval_s)
            if not self._streams:
                seen = await self.loop.run_in_executor(executor, last)
                continue
            try:
                rows = await self.loop.run_in_executor(executor, since, seen)
            except Exception as exc:  # a busy or briefly locked store: look again next time
                log.debug("store watch: %s", exc)
                continue
            for token, seq in rows:
                seen = max(seen, seq)
                self.notify(token)

    async def follow_redis(self, url: str, channel: str) -> None:
        """Wake streams for every token published on ``channel``; reconnects with back-off."""
        import redis.asyncio as aioredis

        delay = 0.1
        while True:
            client: Any = aioredis.Redis.from_url(url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(channel)
                    delay = 0.1
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message.get("data")
                            token = data.decode() if isinstance(data, bytes) else str(data)
                            self.notify(token)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarted or unreachable: the store still holds every push
                log.warning("redis fan-out (%s): %s; retrying in %.1f s", url, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()


class RedisPublisher:
    """An :class:`~.service.APNsService` listener that publishes each accepted push's token.

    Publishing happens after the push committed, so a subscriber that wakes finds it in the store. It
    happens on a thread of its own, from a bounded queue: a slow or unreachable Redis must not hold
    the push path (each publish could wait for its socket timeout). A publish that fails, or one that
    finds the queue full, is logged and dropped: the device gets the push when its stream next looks
    (reconnect), as with a wake-up lost in any fan-out.
    """

    QUEUE = 10_000

    def __init__(self, url: str, channel: str) -> None:
        import redis

        self.channel = channel
        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._queue: queue.Queue[str | None] = queue.Queue(self.QUEUE)
        self._thread = threading.Thread(target=self._run, name="apns-redis-publish", daemon=True)
        self._thread.start()
        self.dropped = 0

    def __call__(self, token: str, _seq: int = 0) -> None:
        try:
            self._queue.put_nowait(token)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            token = self._queue.get()
            if token is None:
                return
            tokens = [token]
            while len(tokens) < 500:  # what queued meanwhile goes in the same round trip
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                tokens.append(more)
            try:
                with self._client.pipeline(transaction=False) as pipe:
                    for each in tokens:
                        pipe.publish(self.channel, each)
                    pipe.execute()
            except Exception as exc:
                log.warning("redis publish failed (%d pushes wake on reconnect): %s", len(tokens), exc)

    def ping(self) -> None:
        """Raise when Redis cannot be reached (``mdmsim serve`` checks before it starts)."""
        self._client.ping()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._client.close()
