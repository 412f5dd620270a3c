"""Persistence of the world's own state (``world.db``): schema and the SQL run on it, nothing else.

The simulation control party keeps traffic counters, recent traffic, fault queues, latencies and the
world's settings here; the world as the devices' manufacturer keeps their hardware identities; the
depsim schedules are a setting. Every function takes an open connection from
:class:`~mdm.platform.storage.Store`, so the callers (the control service, the depsim schedules, the
manufacturer) decide the transaction boundaries and the rules; this module only knows tables.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from mdm.platform.storage import Store

__all__ = ["MIGRATIONS", "RECENT_KEPT", "open_world_store"]

# Migration numbers are the stored ``user_version`` of existing data directories: append, never reorder.
MIGRATIONS = [
    # 1: simulation control
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
    """,
    # 2: the world as the devices' manufacturer: the hardware identity of every serial it made
    "CREATE TABLE identities (serial TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;",
    # 3: the last responses of every worker process of the world, oldest first (bounded: RECENT_KEPT)
    """
    CREATE TABLE recent_traffic (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL, party TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
        endpoint TEXT NOT NULL, status INTEGER NOT NULL, ms REAL NOT NULL
    );
    """,
]

RECENT_KEPT = 200

_COUNT_SQL = (
    "INSERT INTO traffic (party, endpoint, status, count) VALUES (?, ?, ?, {count}) "
    "ON CONFLICT (party, endpoint, status) DO UPDATE SET count = count + excluded.count"
)
_COUNT_ONE = _COUNT_SQL.format(count="1")
_COUNT_MANY = _COUNT_SQL.format(count="?")
_RECENT_INSERT = "INSERT INTO recent_traffic (at, party, method, path, endpoint, status, ms) VALUES (?, ?, ?, ?, ?, ?, ?)"


def open_world_store(path: str | Path | None = None) -> Store:
    return Store(path, MIGRATIONS)


# -- traffic --------------------------------------------------------------------------------------------
def count_response(db: sqlite3.Connection, party: str, endpoint: str, status: int) -> None:
    db.execute(_COUNT_ONE, (party, endpoint, status))


def add_counts(db: sqlite3.Connection, counts: Iterable[tuple[str, str, int, int]]) -> None:
    """Add ``(party, endpoint, status, n)`` counts gathered elsewhere (an in-memory world's dict)."""
    db.executemany(_COUNT_MANY, counts)


def record_recent(db: sqlite3.Connection, entry: tuple[str, str, str, str, str, int, float], kept: int = RECENT_KEPT) -> None:
    """Append ``(at, party, method, path, endpoint, status, ms)``; every 64th row trims the table.

    Ids grow by one per row (SQLite gives the largest id plus one, and only the oldest rows are ever
    deleted), so what fell out of the window is found through the primary key. Trimming on every
    64th row instead of every row saves a statement per response (~5 of ~25 µs in a data-dir
    world) and bounds the table at ``kept + 63`` rows; :func:`recent` reads the newest ``kept``."""
    row_id = db.execute(_RECENT_INSERT, entry).lastrowid
    assert row_id is not None
    if row_id % 64 == 0:
        db.execute("DELETE FROM recent_traffic WHERE id <= ?", (row_id - kept,))


_RECENT_INSERT_AT_WORLD_TIME = (
    "INSERT INTO recent_traffic (at, party, method, path, endpoint, status, ms) "
    "SELECT strftime('%Y-%m-%dT%H:%M:%SZ', coalesce(frozen_at, ? + offset), 'unixepoch'), ?, ?, ?, ?, ?, ? "
    "FROM clock WHERE id = 1"
)


def record_recent_now(
    db: sqlite3.Connection, wall: float, entry: tuple[str, str, str, str, int, float], kept: int = RECENT_KEPT
) -> None:
    """:func:`record_recent` with the world time computed by SQLite from the clock row (same store) and
    the wall time ``wall``: a data-dir world then needs no separate clock read per response (~8 of
    ~32 µs, and a statement fewer while other workers wait for the write lock)."""
    row_id = db.execute(_RECENT_INSERT_AT_WORLD_TIME, (wall, *entry)).lastrowid
    assert row_id is not None
    if row_id % 64 == 0:
        db.execute("DELETE FROM recent_traffic WHERE id <= ?", (row_id - kept,))


def recent(db: sqlite3.Connection, kept: int = RECENT_KEPT) -> list[sqlite3.Row]:
    """The newest ``kept`` entries, oldest first."""
    rows = db.execute(
        "SELECT at, party, method, path, endpoint, status, ms FROM recent_traffic ORDER BY id DESC LIMIT ?", (kept,)
    ).fetchall()
    rows.reverse()
    return rows


