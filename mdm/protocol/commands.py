"""MDM commands (server → device) and command results (device → server).

A command travels as ``{CommandUUID, Command: {RequestType, …}}``; the device answers with a result
plist ``{UDID, Status, CommandUUID, ErrorChain?, …}``. The per-command key table
(:mod:`mdm.protocol.command_schemas`) lets the command API reject a typo before it reaches a device,
while ``strict=False`` lets new Apple commands pass untouched.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .command_schemas import COMMAND_SCHEMAS
from .plist import DEFAULT_MAX_SIZE, PlistError, dumps, loads, matches, type_name

__all__ = [
    "CommandError",
    "Command",
    "CommandResult",
    "ErrorChainItem",
    "COMMAND_SCHEMAS",
    "STATUSES",
    "validate_command",
    "parse_command",
    "parse_result",
    "device_information",
    "security_info",
    "profile_list",
    "install_profile",
    "remove_profile",
    "installed_application_list",
    "install_application",
    "device_lock",
    "erase_device",
    "clear_passcode",
    "restart_device",
    "shut_down_device",
    "settings",
    "device_configured",
    "activation_lock_bypass_code",
]

_REQUEST_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9.]{0,127}")
_COMMAND_UUID = re.compile(r"[\x21-\x7e]{1,128}")

STATUSES = frozenset({"Idle", "Acknowledged", "Error", "CommandFormatError", "NotNow"})
Status = Literal["Idle", "Acknowledged", "Error", "CommandFormatError", "NotNow"]


class CommandError(ValueError):
    """A command the API must refuse; ``reason`` goes into the 400 body."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _new_uuid() -> str:
    return str(uuid.uuid4())


@dataclass(kw_only=True)
class Command:
    """One queued command: ``request_type`` plus its keys (``params``, Apple's key names)."""

    request_type: str
    params: dict[str, Any] = field(default_factory=dict)
    command_uuid: str = field(default_factory=_new_uuid)

    def to_dict(self) -> dict[str, Any]:
        """``{CommandUUID, Command: {RequestType, …}}``, the shape the device receives."""
        return {
            "CommandUUID": self.command_uuid,
            "Command": {"RequestType": self.request_type, **self.params},
        }

    def to_plist(self) -> bytes:
        """The XML body the server sends in answer to a device's result or Idle."""
        return dumps(self.to_dict())


def _check_params(request_type: str, params: Mapping[str, Any], strict: bool) -> None:
    schema = COMMAND_SCHEMAS.get(request_type)
    if schema is None:
        if strict:
            raise CommandError(f"unknown RequestType {request_type}"[:200])
        return
    for key, (kind, required) in schema.items():
        if key in params:
            if not matches(params[key], kind):
                raise CommandError(f"{key} must be {type_name(kind)}, not {type_name(params[key])}")
        elif required:
            raise CommandError(f"{request_type} requires {key}")
    if request_type == "InstallApplication" and not any(
        k in params for k in ("iTunesStoreID", "ManifestURL", "Identifier")
    ):
        raise CommandError("InstallApplication requires iTunesStoreID, ManifestURL or Identifier")
    if request_type in ("DeviceInformation", "InstalledApplicationList", "ManagedApplicationList"):
        for key in ("Queries", "Identifiers"):
            value = params.get(key)
            if key in params and not (isinstance(value, list) and all(isinstance(q, str) for q in value)):
                raise CommandError(f"{key} must be an array of strings")


