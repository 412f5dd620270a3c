"""Traffic of a world: how often each endpoint answered each status, and the last responses.

Both live in the world's store, so that every worker process of a data-dir world counts into, and
reads from, the same place: ``GET /_sim/traffic/recent`` shows the last responses of *all* workers,
not of whichever worker answered. One exception keeps the answers exact and the server fast: an
in-memory world (one process, one store) gathers counts in a dict that reaches the store whenever
anyone reads them, and keeps its recent responses in a bounded deque. A store write per response
took the store's lock on every response, ~4 % of the server's CPU in a fleet run, mostly handing
the lock and the GIL between threads; a data-dir world pays one short transaction per response.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.isotime import isoformat

from . import store as queries

__all__ = ["TrafficLog", "RECENT_FIELDS"]

RECENT_FIELDS = ("at", "party", "method", "path", "endpoint", "status", "ms")


class TrafficLog:
    """Counters per (party, endpoint, status) and the last :data:`~.store.RECENT_KEPT` responses."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._in_memory = store.in_memory
        self._pending: Counter[tuple[str, str, int]] = Counter()  # in-memory stores: counts not yet stored
        self._recent: deque[tuple[str, str, str, str, str, int, float]] = deque(maxlen=queries.RECENT_KEPT)
        self._lock = threading.Lock()

    def record(self, party: str, method: str, path: str, endpoint: str, status: int, ms: float) -> None:
        """One response (called by the world's middleware for every response but the control plane's)."""
        if self._in_memory:
            entry = (isoformat(self.clock.now()), party, method, path, endpoint, status, round(ms, 2))
            with self._lock:
                self._pending[party, endpoint, status] += 1
            self._recent.append(entry)
        else:
            wall = self.clock.wall()
            with self.store.transaction() as db:
                queries.count_response(db, party, endpoint, status)
                queries.record_recent_now(db, wall, (party, method, path, endpoint, status, round(ms, 2)))

    def flush(self) -> None:
        """Store the counts gathered in memory (see the module's docstring)."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if pending:
            with self.store.transaction() as db:
                queries.add_counts(db, [(party, endpoint, status, n) for (party, endpoint, status), n in pending.items()])

    def forget_unstored(self) -> None:
        """After the store was restored from a snapshot: what happened since is gone, counts included."""
        with self._lock:
            self._pending.clear()
        self._recent.clear()

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{party: {endpoint: {"200": n, ...}}}``: how often each endpoint answered each status."""
        self.flush()
        out: dict[str, dict[str, dict[str, int]]] = {}
        with self.store.read() as db:
            for party, endpoint, status, count in queries.counts(db):
                out.setdefault(party, {}).setdefault(endpoint, {})[str(status)] = count
        return out

    def recent(self) -> list[dict[str, Any]]:
        """The last responses, oldest first: ``{"at", "party", "method", "path", "endpoint", "status", "ms"}``."""
        if self._in_memory:
            rows: list[Any] = list(self._recent)
        else:
            with self.store.read() as db:
                rows = queries.recent(db)
        return [dict(zip(RECENT_FIELDS, row, strict=True)) for row in rows]

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
            with self.store.transaction() as db:
                queries.clear_traffic(db)
        self._recent.clear()
