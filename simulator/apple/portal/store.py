"""The portal's tables (the organisation, its MDM servers, beta programs and API accounts) and the SQL the portal runs.

Devices belong to :mod:`simulator.apple.devices` (DEP and activation write them too); this module only
reads them for the portal's own listings. Every function takes an open connection, so the service
decides the transaction boundaries.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MIGRATIONS",
    "organization",
    "insert_organization",
    "update_organization",
    "set_terms_required",
    "terms_required",
    "server_id",
    "server_by_keys",
    "server_name_taken",
    "insert_server",
    "server",
    "servers",
    "server_credentials",
    "set_public_key",
    "public_key_pem",
    "device",
    "device_page",
    "device_count",
    "serials",
    "set_organization_flag",
    "ORGANIZATION_FLAGS",
    "renew_token",
    "beta_programs",
    "insert_beta_program",
    "delete_beta_program",
    "insert_api_account",
    "api_account",
    "api_accounts",
    "active_api_account_count",
    "take_api_private_key",
    "revoke_api_account",
]

#: The portal's tables, part of the Apple store's first migration (see :mod:`simulator.apple.store`).
MIGRATIONS = [
    """
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
    """,
    # 2: what the organisation allows (AppleSeed for IT, account-driven enrollment), the beta programs
    # it may enroll devices in, and which generation of each server's token is the active one.
    """
    ALTER TABLE organization ADD COLUMN apple_seed_for_it INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE organization ADD COLUMN account_driven_enrollment INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE servers ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE beta_programs (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        os TEXT NOT NULL,
        token TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL
    );
    """,
    # 3: API accounts (Preferences → API): who may call the Business API with a signed client assertion.
    # The private key is kept only until its one download; the public key checks every assertion.
    """
    CREATE TABLE api_accounts (
        id INTEGER PRIMARY KEY,
        client_id TEXT NOT NULL UNIQUE,
        key_id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        public_key_pem TEXT NOT NULL,
        private_key_pem TEXT,
        created_at REAL NOT NULL,
        key_downloaded_at REAL,
        revoked_at REAL
    );
    """,
]

_ORGANIZATION_FIELDS = ("name", "email", "phone", "address", "org_id", "org_type", "org_version", "admin_id")
_CREDENTIALS = ("consumer_key", "consumer_secret", "access_token", "access_secret")


def _dict(row: sqlite3.Row | None) -> dict[str, Any] | None:
    return dict(row) if row is not None else None


# -- the organisation --------------------------------------------------------------------------------


def organization(db: sqlite3.Connection) -> dict[str, Any] | None:
    """The world's one organisation, or ``None`` before the portal made it."""
    return _dict(db.execute("SELECT * FROM organization WHERE id = 1").fetchone())


def insert_organization(db: sqlite3.Connection, fields: Mapping[str, str]) -> None:
    """Create the one organisation from every field of :data:`_ORGANIZATION_FIELDS`."""
    db.execute(
        f"INSERT INTO organization (id, {', '.join(_ORGANIZATION_FIELDS)}) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
        tuple(fields[name] for name in _ORGANIZATION_FIELDS),
    )


def update_organization(db: sqlite3.Connection, changes: Mapping[str, str]) -> None:
    """Set the given organisation fields (names from a fixed list, never from a request)."""
    for column, value in changes.items():
        if column not in _ORGANIZATION_FIELDS:
            raise ValueError(f"not an organisation field: {column}")
        db.execute(f"UPDATE organization SET {column} = ? WHERE id = 1", (value,))


def set_terms_required(db: sqlite3.Connection, required: bool) -> None:
    db.execute("UPDATE organization SET require_terms = ? WHERE id = 1", (1 if required else 0,))


#: The organisation's switches an admin turns in the portal (column names, never taken from a request).
ORGANIZATION_FLAGS = ("apple_seed_for_it", "account_driven_enrollment")


def set_organization_flag(db: sqlite3.Connection, flag: str, value: bool) -> None:
    if flag not in ORGANIZATION_FLAGS:
        raise ValueError(f"not an organisation switch: {flag}")
    db.execute(f"UPDATE organization SET {flag} = ? WHERE id = 1", (1 if value else 0,))


def terms_required(db: sqlite3.Connection) -> bool:
    """Whether new terms wait for the admin (no organisation yet: no terms)."""
    row = db.execute("SELECT require_terms FROM organization WHERE id = 1").fetchone()
    return row is not None and bool(row[0])