def validate_command(d: Mapping[str, Any], *, strict: bool = True) -> Command:
    """Turn a command dictionary from the command API into a :class:`Command`, or raise CommandError.

    Accepts the full ``{CommandUUID?, Command: {RequestType, …}}`` shape or just the inner
    ``{RequestType, …}``. ``strict`` rejects RequestTypes Apple does not document and mistyped or
    missing keys of known ones; ``strict=False`` only insists on a RequestType string, for servers that
    must pass through commands newer than this table.
    """
    if not isinstance(d, Mapping):
        raise CommandError("command must be a dictionary")
    command_uuid: Any = None
    inner: Any = d
    if "Command" in d:
        inner = d["Command"]
        command_uuid = d.get("CommandUUID")
        if not isinstance(inner, Mapping):
            raise CommandError("Command must be a dictionary")
        if command_uuid is not None and (not isinstance(command_uuid, str) or not command_uuid):
            raise CommandError("CommandUUID must be a non-empty string")
    request_type = inner.get("RequestType")
    if not isinstance(request_type, str) or not request_type:
        raise CommandError("missing RequestType")
    if not _REQUEST_TYPE.fullmatch(request_type):
        # XML would not carry control characters through unchanged; Apple's names are identifiers.
        raise CommandError("RequestType must be a name such as DeviceInformation (letters, digits, dots)")
    if command_uuid is not None and not _COMMAND_UUID.fullmatch(command_uuid):
        raise CommandError("CommandUUID must be printable text without spaces, at most 128 characters")
    params = {k: v for k, v in inner.items() if k != "RequestType"}
    if not all(isinstance(k, str) for k in params):
        raise CommandError("command keys must be strings")
    _check_params(request_type, params, strict)
    cmd = (
        Command(request_type=request_type, params=params)
        if command_uuid is None
        else Command(request_type=request_type, params=params, command_uuid=command_uuid)
    )
    try:  # values from a JSON API (null, huge integers) must fail here, not when the device polls
        cmd.to_plist()
    except PlistError as e:
        raise CommandError(e.reason) from None
    return cmd


def parse_command(data: bytes, *, strict: bool = False, max_size: int = DEFAULT_MAX_SIZE) -> Command:
    """The device side: read the command plist the server answered with.

    Not strict by default, because a device answers an unknown RequestType with an ``Error`` result
    rather than failing to read it. Bad plists raise PlistError, bad commands CommandError.
    """
    d = loads(data, max_size=max_size, types={"CommandUUID": str, "Command": dict})
    if "CommandUUID" not in d:
        raise CommandError("missing CommandUUID")
    if "Command" not in d:
        raise CommandError("missing Command")
    return validate_command(d, strict=strict)


# --- builders: one per command the simulator's parties send ----------------------------------------


def _cmd(request_type: str, command_uuid: str | None, **params: Any) -> Command:
    clean = {k: v for k, v in params.items() if v is not None}
    _check_params(request_type, clean, strict=True)
    if command_uuid is None:
        return Command(request_type=request_type, params=clean)
    return Command(request_type=request_type, params=clean, command_uuid=command_uuid)


def device_information(queries: Sequence[str], *, command_uuid: str | None = None) -> Command:
    return _cmd("DeviceInformation", command_uuid, Queries=list(queries))


def security_info(*, command_uuid: str | None = None) -> Command:
    return _cmd("SecurityInfo", command_uuid)


def profile_list(*, managed_only: bool | None = None, command_uuid: str | None = None) -> Command:
    return _cmd("ProfileList", command_uuid, ManagedOnly=managed_only)


def install_profile(payload: bytes, *, command_uuid: str | None = None) -> Command:
    """``payload`` is the profile as the device would download it (signed CMS or plist)."""
    return _cmd("InstallProfile", command_uuid, Payload=payload)


def remove_profile(identifier: str, *, command_uuid: str | None = None) -> Command:
    return _cmd("RemoveProfile", command_uuid, Identifier=identifier)


def installed_application_list(
    *,
    identifiers: Sequence[str] | None = None,
    managed_apps_only: bool | None = None,
    items: Sequence[str] | None = None,
    command_uuid: str | None = None,
) -> Command:
    return _cmd(
        "InstalledApplicationList",
        command_uuid,
        Identifiers=list(identifiers) if identifiers is not None else None,
        ManagedAppsOnly=managed_apps_only,
        Items=list(items) if items is not None else None,
    )


