"""API accounts (Preferences → API): the credentials an admin makes for the Business API.

Apple Business Manager's Organization Administrator (Apple School Manager's Administrator) creates an
API account and gets three things: a client ID (``BUSINESSAPI.<uuid>``; ``SCHOOLAPI.<uuid>`` in a
school organisation), a key ID (a UUID) and an EC P-256 private key, downloaded once as a PEM file and
never shown again. The client signs its OAuth client assertion with that key
(:mod:`simulator.apple.account`); Apple keeps only the public key. An organisation has at most 50 API
accounts; a revoked one stops working at once: no new access token, and its tokens are refused.

Here the portal makes the key pair itself (as Apple's "Generate Private Key" does) and keeps the
private key only until its one download. With a seed, the n-th account's client ID, key ID and key
derive from ``portal:api-account:<n>:…`` labels, so two seeded starts hand out the same credentials.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.isotime import iso_from_timestamp
from mdm.protocol.randomness import Randomness

from . import store as portal_store
from .errors import PortalError

__all__ = ["APIAccounts", "MAX_API_ACCOUNTS", "BUSINESS_PREFIX", "SCHOOL_PREFIX", "scope_of"]

MAX_API_ACCOUNTS = 50
MAX_NAME = 100
BUSINESS_PREFIX = "BUSINESSAPI."
SCHOOL_PREFIX = "SCHOOLAPI."


def scope_of(client_id: str) -> str:
    """The one OAuth scope a client ID may ask for: ``school.api`` for ``SCHOOLAPI.``, else ``business.api``."""
    return "school.api" if client_id.startswith(SCHOOL_PREFIX) else "business.api"


class APIAccounts:
    """The organisation's API accounts: create, list, download the private key once, revoke."""

    def __init__(self, store: Store, clock: Clock, random: Randomness) -> None:
        self.store = store
        self.clock = clock
        self.random = random

    def create(self, name: Any) -> dict[str, Any]:
        """A new API account with its key pair; the private key waits for its one download."""
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise PortalError(400, f"name the API account: a label of 1 to {MAX_NAME} characters")
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            org = portal_store.organization(db)
            if org is None:
                raise PortalError(400, "the organization does not exist yet")
            if portal_store.active_api_account_count(db) >= MAX_API_ACCOUNTS:
                raise PortalError(400, f"an organization has at most {MAX_API_ACCOUNTS} API accounts: revoke one first")
            number = len(portal_store.api_accounts(db))
            label = f"portal:api-account:{number}"
            prefix = SCHOOL_PREFIX if org["org_type"] == "edu" else BUSINESS_PREFIX
            client_id = prefix + self.random.uuid(f"{label}:client-id")
            key_id = self.random.uuid(f"{label}:key-id")
            key = self.random.ec_key(f"{label}:key")
            private_pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
            public_pem = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode()
            portal_store.insert_api_account(db, client_id, key_id, name.strip(), public_pem, private_pem, now)
            return _account(portal_store.api_account(db, client_id))

    def list(self) -> list[dict[str, Any]]:
        with self.store.read() as db:
            return [_account(row) for row in portal_store.api_accounts(db)]

    def get(self, client_id: str) -> dict[str, Any]:
        with self.store.read() as db:
            row = portal_store.api_account(db, client_id)
        if row is None:
            raise PortalError(404, f"no API account {client_id}")
        return _account(row)

    def private_key(self, client_id: str) -> str:
        """The private key's PEM, once: the portal keeps no copy after this."""
        with self.store.transaction() as db:
            row = portal_store.api_account(db, client_id)
            if row is None:
                raise PortalError(404, f"no API account {client_id}")
            if row["revoked_at"] is not None:
                raise PortalError(410, "this API account is revoked")
            pem = portal_store.take_api_private_key(db, client_id, self.clock.timestamp())
        if pem is None:
            raise PortalError(
                410, "the private key was downloaded already and Apple keeps no copy: create a new API account"
            )
        return pem

    def revoke(self, client_id: str) -> dict[str, Any]:
        """Revoke an account: its access tokens stop working and it gets no new ones."""
        with self.store.transaction() as db:
            if not portal_store.revoke_api_account(db, client_id, self.clock.timestamp()):
                raise PortalError(404, f"no API account {client_id}")
            return _account(portal_store.api_account(db, client_id))


def _account(row: Any) -> dict[str, Any]:
    return {
        "client_id": row["client_id"],
        "key_id": row["key_id"],
        "name": row["name"],
        "scope": scope_of(row["client_id"]),
        "status": "REVOKED" if row["revoked_at"] is not None else "ACTIVE",
        "created": iso_from_timestamp(row["created_at"]),
        "revoked": iso_from_timestamp(row["revoked_at"]),
        "private_key_available": bool(row["private_key_available"]),
        "private_key_downloaded": iso_from_timestamp(row["key_downloaded_at"]),
    }
