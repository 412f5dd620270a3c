"""Persistence of the identity provider: its directory of users, in SQLite (DESIGN.md rule 3).

The clear-text ``password`` column is a simulator affordance, not an oversight: simulated users (and
the people running a demo) must be able to sign in as anyone in the directory, so the password is
kept and shown. Sign-in never reads it: :class:`~simulator.idp.service.IdentityProvider` checks the
salted hash, as a real directory would, so the authentication path stays the honest one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mdm.platform.storage import Store

__all__ = ["MIGRATIONS", "USER_COLUMNS", "count_users", "find_user", "insert_users", "list_users",
           "next_assertion_number", "open_idp_store", "upns"]

MIGRATIONS = [
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        upn TEXT NOT NULL UNIQUE COLLATE NOCASE,
        display_name TEXT NOT NULL,
        password TEXT NOT NULL,
        salt BLOB NOT NULL,
        password_hash BLOB NOT NULL,
        mfa_required INTEGER NOT NULL DEFAULT 0,
        department TEXT,
        object_guid TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL
    );
    """,
    # How many tokens each user has been issued in a seeded world: the n-th names the seeded value of the
    # n-th assertion ID, so a seeded run repeats assertion IDs and two tokens in one (frozen) instant differ.
    # Unseeded worlds draw assertion IDs from the OS and leave it at 0.
    """
    ALTER TABLE users ADD COLUMN assertions_issued INTEGER NOT NULL DEFAULT 0;
    """,
]

USER_COLUMNS: Sequence[str] = (
    "upn", "display_name", "password", "salt", "password_hash", "mfa_required", "department",
    "object_guid", "created_at",
)


def open_idp_store(path: str | Path | None = None) -> Store:
    """The IdP's database: ``None`` for an in-memory one (tests), a file path to keep it."""
    return Store(path, MIGRATIONS)


def insert_users(db: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
    """Insert rows in :data:`USER_COLUMNS` order; a duplicate UPN raises ``sqlite3.IntegrityError``."""
    placeholders = ", ".join("?" for _ in USER_COLUMNS)
    db.executemany(f"INSERT INTO users ({', '.join(USER_COLUMNS)}) VALUES ({placeholders})", rows)


def find_user(db: sqlite3.Connection, upn: str) -> sqlite3.Row | None:
    """One user by UPN, case-insensitively (directories compare UPNs without case)."""
    return db.execute("SELECT * FROM users WHERE upn = ?", (upn,)).fetchone()


def list_users(db: sqlite3.Connection, limit: int | None = None) -> list[sqlite3.Row]:
    """Users in the order they were created, so a seeded directory always lists the same way."""
    return db.execute("SELECT * FROM users ORDER BY id LIMIT ?", (-1 if limit is None else limit,)).fetchall()


def count_users(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COUNT(*) FROM users").fetchone()[0])


def upns(db: sqlite3.Connection) -> set[str]:
    """Every UPN, lower-cased: what a new seeded name must not collide with."""
    return {row[0].lower() for row in db.execute("SELECT upn FROM users")}


def next_assertion_number(db: sqlite3.Connection, upn: str) -> int:
    """Count one more token issued to ``upn`` and return the new count (1 for the first)."""
    row = db.execute(
        "UPDATE users SET assertions_issued = assertions_issued + 1 WHERE upn = ? RETURNING assertions_issued", (upn,)
    ).fetchone()
    if row is None:
        raise KeyError(upn)
    return int(row[0])
