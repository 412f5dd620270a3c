"""The formats of Apple's device identifiers, and per-model tables for inventing them quickly.

Formats
-------
Serial numbers (what Apple Business Manager and DEP key devices by):

* **legacy**, 12 characters, for models released before 2021: ``PPP Y W SSS CCCC`` —
  ``PPP`` factory/location code (``F2L``, ``DNP``, ...), ``Y`` half-year of manufacture from
  ``CDFGHJKLMNPQRSTVWXYZ`` (C = first half of 2010, D = second half, ... cycling every ten years),
  ``W`` week within that half from ``123456789CDFGHJKLMNPQRTVWXY``, ``SSS`` unit number and ``CCCC``
  a configuration code that is the same for every unit of one model, colour and capacity.
* **modern**, 10 characters, for models released in 2021 and later, when Apple switched to
  randomized serials: uppercase letters and digits with no vowels (Apple never uses I or O, which
  read as 1 and 0, and observed serials never spell words), starting with a letter.

UDIDs: ``legacy`` devices (A11 and older) have 40 lowercase hex digits, the SHA-1 of serial, ECID
and MAC addresses; ``modern`` devices (A12 and later) have ``<8 hex chip id>-<16 hex ECID>``, e.g.
``00008030-001A0C123456802E``.

IMEI: 15 digits, an 8-digit TAC (a per-model ``35xxxx`` stem from the catalog plus two digits),
a 6-digit serial and a Luhn check digit. MEID (CDMA-capable iPhones only) is the IMEI without its
check digit, which is how dual-mode iPhones report it.

MACs: an Apple OUI and a random NIC part; Bluetooth is Wi-Fi + 1, as on real iPhones.

EID (the eSIM chip of a cellular device): 32 digits, ``89`` (telecom) ``049`` (the country code of the
chip's maker) ``032`` (its issuer) then an individual number, closed by two check digits that make
the whole number ≡ 1 (mod 97), as an IBAN's do (GSMA SGP.02, ISO/IEC 7064 MOD 97-10).
"""

from __future__ import annotations

import functools
import hashlib

from simulator.catalog import Model, OSRelease

__all__ = [
    "eid_for",
    "is_valid_eid",
    "APPLE_OUIS",
    "ECID_SUFFIXES",
    "HEX_BYTES",
    "LEGACY_LOCATIONS",
    "LUHN_PAIR",
    "MODERN_SERIAL_LETTERS",
    "ModelPlan",
    "WEEK_CODES",
    "is_valid_imei",
    "legacy_triples",
    "luhn_check_digit",
    "model_plan",
    "modern_triples",
]

# Organizationally unique identifiers registered to Apple, Inc.
APPLE_OUIS: tuple[str, ...] = (
    "f0:18:98", "a4:83:e7", "3c:22:fb", "ac:bc:32", "88:66:5a", "f4:0f:24", "8c:85:90", "70:3e:ac",
    "28:cf:e9", "98:01:a7", "d0:81:7a", "40:98:ad", "5c:f9:38", "a8:60:b6", "dc:a9:04", "14:7d:da",
    "bc:d0:74", "60:f8:1d", "f8:ff:c2",
)  # fmt: skip

