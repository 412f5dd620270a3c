"""MachineInfo: what a device tells the enrollment URL about itself during Setup Assistant.

The device writes it (a plist, CMS-signed with its Apple-issued identity) and the MDM server reads
it, through this one codec, so the two never disagree on a key. Keys follow Apple's documentation
of the DEP enrollment request (``UDID``, ``SERIAL``, ``PRODUCT``, ``VERSION``, ``OS_VERSION``,
``IMEI``, ``MEID``, ``LANGUAGE``, ``MDM_CAN_REQUEST_SOFTWARE_UPDATE``); unknown keys are kept in
``raw`` and survive a round trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .plist import PlistError, dumps, loads, plist_field, record_from_dict, record_to_dict

__all__ = ["MachineInfo", "parse_machine_info", "MAX_MACHINE_INFO"]

#: A MachineInfo is a few hundred bytes; anything near this bound is not one.
MAX_MACHINE_INFO = 65536


@dataclass(kw_only=True)
class MachineInfo:
    """The MachineInfo dictionary, typed."""

    udid: str = plist_field("UDID", str, required=True)
    serial: str = plist_field("SERIAL", str, required=True)
    product: str | None = plist_field("PRODUCT", str)
    version: str | None = plist_field("VERSION", str)
    os_version: str | None = plist_field("OS_VERSION", str)
    imei: str | None = plist_field("IMEI", str)
    meid: str | None = plist_field("MEID", str)
    language: str | None = plist_field("LANGUAGE", str)
    can_request_software_update: bool | None = plist_field("MDM_CAN_REQUEST_SOFTWARE_UPDATE", bool)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The plist dictionary (absent optional keys left out, as a device leaves them out)."""
        return record_to_dict(self)

    def to_plist(self) -> bytes:
        """The XML plist a device signs and sends."""
        return dumps(self.to_dict())


def parse_machine_info(content: bytes) -> MachineInfo:
    """Parse the signed content. PRODUCT and VERSION are "required" in Apple's schema, but old devices
    are accepted without OS_VERSION (introduced in iOS 17), so only UDID and SERIAL are insisted on."""
    info = record_from_dict(MachineInfo, loads(content, max_size=MAX_MACHINE_INFO))
    if not info.udid.strip() or not info.serial.strip():
        raise PlistError("UDID and SERIAL must not be empty")
    return info
