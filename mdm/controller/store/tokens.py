"""Queries on ``tokens``: one row per ``depOnboardingSetting``, its Apple credentials and its sync slot.

The sync slot is the ``sync_*`` columns: :func:`claim_sync` writes them only inside the caller's
``BEGIN IMMEDIATE`` transaction, after the caller has read the row and decided; every later write of
a sync names its ``sync_id``, so a sync that lost its claim (timed out, token deleted) writes nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DepToken",
    "add_progress",
    "all_rows",
    "claim_sync",
    "delete",
    "due_for_auto_sync",
    "fail_sync",
    "finish_sync",
    "forget_cursor",
    "get",
    "has_overdue_sync",
    "holder_of_server",
    "insert",
    "overdue_syncs",
    "record_error",
    "rename",
    "set_dep_token",
    "set_key",
    "set_session",
    "sync_owner",
]


# -- the setting itself ----------------------------------------------------------------------------
def get(db: sqlite3.Connection, token_id: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()


def all_rows(db: sqlite3.Connection) -> list[sqlite3.Row]:
    """Every token, oldest first (the order Graph lists ``depOnboardingSettings`` in)."""
    return db.execute("SELECT * FROM tokens ORDER BY created_at, id").fetchall()


def insert(db: sqlite3.Connection, token_id: str, name: str | None, now: float) -> None:
    db.execute(
        "INSERT INTO tokens (id, token_name, created_at, modified_at) VALUES (?, ?, ?, ?)",
        (token_id, name, now, now),
    )


def rename(db: sqlite3.Connection, token_id: str, name: str, now: float) -> None:
    db.execute("UPDATE tokens SET token_name = ?, modified_at = ? WHERE id = ?", (name, now, token_id))


def delete(db: sqlite3.Connection, token_id: str) -> None:
    """The token, and (by ``ON DELETE CASCADE``) its profiles and devices."""
    db.execute("DELETE FROM tokens WHERE id = ?", (token_id,))


def set_key(db: sqlite3.Connection, token_id: str, key_pem: str, cert_pem: str, now: float) -> None:
    """The key and certificate the portal envelopes the DEP token to."""
    db.execute(
        "UPDATE tokens SET key_pem = ?, cert_pem = ?, modified_at = ? WHERE id = ?",
        (key_pem, cert_pem, now, token_id),
    )


# -- the DEP token (Apple's credentials) -----------------------------------------------------------
@dataclass(frozen=True)
class DepToken:
    """What an uploaded DEP token and Apple's ``GET /account`` reply leave on the row."""

    consumer_key: str
    consumer_secret: str
    access_token: str
    access_secret: str
    expiration: float
    session_token: str | None
    server_uuid: str
    server_name: Any
    org_name: Any
    apple_identifier: Any
    default_name: Any  # the name a setting without one takes


def holder_of_server(db: sqlite3.Connection, server_uuid: str, other_than: str) -> str | None:
    """The id of another token already holding this MDM server's DEP token, if any."""
    row = db.execute("SELECT id FROM tokens WHERE server_uuid = ? AND id != ?", (server_uuid, other_than)).fetchone()
    return row[0] if row is not None else None


def forget_cursor(db: sqlite3.Connection, token_id: str) -> None:
    """The next sync starts over with a full fetch (a token of another MDM server was uploaded)."""
    db.execute("UPDATE tokens SET cursor = NULL, last_full_at = NULL WHERE id = ?", (token_id,))


def set_dep_token(db: sqlite3.Connection, token_id: str, token: DepToken, now: float) -> None:
    db.execute(
        """UPDATE tokens SET consumer_key = ?, consumer_secret = ?, access_token = ?,
           access_secret = ?,
           token_type = 'dep', token_expiration = ?, session_token = ?, server_uuid = ?,
           server_name = ?, org_name = ?, apple_identifier = ?, token_name = coalesce(token_name, ?),
           modified_at = ? WHERE id = ?""",
        (
            token.consumer_key,
            token.consumer_secret,
            token.access_token,
            token.access_secret,
            token.expiration,
            token.session_token,
            token.server_uuid,
            token.server_name,
            token.org_name,
            token.apple_identifier,
            token.default_name,
            now,
            token_id,
        ),
    )


def set_session(db: sqlite3.Connection, token_id: str, session: str | None) -> None:
    """Apple's ``X-ADM-Auth-Session``, kept so the next request (or worker) skips ``/session``."""
    db.execute("UPDATE tokens SET session_token = ? WHERE id = ?", (session, token_id))


