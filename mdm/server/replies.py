"""What every part of the MDM server answers with, and how it names a channel.

Shared by the identity, check-in and command services and by :mod:`mdm.server.http`, so it imports
nothing of theirs (no cycles): the refusal (:class:`MDMError`), the device-facing answer (:class:`Reply`),
the content types and the body limit of the device endpoints, and NanoMDM's enrollment ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mdm.protocol.checkin import CheckinMessage
from mdm.protocol.commands import CommandResult

__all__ = ["MDMError", "Reply", "enrollment_id_of", "user_id_of", "MAX_BODY", "CHECKIN_TYPE", "PLIST_TYPE"]

#: Device messages are small; a megabyte bounds what a broken or hostile client can make us parse.
MAX_BODY = 1_048_576
CHECKIN_TYPE = "application/x-apple-aspen-mdm-checkin"
PLIST_TYPE = "application/xml"


class MDMError(Exception):
    """A request the server refuses: HTTP ``status`` and a short plain-text ``reason``."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Reply:
    """A device-facing answer: status, body and its content type (empty body: ``content_type`` None)."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def enrollment_id_of(device_id: str, user_id: str | None) -> str:
    """NanoMDM's ids: the device channel is the device id, a user channel ``<device id>:<user id>``."""
    return f"{device_id}:{user_id}" if user_id else device_id


def user_id_of(msg: CheckinMessage | CommandResult) -> str | None:
    """The user a message speaks for: ``UserID`` (macOS, Shared iPad) or a User Enrollment's user."""
    return msg.user_id or msg.enrollment_user_id
