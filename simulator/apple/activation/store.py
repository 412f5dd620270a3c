"""Activation's table (Apple's device CA) and the SQL the activation service runs.

The CA lives in Apple's one store, beside the devices it vouches for, so every worker process of a
world issues and trusts the same CA and a restart keeps it. The cloud-configuration query reads the
device records, DEP profiles, servers and organisation; marking a profile pushed is a device write,
:func:`simulator.apple.devices.mark_pushed`.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

__all__ = ["MIGRATIONS", "attestation_ca", "device_ca", "save_attestation_ca", "save_device_ca", "cloud_configuration"]

#: Activation's tables. The first is the Apple store's second migration (see :mod:`simulator.apple.store`);
#: ``IF NOT EXISTS``: before it was a migration, the service created the table itself. The second holds
#: the Enterprise Attestation CA (:mod:`.attestation`): the root's certificate, the sub CA and its key.
MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS activation_device_ca (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        cert_pem BLOB NOT NULL,
        key_pem BLOB NOT NULL
    );
    """,
    """
    CREATE TABLE activation_attestation_ca (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        root_pem BLOB NOT NULL,
        sub_ca_pem BLOB NOT NULL,
        sub_ca_key_pem BLOB NOT NULL
    );
    """,
]


def device_ca(db: sqlite3.Connection) -> tuple[bytes, bytes] | None:
    """``(certificate PEM, key PEM)`` of the stored device CA, if one was made."""
    row = db.execute("SELECT cert_pem, key_pem FROM activation_device_ca WHERE id = 1").fetchone()
    return None if row is None else (bytes(row["cert_pem"]), bytes(row["key_pem"]))


def save_device_ca(db: sqlite3.Connection, cert_pem: bytes, key_pem: bytes) -> None:
    db.execute(
        "INSERT OR REPLACE INTO activation_device_ca (id, cert_pem, key_pem) VALUES (1, ?, ?)", (cert_pem, key_pem)
    )


def attestation_ca(db: sqlite3.Connection) -> tuple[bytes, bytes, bytes] | None:
    """``(root PEM, sub CA PEM, sub CA key PEM)`` of the Enterprise Attestation CA, if one was made."""
    row = db.execute("SELECT root_pem, sub_ca_pem, sub_ca_key_pem FROM activation_attestation_ca WHERE id = 1").fetchone()
    return None if row is None else (bytes(row[0]), bytes(row[1]), bytes(row[2]))


def save_attestation_ca(db: sqlite3.Connection, root_pem: bytes, sub_ca_pem: bytes, sub_ca_key_pem: bytes) -> None:
    db.execute(
        "INSERT OR REPLACE INTO activation_attestation_ca (id, root_pem, sub_ca_pem, sub_ca_key_pem) VALUES (1, ?, ?, ?)",
        (root_pem, sub_ca_pem, sub_ca_key_pem),
    )


def cloud_configuration(db: sqlite3.Connection, serial: str) -> dict[str, Any] | None:
    """What Apple tells a device during activation: its profile, server and organisation, or None
    when the serial has no profile on a server (or left the organisation)."""
    row = db.execute(
        "SELECT d.profile_uuid, d.profile_status, p.body, s.server_uuid, s.server_name "
        "FROM devices d JOIN profiles p ON p.id = d.profile_id JOIN servers s ON s.id = d.server_id "
        "WHERE d.serial = ? AND d.released = 0",
        (serial,),
    ).fetchone()
    if row is None:
        return None
    org = db.execute("SELECT name, phone, email, address FROM organization WHERE id = 1").fetchone()
    return {
        "serial_number": serial,
        "profile_uuid": row["profile_uuid"],
        "profile_status": row["profile_status"],
        "profile": json.loads(row["body"]),
        "server_uuid": row["server_uuid"],
        "server_name": row["server_name"],
        "org_name": org["name"] if org else "",
        "org_phone": org["phone"] if org else "",
        "org_email": org["email"] if org else "",
        "org_address": org["address"] if org else "",
    }
