"""Queries on ``profiles``: each token's enrollment profiles, as Graph settings (JSON) and as sent to Apple.

``settings`` is the Graph body (``@odata.type`` and ``isDefault`` included); ``is_default`` mirrors it as
a column so the token's default profiles (one iOS, one macOS) are found without reading every profile's JSON.
"""

from __future__ import annotations

import sqlite3

__all__ = ["count", "defaults", "delete", "for_token", "get", "insert", "set_default", "unset_default", "update"]


def get(db: sqlite3.Connection, token_id: str, profile_id: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM profiles WHERE token_id = ? AND id = ?", (token_id, profile_id)).fetchone()


def for_token(db: sqlite3.Connection, token_id: str) -> list[sqlite3.Row]:
    """The token's profiles, oldest first."""
    return db.execute("SELECT * FROM profiles WHERE token_id = ? ORDER BY created_at, id", (token_id,)).fetchall()


def count(db: sqlite3.Connection, token_id: str) -> int:
    return int(db.execute("SELECT count(*) FROM profiles WHERE token_id = ?", (token_id,)).fetchone()[0])


def defaults(db: sqlite3.Connection, token_id: str) -> list[sqlite3.Row]:
    """``id`` and ``settings`` of the token's default profiles (one per platform, unless a write raced)."""
    return db.execute("SELECT id, settings FROM profiles WHERE token_id = ? AND is_default = 1", (token_id,)).fetchall()


def unset_default(db: sqlite3.Connection, profile_id: str, settings: str) -> None:
    """No longer the default; ``settings`` is the profile's JSON with ``isDefault`` false."""
    db.execute("UPDATE profiles SET is_default = 0, settings = ? WHERE id = ?", (settings, profile_id))


def set_default(db: sqlite3.Connection, profile_id: str, settings: str, now: float) -> None:
    """The token's default (of the profile's platform); ``settings`` is its JSON with ``isDefault`` true."""
    db.execute("UPDATE profiles SET is_default = 1, settings = ?, modified_at = ? WHERE id = ?", (settings, now, profile_id))


def insert(
    db: sqlite3.Connection,
    profile_id: str,
    token_id: str,
    *,
    settings: str,
    apple_json: str,
    profile_uuid: str,
    is_default: bool,
    now: float,
) -> None:
    db.execute(
        "INSERT INTO profiles (id, token_id, settings, apple_json, profile_uuid, "
        "is_default, created_at, "
        "modified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (profile_id, token_id, settings, apple_json, profile_uuid, int(is_default), now, now),
    )


def update(
    db: sqlite3.Connection,
    profile_id: str,
    *,
    settings: str,
    apple_json: str,
    profile_uuid: str,
    is_default: bool,
    now: float,
) -> None:
    db.execute(
        "UPDATE profiles SET settings = ?, apple_json = ?, profile_uuid = ?, is_default "
        "= ?, modified_at = ? "
        "WHERE id = ?",
        (settings, apple_json, profile_uuid, int(is_default), now, profile_id),
    )


def delete(db: sqlite3.Connection, profile_id: str) -> None:
    db.execute("DELETE FROM profiles WHERE id = ?", (profile_id,))
