"""The Business API's tables (device activities and their per-device results, rate windows, settings)
and the SQL it runs, including its reads of the shared devices and servers.

Device *writes* are :mod:`simulator.apple.devices`'s: an activity moves devices with the same calls the
portal and DEP use, so DEP's sync reports them. What the API shows of a device is read from the columns
DEP reads too (the hardware identifiers, the MDM migration deadline), so the two never disagree. Lists
page by keyset on indexed integers: the device id for ``orgDevices``, a server's ``seq`` for its
devices, the server id for ``mdmServers``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ..devices import chunked

__all__ = [
    "MIGRATIONS",
    "meta",
    "set_meta",
    "org_device_page",
    "org_device",
    "server_rows",
    "server_by_api_id",
    "server_by_id",
    "activity_count",
    "server_device_page",
    "insert_activity",
    "activity",
    "activity_devices",
    "next_due",
    "due_activities",
    "record_outcomes",
    "migrating",
    "take_request",
]

#: The Business API's tables, appended to the Apple store's migrations (see :mod:`simulator.apple.store`).
MIGRATIONS = [
    """
    CREATE TABLE business_meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    INSERT INTO business_meta (key, value) VALUES ('log_secret', randomblob(32));

    CREATE TABLE activities (
        id INTEGER PRIMARY KEY,
        activity_id TEXT NOT NULL UNIQUE,
        client_id TEXT NOT NULL,
        activity_type TEXT NOT NULL,
        server_id INTEGER REFERENCES servers (id),
        deadline TEXT,
        created_at REAL NOT NULL,
        due_at REAL NOT NULL,
        completes_at REAL NOT NULL,
        applied_at REAL,
        succeeded INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX activities_due ON activities (due_at) WHERE applied_at IS NULL;

    CREATE TABLE activity_devices (
        activity INTEGER NOT NULL REFERENCES activities (id),
        position INTEGER NOT NULL,
        serial TEXT NOT NULL,
        status TEXT,
        substatus TEXT,
        PRIMARY KEY (activity, position)
    ) WITHOUT ROWID;

    CREATE TABLE rate_windows (
        client_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        window_start REAL NOT NULL,
        used INTEGER NOT NULL,
        PRIMARY KEY (client_id, kind)
    ) WITHOUT ROWID;
    """
]

_DEVICE_SQL = (
    "SELECT d.id, d.serial, d.model, d.color, d.device_family, d.order_number, d.server_id, d.released, "
    "d.added_at, d.updated_at, d.released_at, d.assigned_date, d.product_type, d.capacity_gb, d.part_number, "
    "d.imei, d.meid, d.eid, d.wifi_mac, d.bluetooth_mac, d.ethernet_mac, d.mdm_migration_deadline "
    "FROM devices d"
)
_SERVER_SQL = (
    "SELECT s.id, s.server_uuid, s.server_name, s.created_at, NULL AS updated_at, "
    "(SELECT count(*) FROM devices d WHERE d.server_id = s.id) AS device_count, "
    "(SELECT max(issued_at) FROM sessions x WHERE x.server_id = s.id) AS last_connected FROM servers s"
)


# -- settings ---------------------------------------------------------------------------------------------


def meta(db: sqlite3.Connection, key: str) -> Any:
    row = db.execute("SELECT value FROM business_meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row is not None else None


def set_meta(db: sqlite3.Connection, key: str, value: Any) -> None:
    db.execute("INSERT OR REPLACE INTO business_meta (key, value) VALUES (?, ?)", (key, value))


# -- reads of devices and servers -------------------------------------------------------------------------


def org_device_page(db: sqlite3.Connection, after: int, limit: int) -> list[sqlite3.Row]:
    """Up to ``limit + 1`` devices of the organisation after device id ``after`` (one more says "more")."""
    return db.execute(
        _DEVICE_SQL + " WHERE d.released = 0 AND d.id > ? ORDER BY d.id LIMIT ?", (after, limit + 1)
    ).fetchall()


def org_device(db: sqlite3.Connection, serial: str) -> sqlite3.Row | None:
    """One device Apple knows, released ones too (their ``releasedFromOrgDateTime`` shows only here)."""
    return db.execute(_DEVICE_SQL + " WHERE d.serial = ?", (serial,)).fetchone()


def server_rows(db: sqlite3.Connection, after: int = 0, limit: int = 1_000_000) -> list[sqlite3.Row]:
    """Up to ``limit + 1`` servers after server id ``after``, each with its device count and last DEP session."""
    return db.execute(_SERVER_SQL + " WHERE s.id > ? ORDER BY s.id LIMIT ?", (after, limit + 1)).fetchall()


def server_by_api_id(db: sqlite3.Connection, api_id: str) -> sqlite3.Row | None:
    """A server by the Business API's id (its UUID without dashes, any case); a dashed UUID works too."""
    wanted = api_id.replace("-", "").upper()
    return db.execute(_SERVER_SQL + " WHERE replace(upper(s.server_uuid), '-', '') = ?", (wanted,)).fetchone()


def server_by_id(db: sqlite3.Connection, server_id: int) -> sqlite3.Row | None:
    return db.execute(_SERVER_SQL + " WHERE s.id = ?", (server_id,)).fetchone()


def server_device_page(db: sqlite3.Connection, server_id: int, after: int, limit: int) -> list[sqlite3.Row]:
    """``(seq, serial)`` of up to ``limit + 1`` devices of a server after position ``after``, in DEP's order."""
    return db.execute(
        "SELECT seq, serial FROM devices WHERE server_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        (server_id, after, limit + 1),
    ).fetchall()


# -- activities -------------------------------------------------------------------------------------------


def insert_activity(
    db: sqlite3.Connection,
    activity_id: str,
    client_id: str,
    activity_type: str,
    server_id: int | None,
    deadline: str | None,
    serials: Sequence[str],
    times: tuple[float, float, float],
) -> None:
    """A submitted activity and its devices, in request order; ``times`` is (created, due, completes)."""
    cursor = db.execute(
        "INSERT INTO activities (activity_id, client_id, activity_type, server_id, deadline, created_at, due_at, "
        "completes_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (activity_id, client_id, activity_type, server_id, deadline, *times),
    )
    row_id = cursor.lastrowid
    db.executemany(
        "INSERT INTO activity_devices (activity, position, serial) VALUES (?, ?, ?)",
        [(row_id, i, serial) for i, serial in enumerate(serials)],
    )


def activity_count(db: sqlite3.Connection) -> int:
    """Activities ever submitted (part of a seeded activity id's label)."""
    return int(db.execute("SELECT count(*) FROM activities").fetchone()[0])


_ACTIVITY_SQL = (
    "SELECT a.*, s.server_name, s.server_uuid FROM activities a LEFT JOIN servers s ON s.id = a.server_id"
)


def activity(db: sqlite3.Connection, activity_id: str) -> sqlite3.Row | None:
    return db.execute(_ACTIVITY_SQL + " WHERE a.activity_id = ?", (activity_id,)).fetchone()


def activity_devices(db: sqlite3.Connection, row_id: int) -> list[sqlite3.Row]:
    """``(serial, status, substatus)`` of an activity's devices, in request order."""
    return db.execute(
        "SELECT serial, status, substatus FROM activity_devices WHERE activity = ? ORDER BY position", (row_id,)
    ).fetchall()


def next_due(db: sqlite3.Connection) -> float | None:
    """When the earliest activity not yet applied is due (``None``: nothing waits)."""
    row = db.execute("SELECT min(due_at) FROM activities WHERE applied_at IS NULL").fetchone()
    return float(row[0]) if row[0] is not None else None


def due_activities(db: sqlite3.Connection, now: float) -> list[sqlite3.Row]:
    """Activities due by ``now`` and not applied, in the order they were submitted."""
    return db.execute(
        _ACTIVITY_SQL + " WHERE a.applied_at IS NULL AND a.due_at <= ? ORDER BY a.id", (now,)
    ).fetchall()


def record_outcomes(db: sqlite3.Connection, row_id: int, outcomes: Sequence[tuple[str, str]], applied_at: float) -> None:
    """Each device's ``(status, substatus)`` in request order, and the activity marked applied."""
    db.executemany(
        "UPDATE activity_devices SET status = ?, substatus = ? WHERE activity = ? AND position = ?",
        [(status, substatus, row_id, i) for i, (status, substatus) in enumerate(outcomes)],
    )
    succeeded = sum(1 for status, _ in outcomes if status == "SUCCESS")
    db.execute(
        "UPDATE activities SET applied_at = ?, succeeded = ?, failed = ? WHERE id = ?",
        (applied_at, succeeded, len(outcomes) - succeeded, row_id),
    )


# -- MDM migrations -----------------------------------------------------------------------------------------


def migrating(db: sqlite3.Connection, device_ids: Sequence[int]) -> set[int]:
    """The devices of ``device_ids`` that must migrate by a deadline (whoever set it: an activity, the
    portal): an MDM migration is a device's ``mdm_migration_deadline``, nothing else."""
    found: set[int] = set()
    for part in chunked(list(device_ids)):
        marks = ",".join("?" * len(part))
        found.update(
            row[0]
            for row in db.execute(
                f"SELECT id FROM devices WHERE id IN ({marks}) AND mdm_migration_deadline IS NOT NULL", tuple(part)
            )
        )
    return found


# -- rate windows -------------------------------------------------------------------------------------------


def take_request(db: sqlite3.Connection, client_id: str, kind: str, window_start: float, limit: int) -> bool:
    """Count one request in the client's current fixed window; False (and nothing counted) when the
    window's ``limit`` is used up. One transaction, so every worker process shares the count."""
    row = db.execute(
        "SELECT window_start, used FROM rate_windows WHERE client_id = ? AND kind = ?", (client_id, kind)
    ).fetchone()
    used = row["used"] if row is not None and row["window_start"] == window_start else 0
    if used >= limit:
        return False
    db.execute(
        "INSERT OR REPLACE INTO rate_windows (client_id, kind, window_start, used) VALUES (?, ?, ?, ?)",
        (client_id, kind, window_start, used + 1),
    )
    return True
