"""The DEP web service's tables (profiles, sessions, nonces, activation locks, the cursor secret, the
account-driven enrollment service discovery URLs) and the SQL the service runs, including its reads of
the portal's servers and of the shared device records.

Device *writes* are :mod:`simulator.apple.devices`'s (the portal and activation write the same rows).
Fetch and sync pages are each one statement over the pre-rendered device documents: the statement
appends the fragments the protocol version allows (``doc_v8``, ``doc_v10``), the version dependent
``os``/``device_family`` (and for sync ``op_type``/``op_date``, and from version 10 a deleted device's
``released_by_replacement``), closes each object and joins the page with ``group_concat``, so Python
never touches a row.
"""

from __future__ import annotations

import sqlite3
from typing import Any

__all__ = [
    "MIGRATIONS",
    "set_cursor_secret",
    "session_row",
    "insert_session",
    "oauth_server",
    "spend_nonce",
    "server_identity",
    "latest_event_id",
    "fetch_page",
    "sync_page",
    "insert_profile",
    "profile_count",
    "profile_id",
    "profile_body",
    "lock_device",
    "discovery_profile",
    "set_discovery_profile",
    "delete_discovery_profile",
]

#: DEP's tables, part of the Apple store's first migration (see :mod:`simulator.apple.store`).
MIGRATIONS = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('cursor_secret', randomblob(32));

    CREATE TABLE profiles (
        id INTEGER PRIMARY KEY,
        profile_uuid TEXT NOT NULL UNIQUE,
        server_id INTEGER NOT NULL REFERENCES servers (id),
        body TEXT NOT NULL,
        created_at REAL NOT NULL
    );

    CREATE TABLE sessions (
        token TEXT PRIMARY KEY,
        server_id INTEGER NOT NULL,
        issued_at REAL NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_expiry ON sessions (expires_at);

    CREATE TABLE nonces (
        consumer_key TEXT NOT NULL,
        nonce TEXT NOT NULL,
        seen_at REAL NOT NULL,
        PRIMARY KEY (consumer_key, nonce)
    ) WITHOUT ROWID;
    CREATE INDEX nonces_by_time ON nonces (seen_at);

    CREATE TABLE activation_locks (
        device_id INTEGER PRIMARY KEY REFERENCES devices (id),
        escrow_key TEXT,
        lost_message TEXT,
        locked_at REAL NOT NULL
    );
    """,
    # 2: the account-driven enrollment service discovery URL each MDM server sets; which generation of
    # its server's token opened a session (a session ends when the portal replaces that token).
    """
    ALTER TABLE sessions ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE enrollment_discovery (
        server_id INTEGER PRIMARY KEY REFERENCES servers (id),
        url TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
]


def set_cursor_secret(db: sqlite3.Connection, secret: bytes) -> None:
    """Pin the key that MACs cursors (a seeded world derives it; otherwise the migration drew one)."""
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor_secret', ?)", (secret,))


# -- sessions ----------------------------------------------------------------------------------------

# A session opened with a token the portal has since replaced is found, but ended (its expiry is 0).
_AUTH_SQL = """
SELECT s.server_id, s.issued_at,
       CASE WHEN v.token_generation = s.token_generation THEN s.expires_at ELSE 0 END,
       coalesce((SELECT require_terms FROM organization WHERE id = 1), 0),
       (SELECT value FROM meta WHERE key = 'cursor_secret'), s.token_generation
FROM sessions s JOIN servers v ON v.id = s.server_id WHERE s.token = ?
"""


def session_row(db: sqlite3.Connection, key: str) -> tuple[int, float, float, int, bytes, int] | None:
    """``(server_id, issued_at, expires_at, terms_required, cursor_secret, token_generation)`` of a
    session, in the one indexed query every authenticated request makes; ``expires_at`` is 0 once the
    token that opened it was replaced."""
    row = db.execute(_AUTH_SQL, (key,)).fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3], bytes(row[4]), row[5])


