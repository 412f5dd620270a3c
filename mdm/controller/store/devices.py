"""Queries on ``devices`` (the imported Apple device identities of each token) and ``udids``.

A device row is keyed by (token, serial); ``seq`` orders the listing and is what a ``$skiptoken``
points after. What a sync writes (:func:`upsert_from_apple`) and what an assignment or an MDM event
writes touch separate columns, so neither undoes the other.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "FILTER_COLUMNS",
    "AppleDevice",
    "count_listed",
    "count_matching",
    "count_unreachable",
    "delete_for_token",
    "due_retries",
    "forget_profile",
    "get",
    "known_serials",
    "mark_deleted",
    "mark_unseen_deleted",
    "page",
    "record_assigned",
    "record_assignment_status",
    "record_contact",
    "record_throttled",
    "remember_udid",
    "rows_for_serial",
    "serial_of_udid",
    "serials_awaiting_default",
    "serials_with_profile",
    "upsert_from_apple",
]

#: The columns a listing may be filtered or ordered on (the only names :func:`page` puts in SQL).
FILTER_COLUMNS = frozenset({
    "serial", "enrollment_state", "requested_profile_id", "is_deleted", "is_supervised", "description",
    "created_at", "last_contacted", "requested_at", "model", "os",
})
_CHUNK = 500  # serials per ``IN (...)``: well under SQLite's bound-parameter limit

AppleDevice = Mapping[str, Any]  # one device of Apple's /server/devices or /devices/sync reply


# -- listing ----------------------------------------------------------------------------------------
def _where(conditions: Sequence[tuple[str, str, Any]]) -> tuple[str, list[Any]]:
    """`` AND …`` for ``(column, op, value)`` conditions: ``eq``, ``ne`` (NULL-aware) or ``startswith``."""
    sql, args = "", []
    for column, op, value in conditions:
        if column not in FILTER_COLUMNS:
            raise ValueError(f"devices cannot be filtered on {column!r}")
        if op == "eq":
            sql += f" AND {column} IS ?"
        elif op == "ne":
            sql += f" AND {column} IS NOT ?"
        elif op == "startswith":
            sql += f" AND lower(substr({column}, 1, length(?))) = lower(?)"
            args.append(value)
        else:
            raise ValueError(f"unknown condition {op!r}")
        args.append(value)
    return sql, args


def page(
    db: sqlite3.Connection,
    token_id: str,
    *,
    after_seq: int = 0,
    offset: int = 0,
    limit: int,
    conditions: Sequence[tuple[str, str, Any]] = (),
    order: Sequence[tuple[str, bool]] = (),
) -> list[sqlite3.Row]:
    """Up to ``limit`` rows of the token matching every condition: after ``after_seq`` in ``seq`` order
    (keyset paging), or in ``order`` (``(column, descending)``, then ``seq``) from ``offset``."""
    where, args = _where(conditions)
    by = ""
    for column, descending in order:
        if column not in FILTER_COLUMNS:
            raise ValueError(f"devices cannot be ordered by {column!r}")
        by += f"{column} {'DESC' if descending else 'ASC'}, "
    return db.execute(
        f"SELECT * FROM devices WHERE token_id = ? AND seq > ?{where} ORDER BY {by}seq LIMIT ? OFFSET ?",
        (token_id, after_seq, *args, limit, offset),
    ).fetchall()


def count_matching(db: sqlite3.Connection, token_id: str, conditions: Sequence[tuple[str, str, Any]] = ()) -> int:
    """How many of the token's rows match every condition (``@odata.count``)."""
    where, args = _where(conditions)
    return int(db.execute(f"SELECT count(*) FROM devices WHERE token_id = ?{where}", (token_id, *args)).fetchone()[0])


