"""A token's or a profile's row, or Graph's 404 (and 400 for a token with no DEP token yet).

Every rule module looks rows up this way, so they live below all of them: tokens, profiles,
assignments and syncing import this module, never each other's helpers.
"""

from __future__ import annotations

import sqlite3

from .errors import GraphError, not_found
from .store import profiles as profile_table
from .store import tokens as token_table

__all__ = ["token_row", "dep_token_row", "profile_row"]


def token_row(db: sqlite3.Connection, token_id: str) -> sqlite3.Row:
    """The token's row, or 404."""
    row = token_table.get(db, token_id)
    if row is None:
        raise not_found("depOnboardingSetting", token_id)
    return row


def dep_token_row(db: sqlite3.Connection, token_id: str) -> sqlite3.Row:
    """The token's row, or 404; 400 until a DEP token was uploaded to it."""
    row = token_row(db, token_id)
    if row["token_type"] != "dep":
        raise GraphError(400, "depTokenRequired", "upload a DEP token first")
    return row


def profile_row(db: sqlite3.Connection, token_id: str, profile_id: str) -> sqlite3.Row:
    """The token's profile row, or 404."""
    row = profile_table.get(db, token_id, profile_id)
    if row is None:
        raise not_found("enrollmentProfile", profile_id)
    return row
