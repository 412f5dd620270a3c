"""Persistence of the MDM server's ACME service: ClientIdentifiers, nonces, accounts, orders, certificates.

A ClientIdentifier is stored as its SHA-256 (as SCEP challenges are: a leaked database holds no usable
one) with the device it was given to, the account that first ordered with it and when it was spent.
Every other object is named by an id drawn once its row exists (:func:`insert_named`), so a seeded
world names them by their row number and an unseeded one by OS randomness. Orders carry one
identifier and one authorization, which carries its one ``device-attest-01`` challenge.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

__all__ = [
    "ACME_MIGRATION",
    "bind_client_identifier",
    "count_client_identifiers",
    "get_account",
    "get_account_by_thumbprint",
    "get_authorization",
    "get_authorization_by_challenge",
    "get_authorization_of_order",
    "get_certificate",
    "get_client_identifier",
    "get_order",
    "insert_client_identifier",
    "insert_named",
    "latest_certificate_for",
    "prune_nonces",
    "spend_client_identifier",
    "take_nonce",
    "update_account",
    "update_authorization",
    "update_order",
]

ACME_MIGRATION = """
CREATE TABLE acme_client_identifiers (
    digest TEXT PRIMARY KEY,
    udid TEXT NOT NULL,
    serial_number TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    account_id TEXT,
    used_at REAL
);
CREATE TABLE acme_nonces (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE,
    expires_at REAL NOT NULL
);
CREATE INDEX acme_nonces_expiry ON acme_nonces (expires_at);
CREATE TABLE acme_accounts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE,
    thumbprint TEXT UNIQUE NOT NULL,
    jwk TEXT NOT NULL,
    status TEXT NOT NULL,
    contact TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE acme_orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE,
    account_id TEXT NOT NULL,
    status TEXT NOT NULL,
    identifier TEXT NOT NULL,
    client_digest TEXT NOT NULL,
    expires_at REAL NOT NULL,
    error TEXT,
    certificate_id TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE acme_authorizations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE,
    order_id TEXT NOT NULL,
    status TEXT NOT NULL,
    token TEXT NOT NULL,
    challenge_id TEXT UNIQUE NOT NULL,
    challenge_status TEXT NOT NULL,
    error TEXT,
    validated_at REAL,
    key_sha256 TEXT,
    attestation TEXT,
    expires_at REAL NOT NULL
);
CREATE TABLE acme_certificates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE,
    order_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    udid TEXT NOT NULL,
    chain_pem BLOB NOT NULL,
    key_sha256 TEXT NOT NULL,
    attestation TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX acme_certificates_udid ON acme_certificates (udid, seq);
