"""Opaque fetch/sync cursors: a small packed struct, MAC'd with a per-world secret, base64url-encoded.

Apple's cursors are opaque strings; clients store them and hand them back. Carrying the position in the
cursor itself (rather than a row per cursor) keeps fetch pages free of writes, and the MAC makes a
tampered or foreign cursor (another world, another server) an ``INVALID_CURSOR`` instead of a
position we would trust. Pure code: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = ["Cursor", "CursorKind", "CursorError", "encode_cursor", "decode_cursor", "MAX_CURSOR_LENGTH"]

_VERSION = 1
_LAYOUT = struct.Struct(">BBBIqqq")  # version, kind, exhausted, server_id, position, watermark, issued_at
_MAC_BYTES = 12
MAX_CURSOR_LENGTH = 1000  # Apple: "The string can be up to 1000 characters."


class CursorKind(IntEnum):
    FETCH = 1
    SYNC = 2


class CursorError(ValueError):
    """Not a cursor this world issued (garbage, tampered, or signed with another world's secret)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a client is.

    ``position``: for a fetch, the last device ``seq`` returned; for a sync, the last event id returned.
    ``watermark``: the last event id that existed when the fetch began, where a later sync starts.
    ``issued_at``: world time (whole seconds) when the position was handed out, for ``EXPIRED_CURSOR``.
    ``exhausted``: a fetch cursor whose fetch already returned every device.
    """

    kind: CursorKind
    server_id: int
    position: int
    watermark: int
    issued_at: int
    exhausted: bool = False


def encode_cursor(cursor: Cursor, secret: bytes) -> str:
    payload = _LAYOUT.pack(
        _VERSION,
        int(cursor.kind),
        1 if cursor.exhausted else 0,
        cursor.server_id,
        cursor.position,
        cursor.watermark,
        cursor.issued_at,
    )
    mac = hmac.new(secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode("ascii")


def decode_cursor(text: object, secret: bytes) -> Cursor:
    """The cursor inside ``text``; :class:`CursorError` for anything this world did not issue."""
    if not isinstance(text, str) or not text or len(text) > MAX_CURSOR_LENGTH:
        raise CursorError("not a cursor")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CursorError("not base64") from None
    if len(raw) != _LAYOUT.size + _MAC_BYTES:
        raise CursorError("wrong length")
    payload, mac = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
    if not hmac.compare_digest(mac, hmac.new(secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]):
        raise CursorError("bad MAC")
    version, kind, exhausted, server_id, position, watermark, issued_at = _LAYOUT.unpack(payload)
    if version != _VERSION or kind not in (CursorKind.FETCH, CursorKind.SYNC):
        raise CursorError("unknown cursor version")
    return Cursor(CursorKind(kind), server_id, position, watermark, issued_at, bool(exhausted))
