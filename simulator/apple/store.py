"""Apple's one database: organisation, MDM servers, devices, change events, DEP profiles, sessions, nonces.

The portal writes devices and events, the DEP web service reads them (and writes profile assignments),
so both services work on these tables; the helpers here are the few write paths they share, kept in
one place so a device's pre-rendered JSON never goes stale.

Why a pre-rendered ``doc``: a full fetch of 100,000 devices must run at tens of thousands of devices a
second. Each device row carries its DEP ``Device`` JSON object *without the closing brace*; a fetch page
is then one SQL statement that appends the protocol-version dependent ``os``/``device_family`` (and for
sync ``op_type``/``op_date``), closes the brace and joins the page with ``group_concat``, so Python never
touches a row. Every write that changes a field in the doc re-renders it (:func:`refresh_docs`).

Events are ordered by their integer id, which is also a device's ``seq`` (its position in a fetch:
the id of the ``added`` event that assigned it to its current server). Fetch pages by ``seq`` and sync
pages by event id are keyset pages on indexed integers, never ``OFFSET``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mdm.platform.storage import Store

__all__ = [
    "MIGRATIONS",
    "open_apple_store",
    "render_doc",
    "refresh_docs",
    "next_event_id",
    "add_events",
    "chunked",
]

MIGRATIONS = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('cursor_secret', randomblob(32));

    CREATE TABLE organization (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        name TEXT NOT NULL, email TEXT NOT NULL, phone TEXT NOT NULL, address TEXT NOT NULL,
        org_id TEXT NOT NULL, org_type TEXT NOT NULL, org_version TEXT NOT NULL, admin_id TEXT NOT NULL,
        require_terms INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE servers (
        id INTEGER PRIMARY KEY,
        server_uuid TEXT NOT NULL UNIQUE,
        server_name TEXT NOT NULL,
        consumer_key TEXT NOT NULL UNIQUE,
        consumer_secret TEXT NOT NULL,
        access_token TEXT NOT NULL UNIQUE,
        access_secret TEXT NOT NULL,
        token_issued_at REAL NOT NULL,
        access_token_expiry REAL NOT NULL,
        public_key_pem TEXT,
        created_at REAL NOT NULL
    );

    CREATE TABLE profiles (
        id INTEGER PRIMARY KEY,
        profile_uuid TEXT NOT NULL UNIQUE,
        server_id INTEGER NOT NULL REFERENCES servers (id),
        body TEXT NOT NULL,
        created_at REAL NOT NULL
    );

    CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        serial TEXT NOT NULL UNIQUE,
        model TEXT NOT NULL,
        description TEXT NOT NULL,
        color TEXT NOT NULL,
        asset_tag TEXT,
        os TEXT NOT NULL,
        device_family TEXT NOT NULL,
        order_number TEXT,
        released INTEGER NOT NULL DEFAULT 0,
        server_id INTEGER REFERENCES servers (id),
        seq INTEGER,
        assigned_date TEXT,
        assigned_by TEXT,
        profile_id INTEGER REFERENCES profiles (id),
        profile_uuid TEXT,
        profile_status TEXT NOT NULL DEFAULT 'empty',
        profile_assign_time TEXT,
        profile_push_time TEXT,
        doc TEXT NOT NULL
    );
    CREATE INDEX devices_by_server ON devices (server_id, seq);
    CREATE INDEX devices_by_order ON devices (order_number) WHERE order_number IS NOT NULL;

    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        server_id INTEGER NOT NULL,
        device_id INTEGER NOT NULL REFERENCES devices (id),
        op_type TEXT NOT NULL,
        op_date TEXT NOT NULL,
        doc TEXT
    );
    CREATE INDEX events_by_server ON events (server_id, id);

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
    """
]

_ENCODE = json.JSONEncoder(separators=(",", ":")).encode

DOC_COLUMNS = (
    "serial, model, description, color, asset_tag, profile_status, profile_uuid, "
    "profile_assign_time, profile_push_time, assigned_date, assigned_by"
)


