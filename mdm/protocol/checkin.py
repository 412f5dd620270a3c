"""Check-in messages: what a device ``PUT``s to ``CheckInURL`` (``application/x-apple-aspen-mdm-checkin``).

One dataclass per ``MessageType`` (``apple-device-management/mdm/checkin/*.yaml``), snake_case attributes
over Apple's keys. Parsing is strict about types but only insists on the keys a server cannot work
without: Apple marks keys "required" that some platforms never send (iOS sends no ``DeviceName`` in
Authenticate, a User Enrollment no ``UDID``), and real devices must be accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from .plist import DEFAULT_MAX_SIZE, PlistError, dumps, loads, plist_field, record_from_dict, record_to_dict

__all__ = [
    "CheckinMessage",
    "Authenticate",
    "TokenUpdate",
    "CheckOut",
    "UserAuthenticate",
    "SetBootstrapToken",
    "GetBootstrapToken",
    "DeclarativeManagement",
    "GetToken",
    "MESSAGE_TYPES",
    "parse_checkin",
]

M = TypeVar("M", bound="CheckinMessage")


@dataclass(kw_only=True)
class CheckinMessage:
    """Keys every check-in may carry: who the device (or user, on the user channel) is.

    ``raw`` holds the whole received dictionary, so keys not modelled here are never lost.
    """

    MESSAGE_TYPE: ClassVar[str] = ""

    udid: str | None = plist_field("UDID", str)
    enrollment_id: str | None = plist_field("EnrollmentID", str)
    enrollment_user_id: str | None = plist_field("EnrollmentUserID", str)
    user_id: str | None = plist_field("UserID", str)
    user_short_name: str | None = plist_field("UserShortName", str)
    user_long_name: str | None = plist_field("UserLongName", str)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def message_type(self) -> str:
        return self.MESSAGE_TYPE

    @property
    def device_id(self) -> str:
        """The enrollment's device identifier: UDID, or EnrollmentID for User Enrollment."""
        return self.udid or self.enrollment_id or ""

    @property
    def is_user_channel(self) -> bool:
        """True when the message is for a user (macOS user, Shared iPad user), not the device."""
        return bool(self.user_id or self.enrollment_user_id or self.user_short_name)

    @classmethod
    def from_dict(cls: type[M], d: Mapping[str, Any]) -> M:
        """Build from a parsed plist; raises :class:`PlistError` for missing or mistyped keys."""
        mt = d.get("MessageType")
        if cls.MESSAGE_TYPE and mt != cls.MESSAGE_TYPE:
            raise PlistError(f"MessageType must be {cls.MESSAGE_TYPE}, not {mt!r}"[:200])
        msg = record_from_dict(cls, d)
        if not (msg.udid or msg.enrollment_id):
            raise PlistError("missing UDID")
        return msg

    @classmethod
    def parse(cls: type[M], data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> M:
        return cls.from_dict(loads(data, max_size=max_size))

    def to_dict(self) -> dict[str, Any]:
        d = record_to_dict(self)
        d.pop("MessageType", None)
        return {"MessageType": self.MESSAGE_TYPE, **d}

    def to_plist(self) -> bytes:
        """The XML body a device sends."""
        return dumps(self.to_dict())


@dataclass(kw_only=True)
class Authenticate(CheckinMessage):
    """First message of enrollment; the server answers an empty 200 to accept the device."""

    MESSAGE_TYPE: ClassVar[str] = "Authenticate"

    topic: str = plist_field("Topic", str, required=True)
    serial_number: str | None = plist_field("SerialNumber", str)
    os_version: str | None = plist_field("OSVersion", str)
    build_version: str | None = plist_field("BuildVersion", str)
    product_name: str | None = plist_field("ProductName", str)
    device_name: str | None = plist_field("DeviceName", str)
    model: str | None = plist_field("Model", str)
    model_name: str | None = plist_field("ModelName", str)
    imei: str | None = plist_field("IMEI", str)
    meid: str | None = plist_field("MEID", str)
    challenge: bytes | None = plist_field("Challenge", bytes)


@dataclass(kw_only=True)
class TokenUpdate(CheckinMessage):
    """Push token for the enrollment; receiving it makes the enrollment active."""

    MESSAGE_TYPE: ClassVar[str] = "TokenUpdate"

    topic: str = plist_field("Topic", str, required=True)
    token: bytes = plist_field("Token", bytes, required=True)
    push_magic: str = plist_field("PushMagic", str, required=True)
    unlock_token: bytes | None = plist_field("UnlockToken", bytes)
    awaiting_configuration: bool | None = plist_field("AwaitingConfiguration", bool)
    not_on_console: bool | None = plist_field("NotOnConsole", bool)

    @property
    def token_hex(self) -> str:
        """The push token as APNs URLs spell it (``/3/device/<hex>``)."""
        return self.token.hex()


@dataclass(kw_only=True)
class CheckOut(CheckinMessage):
    """Sent when the MDM profile is removed (with ``CheckOutWhenRemoved``); the enrollment ends."""

    MESSAGE_TYPE: ClassVar[str] = "CheckOut"

    topic: str | None = plist_field("Topic", str)


@dataclass(kw_only=True)
class UserAuthenticate(CheckinMessage):
    """macOS network users: the server may answer with a digest challenge, or 410 to decline."""

    MESSAGE_TYPE: ClassVar[str] = "UserAuthenticate"

    digest_response: str | None = plist_field("DigestResponse", str)


@dataclass(kw_only=True)
class SetBootstrapToken(CheckinMessage):
    """The device escrows its bootstrap token (absent token: the server should clear it)."""

    MESSAGE_TYPE: ClassVar[str] = "SetBootstrapToken"

    bootstrap_token: bytes | None = plist_field("BootstrapToken", bytes)
    awaiting_configuration: bool | None = plist_field("AwaitingConfiguration", bool)


@dataclass(kw_only=True)
class GetBootstrapToken(CheckinMessage):
    """The device asks for its escrowed bootstrap token; answered with ``{BootstrapToken: data}``."""

    MESSAGE_TYPE: ClassVar[str] = "GetBootstrapToken"

    awaiting_configuration: bool | None = plist_field("AwaitingConfiguration", bool)


@dataclass(kw_only=True)
class DeclarativeManagement(CheckinMessage):
    """Declarative device management sync: ``Endpoint`` names what the device asks for."""

    MESSAGE_TYPE: ClassVar[str] = "DeclarativeManagement"

    endpoint: str = plist_field("Endpoint", str, required=True)
    data: bytes | None = plist_field("Data", bytes)


@dataclass(kw_only=True)
class GetToken(CheckinMessage):
    """The device asks the server for a token of a service type (``com.apple.maid``, watch pairing)."""

    MESSAGE_TYPE: ClassVar[str] = "GetToken"

    token_service_type: str = plist_field("TokenServiceType", str, required=True)
    token_parameters: dict[str, Any] | None = plist_field("TokenParameters", dict)


MESSAGE_TYPES: Mapping[str, type[CheckinMessage]] = {
    c.MESSAGE_TYPE: c
    for c in (
        Authenticate,
        TokenUpdate,
        CheckOut,
        UserAuthenticate,
        SetBootstrapToken,
        GetBootstrapToken,
        DeclarativeManagement,
        GetToken,
    )
}


def parse_checkin(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> CheckinMessage:
    """Parse a check-in body into its message class; every failure is a :class:`PlistError`."""
    d = loads(data, max_size=max_size, types={"MessageType": str})
    mt = d.get("MessageType")
    if mt is None:
        raise PlistError("missing MessageType")
    cls = MESSAGE_TYPES.get(mt)
    if cls is None:
        raise PlistError(f"unknown MessageType {mt}"[:200])
    return cls.from_dict(d)