def install_application(
    *,
    itunes_store_id: int | None = None,
    manifest_url: str | None = None,
    identifier: str | None = None,
    management_flags: int | None = None,
    options: Mapping[str, Any] | None = None,
    configuration: Mapping[str, Any] | None = None,
    command_uuid: str | None = None,
) -> Command:
    """Exactly one of ``itunes_store_id``, ``manifest_url``, ``identifier`` names the app."""
    if sum(x is not None for x in (itunes_store_id, manifest_url, identifier)) != 1:
        raise CommandError("InstallApplication needs exactly one of iTunesStoreID, ManifestURL, Identifier")
    return _cmd(
        "InstallApplication",
        command_uuid,
        iTunesStoreID=itunes_store_id,
        ManifestURL=manifest_url,
        Identifier=identifier,
        ManagementFlags=management_flags,
        Options=dict(options) if options is not None else None,
        Configuration=dict(configuration) if configuration is not None else None,
    )


def device_lock(
    *,
    pin: str | None = None,
    message: str | None = None,
    phone_number: str | None = None,
    command_uuid: str | None = None,
) -> Command:
    return _cmd("DeviceLock", command_uuid, PIN=pin, Message=message, PhoneNumber=phone_number)


def erase_device(
    *,
    pin: str | None = None,
    preserve_data_plan: bool | None = None,
    disallow_proximity_setup: bool | None = None,
    obliteration_behavior: str | None = None,
    return_to_service: Mapping[str, Any] | None = None,
    command_uuid: str | None = None,
) -> Command:
    return _cmd(
        "EraseDevice",
        command_uuid,
        PIN=pin,
        PreserveDataPlan=preserve_data_plan,
        DisallowProximitySetup=disallow_proximity_setup,
        ObliterationBehavior=obliteration_behavior,
        ReturnToService=dict(return_to_service) if return_to_service is not None else None,
    )


def clear_passcode(unlock_token: bytes, *, command_uuid: str | None = None) -> Command:
    """``unlock_token`` is the one the device sent in its TokenUpdate."""
    return _cmd("ClearPasscode", command_uuid, UnlockToken=unlock_token)


def restart_device(*, notify_user: bool | None = None, command_uuid: str | None = None) -> Command:
    return _cmd("RestartDevice", command_uuid, NotifyUser=notify_user)


def shut_down_device(*, command_uuid: str | None = None) -> Command:
    return _cmd("ShutDownDevice", command_uuid)


def settings(items: Sequence[Mapping[str, Any]], *, command_uuid: str | None = None) -> Command:
    """``items`` are Settings dictionaries, each with an ``Item`` key (``DeviceName``, ``Bluetooth``…)."""
    if not all(isinstance(i, Mapping) and isinstance(i.get("Item"), str) for i in items):
        raise CommandError("each Settings item must be a dictionary with an Item string")
    return _cmd("Settings", command_uuid, Settings=[dict(i) for i in items])


def device_configured(*, command_uuid: str | None = None) -> Command:
    """Releases a device waiting in Setup Assistant (``AwaitingConfiguration``)."""
    return _cmd("DeviceConfigured", command_uuid)


def activation_lock_bypass_code(*, command_uuid: str | None = None) -> Command:
    return _cmd("ActivationLockBypassCode", command_uuid)


