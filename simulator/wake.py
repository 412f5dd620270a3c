"""A served world's own devices wake on their push, as a real device wakes on its APNs connection.

Devices of the world (powered on through ``/_sim/devices/<serial>/power-on`` or the dashboard) live in
the device store, not in a client process that could hold a stream. When the push gateway accepts a
push for the token one of them holds, :class:`PushWaker` runs that device's MDM agent: it connects to
its MDM server (ours, or the user's own NanoMDM or MicroMDM named by the profile) and answers what is
queued. That is what makes "enqueue a command, push, watch the device answer" work with an unmodified
MDM server and no call to ``/_sim/``.

One wake at a time per device: a push that arrives while its device is awake makes it go round once
more, never twice at once. Off for in-process worlds and ``World.serve()`` unless asked for (tests
there drive agents themselves); on in ``mdmsim serve``.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["PushWaker"]

log = logging.getLogger("mdmsim.devices")


class PushWaker:
    """An APNs listener (``apns.add_listener(waker)``) that wakes the world's device holding the token."""

    def __init__(self, world: Any, *, threads: int = 4) -> None:
        self._world = world
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="device-wake")
        self._lock = threading.Lock()
        self._awake: set[str] = set()
        self._again: set[str] = set()
        self.wakes = 0

    def __call__(self, token: str, _seq: int = 0) -> None:
        serial = self._world.fleet.devices.serial_for_push_token(token)
        if serial is None:
            return  # a device of some client process (fleet, Locust): it holds its own stream
        with self._lock:
            if serial in self._awake:
                self._again.add(serial)
                return
            self._awake.add(serial)
        self._pool.submit(self._wake, serial)

    def _wake(self, serial: str) -> None:
        while True:
            try:
                self.wakes += 1
                self._world.devices.run_agent(serial)
            except Exception:  # a device that cannot reach its server stays asleep until the next push
                log.exception("device %s did not wake", serial)
            with self._lock:
                if serial not in self._again or self._world.closed:
                    self._awake.discard(serial)
                    self._again.discard(serial)
                    return
                self._again.discard(serial)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