def record_error(db: sqlite3.Connection, token_id: str, code: str, message: str, number: int) -> None:
    """An error shown on the setting without a sync having run (an expired token); ``code`` is the reason,
    ``number`` the integer ``lastSyncErrorCode``."""
    db.execute(
        "UPDATE tokens SET last_error_code = ?, last_error_message = ?, last_error_number = ? WHERE id = ?",
        (code, message, number, token_id),
    )


# -- the sync slot -------------------------------------------------------------------------------------
def claim_sync(
    db: sqlite3.Connection,
    token_id: str,
    *,
    sync_id: str,
    kind: str,
    manual: bool,
    now: float,
    deadline: float,
) -> None:
    """Mark the token's sync running under ``sync_id`` until ``deadline`` (a manual one is remembered)."""
    db.execute(
        """UPDATE tokens SET sync_status = 'running', sync_id = ?, sync_kind = ?, sync_manual = ?,
           sync_triggered_at = ?, sync_deadline = ?, progress_pages = 0, progress_devices = 0,
           last_manual_at = CASE WHEN ? THEN ? ELSE last_manual_at END
           WHERE id = ?""",
        (sync_id, kind, int(manual), now, deadline, int(manual), now, token_id),
    )


def sync_owner(db: sqlite3.Connection, token_id: str) -> sqlite3.Row | None:
    """``sync_id`` and ``sync_status`` of the token (None once it is deleted)."""
    return db.execute("SELECT sync_id, sync_status FROM tokens WHERE id = ?", (token_id,)).fetchone()


def add_progress(db: sqlite3.Connection, token_id: str, devices: int) -> None:
    """One more page written, with ``devices`` devices in it."""
    db.execute(
        "UPDATE tokens SET progress_pages = progress_pages + 1, progress_devices = "
        "progress_devices + ? "
        "WHERE id = ?",
        (devices, token_id),
    )


def finish_sync(db: sqlite3.Connection, token_id: str, *, now: float, kind: str, cursor: str | None) -> None:
    """The sync succeeded: the slot is free, the cursor kept; a full one restarts the 7-day count."""
    db.execute(
        """UPDATE tokens SET sync_status = 'idle', sync_deadline = NULL, last_success_at = ?,
           last_kind = ?, cursor = ?, force_full = 0, last_error_code = NULL,
           last_error_message = NULL, last_error_number = NULL,
           last_full_at = CASE WHEN ? = 'full' THEN sync_triggered_at ELSE last_full_at END
           WHERE id = ?""",
        (now, kind, cursor, kind, token_id),
    )


def fail_sync(
    db: sqlite3.Connection, token_id: str, sync_id: str, code: str, message: str, number: int, *, force_full: bool
) -> None:
    """Mark the sync ``sync_id`` failed, if it is still the running one; ``force_full`` makes the next full."""
    db.execute(
        """UPDATE tokens SET sync_status = 'failed', last_error_code = ?, last_error_message = ?,
           last_error_number = ?, force_full = max(force_full, ?)
           WHERE id = ? AND sync_id = ? AND sync_status = 'running'""",
        (code, message, number, int(force_full), token_id, sync_id),
    )


def has_overdue_sync(db: sqlite3.Connection, now: float, token_id: str | None = None) -> bool:
    """Whether a sync (of ``token_id``, or of any token) is still running past its deadline."""
    sql = "SELECT 1 FROM tokens WHERE sync_status = 'running' AND sync_deadline <= ?"
    args: tuple[Any, ...] = (now,)
    if token_id is not None:
        sql, args = sql + " AND id = ?", (now, token_id)
    return db.execute(sql + " LIMIT 1", args).fetchone() is not None


def overdue_syncs(db: sqlite3.Connection, now: float, token_id: str | None = None) -> list[sqlite3.Row]:
    """``id``, ``sync_id`` and ``sync_kind`` of each sync still running past its deadline."""
    return db.execute(
        "SELECT id, sync_id, sync_kind FROM tokens WHERE sync_status = 'running' AND sync_deadline <= ?"
        + (" AND id = ?" if token_id is not None else ""),
        (now, token_id) if token_id is not None else (now,),
    ).fetchall()


def due_for_auto_sync(db: sqlite3.Connection, interval_s: float, now: float) -> list[str]:
    """Tokens with a DEP token, no sync running, and none triggered in the last ``interval_s``."""
    return [
        r["id"]
        for r in db.execute(
            "SELECT id FROM tokens WHERE token_type = 'dep' AND sync_status != 'running' "
            "AND (sync_triggered_at IS NULL OR sync_triggered_at + ? <= ?)",
            (interval_s, now),
        )
    ]