# -- MDM servers -------------------------------------------------------------------------------------


def server_id(db: sqlite3.Connection, server_uuid: str) -> int | None:
    row = db.execute("SELECT id FROM servers WHERE server_uuid = ?", (server_uuid,)).fetchone()
    return int(row[0]) if row is not None else None


def server_by_keys(db: sqlite3.Connection, consumer_key: str, access_token: str) -> str | None:
    """The UUID of a server holding either key (depsim's well-known credentials are unique per world)."""
    row = db.execute(
        "SELECT server_uuid FROM servers WHERE consumer_key = ? OR access_token = ?", (consumer_key, access_token)
    ).fetchone()
    return str(row[0]) if row is not None else None


def server_name_taken(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM servers WHERE server_name = ?", (name,)).fetchone() is not None


def insert_server(
    db: sqlite3.Connection, server_uuid: str, name: str, keys: Mapping[str, str], now: float, expiry: float
) -> None:
    db.execute(
        "INSERT INTO servers (server_uuid, server_name, consumer_key, consumer_secret, access_token, "
        "access_secret, token_issued_at, access_token_expiry, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (server_uuid, name, *(keys[k] for k in _CREDENTIALS), now, expiry, now),
    )


def renew_token(
    db: sqlite3.Connection, server_uuid: str, access_token: str, access_secret: str, now: float, expiry: float
) -> bool:
    """A new active token for the server: new access keys, issued now, the next generation (False: no
    such server). The consumer key and secret stay: they name the MDM server, not one token."""
    return db.execute(
        "UPDATE servers SET access_token = ?, access_secret = ?, token_issued_at = ?, access_token_expiry = ?, "
        "token_generation = token_generation + 1 WHERE server_uuid = ?",
        (access_token, access_secret, now, expiry, server_uuid),
    ).rowcount > 0


def server(db: sqlite3.Connection, server_uuid: str) -> sqlite3.Row | None:
    """A server's row with ``device_count`` (devices assigned to it now)."""
    return db.execute(
        "SELECT s.*, (SELECT count(*) FROM devices d WHERE d.server_id = s.id) AS device_count "
        "FROM servers s WHERE s.server_uuid = ?",
        (server_uuid,),
    ).fetchone()


def servers(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """``[{server_uuid, server_name, device_count}]`` in creation order."""
    rows = db.execute(
        "SELECT s.server_uuid, s.server_name, "
        "(SELECT count(*) FROM devices d WHERE d.server_id = s.id) AS device_count "
        "FROM servers s ORDER BY s.id"
    ).fetchall()
    return [dict(r) for r in rows]


def server_credentials(db: sqlite3.Connection, server_uuid: str) -> dict[str, Any] | None:
    """The OAuth keys of a server token, with ``access_token_expiry`` as a world timestamp."""
    return _dict(
        db.execute(
            "SELECT consumer_key, consumer_secret, access_token, access_secret, access_token_expiry "
            "FROM servers WHERE server_uuid = ?",
            (server_uuid,),
        ).fetchone()
    )


def set_public_key(db: sqlite3.Connection, server_uuid: str, pem: str) -> bool:
    """Store the vendor's certificate; False when there is no such server."""
    return db.execute("UPDATE servers SET public_key_pem = ? WHERE server_uuid = ?", (pem, server_uuid)).rowcount > 0


def public_key_pem(db: sqlite3.Connection, server_uuid: str) -> str | None:
    row = db.execute("SELECT public_key_pem FROM servers WHERE server_uuid = ?", (server_uuid,)).fetchone()
    return row[0] if row is not None else None


# -- the portal's view of devices ----------------------------------------------------------------------

_DEVICE_LIST_SQL = (
    "SELECT d.serial, d.model, d.description, d.color, d.asset_tag, d.os, d.device_family, d.order_number, "
    "s.server_uuid, d.assigned_date, d.profile_status, d.profile_uuid, d.mdm_migration_deadline, d.replaces_serial "
    "FROM devices d "
    "LEFT JOIN servers s ON s.id = d.server_id"
)


def device(db: sqlite3.Connection, serial: str) -> sqlite3.Row | None:
    """One device of the organisation as the portal lists it."""
    return db.execute(_DEVICE_LIST_SQL + " WHERE d.serial = ? AND d.released = 0", (serial,)).fetchone()


def _where(server: int | None) -> tuple[str, tuple[Any, ...]]:
    if server is None:
        return " WHERE d.released = 0", ()
    return " WHERE d.released = 0 AND d.server_id = ?", (server,)


def device_count(db: sqlite3.Connection, server: int | None = None) -> int:
    """Devices of the organisation (or assigned to one server)."""
    where, params = _where(server)
    return int(db.execute(f"SELECT count(*) FROM devices d{where}", params).fetchone()[0])


def device_page(db: sqlite3.Connection, server: int | None, limit: int, offset: int) -> list[sqlite3.Row]:
    """A page of the organisation's devices (all, or one server's), oldest first."""
    where, params = _where(server)
    return db.execute(_DEVICE_LIST_SQL + where + " ORDER BY d.id LIMIT ? OFFSET ?", (*params, limit, offset)).fetchall()


def serials(db: sqlite3.Connection, server: int | None = None) -> list[str]:
    """Serial numbers of the organisation (or of one server), in the order they were added."""
    if server is None:
        rows = db.execute("SELECT serial FROM devices WHERE released = 0 ORDER BY id").fetchall()
    else:
        rows = db.execute(
            "SELECT serial FROM devices WHERE released = 0 AND server_id = ? ORDER BY id", (server,)
        ).fetchall()
    return [r[0] for r in rows]


# -- beta programs (AppleSeed for IT) ------------------------------------------------------------------


def beta_programs(db: sqlite3.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in db.execute("SELECT title, os, token FROM beta_programs ORDER BY id").fetchall()]


def insert_beta_program(db: sqlite3.Connection, title: str, os_name: str, token: str, now: float) -> None:
    db.execute(
        "INSERT INTO beta_programs (title, os, token, created_at) VALUES (?, ?, ?, ?)", (title, os_name, token, now)
    )


def delete_beta_program(db: sqlite3.Connection, token: str) -> bool:
    return db.execute("DELETE FROM beta_programs WHERE token = ?", (token,)).rowcount > 0


# -- API accounts ------------------------------------------------------------------------------------

_API_ACCOUNT_COLUMNS = (
    "client_id, key_id, name, public_key_pem, created_at, key_downloaded_at, revoked_at, "
    "private_key_pem IS NOT NULL AS private_key_available"
)


def insert_api_account(
    db: sqlite3.Connection, client_id: str, key_id: str, name: str, public_pem: str, private_pem: str, now: float
) -> None:
    db.execute(
        "INSERT INTO api_accounts (client_id, key_id, name, public_key_pem, private_key_pem, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (client_id, key_id, name, public_pem, private_pem, now),
    )


def api_account(db: sqlite3.Connection, client_id: str) -> sqlite3.Row | None:
    """One API account by client ID (revoked ones too: the token service must say why it refuses)."""
    return db.execute(f"SELECT {_API_ACCOUNT_COLUMNS} FROM api_accounts WHERE client_id = ?", (client_id,)).fetchone()


def api_accounts(db: sqlite3.Connection) -> list[sqlite3.Row]:
    """Every API account, oldest first."""
    return db.execute(f"SELECT {_API_ACCOUNT_COLUMNS} FROM api_accounts ORDER BY id").fetchall()


def active_api_account_count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM api_accounts WHERE revoked_at IS NULL").fetchone()[0])


def take_api_private_key(db: sqlite3.Connection, client_id: str, now: float) -> str | None:
    """The private key's PEM, removed from the store as it is read (the portal hands it out once)."""
    row = db.execute(
        "SELECT private_key_pem FROM api_accounts WHERE client_id = ? AND revoked_at IS NULL", (client_id,)
    ).fetchone()
    if row is None or row[0] is None:
        return None
    db.execute(
        "UPDATE api_accounts SET private_key_pem = NULL, key_downloaded_at = ? WHERE client_id = ?", (now, client_id)
    )
    return str(row[0])


def revoke_api_account(db: sqlite3.Connection, client_id: str, now: float) -> bool:
    """Revoke (idempotent: the first revocation's time stays); False when there is no such account."""
    found = db.execute("SELECT 1 FROM api_accounts WHERE client_id = ?", (client_id,)).fetchone() is not None
    db.execute(
        "UPDATE api_accounts SET revoked_at = ?, private_key_pem = NULL WHERE client_id = ? AND revoked_at IS NULL",
        (now, client_id),
    )
    return found
