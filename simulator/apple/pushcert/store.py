"""The Push Certificates Portal's tables (its CA, the certificates it issued) and the SQL it runs.

A topic's certificates are numbered by generation (1 = the new certificate, +1 per renewal); the
highest generation is the topic's current certificate, and ``UNIQUE (topic, generation)`` makes two
concurrent renewals of one topic impossible.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from mdm.platform.storage import Store

__all__ = [
    "MIGRATIONS",
    "open_pushcert_store",
    "setting",
    "put_setting_once",
    "certificate_count",
    "insert_certificate",
    "certificate",
    "certificate_by_fingerprint",
    "certificates",
    "latest",
    "latest_generations",
    "fingerprints",
    "revoke",
]

MIGRATIONS = [
    """
    CREATE TABLE settings (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    -- One row per issued certificate. A topic's certificates are numbered by generation (1 = the new
    -- certificate, +1 per renewal); the highest generation is the topic's current certificate, and the
    -- UNIQUE constraint makes two concurrent renewals of one topic impossible.
    CREATE TABLE certificates (
        id TEXT PRIMARY KEY,
        apple_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        generation INTEGER NOT NULL,
        serial TEXT NOT NULL UNIQUE,
        fingerprint TEXT NOT NULL UNIQUE,
        pem TEXT NOT NULL,
        not_before REAL NOT NULL,
        not_after REAL NOT NULL,
        issued_at REAL NOT NULL,
        renewed_from TEXT,
        revoked_at REAL,
        UNIQUE (topic, generation)
    );
    CREATE INDEX certificates_by_apple_id ON certificates (apple_id, issued_at);
    """
]


def open_pushcert_store(path: str | Path | None = None) -> Store:
    """The portal on a store of its own: ``None`` in memory (tests), a file for ``mdmsim serve``
    (Apple's store holds the same tables: :mod:`simulator.apple.store`)."""
    return Store(path, MIGRATIONS)


def setting(db: sqlite3.Connection, key: str) -> Any:
    row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return row[0] if row is not None else None


def put_setting_once(db: sqlite3.Connection, key: str, value: bytes) -> None:
    """Store ``value`` unless the key has one already (first writer wins)."""
    db.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (key, value))


def certificate_count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM certificates").fetchone()[0])


def insert_certificate(db: sqlite3.Connection, record: dict[str, Any]) -> None:
    """One issued certificate (keys: the table's columns but ``revoked_at``)."""
    columns = (
        "id", "apple_id", "topic", "generation", "serial", "fingerprint", "pem",
        "not_before", "not_after", "issued_at", "renewed_from",
    )
    db.execute(
        f"INSERT INTO certificates ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        tuple(record[c] for c in columns),
    )


def certificate(db: sqlite3.Connection, cert_id: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM certificates WHERE id = ?", (cert_id,)).fetchone()


def certificate_by_fingerprint(db: sqlite3.Connection, fingerprint: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM certificates WHERE fingerprint = ?", (fingerprint,)).fetchone()


def certificates(db: sqlite3.Connection, apple_id: str | None = None) -> list[sqlite3.Row]:
    """Every certificate (or one Apple ID's, compared without case), newest first."""
    if apple_id:
        return db.execute(
            "SELECT * FROM certificates WHERE lower(apple_id) = lower(?) ORDER BY issued_at DESC, generation DESC",
            (apple_id,),
        ).fetchall()
    return db.execute("SELECT * FROM certificates ORDER BY issued_at DESC, generation DESC").fetchall()


def latest(db: sqlite3.Connection, topic: str) -> sqlite3.Row:
    """The topic's current certificate (its highest generation)."""
    return db.execute(
        "SELECT * FROM certificates WHERE topic = ? ORDER BY generation DESC LIMIT 1", (topic,)
    ).fetchone()


def latest_generations(db: sqlite3.Connection, topic: str | None = None) -> dict[str, tuple[int, str]]:
    """``topic → (highest generation, its certificate id)`` for every topic, or one."""
    sql = (
        "SELECT topic, generation, id FROM certificates c WHERE generation = "
        "(SELECT max(generation) FROM certificates WHERE topic = c.topic)"
    )
    rows = db.execute(sql + " AND topic = ?", (topic,)).fetchall() if topic is not None else db.execute(sql).fetchall()
    return {r["topic"]: (r["generation"], r["id"]) for r in rows}


def fingerprints(db: sqlite3.Connection) -> list[str]:
    return [row[0] for row in db.execute("SELECT fingerprint FROM certificates")]


def revoke(db: sqlite3.Connection, cert_id: str, now: float) -> None:
    """Revoke a certificate (a second revocation keeps the first time)."""
    db.execute("UPDATE certificates SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?", (now, cert_id))
