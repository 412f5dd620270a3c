"""The world clock: one notion of "now" for every party, persisted so every process agrees.

Seven-day cursor windows and ten-minute sync windows are tested in milliseconds by moving this clock
instead of waiting. World time is wall time plus a stored offset (so a demo's clock keeps running),
or a stored instant when the clock is frozen (so a test can assert exact timestamps). It never runs
backwards: :meth:`Clock.set` refuses an earlier instant.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from mdm.protocol.isotime import isoformat

from .storage import Store

__all__ = ["Clock", "ClockError"]

MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS clock (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        offset REAL NOT NULL,
        frozen_at REAL
    );
    """
]


_MEMO = "clock"


class ClockError(ValueError):
    """A request to move the clock that cannot be honoured (backwards, or not a time)."""


class Clock:
    """World time. ``now()`` is cheap enough to call on every request."""

    def __init__(
        self,
        store: Store,
        *,
        start: datetime | None = None,
        frozen: bool = False,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._wall = wall
        with store.transaction() as db:
            for statement in MIGRATIONS:
                db.execute(statement)
            row = db.execute("SELECT offset, frozen_at FROM clock WHERE id = 1").fetchone()
            if row is None:
                real = wall()
                offset = (start.timestamp() - real) if start is not None else 0.0
                frozen_at = (real + offset) if frozen else None
                db.execute("INSERT INTO clock (id, offset, frozen_at) VALUES (1, ?, ?)", (offset, frozen_at))
            store.forget(_MEMO)

    def _row(self) -> tuple[float, float | None]:
        """The stored (offset, frozen_at); memoised by an in-memory store, re-read from a file."""
        return self._store.cached(_MEMO, self._read_row)

    def _read_row(self) -> tuple[float, float | None]:
        with self._store.read() as db:
            offset, frozen_at = db.execute("SELECT offset, frozen_at FROM clock WHERE id = 1").fetchone()
        return offset, frozen_at

    def wall(self) -> float:
        """The real time the world's time runs from (the injected wall clock): world time is this plus
        the stored offset, unless frozen. For stores that compute world time in SQL."""
        return self._wall()

    def timestamp(self) -> float:
        """Seconds since the epoch, in world time."""
        offset, frozen_at = self._row()
        return frozen_at if frozen_at is not None else self._wall() + offset

    def now(self) -> datetime:
        """The world's current time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp(), UTC)

    def advance(
        self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0
    ) -> datetime:
        """Move the clock forward and return the new time."""
        delta = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds).total_seconds()
        if delta < 0:
            raise ClockError("the clock never runs backwards: advance by a positive amount")
        with self._store.transaction() as db:
            db.execute(
                "UPDATE clock SET offset = offset + ?, frozen_at = frozen_at + ? WHERE id = 1", (delta, delta)
            )
            self._store.forget(_MEMO)
        return self.now()

    def set(self, instant: datetime) -> datetime:
        """Jump to ``instant`` (which must not be earlier than now) and return it."""
        if instant.tzinfo is None:
            raise ClockError("the time needs a UTC offset, for example 2026-01-01T00:00:00Z")
        target = instant.timestamp()
        with self._store.transaction() as db:
            offset, frozen_at = db.execute("SELECT offset, frozen_at FROM clock WHERE id = 1").fetchone()
            current = frozen_at if frozen_at is not None else self._wall() + offset
            if target < current - 1e-6:
                raise ClockError(
                    f"the clock never runs backwards: {isoformat(instant)} is before now "
                    f"({isoformat(datetime.fromtimestamp(current, UTC))})"
                )
            if frozen_at is not None:
                db.execute("UPDATE clock SET frozen_at = ?, offset = offset + ? WHERE id = 1",
                           (target, target - current))
            else:
                db.execute("UPDATE clock SET offset = ? WHERE id = 1", (target - self._wall(),))
            self._store.forget(_MEMO)
        return self.now()

    @property
    def frozen(self) -> bool:
        return self._row()[1] is not None
