"""Persistence of the MDM server's SCEP service: one-time challenges and pending transactions.

A challenge is stored as its SHA-256 (a leaked database does not leak a usable challenge), with the
subject it was made for (an enrollment's UDID) or none (a tool's), its expiry, and when it was used.
A transaction remembers what a PENDING request asked for, so a later CertPoll can be answered.
"""

from __future__ import annotations

import sqlite3
from typing import Any

__all__ = [
    "SCEP_MIGRATION",
    "insert_challenge",
    "challenge_exists",
    "count_challenges",
    "claim_challenge",
    "get_transaction",
    "put_transaction",
]

SCEP_MIGRATION = """
CREATE TABLE scep_challenges (
    digest TEXT PRIMARY KEY,
    subject_cn TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    pending_seconds REAL NOT NULL DEFAULT 0,
    used_at REAL
);
CREATE TABLE scep_transactions (
    transaction_id TEXT NOT NULL,
    signer_fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    csr BLOB NOT NULL,
    ready_at REAL NOT NULL,
    certificate BLOB,
    created_at REAL NOT NULL,
    PRIMARY KEY (transaction_id, signer_fingerprint)
);
"""


def insert_challenge(
    db: sqlite3.Connection, digest: str, subject_cn: str | None, now: float, expires_at: float, pending_seconds: float
) -> None:
    db.execute(
        "INSERT INTO scep_challenges (digest, subject_cn, created_at, expires_at, pending_seconds) VALUES (?, ?, ?, ?, ?)",
        (digest, subject_cn, now, expires_at, pending_seconds),
    )


def challenge_exists(db: sqlite3.Connection, digest: str) -> bool:
    return db.execute("SELECT 1 FROM scep_challenges WHERE digest = ?", (digest,)).fetchone() is not None


def count_challenges(db: sqlite3.Connection) -> int:
    return db.execute("SELECT count(*) FROM scep_challenges").fetchone()[0]


def claim_challenge(db: sqlite3.Connection, digest: str, now: float) -> tuple[str, Any] | None:
    """Use a challenge once: ``("ok", row)``, ``("used", row)``, ``("expired", row)``, or None if unknown.

    The UPDATE that marks it used is the check, so two requests racing with one challenge cannot
    both succeed (the store serialises writers)."""
    row = db.execute("SELECT * FROM scep_challenges WHERE digest = ?", (digest,)).fetchone()
    if row is None:
        return None
    if row["used_at"] is not None:
        return "used", row
    if row["expires_at"] <= now:
        return "expired", row
    claimed = db.execute(
        "UPDATE scep_challenges SET used_at = ? WHERE digest = ? AND used_at IS NULL", (now, digest)
    ).rowcount
    return ("ok", row) if claimed == 1 else ("used", row)


def get_transaction(db: sqlite3.Connection, transaction_id: str, signer_fingerprint: str) -> Any:
    return db.execute(
        "SELECT * FROM scep_transactions WHERE transaction_id = ? AND signer_fingerprint = ?",
        (transaction_id, signer_fingerprint),
    ).fetchone()


def put_transaction(
    db: sqlite3.Connection,
    transaction_id: str,
    signer_fingerprint: str,
    status: str,
    csr: bytes,
    ready_at: float,
    now: float,
    certificate: bytes | None = None,
) -> None:
    db.execute(
        "INSERT INTO scep_transactions (transaction_id, signer_fingerprint, status, csr, ready_at, certificate, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (transaction_id, signer_fingerprint) DO UPDATE SET "
        "status = excluded.status, certificate = excluded.certificate",
        (transaction_id, signer_fingerprint, status, csr, ready_at, certificate, now),
    )