def insert_session(
    db: sqlite3.Connection, key: str, server_id: int, now: float, expires_at: float, token_generation: int
) -> None:
    """Store a session (by its key) and forget the expired ones. A seeded world may derive the same
    token twice for one server at one instant; the row is then the same session again."""
    db.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
    db.execute(
        "INSERT OR REPLACE INTO sessions (token, server_id, issued_at, expires_at, token_generation) "
        "VALUES (?, ?, ?, ?, ?)",
        (key, server_id, now, expires_at, token_generation),
    )


def oauth_server(db: sqlite3.Connection, consumer_key: str, access_token: str) -> sqlite3.Row | None:
    """The server whose active token holds both keys: ``id, consumer_secret, access_secret,
    access_token_expiry, token_generation`` (a replaced token's access token is no longer stored)."""
    return db.execute(
        "SELECT id, consumer_secret, access_secret, access_token_expiry, token_generation FROM servers "
        "WHERE consumer_key = ? AND access_token = ?",
        (consumer_key, access_token),
    ).fetchone()


def spend_nonce(db: sqlite3.Connection, consumer_key: str, nonce: str, now: float, forget_before: float) -> bool:
    """Remember a nonce (True), or False when this consumer key already used it; nonces older than
    ``forget_before`` are dropped first. The primary key makes the check atomic across processes."""
    db.execute("DELETE FROM nonces WHERE seen_at < ?", (forget_before,))
    try:
        db.execute("INSERT INTO nonces (consumer_key, nonce, seen_at) VALUES (?, ?, ?)", (consumer_key, nonce, now))
    except sqlite3.IntegrityError:
        return False
    return True


def server_identity(db: sqlite3.Connection, server_id: int) -> sqlite3.Row | None:
    """``server_name, server_uuid`` of a server."""
    return db.execute("SELECT server_name, server_uuid FROM servers WHERE id = ?", (server_id,)).fetchone()


# -- fetch and sync ----------------------------------------------------------------------------------


def _os_sql(alias: str) -> str:
    """SQL appending ``os``/``device_family`` for protocol v2+ (``iPadOS`` only from v7); binds 2 params."""
    return (
        f'CASE WHEN ?1 >= 2 THEN \',"os":"\' || '
        f"(CASE WHEN ?1 < 7 AND {alias}.os = 'iPadOS' THEN 'iOS' ELSE {alias}.os END) || "
        f"'\",\"device_family\":\"' || {alias}.device_family || '\"' ELSE '' END"
    )


def _newer_sql(alias: str) -> str:
    """SQL appending the v8 fragment from protocol version 8 and the v10 one from version 10."""
    return (
        f"CASE WHEN ?1 >= 8 THEN {alias}.doc_v8 ELSE '' END || "
        f"CASE WHEN ?1 >= 10 THEN {alias}.doc_v10 ELSE '' END"
    )


_FETCH_SQL = f"""
SELECT group_concat(j, ','), max(seq), count(*) FROM (
    SELECT d.doc || {_newer_sql("d")} || {_os_sql("d")} || '}}' AS j, d.seq AS seq
    FROM devices d WHERE d.server_id = ?2 AND d.seq > ?3 ORDER BY d.seq LIMIT ?4
)
"""

# released_by_replacement: "only present with Sync the List of Devices when op_type is deleted", v10 on.
_SYNC_SQL = f"""
SELECT group_concat(j, ','), max(id), count(*) FROM (
    SELECT coalesce(e.doc, d.doc) || {_newer_sql("d")}
           || CASE WHEN ?1 >= 10 AND e.op_type = 'deleted'
                   THEN ',"released_by_replacement":' || CASE WHEN e.by_replacement THEN 'true' ELSE 'false' END
                   ELSE '' END
           || ',"op_type":"' || e.op_type || '","op_date":"' || e.op_date || '"'
           || {_os_sql("d")} || '}}' AS j, e.id AS id
    FROM events e JOIN devices d ON d.id = e.device_id
    WHERE e.server_id = ?2 AND e.id > ?3 ORDER BY e.id LIMIT ?4
)
"""

_MORE_DEVICES_SQL = "SELECT EXISTS (SELECT 1 FROM devices WHERE server_id = ? AND seq > ?)"
_MORE_EVENTS_SQL = "SELECT EXISTS (SELECT 1 FROM events WHERE server_id = ? AND id > ?)"


