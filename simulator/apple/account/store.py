"""The token service's table (access tokens, stored by digest) and its SQL, with the read the Business API
makes on every request: is this bearer token one we issued, unexpired, of an account not revoked.

API accounts themselves are the portal's (:mod:`simulator.apple.portal.store`): the portal creates and
revokes them, this service only reads them.
"""

from __future__ import annotations

import sqlite3

__all__ = ["MIGRATIONS", "insert_access_token", "access_token", "forget_expired", "token_count"]

#: The token service's tables, appended to the Apple store's migrations (see :mod:`simulator.apple.store`).
MIGRATIONS = [
    """
    CREATE TABLE access_tokens (
        digest TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        issued_at REAL NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX access_tokens_by_expiry ON access_tokens (expires_at);
    """
]


def insert_access_token(
    db: sqlite3.Connection, digest: str, client_id: str, scope: str, issued_at: float, expires_at: float
) -> None:
    db.execute(
        "INSERT INTO access_tokens (digest, client_id, scope, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        (digest, client_id, scope, issued_at, expires_at),
    )


def access_token(db: sqlite3.Connection, digest: str) -> sqlite3.Row | None:
    """``(client_id, scope, expires_at, revoked_at, name)`` of a token, joined with its account."""
    return db.execute(
        "SELECT t.client_id, t.scope, t.expires_at, a.revoked_at, a.name FROM access_tokens t "
        "JOIN api_accounts a ON a.client_id = t.client_id WHERE t.digest = ?",
        (digest,),
    ).fetchone()


def forget_expired(db: sqlite3.Connection, before: float) -> None:
    """Drop tokens that expired before ``before`` (they can only ever answer 401)."""
    db.execute("DELETE FROM access_tokens WHERE expires_at < ?", (before,))


def token_count(db: sqlite3.Connection) -> int:
    """How many tokens the store holds (part of a seeded token's label, so two are never the same)."""
    return int(db.execute("SELECT count(*) FROM access_tokens").fetchone()[0])