def counts(db: sqlite3.Connection) -> Iterator[tuple[str, str, int, int]]:
    yield from db.execute("SELECT party, endpoint, status, count FROM traffic ORDER BY party, endpoint, status")


def clear_traffic(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM traffic")
    db.execute("DELETE FROM recent_traffic")


# -- faults ---------------------------------------------------------------------------------------------
def queue_faults(db: sqlite3.Connection, party: str, queue: Iterable[tuple[str, str, int]]) -> None:
    """Append ``(endpoint, response, count)`` entries to the party's fault queues."""
    db.executemany(
        "INSERT INTO fault_queue (party, endpoint, response, remaining) VALUES (?, ?, ?, ?)",
        [(party, endpoint, response, count) for endpoint, response, count in queue],
    )


def set_latencies(db: sqlite3.Connection, party: str, latencies: Iterable[tuple[str, int]]) -> None:
    db.executemany(
        "INSERT INTO latency (party, endpoint, ms) VALUES (?, ?, ?) "
        "ON CONFLICT (party, endpoint) DO UPDATE SET ms = excluded.ms",
        [(party, endpoint, ms) for endpoint, ms in latencies],
    )


def queued_faults(db: sqlite3.Connection) -> Iterator[tuple[str, str, str, int]]:
    """``(party, endpoint, response, remaining)`` in the order they fire."""
    yield from db.execute(
        "SELECT party, endpoint, response, remaining FROM fault_queue WHERE remaining > 0 ORDER BY id"
    )


def latencies(db: sqlite3.Connection) -> Iterator[tuple[str, str, int]]:
    yield from db.execute("SELECT party, endpoint, ms FROM latency")


def clear_faults(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM fault_queue")
    db.execute("DELETE FROM latency")


def anything_scripted(db: sqlite3.Connection, party: str, endpoint: str) -> bool:
    return bool(db.execute(
        "SELECT EXISTS (SELECT 1 FROM fault_queue WHERE party = ? AND endpoint = ?) "
        "OR EXISTS (SELECT 1 FROM latency WHERE party = ? AND endpoint = ?)",
        (party, endpoint, party, endpoint),
    ).fetchone()[0])


def take_queued_fault(db: sqlite3.Connection, party: str, endpoint: str) -> str | None:
    """Consume one use of the endpoint's next queued response (call inside a write transaction)."""
    row = db.execute(
        "SELECT id, response, remaining FROM fault_queue "
        "WHERE party = ? AND endpoint = ? AND remaining > 0 ORDER BY id LIMIT 1",
        (party, endpoint),
    ).fetchone()
    if row is None:
        return None
    if row["remaining"] <= 1:
        db.execute("DELETE FROM fault_queue WHERE id = ?", (row["id"],))
    else:
        db.execute("UPDATE fault_queue SET remaining = remaining - 1 WHERE id = ?", (row["id"],))
    return str(row["response"])


def latency_of(db: sqlite3.Connection, party: str, endpoint: str) -> int:
    row = db.execute("SELECT ms FROM latency WHERE party = ? AND endpoint = ?", (party, endpoint)).fetchone()
    return int(row[0]) if row is not None else 0


# -- settings -------------------------------------------------------------------------------------------
def get_setting(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return row[0] if row is not None else None


def delete_setting(db: sqlite3.Connection, key: str) -> None:
    db.execute("DELETE FROM settings WHERE key = ?", (key,))


def set_setting(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def next_in_counter(db: sqlite3.Connection, key: str) -> int:
    """0 the first time, then one more each call (the counter is a setting holding a number)."""
    row = db.execute(
        "INSERT INTO settings (key, value) VALUES (?, '0') ON CONFLICT (key) "
        "DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value",
        (key,),
    ).fetchone()
    return int(row[0])


# -- device identities (the manufacturer's records) ---------------------------------------------------
def store_identities(db: sqlite3.Connection, docs: Iterable[tuple[str, str]]) -> None:
    """``(serial, doc)`` pairs, replacing any earlier identity of the same serial."""
    db.executemany("INSERT OR REPLACE INTO identities (serial, doc) VALUES (?, ?)", docs)


def add_identity_if_absent(db: sqlite3.Connection, serial: str, doc: str) -> None:
    db.execute("INSERT OR IGNORE INTO identities (serial, doc) VALUES (?, ?)", (serial, doc))


def identity_doc(db: sqlite3.Connection, serial: str) -> str | None:
    row = db.execute("SELECT doc FROM identities WHERE serial = ?", (serial,)).fetchone()
    return row[0] if row is not None else None