MODERN_SERIAL_LETTERS = "BCDFGHJKLMNPQRSTVWXYZ"
MODERN_SERIAL_ALPHABET = MODERN_SERIAL_LETTERS + "0123456789"
LEGACY_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, no O
HALF_YEAR_CODES = "CDFGHJKLMNPQRSTVWXYZ"
WEEK_CODES = "123456789CDFGHJKLMNPQRTVWXY"
LEGACY_LOCATIONS = ("F2L", "F17", "FK1", "DNP", "DNQ", "DX3", "C39", "G0N", "F4H", "FFM", "GHK", "C7C")
# Observed endings of real ECIDs; the rest of the ECID is random.
ECID_SUFFIXES = ("002E", "802E", "001E", "801E", "0026", "8026", "003A", "803A")
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
HEX_BYTES = tuple(f"{i:02x}" for i in range(256))
LUHN_PAIR = tuple(n // 10 + _DOUBLED[n % 10] for n in range(100))


def luhn_check_digit(digits: str) -> str:
    """The Luhn digit that makes ``digits + check`` valid; IMEIs end with one."""
    if not digits.isdigit():
        raise ValueError(f"not a digit string: {digits!r}")
    total = 0
    double = True  # the digit next to the check digit is doubled
    for ch in reversed(digits):
        d = ord(ch) - 48
        total += _DOUBLED[d] if double else d
        double = not double
    return str(-total % 10)


def eid_for(serial: str) -> str:
    """The EID of the eSIM chip in the cellular device with this serial: derived from the serial alone,
    so Apple's DEP record and the device's own DeviceInformation answer always name the same chip."""
    body = "89049032" + str(int.from_bytes(hashlib.sha256(f"eid:{serial}".encode()).digest()[:12], "big"))[-22:].zfill(22)
    return body + f"{98 - int(body + '00') % 97:02d}"


def is_valid_eid(s: str) -> bool:
    """32 digits whose MOD 97-10 check holds."""
    return len(s) == 32 and s.isascii() and s.isdigit() and int(s) % 97 == 1


def is_valid_imei(s: str) -> bool:
    """True for 15 ASCII digits whose last digit is the Luhn check digit of the first 14."""
    return (
        isinstance(s, str)
        and len(s) == 15
        and s.isascii()
        and s.isdigit()
        and luhn_check_digit(s[:14]) == s[14]
    )


@functools.cache
def modern_triples() -> tuple[str, ...]:
    """Every three-character run of the modern serial alphabet (31**3 strings, built on first use)."""
    a = MODERN_SERIAL_ALPHABET
    return tuple(x + y + z for x in a for y in a for z in a)


@functools.cache
def legacy_triples() -> tuple[str, ...]:
    """Every three-character legacy unit number (34**3 strings, built on first use)."""
    a = LEGACY_ALPHABET
    return tuple(x + y + z for x in a for y in a for z in a)


def _luhn_sum(digits: str) -> int:
    """Luhn sum of a digit run that sits an even number of places left of the check digit."""
    return sum(LUHN_PAIR[int(digits[i : i + 2])] for i in range(0, len(digits), 2))


def _capacity_label(gb: int) -> str:
    return f"{gb // 1024}TB" if gb >= 1024 and gb % 1024 == 0 else f"{gb}GB"


def _config_code(product_name: str, color: str, capacity_gb: int) -> str:
    """Last four characters of a legacy serial: fixed per model/colour/capacity, like Apple's."""
    h = int.from_bytes(hashlib.sha256(f"{product_name}|{color}|{capacity_gb}".encode()).digest()[:8], "big")
    out = []
    for _ in range(4):
        h, r = divmod(h, len(LEGACY_ALPHABET))
        out.append(LEGACY_ALPHABET[r])
    return "".join(out)


class ModelPlan:
    """Per-model tables precomputed once so the per-device path is table lookups and random draws."""

    __slots__ = (
        "model", "family", "os", "colors", "capacities", "config_codes", "half_year_codes", "releases",
        "descriptions", "wifi_only", "always_cellular", "modern_serial", "modern_udid", "udid_prefix",
        "tac_stems", "cdma", "model_numbers", "cellular_model_numbers", "cellular_product_name",
        "name_suffix",
    )  # fmt: skip

    def __init__(self, model: Model) -> None:
        self.model = model
        self.family = model.device_family
        self.os = model.os
        self.colors = model.colors
        self.capacities = model.capacities_gb
        self.releases: tuple[OSRelease, ...] = model.os_versions
        self.config_codes = {
            (c, g): _config_code(model.product_name, c, g) for c in model.colors for g in model.capacities_gb
        }
        # Legacy serials carry the half-year of manufacture: units were built from launch to ~2 years on.
        self.half_year_codes = tuple(
            HALF_YEAR_CODES[((year - 2010) * 2 + half) % len(HALF_YEAR_CODES)]
            for year in range(model.released, model.released + 3)
            for half in (0, 1)
        )
        # description per (cellular, colour, capacity), in Apple Business Manager's upper case
        self.descriptions: dict[tuple[bool, str, int], str] = {}
        for cell in (False, True):
            variant = ""
            if model.device_family == "iPad":
                variant = " WI-FI + CELLULAR" if cell else " WI-FI"
            for c in model.colors:
                for g in model.capacities_gb:
                    label = _capacity_label(g)
                    self.descriptions[(cell, c, g)] = f"{model.abm_name}{variant} {label} {c.upper()}"
        self.wifi_only = model.cellular is False
        self.always_cellular = model.cellular is True
        self.modern_serial = model.serial_format == "modern"
        self.modern_udid = model.udid_format == "modern"
        self.udid_prefix = f"0000{model.chip_id}-" if model.chip_id else ""
        tac_prefixes = model.tac_prefixes or (
            "35" + str(int(hashlib.sha256(model.product_name.encode()).hexdigest(), 16))[:4],
        )
        if any(len(p) != 6 or not p.isdigit() for p in tac_prefixes):
            raise ValueError(f"{model.product_name}: TAC prefixes must be 6 digits, got {tac_prefixes}")
        self.tac_stems = tuple((p, _luhn_sum(p)) for p in tac_prefixes)
        self.cdma = model.cdma
        self.model_numbers = model.model_numbers
        self.cellular_model_numbers = model.cellular_model_numbers or model.model_numbers
        self.cellular_product_name = model.cellular_product_name or model.product_name
        self.name_suffix = f"'s {model.device_family}"


@functools.lru_cache(maxsize=256)
def model_plan(model: Model) -> ModelPlan:
    return ModelPlan(model)
