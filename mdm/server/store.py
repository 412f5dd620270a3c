"""Persistence of the MDM server: schema and the SQL the service runs, nothing else.

Every function takes an open connection from :class:`~mdm.platform.storage.Store` so the service
decides the transaction boundaries (one check-in = one transaction) and the rules; this module only
knows tables. Times are stored as epoch seconds of *world* time (REAL), blobs as BLOB.

Enrollment ids follow NanoMDM: the device channel is the UDID (or the EnrollmentID of a User
Enrollment), a user channel is ``<device id>:<UserID>``. Commands are queued per enrollment id.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from mdm.platform.storage import Store

from .acme_store import ACME_MIGRATION
from .scep_store import SCEP_MIGRATION

__all__ = [
    "MIGRATIONS",
    "open_mdm_store",
    "get_setting",
    "set_setting",
    "insert_setting_if_absent",
    "record_identity",
    "identity_udid",
    "udid_has_identity",
    "upsert_device",
    "get_enrollment",
    "upsert_authenticate",
    "upsert_token_update",
    "check_out",
    "touch",
    "set_bootstrap_token",
    "get_bootstrap_token",
    "known_enrollments",
    "insert_command",
    "queue_command",
    "claim_next_command",
    "command_request_type",
    "record_result",
    "pushable_enrollments",
    "record_push",
    "get_command",
    "command_queue",
    "command_results",
    "device_ids",
    "get_device",
    "device_channel",
    "user_channels",
]

MIGRATIONS = [
    """
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value BLOB
    );
    -- What DEP enrollment learned about a device (MachineInfo) and who enrolled it.
    CREATE TABLE devices (
        udid TEXT PRIMARY KEY,
        serial_number TEXT,
        product TEXT,
        version TEXT,
        os_version TEXT,
        imei TEXT,
        meid TEXT,
        language TEXT,
        user_upn TEXT,
        enrolled_at REAL,
        profile_count INTEGER NOT NULL DEFAULT 0
    );
    -- Identities this server issued: the serial -> udid mapping Mdm-Signature checks use.
    CREATE TABLE identities (
        serial TEXT PRIMARY KEY,
        udid TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        not_after REAL NOT NULL,
        issued_at REAL NOT NULL
    );
    CREATE INDEX identities_udid ON identities (udid);
    -- One row per channel (device, or a user on the device): NanoMDM's enrollments table.
    CREATE TABLE enrollments (
        id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL,
        user_id TEXT,
        type TEXT NOT NULL,
        -- authenticated (Authenticate seen, no token) | enrolled (TokenUpdate) | checked_out
        state TEXT NOT NULL DEFAULT 'authenticated',
        serial_number TEXT,
        topic TEXT,
        token_hex TEXT,
        push_magic TEXT,
        unlock_token BLOB,
        awaiting_configuration INTEGER NOT NULL DEFAULT 0,
        bootstrap_token BLOB,
        authenticate_raw BLOB,
        token_update_raw BLOB,
        token_update_count INTEGER NOT NULL DEFAULT 0,
        user_short_name TEXT,
        user_long_name TEXT,
        push_invalid INTEGER NOT NULL DEFAULT 0,
        push_sent INTEGER NOT NULL DEFAULT 0,
        push_failed INTEGER NOT NULL DEFAULT 0,
        push_last_status INTEGER,
        push_last_error TEXT,
        push_last_at REAL,
        created_at REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE INDEX enrollments_device ON enrollments (device_id);
    CREATE TABLE commands (
        uuid TEXT PRIMARY KEY,
        request_type TEXT NOT NULL,
        plist BLOB NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    -- The per-enrollment queue. status: queued -> sent -> Acknowledged|Error|CommandFormatError,
    -- or NotNow (eligible again on the next request that is not itself a NotNow).
    CREATE TABLE queue (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        enrollment_id TEXT NOT NULL,
        command_uuid TEXT NOT NULL REFERENCES commands (uuid),
        priority INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'queued',
        deliveries INTEGER NOT NULL DEFAULT 0,
        sent_at REAL,
        answered_at REAL,
        UNIQUE (enrollment_id, command_uuid)
    );
    CREATE INDEX queue_next ON queue (enrollment_id, status, priority DESC, seq);
    -- Every report a device made, including NotNow and reports for commands we never queued.
    CREATE TABLE results (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        enrollment_id TEXT NOT NULL,
        command_uuid TEXT NOT NULL,
        status TEXT NOT NULL,
        error_chain TEXT,
        raw BLOB NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE INDEX results_command ON results (command_uuid, enrollment_id, id);
    """,
    SCEP_MIGRATION,
    ACME_MIGRATION,
]


def open_mdm_store(path: str | Path | None = None) -> Store:
    """The MDM server's database (``None``: in memory)."""
    return Store(path, MIGRATIONS)


# -- settings -----------------------------------------------------------------------------------------
def get_setting(db: sqlite3.Connection, key: str) -> Any:
    row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return row[0] if row is not None else None


def set_setting(db: sqlite3.Connection, key: str, value: Any) -> None:
    db.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def insert_setting_if_absent(db: sqlite3.Connection, key: str, value: Any) -> Any:
    """First writer wins (two processes creating the CA at once agree on one); returns the stored value."""
    db.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (key, value))
    return get_setting(db, key)


# -- identities and devices ---------------------------------------------------------------------------
def record_identity(
    db: sqlite3.Connection, *, serial: str, udid: str, fingerprint: str, not_after: float, now: float
) -> None:
    """Remember whom an identity was issued for: the ownership check of every signed message reads it."""
    db.execute(
        "INSERT OR REPLACE INTO identities (serial, udid, fingerprint, not_after, issued_at) VALUES (?, ?, ?, ?, ?)",
        (serial, udid, fingerprint, not_after, now),
    )


def identity_udid(db: sqlite3.Connection, serial: str) -> str | None:
    row = db.execute("SELECT udid FROM identities WHERE serial = ?", (serial,)).fetchone()
    return row[0] if row is not None else None


def udid_has_identity(db: sqlite3.Connection, udid: str) -> bool:
    """Whether an identity was issued for (or bound to) this UDID already."""
    return db.execute("SELECT 1 FROM identities WHERE udid = ? LIMIT 1", (udid,)).fetchone() is not None


def upsert_device(
    db: sqlite3.Connection,
    *,
    udid: str,
    serial_number: str | None,
    product: str | None,
    version: str | None,
    os_version: str | None,
    imei: str | None,
    meid: str | None,
    language: str | None,
    user_upn: str | None,
    now: float,
) -> None:
    """What a DEP enrollment learned from MachineInfo; a repeated enrollment replaces it and counts."""
    db.execute(
        """
        INSERT INTO devices (udid, serial_number, product, version, os_version, imei, meid, language,
                             user_upn, enrolled_at, profile_count)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
        ON CONFLICT (udid) DO UPDATE SET
            serial_number = excluded.serial_number, product = excluded.product,
            version = excluded.version, os_version = excluded.os_version, imei = excluded.imei,
            meid = excluded.meid, language = excluded.language, user_upn = excluded.user_upn,
            enrolled_at = excluded.enrolled_at, profile_count = profile_count + 1
        """,
        (udid, serial_number, product, version, os_version, imei, meid, language, user_upn, now),
    )


# -- enrollments --------------------------------------------------------------------------------------
def get_enrollment(db: sqlite3.Connection, enrollment_id: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM enrollments WHERE id = ?", (enrollment_id,)).fetchone()


def upsert_authenticate(
    db: sqlite3.Connection,
    *,
    enrollment_id: str,
    device_id: str,
    user_id: str | None,
    kind: str,
    serial_number: str | None,
    topic: str | None,
    raw: bytes,
    now: float,
) -> None:
    """Authenticate starts the enrollment over (NanoMDM): not enabled, no token, queue kept."""
    db.execute(
        """
        INSERT INTO enrollments (id, device_id, user_id, type, state, serial_number, topic,
                                 authenticate_raw, created_at, last_seen)
        VALUES (?, ?, ?, ?, 'authenticated', ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET
            state = 'authenticated', serial_number = COALESCE(excluded.serial_number, serial_number),
            topic = excluded.topic, authenticate_raw = excluded.authenticate_raw,
            token_hex = NULL, push_magic = NULL, unlock_token = NULL, token_update_count = 0,
            bootstrap_token = NULL, awaiting_configuration = 0, push_invalid = 0,
            last_seen = excluded.last_seen
        """,
        (enrollment_id, device_id, user_id, kind, serial_number, topic, raw, now, now),
    )


def upsert_token_update(
    db: sqlite3.Connection,
    *,
    enrollment_id: str,
    device_id: str,
    user_id: str | None,
    kind: str,
    topic: str,
    token_hex: str,
    push_magic: str,
    unlock_token: bytes | None,
    awaiting_configuration: bool,
    user_short_name: str | None,
    user_long_name: str | None,
    raw: bytes,
    now: float,
) -> None:
    """A TokenUpdate makes the channel active and push-able again (a fresh token clears ``push_invalid``).

    A user channel has no Authenticate of its own: its first TokenUpdate creates it.
    """
    db.execute(
        """
        INSERT INTO enrollments (id, device_id, user_id, type, state, topic, token_hex, push_magic,
                                 unlock_token, awaiting_configuration, user_short_name, user_long_name,
                                 token_update_raw, token_update_count, created_at, last_seen)
        VALUES (?, ?, ?, ?, 'enrolled', ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
        ON CONFLICT (id) DO UPDATE SET
            state = 'enrolled', topic = excluded.topic, token_hex = excluded.token_hex,
            push_magic = excluded.push_magic,
            unlock_token = COALESCE(excluded.unlock_token, unlock_token),
            awaiting_configuration = excluded.awaiting_configuration,
            user_short_name = COALESCE(excluded.user_short_name, user_short_name),
            user_long_name = COALESCE(excluded.user_long_name, user_long_name),
            token_update_raw = excluded.token_update_raw,
            token_update_count = token_update_count + 1, push_invalid = 0,
            last_seen = excluded.last_seen
        """,
        (
            enrollment_id,
            device_id,
            user_id,
            kind,
            topic,
            token_hex,
            push_magic,
            unlock_token,
            int(awaiting_configuration),
            user_short_name,
            user_long_name,
            raw,
            now,
            now,
        ),
    )


def check_out(
    db: sqlite3.Connection, enrollment_id: str, device_id: str, *, device_channel: bool, now: float
) -> int:
    """CheckOut ends the channel; on the device channel it ends every channel of that device."""
    if device_channel:
        cur = db.execute(
            "UPDATE enrollments SET state = 'checked_out', last_seen = ? WHERE device_id = ?",
            (now, device_id),
        )
    else:
        cur = db.execute(
            "UPDATE enrollments SET state = 'checked_out', last_seen = ? WHERE id = ?", (now, enrollment_id)
        )
    return cur.rowcount


def touch(db: sqlite3.Connection, enrollment_id: str, now: float) -> bool:
    """Record contact; False when there is no such enrollment (one statement: the hot path of every
    check-in and connect)."""
    cur = db.execute("UPDATE enrollments SET last_seen = ? WHERE id = ?", (now, enrollment_id))
    return cur.rowcount > 0


def set_bootstrap_token(db: sqlite3.Connection, enrollment_id: str, token: bytes | None, now: float) -> None:
    db.execute(
        "UPDATE enrollments SET bootstrap_token = ?, last_seen = ? WHERE id = ?", (token, now, enrollment_id)
    )


def get_bootstrap_token(db: sqlite3.Connection, enrollment_id: str) -> bytes | None:
    row = db.execute("SELECT bootstrap_token FROM enrollments WHERE id = ?", (enrollment_id,)).fetchone()
    return bytes(row[0]) if row is not None and row[0] is not None else None


def known_enrollments(db: sqlite3.Connection, enrollment_ids: list[str]) -> set[str]:
    """Which of these enrollment ids exist (one query for a whole command API request)."""
    marks = ",".join("?" * len(enrollment_ids))
    return {r[0] for r in db.execute(f"SELECT id FROM enrollments WHERE id IN ({marks})", enrollment_ids)}


# -- queue --------------------------------------------------------------------------------------------
def insert_command(
    db: sqlite3.Connection, *, command_uuid: str, request_type: str, plist: bytes, priority: int, now: float
) -> bool:
    """Store a command once; False when its CommandUUID is already taken (the transaction goes on)."""
    try:
        db.execute(
            "INSERT INTO commands (uuid, request_type, plist, priority, created_at) VALUES (?, ?, ?, ?, ?)",
            (command_uuid, request_type, plist, priority, now),
        )
    except sqlite3.IntegrityError:
        return False
    return True


def queue_command(db: sqlite3.Connection, enrollment_ids: list[str], command_uuid: str, priority: int) -> None:
    db.executemany(
        "INSERT INTO queue (enrollment_id, command_uuid, priority) VALUES (?, ?, ?)",
        [(eid, command_uuid, priority) for eid in enrollment_ids],
    )


def claim_next_command(
    db: sqlite3.Connection, enrollment_id: str, *, skip_not_now: bool, now: float, lease_before: float
) -> sqlite3.Row | None:
    """Atomically mark the next command of this enrollment as sent and return it.

    Eligible: queued; NotNow unless this request is itself a NotNow; sent but unanswered for longer
    than the lease (a device that died mid-command). One UPDATE … RETURNING inside the caller's
    ``BEGIN IMMEDIATE`` transaction, so two concurrent requests can never claim the same row.
    """
    row = db.execute(
        """
        UPDATE queue SET status = 'sent', sent_at = :now, deliveries = deliveries + 1
        WHERE seq = (
            SELECT seq FROM queue
            WHERE enrollment_id = :eid
              AND (status = 'queued'
                   OR (status = 'NotNow' AND NOT :skip)
                   OR (status = 'sent' AND sent_at < :lease))
            ORDER BY priority DESC, seq
            LIMIT 1)
        RETURNING command_uuid
        """,
        {"now": now, "eid": enrollment_id, "skip": int(skip_not_now), "lease": lease_before},
    ).fetchone()
    if row is None:
        return None
    return db.execute("SELECT uuid, plist FROM commands WHERE uuid = ?", (row[0],)).fetchone()


def command_request_type(db: sqlite3.Connection, command_uuid: str) -> str | None:
    row = db.execute("SELECT request_type FROM commands WHERE uuid = ?", (command_uuid,)).fetchone()
    return str(row[0]) if row is not None else None


def record_result(
    db: sqlite3.Connection,
    *,
    enrollment_id: str,
    command_uuid: str,
    status: str,
    error_chain: str | None,
    raw: bytes,
    now: float,
) -> bool:
    """Store a device's report; returns True when it answered a command queued for it."""
    db.execute(
        "INSERT INTO results (enrollment_id, command_uuid, status, error_chain, raw, received_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (enrollment_id, command_uuid, status, error_chain, raw, now),
    )
    cur = db.execute(
        "UPDATE queue SET status = ?, answered_at = ? WHERE enrollment_id = ? AND command_uuid = ?",
        (status, now, enrollment_id, command_uuid),
    )
    return cur.rowcount > 0


# -- pushes -------------------------------------------------------------------------------------------
def pushable_enrollments(db: sqlite3.Connection, enrollment_ids: list[str]) -> list[sqlite3.Row]:
    """``id, token_hex, push_magic`` of those that can be woken: enrolled, with a token APNs did not refuse."""
    marks = ",".join("?" * len(enrollment_ids))
    return db.execute(
        f"SELECT id, token_hex, push_magic FROM enrollments WHERE id IN ({marks}) "
        "AND state = 'enrolled' AND token_hex IS NOT NULL AND push_invalid = 0",
        enrollment_ids,
    ).fetchall()


def record_push(
    db: sqlite3.Connection,
    *,
    enrollment_id: str,
    token_hex: str,
    ok: bool,
    status: int,
    error: str,
    unregistered: bool,
    now: float,
) -> None:
    """Count a push and keep its last outcome; a 410 marks the token invalid until the next TokenUpdate.

    Matched on the token too: a TokenUpdate that arrived while the push was in flight wins."""
    db.execute(
        """
        UPDATE enrollments SET
            push_sent = push_sent + ?, push_failed = push_failed + ?, push_last_status = ?,
            push_last_error = CASE WHEN ? THEN push_last_error ELSE ? END, push_last_at = ?,
            push_invalid = CASE WHEN ? THEN 1 ELSE push_invalid END
        WHERE id = ? AND token_hex = ?
        """,
        (int(ok), int(not ok), status, int(ok), error, now, int(unregistered), enrollment_id, token_hex),
    )


# -- views --------------------------------------------------------------------------------------------
def get_command(db: sqlite3.Connection, command_uuid: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM commands WHERE uuid = ?", (command_uuid,)).fetchone()


def command_queue(db: sqlite3.Connection, command_uuid: str) -> list[sqlite3.Row]:
    return db.execute("SELECT * FROM queue WHERE command_uuid = ? ORDER BY seq", (command_uuid,)).fetchall()


def command_results(db: sqlite3.Connection, command_uuid: str) -> list[sqlite3.Row]:
    return db.execute("SELECT * FROM results WHERE command_uuid = ? ORDER BY id", (command_uuid,)).fetchall()


def device_ids(db: sqlite3.Connection) -> list[str]:
    """Every device the server knows: enrolled over DEP, checked in on its device channel, or both."""
    return [
        r[0]
        for r in db.execute(
            "SELECT udid FROM devices UNION SELECT device_id FROM enrollments WHERE user_id IS NULL ORDER BY 1"
        )
    ]


def get_device(db: sqlite3.Connection, udid: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM devices WHERE udid = ?", (udid,)).fetchone()


def device_channel(db: sqlite3.Connection, udid: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM enrollments WHERE id = ? AND user_id IS NULL", (udid,)).fetchone()


def user_channels(db: sqlite3.Connection, udid: str) -> list[sqlite3.Row]:
    return db.execute(
        "SELECT user_id, user_short_name, state FROM enrollments WHERE device_id = ? AND user_id IS NOT NULL",
        (udid,),
    ).fetchall()