# --- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorChainItem:
    """One entry of a result's ``ErrorChain``: the device's reason for ``Error``."""

    error_code: int | None
    error_domain: str | None
    localized_description: str | None = None
    us_english_description: str | None = None

    @classmethod
    def from_dict(cls, d: Any) -> ErrorChainItem:
        if not isinstance(d, dict):
            raise PlistError("ErrorChain items must be dictionaries")
        spec = {
            "ErrorCode": int,
            "ErrorDomain": str,
            "LocalizedDescription": str,
            "USEnglishDescription": str,
        }
        for k, t in spec.items():
            if k in d and not matches(d[k], t):
                raise PlistError(f"ErrorChain {k} must be {type_name(t)}, not {type_name(d[k])}")
        return cls(
            error_code=d.get("ErrorCode"),
            error_domain=d.get("ErrorDomain"),
            localized_description=d.get("LocalizedDescription"),
            us_english_description=d.get("USEnglishDescription"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in (
            ("ErrorCode", self.error_code),
            ("ErrorDomain", self.error_domain),
            ("LocalizedDescription", self.localized_description),
            ("USEnglishDescription", self.us_english_description),
        ):
            if v is not None:
                out[k] = v
        return out


_RESULT_TYPES: Mapping[str, Any] = {
    "UDID": str,
    "EnrollmentID": str,
    "Status": str,
    "CommandUUID": str,
    "RequestType": str,
    "ErrorChain": list,
    "UserID": str,
    "EnrollmentUserID": str,
    "UserShortName": str,
    "UserLongName": str,
}


@dataclass(frozen=True)
class CommandResult:
    """A device's report (``PUT`` to ServerURL): ``Idle`` or the outcome of ``command_uuid``.

    ``raw`` is the whole dictionary, including the command's answer keys (``QueryResponses``,
    ``ProfileList``…) and the user-channel keys (``UserID``, ``EnrollmentUserID``).
    """

    udid: str | None
    status: Status
    command_uuid: str | None = None
    error_chain: list[ErrorChainItem] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def enrollment_id(self) -> str | None:
        return self.raw.get("EnrollmentID")

    @property
    def device_id(self) -> str:
        """UDID, or EnrollmentID for User Enrollment."""
        return self.udid or self.enrollment_id or ""

    @property
    def user_id(self) -> str | None:
        return self.raw.get("UserID")

    @property
    def enrollment_user_id(self) -> str | None:
        return self.raw.get("EnrollmentUserID")

    @property
    def is_user_channel(self) -> bool:
        return bool(self.user_id or self.enrollment_user_id or self.raw.get("UserShortName"))

    @property
    def request_type(self) -> str | None:
        """Sent by some OS versions only; the server should rely on its own record of the command."""
        return self.raw.get("RequestType")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CommandResult:
        for k, t in _RESULT_TYPES.items():
            if k in d and not matches(d[k], t):
                raise PlistError(f"{k} must be {type_name(t)}, not {type_name(d[k])}")
        status = d.get("Status")
        if status is None:
            raise PlistError("missing Status")
        if status not in STATUSES:
            raise PlistError(f"unknown Status {status}"[:200])
        if not (d.get("UDID") or d.get("EnrollmentID")):
            raise PlistError("missing UDID")
        if status != "Idle" and not d.get("CommandUUID"):
            raise PlistError("missing CommandUUID")
        return cls(
            udid=d.get("UDID"),
            status=status,
            command_uuid=d.get("CommandUUID"),
            error_chain=[ErrorChainItem.from_dict(e) for e in d.get("ErrorChain", [])],
            raw=dict(d),
        )

    def to_dict(self) -> dict[str, Any]:
        """The device's result body: answer keys from ``raw``, identity and status on top."""
        out = {k: v for k, v in self.raw.items() if k not in ("UDID", "Status", "CommandUUID", "ErrorChain")}
        if self.udid is not None:
            out["UDID"] = self.udid
        out["Status"] = self.status
        if self.command_uuid is not None:
            out["CommandUUID"] = self.command_uuid
        if self.error_chain:
            out["ErrorChain"] = [e.to_dict() for e in self.error_chain]
        return out

    def to_plist(self) -> bytes:
        return dumps(self.to_dict())


def parse_result(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> CommandResult:
    """Parse a device's result body; every failure is a :class:`PlistError`."""
    return CommandResult.from_dict(loads(data, max_size=max_size))
