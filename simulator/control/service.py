"""Rules of the simulation control party: traffic counters and scripted faults.

Counters and fault queues live in the world's store (not in memory) so that every worker process
of one world counts into, and takes from, the same place: a fault scripted "once" fires once even
when four processes serve the world. One exception keeps the answers exact: in an in-memory world
(one process, one store) traffic counts gather in a dict and reach the store whenever anyone reads
them. A store write per request took the store's lock on every response, ~4 % of the server's CPU
in a fleet run, mostly handing the lock and the GIL between threads.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.isotime import isoformat

MIGRATIONS = [
    """
    CREATE TABLE traffic (
        party TEXT NOT NULL, endpoint TEXT NOT NULL, status INTEGER NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (party, endpoint, status)
    ) WITHOUT ROWID;
    CREATE TABLE fault_queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        party TEXT NOT NULL, endpoint TEXT NOT NULL, response TEXT NOT NULL, remaining INTEGER NOT NULL
    );
    CREATE INDEX fault_queue_by_endpoint ON fault_queue (party, endpoint, id);
    CREATE TABLE latency (
        party TEXT NOT NULL, endpoint TEXT NOT NULL, ms INTEGER NOT NULL, PRIMARY KEY (party, endpoint)
    ) WITHOUT ROWID;
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    """
]

_COUNT_SQL = (
    "INSERT INTO traffic (party, endpoint, status, count) VALUES (?, ?, ?, {count}) "
    "ON CONFLICT (party, endpoint, status) DO UPDATE SET count = count + excluded.count"
)
MAX_LATENCY_MS = 60_000
MAX_FAULT_COUNT = 1_000_000


class FaultError(ValueError):
    """A fault script that names an unknown endpoint shape or response."""


@dataclass(frozen=True, slots=True)
class RecentRequest:
    at: str
    party: str
    method: str
    path: str
    endpoint: str
    status: int
    ms: float


class ControlService:
    """Traffic, faults and world settings; the clock itself is :class:`mdm.platform.clock.Clock`."""

    def __init__(self, store: Store, clock: Clock, vocabularies: Mapping[str, Iterable[str]]) -> None:
        self.store = store
        self.clock = clock
        # party -> response names its fault hook understands (depsim's names for the DEP service)
        self.vocabularies = {party: frozenset(names) for party, names in vocabularies.items()}
        self.recent: deque[RecentRequest] = deque(maxlen=200)
        self._faults_armed: bool | None = None
        self._pending: Counter[tuple[str, str, int]] = Counter()  # in-memory stores: counts not yet stored
        self._pending_lock = threading.Lock()

    # -- traffic -----------------------------------------------------------------------------------
    def record(self, party: str, method: str, path: str, endpoint: str, status: int, ms: float) -> None:
        if self.store.in_memory:
            with self._pending_lock:
                self._pending[party, endpoint, status] += 1
        else:
            self.store.execute(_COUNT_SQL.format(count="1"), (party, endpoint, status))
        self.recent.append(
            RecentRequest(isoformat(self.clock.now()), party, method, path, endpoint, status, round(ms, 2))
        )

    def flush_traffic(self) -> None:
        """Store the counts gathered in memory (see the module's docstring)."""
        with self._pending_lock:
            pending, self._pending = self._pending, Counter()
        if pending:
            with self.store.transaction() as db:
                db.executemany(_COUNT_SQL.format(count="?"),
                               [(party, endpoint, status, n) for (party, endpoint, status), n in pending.items()])

    def forget_unstored(self) -> None:
        """After the store was restored from a snapshot: what happened since is gone, counts included."""
        with self._pending_lock:
            self._pending.clear()
        self.recent.clear()

    def traffic(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{party: {endpoint: {"200": n, ...}}}``: how often each endpoint answered each status."""
        self.flush_traffic()
        out: dict[str, dict[str, dict[str, int]]] = {}
        with self.store.read() as db:
            for party, endpoint, status, count in db.execute(
                "SELECT party, endpoint, status, count FROM traffic ORDER BY party, endpoint, status"
            ):
                out.setdefault(party, {}).setdefault(endpoint, {})[str(status)] = count
        return out

    def clear_traffic(self) -> None:
        with self._pending_lock:
            self._pending.clear()
            with self.store.transaction() as db:
                db.execute("DELETE FROM traffic")
        self.recent.clear()

    # -- faults ------------------------------------------------------------------------------------
    def script_faults(self, script: Mapping[str, Any]) -> dict[str, Any]:
        """Add depsim-style response queues and latencies; validated whole before anything is stored.

        ``{"party": "dep", "<endpoint>_responses": [{"count": 1, "response": "..."}],
        "latency_ms": {"<endpoint>": 2000}}``
        """
        if not isinstance(script, Mapping):
            raise FaultError("expected a JSON object such as {\"get_session_responses\": [...]}")
        party = script.get("party", "dep")
        if party not in self.vocabularies:
            raise FaultError(f"unknown party {party!r}; choose one of {sorted(self.vocabularies)}")
        names = self.vocabularies[party]
        queue: list[tuple[str, str, int]] = []
        latency: list[tuple[str, int]] = []
        for key, value in script.items():
            if key == "party":
                continue
            if key == "latency_ms":
                if not isinstance(value, Mapping):
                    raise FaultError("latency_ms must map endpoint names to milliseconds")
                for endpoint, ms in value.items():
                    if not isinstance(ms, int) or isinstance(ms, bool) or not 0 <= ms <= MAX_LATENCY_MS:
                        raise FaultError(f"latency for {endpoint} must be an integer 0..{MAX_LATENCY_MS} ms")
                    latency.append((str(endpoint), ms))
                continue
            if not key.endswith("_responses"):
                raise FaultError(f"unknown key {key!r}: expected <endpoint>_responses or latency_ms")
            endpoint = key[: -len("_responses")]
            if not isinstance(value, list):
                raise FaultError(f"{key} must be a list of {{\"count\": n, \"response\": name}}")
            for item in value:
                if not isinstance(item, Mapping) or not isinstance(item.get("response"), str):
                    raise FaultError(f"each entry of {key} needs a \"response\" name")
                count = item.get("count", 1)
                if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_FAULT_COUNT:
                    raise FaultError(f"count in {key} must be an integer 1..{MAX_FAULT_COUNT}")
                if item["response"] not in names:
                    raise FaultError(
                        f"unknown response {item['response']!r} in {key}; known: {', '.join(sorted(names))}"
                    )
                queue.append((endpoint, item["response"], count))
        with self.store.transaction() as db:
            db.executemany(
                "INSERT INTO fault_queue (party, endpoint, response, remaining) VALUES (?, ?, ?, ?)",
                [(party, endpoint, response, count) for endpoint, response, count in queue],
            )
            db.executemany(
                "INSERT INTO latency (party, endpoint, ms) VALUES (?, ?, ?) "
                "ON CONFLICT (party, endpoint) DO UPDATE SET ms = excluded.ms",
                [(party, endpoint, ms) for endpoint, ms in latency],
            )
        return self.faults()

    def faults(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with self.store.read() as db:
            for party, endpoint, response, remaining in db.execute(
                "SELECT party, endpoint, response, remaining FROM fault_queue WHERE remaining > 0 ORDER BY id"
            ):
                out.setdefault(party, {}).setdefault(f"{endpoint}_responses", []).append(
                    {"count": remaining, "response": response}
                )
            for party, endpoint, ms in db.execute("SELECT party, endpoint, ms FROM latency"):
                out.setdefault(party, {}).setdefault("latency_ms", {})[endpoint] = ms
        return out

    def clear_faults(self) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM fault_queue")
            db.execute("DELETE FROM latency")

    def take_fault(self, party: str, endpoint: str) -> tuple[str | None, int]:
        """The next scripted response for this endpoint (consumed atomically) and its added latency."""
        if party not in self.vocabularies:
            # :meth:`script_faults` refuses any other party, so nothing can be scripted for it in any
            # process of this world: no read needed (the MDM server's and APNs's hot paths).
            return None, 0
        with self.store.read() as db:  # the common case, nothing scripted, costs one read and no lock
            scripted = db.execute(
                "SELECT EXISTS (SELECT 1 FROM fault_queue WHERE party = ? AND endpoint = ?) "
                "OR EXISTS (SELECT 1 FROM latency WHERE party = ? AND endpoint = ?)",
                (party, endpoint, party, endpoint),
            ).fetchone()[0]
        if not scripted:
            return None, 0
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT id, response, remaining FROM fault_queue "
                "WHERE party = ? AND endpoint = ? AND remaining > 0 ORDER BY id LIMIT 1",
                (party, endpoint),
            ).fetchone()
            if row is not None:
                if row["remaining"] <= 1:
                    db.execute("DELETE FROM fault_queue WHERE id = ?", (row["id"],))
                else:
                    db.execute("UPDATE fault_queue SET remaining = remaining - 1 WHERE id = ?", (row["id"],))
            lat = db.execute(
                "SELECT ms FROM latency WHERE party = ? AND endpoint = ?", (party, endpoint)
            ).fetchone()
        return (row["response"] if row is not None else None), (lat[0] if lat is not None else 0)

    # -- settings shared by every process of the world ---------------------------------------------
    def get_setting(self, key: str, default: str | None = None) -> str | None:
        value = self.store.cached(f"setting:{key}", lambda: self._read_setting(key))
        return value if value is not None else default

    def _read_setting(self, key: str) -> str | None:
        with self.store.read() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row is not None else None

    def set_setting(self, key: str, value: str) -> None:
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
            self.store.forget(f"setting:{key}")

    def next_in_counter(self, name: str) -> int:
        """Take the next number (0, 1, 2, …) of a named counter, atomically in the store.

        Load generators on several machines or worker processes claim distinct devices this way
        (``POST /_sim/counters/<name>``): no process-local state could hand out unique numbers.
        """
        with self.store.transaction() as db:
            row = db.execute(
                "INSERT INTO settings (key, value) VALUES (?, '0') ON CONFLICT (key) "
                "DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value",
                (f"counter:{name}",),
            ).fetchone()
            self.store.forget(f"setting:counter:{name}")
        return int(row[0])


def monotonic_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
