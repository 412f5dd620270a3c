"""Queries on ``push_certificate``: the tenant's one row (``id = 1``), its waiting CSR and the certificate in use."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

__all__ = ["Upload", "ensure", "get", "record_failure", "record_upload", "set_pending"]


def get(db: sqlite3.Connection) -> sqlite3.Row | None:
    """The row, or None before anything was asked of the push certificate."""
    return db.execute("SELECT * FROM push_certificate WHERE id = 1").fetchone()


def ensure(db: sqlite3.Connection, graph_id: str) -> sqlite3.Row:
    """The row, made (with ``graph_id``, its Graph id) the first time."""
    db.execute("INSERT OR IGNORE INTO push_certificate (id, graph_id) VALUES (1, ?)", (graph_id,))
    row = get(db)
    assert row is not None
    return row


def set_pending(db: sqlite3.Connection, key_pem: str, csr_pem: str) -> None:
    """The key and CSR waiting for Apple's certificate."""
    db.execute(
        "UPDATE push_certificate SET pending_key_pem = ?, pending_csr_pem = ? WHERE id = 1",
        (key_pem, csr_pem),
    )


@dataclass(frozen=True)
class Upload:
    """An accepted certificate, as the row keeps it."""

    cert_pem: str
    key_pem: str
    apple_identifier: str
    topic: str
    serial: str
    not_after: float
    used_pending: bool  # the certificate was for the waiting key: the CSR is used up
    previous_topic: str | None  # set when the topic changed: kept to explain unreachable devices


def record_upload(db: sqlite3.Connection, upload: Upload, now: float) -> None:
    changed = upload.previous_topic is not None
    db.execute(
        """UPDATE push_certificate SET cert_pem = ?, key_pem = ?, apple_identifier = ?, topic = ?,
           serial = ?, not_after = ?, modified_at = ?, upload_status = 'success',
           failure_reason = NULL,
           pending_key_pem = CASE WHEN ? THEN NULL ELSE pending_key_pem END,
           pending_csr_pem = CASE WHEN ? THEN NULL ELSE pending_csr_pem END,
           previous_topic = CASE WHEN ? THEN ? ELSE previous_topic END,
           topic_changed_at = CASE WHEN ? THEN ? ELSE topic_changed_at END
           WHERE id = 1""",
        (
            upload.cert_pem,
            upload.key_pem,
            upload.apple_identifier,
            upload.topic,
            upload.serial,
            upload.not_after,
            now,
            int(upload.used_pending),
            int(upload.used_pending),
            int(changed),
            upload.previous_topic,
            int(changed),
            now,
        ),
    )


def record_failure(db: sqlite3.Connection, reason: str, now: float) -> None:
    """A refused upload: shown on the certificate, which stays as it was."""
    db.execute(
        "UPDATE push_certificate SET upload_status = 'failed', failure_reason = ?, modified_at = ? WHERE id = 1",
        (reason, now),
    )
