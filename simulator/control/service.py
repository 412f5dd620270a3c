"""Rules of the simulation control party: the world clock's moves, traffic, scripted faults, settings.

Everything lives in the world's store (``world.db``), so every worker process of a world agrees on
it; traffic and faults have their own modules (:mod:`.traffic`, :mod:`.faults`), which say where
memory may stand in for the store and why. This service is what ``/_sim/`` and the world call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from mdm.platform.clock import Clock, ClockError
from mdm.platform.storage import Store

from . import store as queries
from .faults import MAX_FAULT_COUNT, MAX_LATENCY_MS, FaultBook, FaultError
from .store import MIGRATIONS
from .traffic import TrafficLog

__all__ = ["ControlService", "FaultError", "MIGRATIONS", "MAX_ADVANCE_SECONDS", "MAX_LATENCY_MS", "MAX_FAULT_COUNT"]

# How far one request may move the clock: far enough for any certificate or token to expire, not so
# far that a datetime overflows (year 9999) after a few calls.
MAX_ADVANCE_SECONDS = 100 * 365 * 86400


class ControlService:
    """Clock moves, traffic, faults and world settings; the clock itself is :class:`mdm.platform.clock.Clock`."""

    def __init__(self, store: Store, clock: Clock, vocabularies: Mapping[str, Iterable[str]]) -> None:
        self.store = store
        self.clock = clock
        self.traffic_log = TrafficLog(store, clock)
        self.fault_book = FaultBook(store, vocabularies)

    @property
    def vocabularies(self) -> dict[str, frozenset[str]]:
        return self.fault_book.vocabularies

    # -- the clock ---------------------------------------------------------------------------------
    def set_clock(self, instant: datetime) -> datetime:
        """Jump to ``instant``; :class:`ClockError` if it is earlier than now (the clock never runs backwards)."""
        return self.clock.set(instant)

    def advance_clock(self, seconds: object) -> datetime:
        """Move the clock ahead by ``seconds`` (a JSON number): 0 up to :data:`MAX_ADVANCE_SECONDS`."""
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            raise ClockError("advance_seconds must be a number of seconds")
        if not 0 <= seconds <= MAX_ADVANCE_SECONDS:
            raise ClockError("advance_seconds must be between 0 and 100 years; the clock never runs backwards")
        return self.clock.advance(seconds=seconds)

    # -- traffic (see :mod:`.traffic`) ---------------------------------------------------------------
    def record(self, party: str, method: str, path: str, endpoint: str, status: int, ms: float) -> None:
        self.traffic_log.record(party, method, path, endpoint, status, ms)

    def flush_traffic(self) -> None:
        self.traffic_log.flush()

    def forget_unstored(self) -> None:
        self.traffic_log.forget_unstored()

    def traffic(self) -> dict[str, dict[str, dict[str, int]]]:
        return self.traffic_log.counts()

    def recent_traffic(self) -> list[dict[str, Any]]:
        return self.traffic_log.recent()

    def clear_traffic(self) -> None:
        self.traffic_log.clear()

    # -- faults (see :mod:`.faults`) ------------------------------------------------------------------
    def script_faults(self, script: Mapping[str, Any]) -> dict[str, Any]:
        return self.fault_book.script(script)

    def faults(self) -> dict[str, Any]:
        return self.fault_book.current()

    def clear_faults(self) -> None:
        self.fault_book.clear()

    def take_fault(self, party: str, endpoint: str) -> tuple[str | None, int]:
        return self.fault_book.take(party, endpoint)

    # -- settings shared by every process of the world ---------------------------------------------
    def get_setting(self, key: str, default: str | None = None) -> str | None:
        value = self.store.cached(f"setting:{key}", lambda: self._read_setting(key))
        return value if value is not None else default

    def _read_setting(self, key: str) -> str | None:
        with self.store.read() as db:
            return queries.get_setting(db, key)

    def set_setting(self, key: str, value: str) -> None:
        with self.store.transaction() as db:
            queries.set_setting(db, key, value)
            self.store.forget(f"setting:{key}")

    def delete_setting(self, key: str) -> None:
        with self.store.transaction() as db:
            queries.delete_setting(db, key)
            self.store.forget(f"setting:{key}")

    def next_in_counter(self, name: str) -> int:
        """Take the next number (0, 1, 2, …) of a named counter, atomically in the store.

        Load generators on several machines or worker processes claim distinct devices this way
        (``POST /_sim/counters/<name>``): no process-local state could hand out unique numbers.
        """
        key = f"counter:{name}"
        with self.store.transaction() as db:
            value = queries.next_in_counter(db, key)
            self.store.forget(f"setting:{key}")
        return value