def get(db: sqlite3.Connection, token_id: str, device_id: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM devices WHERE token_id = ? AND id = ?", (token_id, device_id)).fetchone()


def count_listed(db: sqlite3.Connection, token_id: str) -> int:
    """Devices Apple still lists for the token (``syncedDeviceCount``)."""
    return int(
        db.execute("SELECT count(*) FROM devices WHERE token_id = ? AND is_deleted = 0", (token_id,)).fetchone()[0]
    )


def count_unreachable(db: sqlite3.Connection, topic: str) -> int:
    """Enrolled devices whose enrollment topic is not ``topic``: unreachable by push."""
    return int(
        db.execute(
            "SELECT count(*) FROM devices WHERE is_deleted = 0 AND enrollment_state = 'enrolled' "
            "AND mdm_topic IS NOT NULL AND mdm_topic != ?",
            (topic,),
        ).fetchone()[0]
    )


# -- what syncs write ---------------------------------------------------------------------------------
def known_serials(db: sqlite3.Connection, token_id: str, serials: Sequence[str]) -> set[str]:
    """Which of ``serials`` the token already has a row for (deleted or not)."""
    known: set[str] = set()
    for start in range(0, len(serials), _CHUNK):
        part = serials[start : start + _CHUNK]
        known.update(
            r[0]
            for r in db.execute(
                f"SELECT serial FROM devices WHERE token_id = ? AND serial IN ({','.join('?' * len(part))})",
                (token_id, *part),
            )
        )
    return known


def upsert_from_apple(
    db: sqlite3.Connection, token_id: str, sync_id: str, device: AppleDevice, now: float, device_id: str
) -> None:
    """Add the device Apple listed (as ``device_id``), or refresh Apple's fields of a known one; either way
    listed again and seen by sync ``sync_id``. Apple's texts are cut to 500 characters, the serial to 64."""

    def text(name: str) -> str | None:
        value = device.get(name)
        return str(value)[:500] if value is not None else None

    db.execute(
        """INSERT INTO devices (id, token_id, serial, description, model, color, os, device_family,
               apple_profile_status, apple_profile_uuid, created_at, seen_sync)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (token_id, serial) DO UPDATE SET description = excluded.description,
               model = excluded.model, color = excluded.color, os = excluded.os,
               device_family = excluded.device_family,
               apple_profile_status = excluded.apple_profile_status,
               apple_profile_uuid = excluded.apple_profile_uuid, is_deleted = 0,
               seen_sync = excluded.seen_sync""",
        (
            device_id,
            token_id,
            device["serial_number"][:64],
            text("description"),
            text("model"),
            text("color"),
            text("os"),
            text("device_family"),
            text("profile_status"),
            text("profile_uuid"),
            now,
            sync_id,
        ),
    )


def mark_deleted(db: sqlite3.Connection, token_id: str, serial: str) -> None:
    """Apple no longer lists the serial for this MDM server (kept, with ``isDeleted``)."""
    db.execute("UPDATE devices SET is_deleted = 1 WHERE token_id = ? AND serial = ?", (token_id, serial))


def mark_unseen_deleted(db: sqlite3.Connection, token_id: str, sync_id: str) -> None:
    """After a full sync: every device that sync did not list is deleted."""
    db.execute(
        "UPDATE devices SET is_deleted = 1 WHERE token_id = ? AND seen_sync IS NOT ?",
        (token_id, sync_id),
    )


def delete_for_token(db: sqlite3.Connection, token_id: str) -> None:
    """Forget the token's devices (its DEP token now belongs to another MDM server)."""
    db.execute("DELETE FROM devices WHERE token_id = ?", (token_id,))


# -- what assignments write ---------------------------------------------------------------------------
def serials_with_profile(db: sqlite3.Connection, token_id: str, profile_id: str) -> list[str]:
    """Listed serials the profile was assigned to."""
    return [
        r[0]
        for r in db.execute(
            "SELECT serial FROM devices WHERE token_id = ? AND requested_profile_id = ? AND is_deleted = 0",
            (token_id, profile_id),
        )
    ]


def serials_awaiting_default(db: sqlite3.Connection, token_id: str) -> list[tuple[str, str | None]]:
    """(serial, Apple's ``os``) of listed serials with no profile requested, no retry waiting, and no
    refusal from Apple: the os picks the token's default iOS or macOS profile."""
    return [
        (r[0], r[1])
        for r in db.execute(
            "SELECT serial, os FROM devices WHERE token_id = ? AND requested_profile_id IS "
            "NULL AND is_deleted = 0 "
            "AND retry_at IS NULL AND (assignment_status IS NULL OR assignment_status = "
            "'SUCCESS') ORDER BY seq",
            (token_id,),
        )
    ]


def record_assigned(
    db: sqlite3.Connection, token_id: str, serial: str, *, profile_id: str, now: float, supervised: bool
) -> None:
    """Apple answered SUCCESS: the profile is the device's requested one."""
    db.execute(
        "UPDATE devices SET requested_profile_id = ?, requested_at = ?, is_supervised = ?, "
        "assignment_status = 'SUCCESS', retry_at = NULL, retry_profile_id = NULL "
        "WHERE token_id = ? AND serial = ?",
        (profile_id, now, int(supervised), token_id, serial),
    )


def record_throttled(db: sqlite3.Connection, token_id: str, serial: str, *, profile_id: str, retry_at: float) -> None:
    """Apple answered THROTTLED: assign ``profile_id`` again at ``retry_at``."""
    db.execute(
        "UPDATE devices SET assignment_status = 'THROTTLED', retry_at = ?, retry_profile_id = ? "
        "WHERE token_id = ? AND serial = ?",
        (retry_at, profile_id, token_id, serial),
    )


def record_assignment_status(db: sqlite3.Connection, token_id: str, serial: str, status: str) -> None:
    """Apple refused the serial (NOT_ACCESSIBLE, FAILED, ...): shown, not retried."""
    db.execute(
        "UPDATE devices SET assignment_status = ?, retry_at = NULL, retry_profile_id = NULL "
        "WHERE token_id = ? AND serial = ?",
        (status, token_id, serial),
    )


def due_retries(db: sqlite3.Connection, now: float) -> list[sqlite3.Row]:
    """``token_id``, ``retry_profile_id`` and ``serial`` of every THROTTLED assignment due by ``now``."""
    return db.execute(
        "SELECT token_id, retry_profile_id, serial FROM devices WHERE retry_at IS NOT "
        "NULL AND retry_at <= ? "
        "ORDER BY seq",
        (now,),
    ).fetchall()


def forget_profile(db: sqlite3.Connection, token_id: str, profile_id: str) -> None:
    """The profile is deleted: no device requests it or waits to be assigned it any more."""
    db.execute(
        "UPDATE devices SET requested_profile_id = NULL, requested_at = NULL, retry_at = NULL, "
        "retry_profile_id = NULL WHERE token_id = ? AND (requested_profile_id = ? OR "
        "retry_profile_id = ?)",
        (token_id, profile_id, profile_id),
    )


# -- what MDM events write ----------------------------------------------------------------------------
def remember_udid(db: sqlite3.Connection, udid: str, serial: str) -> None:
    db.execute(
        "INSERT INTO udids (udid, serial) VALUES (?, ?) ON CONFLICT (udid) DO UPDATE SET serial = excluded.serial",
        (udid[:100], serial[:64]),
    )


def serial_of_udid(db: sqlite3.Connection, udid: str) -> str | None:
    row = db.execute("SELECT serial FROM udids WHERE udid = ?", (udid,)).fetchone()
    return row[0] if row is not None else None


def rows_for_serial(db: sqlite3.Connection, serial: str) -> list[sqlite3.Row]:
    """Every token's row of a serial (a serial moved between MDM servers has one per token)."""
    return db.execute("SELECT * FROM devices WHERE serial = ? ORDER BY seq", (serial,)).fetchall()


def record_contact(
    db: sqlite3.Connection,
    serial: str,
    *,
    now: float,
    udid: str | None,
    enrollment_state: str | None,
    topic: str | None,
) -> None:
    """The device checked in: last contact, and whichever of UDID, state and push topic the event carried.

    Every token's row of the serial is updated (a serial moved between MDM servers keeps one device)."""
    db.execute(
        "UPDATE devices SET last_contacted = ?, udid = coalesce(?, udid), "
        "enrollment_state = coalesce(?, enrollment_state), mdm_topic = coalesce(?, mdm_topic) "
        "WHERE serial = ?",
        (now, udid, enrollment_state, topic, serial),
    )