"""

_NAMED = {"acme_nonces", "acme_accounts", "acme_orders", "acme_authorizations", "acme_certificates"}


def insert_named(db: sqlite3.Connection, table: str, values: dict[str, Any], name: Callable[[int], str]) -> str:
    """Insert a row and give it the id ``name(row number)``: ids that follow the row, never reused."""
    if table not in _NAMED:
        raise ValueError(f"not an ACME table with ids: {table}")
    columns = ", ".join(values)
    marks = ", ".join("?" * len(values))
    seq = db.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(values.values())).lastrowid
    assert seq is not None
    ident = name(int(seq))
    db.execute(f"UPDATE {table} SET id = ? WHERE seq = ?", (ident, seq))
    return ident


# -- ClientIdentifiers -----------------------------------------------------------------------------------
def insert_client_identifier(db: sqlite3.Connection, digest: str, udid: str, serial: str | None, now: float,
                             expires_at: float) -> None:
    db.execute(
        "INSERT INTO acme_client_identifiers (digest, udid, serial_number, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        (digest, udid, serial, now, expires_at),
    )


def count_client_identifiers(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM acme_client_identifiers").fetchone()[0])


def get_client_identifier(db: sqlite3.Connection, digest: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM acme_client_identifiers WHERE digest = ?", (digest,)).fetchone()


def bind_client_identifier(db: sqlite3.Connection, digest: str, account_id: str) -> bool:
    """The first account to order with a ClientIdentifier owns it; False if another one does."""
    return db.execute(
        "UPDATE acme_client_identifiers SET account_id = ? WHERE digest = ? AND (account_id IS NULL OR account_id = ?)",
        (account_id, digest, account_id),
    ).rowcount == 1


def spend_client_identifier(db: sqlite3.Connection, digest: str, now: float) -> bool:
    """Mark it used (the certificate is being issued); False if it was used already. The UPDATE is the
    check, so two finalizations racing with one ClientIdentifier cannot both issue."""
    return db.execute(
        "UPDATE acme_client_identifiers SET used_at = ? WHERE digest = ? AND used_at IS NULL", (now, digest)
    ).rowcount == 1


# -- nonces ----------------------------------------------------------------------------------------------
def take_nonce(db: sqlite3.Connection, nonce: str, now: float) -> bool:
    """Use a nonce once: True if it was given out and has not expired (it is gone either way)."""
    row = db.execute("DELETE FROM acme_nonces WHERE id = ? RETURNING expires_at", (nonce,)).fetchone()
    return row is not None and row[0] > now


def prune_nonces(db: sqlite3.Connection, now: float) -> None:
    db.execute("DELETE FROM acme_nonces WHERE expires_at <= ?", (now,))


# -- accounts, orders, authorizations, certificates ------------------------------------------------------
def get_account(db: sqlite3.Connection, account_id: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM acme_accounts WHERE id = ?", (account_id,)).fetchone()


def get_account_by_thumbprint(db: sqlite3.Connection, thumbprint: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM acme_accounts WHERE thumbprint = ?", (thumbprint,)).fetchone()


def update_account(db: sqlite3.Connection, account_id: str, *, status: str, contact: str) -> None:
    db.execute("UPDATE acme_accounts SET status = ?, contact = ? WHERE id = ?", (status, contact, account_id))


def get_order(db: sqlite3.Connection, order_id: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM acme_orders WHERE id = ?", (order_id,)).fetchone()


def update_order(db: sqlite3.Connection, order_id: str, *, status: str, expect: tuple[str, ...],
                 error: str | None = None, certificate_id: str | None = None) -> bool:
    """Move an order on, only from one of the states ``expect``s (so a race has one winner)."""
    marks = ",".join("?" * len(expect))
    return db.execute(
        f"UPDATE acme_orders SET status = ?, error = COALESCE(?, error), certificate_id = COALESCE(?, certificate_id) "
        f"WHERE id = ? AND status IN ({marks})",
        (status, error, certificate_id, order_id, *expect),
    ).rowcount == 1


def get_authorization(db: sqlite3.Connection, authz_id: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM acme_authorizations WHERE id = ?", (authz_id,)).fetchone()


def get_authorization_of_order(db: sqlite3.Connection, order_id: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM acme_authorizations WHERE order_id = ?", (order_id,)).fetchone()


def get_authorization_by_challenge(db: sqlite3.Connection, challenge_id: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM acme_authorizations WHERE challenge_id = ?", (challenge_id,)).fetchone()


def update_authorization(
    db: sqlite3.Connection, authz_id: str, *, status: str, challenge_status: str, expect: str,
    error: str | None = None, validated_at: float | None = None, key_sha256: str | None = None,
    attestation: str | None = None,
) -> bool:
    return db.execute(
        "UPDATE acme_authorizations SET status = ?, challenge_status = ?, error = ?, validated_at = ?, "
        "key_sha256 = ?, attestation = ? WHERE id = ? AND status = ?",
        (status, challenge_status, error, validated_at, key_sha256, attestation, authz_id, expect),
    ).rowcount == 1


def get_certificate(db: sqlite3.Connection, certificate_id: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM acme_certificates WHERE id = ?", (certificate_id,)).fetchone()


def latest_certificate_for(db: sqlite3.Connection, udid: str) -> sqlite3.Row | None:
    return db.execute(
        "SELECT * FROM acme_certificates WHERE udid = ? ORDER BY seq DESC LIMIT 1", (udid,)
    ).fetchone()