def latest_event_id(db: sqlite3.Connection) -> int:
    """The last event so far: where a sync after a fetch that starts now begins."""
    return int(db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])


def _page(
    db: sqlite3.Connection, page_sql: str, more_sql: str, version: int, server_id: int, position: int, limit: int
) -> tuple[str | None, int, bool]:
    page, last, count = db.execute(page_sql, (version, server_id, position, limit)).fetchone()
    if not count:
        return page, position, False
    return page, last, bool(db.execute(more_sql, (server_id, last)).fetchone()[0])


def fetch_page(
    db: sqlite3.Connection, version: int, server_id: int, after_seq: int, limit: int
) -> tuple[str | None, int, bool]:
    """``(comma-joined device objects, last seq, more follow)``: the server's devices after ``after_seq``."""
    return _page(db, _FETCH_SQL, _MORE_DEVICES_SQL, version, server_id, after_seq, limit)


def sync_page(
    db: sqlite3.Connection, version: int, server_id: int, after_event: int, limit: int
) -> tuple[str | None, int, bool]:
    """``(comma-joined device objects with op_type/op_date, last event id, more follow)``."""
    return _page(db, _SYNC_SQL, _MORE_EVENTS_SQL, version, server_id, after_event, limit)


# -- profiles ----------------------------------------------------------------------------------------


def profile_count(db: sqlite3.Connection, server_id: int) -> int:
    """How many profiles the server has defined (a new profile's number, for a seeded UUID)."""
    return int(db.execute("SELECT count(*) FROM profiles WHERE server_id = ?", (server_id,)).fetchone()[0])


def insert_profile(db: sqlite3.Connection, profile_uuid: str, server_id: int, body: str, now: float) -> int:
    cur = db.execute(
        "INSERT INTO profiles (profile_uuid, server_id, body, created_at) VALUES (?, ?, ?, ?)",
        (profile_uuid, server_id, body, now),
    )
    return cur.lastrowid or 0


def profile_id(db: sqlite3.Connection, profile_uuid: str, server_id: int) -> int | None:
    """A profile of this server by UUID (another server's profile is not found)."""
    row = db.execute(
        "SELECT id FROM profiles WHERE profile_uuid = ? AND server_id = ?", (profile_uuid, server_id)
    ).fetchone()
    return None if row is None else int(row[0])


def profile_body(db: sqlite3.Connection, profile_uuid: str, server_id: int) -> str | None:
    row = db.execute(
        "SELECT body FROM profiles WHERE profile_uuid = ? AND server_id = ?", (profile_uuid, server_id)
    ).fetchone()
    return None if row is None else str(row[0])


# -- activation lock ---------------------------------------------------------------------------------


def lock_device(db: sqlite3.Connection, device_id: int, escrow_key: Any, lost_message: Any, now: float) -> bool:
    """Record an activation lock; False when the device is locked already."""
    try:
        db.execute(
            "INSERT INTO activation_locks (device_id, escrow_key, lost_message, locked_at) VALUES (?, ?, ?, ?)",
            (device_id, escrow_key, lost_message, now),
        )
    except sqlite3.IntegrityError:
        return False
    return True


# -- account-driven enrollment service discovery --------------------------------------------------


def discovery_profile(db: sqlite3.Connection, server_id: int) -> sqlite3.Row | None:
    """``(url, updated_at)`` the server set, or None."""
    return db.execute("SELECT url, updated_at FROM enrollment_discovery WHERE server_id = ?", (server_id,)).fetchone()


def set_discovery_profile(db: sqlite3.Connection, server_id: int, url: str, stamp: str) -> None:
    db.execute(
        "INSERT INTO enrollment_discovery (server_id, url, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (server_id) DO UPDATE SET url = excluded.url, updated_at = excluded.updated_at",
        (server_id, url, stamp),
    )


def delete_discovery_profile(db: sqlite3.Connection, server_id: int) -> None:
    db.execute("DELETE FROM enrollment_discovery WHERE server_id = ?", (server_id,))