def open_apple_store(path: str | Path | None = None) -> Store:
    """Apple's store: ``None`` for an in-memory world (tests), a file path for ``mdmsim serve``."""
    return Store(path, MIGRATIONS)


def render_doc(
    serial: str,
    model: str,
    description: str,
    color: str,
    asset_tag: str | None,
    profile_status: str,
    profile_uuid: str | None,
    profile_assign_time: str | None,
    profile_push_time: str | None,
    assigned_date: str | None,
    assigned_by: str | None,
) -> str:
    """A device's DEP JSON object without its closing ``}`` (the arguments are :data:`DOC_COLUMNS`).

    Absent values are left out rather than sent as ``null``: Apple omits them, and the JSON Schema
    types them as strings.
    """
    fields: dict[str, Any] = {
        "serial_number": serial,
        "model": model,
        "description": description,
        "color": color,
    }
    if asset_tag:
        fields["asset_tag"] = asset_tag
    fields["profile_status"] = profile_status
    if profile_uuid:
        fields["profile_uuid"] = profile_uuid
    if profile_assign_time:
        fields["profile_assign_time"] = profile_assign_time
    if profile_push_time:
        fields["profile_push_time"] = profile_push_time
    if assigned_date:
        fields["device_assigned_date"] = assigned_date
    if assigned_by:
        fields["device_assigned_by"] = assigned_by
    return _ENCODE(fields)[:-1]


def chunked(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    """Slices small enough for SQLite's bound-parameter limit."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def refresh_docs(db: sqlite3.Connection, device_ids: Sequence[int]) -> None:
    """Re-render the JSON of devices whose fields changed (call inside the changing transaction)."""
    updates: list[tuple[str, int]] = []
    for part in chunked(list(device_ids)):
        marks = ",".join("?" * len(part))
        for row in db.execute(f"SELECT id, {DOC_COLUMNS} FROM devices WHERE id IN ({marks})", tuple(part)):
            updates.append((render_doc(*tuple(row)[1:]), row[0]))
    db.executemany("UPDATE devices SET doc = ? WHERE id = ?", updates)


def next_event_id(db: sqlite3.Connection) -> int:
    """The id the next event gets; safe because writers hold ``BEGIN IMMEDIATE``."""
    return int(db.execute("SELECT coalesce(max(id), 0) + 1 FROM events").fetchone()[0])


def add_events(
    db: sqlite3.Connection,
    events: Sequence[tuple[int, int, str, str, str | None]],
    first: int | None = None,
) -> int:
    """Append ``(server_id, device_id, op_type, op_date, doc_snapshot)`` events; returns the first id.

    ``first`` (from :func:`next_event_id` in the same transaction) lets a caller that needs the ids in
    advance, to set a device's ``seq`` to its ``added`` event, number the events itself.
    The snapshot is only kept for ``deleted`` events (the device as the server last knew it, since the
    device row moves on); other events show the device as it is now.
    """
    if first is None:
        first = next_event_id(db)
    db.executemany(
        "INSERT INTO events (id, server_id, device_id, op_type, op_date, doc) VALUES (?, ?, ?, ?, ?, ?)",
        [(first + i, *event) for i, event in enumerate(events)],
    )
    return first


def row_dict(row: sqlite3.Row | None) -> dict[str, Any] | None:
    """A row as a plain dict (``None`` stays ``None``)."""
    return dict(row) if row is not None else None


def organization(db: sqlite3.Connection) -> Mapping[str, Any] | None:
    """The world's one organisation, or ``None`` before the portal made it."""
    return row_dict(db.execute("SELECT * FROM organization WHERE id = 1").fetchone())


def server_credentials(db: sqlite3.Connection, server_uuid: str) -> dict[str, Any] | None:
    """The OAuth keys of a server token, with ``access_token_expiry`` as a world timestamp."""
    return row_dict(
        db.execute(
            "SELECT consumer_key, consumer_secret, access_token, access_secret, access_token_expiry "
            "FROM servers WHERE server_uuid = ?",
            (server_uuid,),
        ).fetchone()
    )
