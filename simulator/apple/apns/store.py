"""APNs' tables (pending notifications, unregistered tokens, token topics, counters) and its SQL.

Newest-only delivery is the table's shape: one pending row per device token, replaced by a newer
push. Taking a notification is one ``DELETE … RETURNING``, so two pollers never both get it, even
from two processes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from mdm.platform.storage import Store

__all__ = [
    "MIGRATIONS",
    "open_apns_store",
    "unregistered_at",
    "mark_unregistered",
    "clear_unregistered",
    "token_topic",
    "bind_topic",
    "has_pending",
    "put_pending",
    "pending",
    "take_pending",
    "pending_since",
    "last_sequence",
    "count",
    "accepted",
    "token_stats",
    "total_stats",
]

MIGRATIONS = [
    """
    -- Newest-only: one pending notification per device token.
    CREATE TABLE pending (
        token TEXT PRIMARY KEY,
        apns_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        push_type TEXT,
        priority INTEGER NOT NULL,
        payload TEXT NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE TABLE unregistered (
        token TEXT PRIMARY KEY,
        at REAL NOT NULL
    );
    CREATE TABLE stats (
        token TEXT PRIMARY KEY,
        accepted INTEGER NOT NULL DEFAULT 0,
        coalesced INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0
    );
    """,
    """
    -- Which topic each device token was made for (registered by the device, or learnt from the first
    -- accepted push); ``source`` says which.
    CREATE TABLE token_topics (
        token TEXT PRIMARY KEY,
        topic TEXT NOT NULL,
        source TEXT NOT NULL,
        bound_at REAL NOT NULL
    );
    """,
    """
    -- Apple's storage policy: each pending notification carries when it expires (``apns-expiration``;
    -- 30 days by default), whether it was for delivery now or never (``apns-expiration: 0``), its
    -- collapse id, and a number from one sequence, so a process that holds device streams can ask
    -- "which tokens got a push since number N" with one query (the fan-out without Redis).
    ALTER TABLE pending ADD COLUMN expires_at REAL;
    ALTER TABLE pending ADD COLUMN immediate INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE pending ADD COLUMN collapse_id TEXT;
    ALTER TABLE pending ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX pending_seq ON pending (seq);
    CREATE TABLE push_sequence (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
    INSERT INTO push_sequence (id, value) VALUES (1, 0);
    ALTER TABLE stats ADD COLUMN expired INTEGER NOT NULL DEFAULT 0;
    """,
]

_COUNTERS = ("accepted", "coalesced", "rejected", "delivered", "expired")


def open_apns_store(path: str | Path | None = None) -> Store:
    """APNs on a store of its own (Apple's store holds the same tables: :mod:`simulator.apple.store`)."""
    return Store(path, MIGRATIONS)


# -- tokens ------------------------------------------------------------------------------------------


def unregistered_at(db: sqlite3.Connection, token: str) -> float | None:
    row = db.execute("SELECT at FROM unregistered WHERE token = ?", (token,)).fetchone()
    return None if row is None else float(row[0])


def mark_unregistered(db: sqlite3.Connection, token: str, now: float) -> None:
    """The token stops accepting pushes; what was pending for it is dropped."""
    db.execute("INSERT OR REPLACE INTO unregistered (token, at) VALUES (?, ?)", (token, now))
    db.execute("DELETE FROM pending WHERE token = ?", (token,))


def clear_unregistered(db: sqlite3.Connection, token: str) -> None:
    db.execute("DELETE FROM unregistered WHERE token = ?", (token,))


def token_topic(db: sqlite3.Connection, token: str) -> str | None:
    row = db.execute("SELECT topic FROM token_topics WHERE token = ?", (token,)).fetchone()
    return None if row is None else str(row[0])


def bind_topic(db: sqlite3.Connection, token: str, topic: str, source: str, now: float) -> None:
    """``source``: ``registered`` (the device said) or ``first-push`` (learnt from an accepted push)."""
    db.execute(
        "INSERT OR REPLACE INTO token_topics (token, topic, source, bound_at) VALUES (?, ?, ?, ?)",
        (token, topic, source, now),
    )


# -- notifications -----------------------------------------------------------------------------------


def has_pending(db: sqlite3.Connection, token: str) -> bool:
    return db.execute("SELECT 1 FROM pending WHERE token = ?", (token,)).fetchone() is not None


def put_pending(
    db: sqlite3.Connection,
    token: str,
    apns_id: str,
    topic: str,
    push_type: str | None,
    priority: int,
    payload: str,
    now: float,
    *,
    expires_at: float | None = None,
    immediate: bool = False,
    collapse_id: str | None = None,
) -> int:
    """Store the token's pending notification, replacing an older one (newest only); its sequence
    number, which the fan-out announces."""
    seq = int(db.execute("UPDATE push_sequence SET value = value + 1 WHERE id = 1 RETURNING value").fetchone()[0])
    db.execute(
        "INSERT OR REPLACE INTO pending (token, apns_id, topic, push_type, priority, payload, received_at, "
        "expires_at, immediate, collapse_id, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (token, apns_id, topic, push_type, priority, payload, now, expires_at, int(immediate), collapse_id, seq),
    )
    return seq


def pending(db: sqlite3.Connection, token: str) -> list[sqlite3.Row]:
    return db.execute("SELECT * FROM pending WHERE token = ?", (token,)).fetchall()


def take_pending(db: sqlite3.Connection, token: str) -> list[sqlite3.Row]:
    """Return and remove what is pending, in one statement."""
    return db.execute("DELETE FROM pending WHERE token = ? RETURNING *", (token,)).fetchall()


def last_sequence(db: sqlite3.Connection) -> int:
    """The number of the newest push ever stored (where a store watcher starts)."""
    return int(db.execute("SELECT value FROM push_sequence WHERE id = 1").fetchone()[0])


def pending_since(db: sqlite3.Connection, seq: int, limit: int = 10_000) -> list[tuple[str, int]]:
    """``(token, seq)`` of the notifications stored after number ``seq``, oldest first."""
    rows = db.execute("SELECT token, seq FROM pending WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))
    return [(str(r[0]), int(r[1])) for r in rows]


# -- counters ----------------------------------------------------------------------------------------


def count(db: sqlite3.Connection, token: str, column: str, n: int = 1) -> None:
    """Add ``n`` to one of the token's counters (accepted, coalesced, rejected, delivered)."""
    if column not in _COUNTERS:
        raise ValueError(f"not a counter: {column}")
    db.execute(
        f"INSERT INTO stats (token, {column}) VALUES (?, ?) "
        f"ON CONFLICT (token) DO UPDATE SET {column} = {column} + excluded.{column}",
        (token, n),
    )


def accepted(db: sqlite3.Connection, token: str) -> int:
    """Pushes accepted for the token so far (a new one's number, for a seeded ``apns-id``)."""
    row = db.execute("SELECT accepted FROM stats WHERE token = ?", (token,)).fetchone()
    return 0 if row is None else int(row[0])


def token_stats(db: sqlite3.Connection, token: str) -> dict[str, int]:
    row = db.execute("SELECT * FROM stats WHERE token = ?", (token,)).fetchone()
    return {k: (row[k] if row is not None else 0) for k in _COUNTERS}


def total_stats(db: sqlite3.Connection) -> dict[str, Any]:
    row = db.execute(
        "SELECT COALESCE(SUM(accepted),0) a, COALESCE(SUM(coalesced),0) c, COALESCE(SUM(rejected),0) r, "
        "COALESCE(SUM(delivered),0) d, COALESCE(SUM(expired),0) e, (SELECT COUNT(*) FROM pending) p FROM stats"
    ).fetchone()
    return {
        "accepted": row["a"], "coalesced": row["c"], "rejected": row["r"], "delivered": row["d"],
        "expired": row["e"], "pending": row["p"],
    }  # fmt: skip
