"""What the portal accepts as a device: serial numbers, OS names and families, and a small model catalog.

Pure code (no store): an order line as an admin or a script sends it becomes a
:class:`~simulator.apple.devices.DeviceRecord`, with Apple's OS name for the family filled in and
plausible model data for a bare serial, so a serial-only import still looks real in every listing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from ..devices import DeviceRecord
from .errors import PortalError

__all__ = [
    "SERIAL_PATTERN",
    "SERIAL_ALPHABET",
    "OS_NAMES",
    "FAMILIES",
    "MAX_FIELD",
    "plausible_device",
    "normalize_device",
    "check_serial",
    "MAX_CAPACITY_GB",
]

SERIAL_PATTERN = re.compile(r"^[A-Z0-9]{4,32}$")
#: The characters of Apple's 12-character serials (no vowels, no O/I/S/Z look-alikes).
SERIAL_ALPHABET = "0123456789CDFGHJKLMNPQRTVWXY"
MAX_FIELD = 256
#: The largest storage the portal takes for a device (1 PB: a bound, not a product).
MAX_CAPACITY_GB = 1 << 20

OS_NAMES = ("iOS", "iPadOS", "OSX", "tvOS", "visionOS")
FAMILIES = {
    "iPad": "iPadOS",
    "iPhone": "iOS",
    "iPod": "iOS",
    "Mac": "OSX",
    "AppleTV": "tvOS",
    "Vision": "visionOS",
}

# A few models with their colours and capacities, enough to make a serial-only import look real.
_CATALOG: tuple[tuple[str, str, tuple[str, ...], tuple[int, ...]], ...] = (
    ("iPhone 15", "iPhone", ("BLACK", "BLUE", "GREEN", "PINK"), (128, 256)),
    ("iPhone 15 Pro", "iPhone", ("NATURAL TITANIUM", "BLUE TITANIUM", "BLACK TITANIUM"), (128, 256, 512)),
    ("iPhone 14", "iPhone", ("MIDNIGHT", "STARLIGHT", "PURPLE"), (128, 256)),
    ("iPhone SE (3rd generation)", "iPhone", ("MIDNIGHT", "STARLIGHT", "RED"), (64, 128)),
    ("iPad (10th generation)", "iPad", ("BLUE", "SILVER", "PINK"), (64, 256)),
    ("iPad Air (5th generation)", "iPad", ("SPACE GRAY", "BLUE", "STARLIGHT"), (64, 256)),
    ("iPad Pro (12.9-inch) (6th generation)", "iPad", ("SPACE GRAY", "SILVER"), (128, 512)),
)


def check_serial(serial: Any) -> str:
    """``serial`` if it is a serial number, else the :class:`PortalError` a person can act on."""
    if not isinstance(serial, str) or not SERIAL_PATTERN.match(serial):
        raise PortalError(400, f"not a serial number (4-32 capital letters and digits): {serial!r}"[:300])
    return serial


def plausible_device(serial: str) -> dict[str, str]:
    """A device record for a bare serial number, picked deterministically from a small catalog."""
    digest = hashlib.sha256(serial.encode()).digest()
    model, family, colors, capacities = _CATALOG[digest[0] % len(_CATALOG)]
    color = colors[digest[1] % len(colors)]
    capacity = capacities[digest[2] % len(capacities)]
    return {
        "serial_number": serial,
        "model": model,
        "description": f"{model.upper()} {color} {capacity}GB",
        "color": color,
        "os": FAMILIES[family],
        "device_family": family,
    }


def _text(record: Mapping[str, Any], key: str, default: str) -> str:
    value = record.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise PortalError(400, f"{key} must be a string of at most {MAX_FIELD} characters")
    return value


_IMEI = re.compile(r"[0-9]{15,16}")  # IMEI, or IMEISV
_MEID = re.compile(r"[0-9A-Fa-f]{14}")
_EID = re.compile(r"[0-9]{32}")
_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")


def _identifiers(record: Mapping[str, Any], key: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    """``imei``/``meid`` as Apple lists them (an array; one string is taken as a list of one)."""
    value = record.get(key)
    if value is None or value == [] or value == "":
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or len(values) > 4 or not all(isinstance(v, str) and pattern.fullmatch(v) for v in values):
        raise PortalError(400, f"{key} must be a list of at most 4 {key.upper()}s")
    return tuple(values)


def _identifier(record: Mapping[str, Any], key: str, pattern: re.Pattern[str], what: str) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise PortalError(400, f"{key} must be {what}")
    return value


def _capacity(record: Mapping[str, Any]) -> int | None:
    value = record.get("capacity_gb")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CAPACITY_GB:
        raise PortalError(400, f"capacity_gb must be a whole number of GB from 1 to {MAX_CAPACITY_GB}")
    return value


def _optional_text(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        return None
    return _text(record, key, "")


def normalize_device(record: Any, order_number: str | None) -> DeviceRecord:
    """One order line as the portal stores it.

    The family comes from the record or the model's name (iPhone when neither says); the OS from the
    record or the family. iPads are stored with the modern ``iPadOS`` (DEP protocol versions before 7
    show them ``iOS``). Hardware identifiers use the names DEP reports them under (``imei``, ``meid``,
    ``eid``, ``wifi_mac_address``, ``bluetooth_mac_address``, ``ethernet_mac_address``). What only the
    Business API shows of the product comes as ``product_name`` (MDM's ProductName, ``iPhone14,3``: the
    Business API's ``productType``), ``capacity_gb`` and ``part_number``.
    """
    if not isinstance(record, Mapping):
        raise PortalError(400, "each device must be an object with a serial_number")
    serial = check_serial(record.get("serial_number"))
    model = _text(record, "model", "")
    family = record.get("device_family")
    if family not in FAMILIES:
        lowered = model.lower()
        family = next((f for f in FAMILIES if lowered.startswith(f.lower())), "iPhone")
    os_name = record.get("os")
    if os_name not in OS_NAMES:
        os_name = FAMILIES[family]
    if family == "iPad" and os_name == "iOS":
        os_name = "iPadOS"
    if not model:
        model = plausible_device(serial)["model"] if family in ("iPhone", "iPad") else family
    description = _text(record, "description", model.upper())
    color = _text(record, "color", "")
    asset_tag = _text(record, "asset_tag", "") or None
    order = record.get("order_number", order_number)
    if order is not None and (not isinstance(order, str) or len(order) > MAX_FIELD):
        raise PortalError(400, "order_number must be a string")
    return DeviceRecord(
        serial, model, description, color, asset_tag, os_name, family, order,
        imei=_identifiers(record, "imei", _IMEI),
        meid=_identifiers(record, "meid", _MEID),
        eid=_identifier(record, "eid", _EID, "32 digits"),
        wifi_mac=_identifier(record, "wifi_mac_address", _MAC, "a MAC address (aa:bb:cc:dd:ee:ff)"),
        bluetooth_mac=_identifier(record, "bluetooth_mac_address", _MAC, "a MAC address (aa:bb:cc:dd:ee:ff)"),
        ethernet_mac=_identifier(record, "ethernet_mac_address", _MAC, "a MAC address (aa:bb:cc:dd:ee:ff)"),
        product_type=_optional_text(record, "product_name"),
        capacity_gb=_capacity(record),
        part_number=_optional_text(record, "part_number"),
    )  # fmt: skip
