"""Who a simulated iPhone or iPad is: serial number, UDID, IMEI, MACs, model, OS build, name.

Identities must look real enough that an MDM vendor's validation (serial length, UDID shape, IMEI
check digit, ``ProductName`` vs OS build) accepts them, be reproducible from a seed so a failing test
can be replayed, and be cheap: load tests invent 100,000 devices, so a factory draws everything from
one ``random.Random`` and precomputed tables instead of calling Faker per field.

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
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from faker.providers import BaseProvider

from simulator.catalog import Model, OSRelease, load_catalog

__all__ = [
    "APPLE_OUIS",
    "AppleDeviceProvider",
    "DeviceIdentity",
    "IdentityFactory",
    "is_valid_imei",
    "luhn_check_digit",
]

# Organizationally unique identifiers registered to Apple, Inc.
APPLE_OUIS: tuple[str, ...] = (
    "f0:18:98", "a4:83:e7", "3c:22:fb", "ac:bc:32", "88:66:5a", "f4:0f:24", "8c:85:90", "70:3e:ac",
    "28:cf:e9", "98:01:a7", "d0:81:7a", "40:98:ad", "5c:f9:38", "a8:60:b6", "dc:a9:04", "14:7d:da",
    "bc:d0:74", "60:f8:1d", "f8:ff:c2",
)  # fmt: skip

_MODERN_SERIAL_LETTERS = "BCDFGHJKLMNPQRSTVWXYZ"
_MODERN_SERIAL_ALPHABET = _MODERN_SERIAL_LETTERS + "0123456789"
_LEGACY_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, no O
_HALF_YEAR_CODES = "CDFGHJKLMNPQRSTVWXYZ"
_WEEK_CODES = "123456789CDFGHJKLMNPQRTVWXY"
_LEGACY_LOCATIONS = ("F2L", "F17", "FK1", "DNP", "DNQ", "DX3", "C39", "G0N", "F4H", "FFM", "GHK", "C7C")
# Observed endings of real ECIDs; the rest of the ECID is random.
_ECID_SUFFIXES = ("002E", "802E", "001E", "801E", "0026", "8026", "003A", "803A")
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
_IPAD_CELLULAR_SHARE = 0.4  # enterprises buy mostly Wi-Fi iPads
_HEX = tuple(f"{i:02x}" for i in range(256))
_LUHN_PAIR = tuple(n // 10 + _DOUBLED[n % 10] for n in range(100))
_FALLBACK_NAMES = ("Maria", "James", "Aiko", "Lukas", "Priya", "Omar", "Sofia", "Chen", "Noah", "Amara")


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


def is_valid_imei(s: str) -> bool:
    """True for 15 ASCII digits whose last digit is the Luhn check digit of the first 14."""
    return (
        isinstance(s, str)
        and len(s) == 15
        and s.isascii()
        and s.isdigit()
        and luhn_check_digit(s[:14]) == s[14]
    )


@dataclass(slots=True, frozen=True)
class DeviceIdentity:
    """Everything that identifies one simulated device, as MDM, DEP and activation see it.

    ``imei`` is None for Wi-Fi-only devices; ``meid`` is None unless the device is CDMA-capable.
    ``description`` is the Apple Business Manager order line (``IPHONE 14 PRO 128GB SPACE BLACK``).
    """

    serial_number: str
    udid: str
    imei: str | None
    meid: str | None
    product_name: str
    model_name: str
    model_number: str
    device_family: str
    os: str
    os_version: str
    build_version: str
    device_name: str
    wifi_mac: str
    bluetooth_mac: str
    capacity_gb: int
    color: str
    description: str
    biometric: str

    @property
    def is_cellular(self) -> bool:
        return self.imei is not None


@functools.cache
def _modern_triples() -> tuple[str, ...]:
    """Every three-character run of the modern serial alphabet (31**3 strings, built on first use)."""
    a = _MODERN_SERIAL_ALPHABET
    return tuple(x + y + z for x in a for y in a for z in a)


@functools.cache
def _legacy_triples() -> tuple[str, ...]:
    """Every three-character legacy unit number (34**3 strings, built on first use)."""
    a = _LEGACY_ALPHABET
    return tuple(x + y + z for x in a for y in a for z in a)


def _luhn_sum(digits: str) -> int:
    """Luhn sum of a digit run that sits an even number of places left of the check digit."""
    return sum(_LUHN_PAIR[int(digits[i : i + 2])] for i in range(0, len(digits), 2))


def _capacity_label(gb: int) -> str:
    return f"{gb // 1024}TB" if gb >= 1024 and gb % 1024 == 0 else f"{gb}GB"


def _config_code(product_name: str, color: str, capacity_gb: int) -> str:
    """Last four characters of a legacy serial: fixed per model/colour/capacity, like Apple's."""
    h = int.from_bytes(hashlib.sha256(f"{product_name}|{color}|{capacity_gb}".encode()).digest()[:8], "big")
    out = []
    for _ in range(4):
        h, r = divmod(h, len(_LEGACY_ALPHABET))
        out.append(_LEGACY_ALPHABET[r])
    return "".join(out)


class _ModelPlan:
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
            _HALF_YEAR_CODES[((year - 2010) * 2 + half) % len(_HALF_YEAR_CODES)]
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
def _plan(model: Model) -> _ModelPlan:
    return _ModelPlan(model)


@functools.lru_cache(maxsize=8)
def _first_names(locale: str = "en_US", size: int = 500) -> tuple[str, ...]:
    """A fixed pool of first names from Faker, drawn once per locale (seeded, so reproducible)."""
    try:
        from faker import Faker

        fake = Faker(locale)
        fake.seed_instance(0)
        names: dict[str, None] = {}
        for _ in range(size * 4):
            names.setdefault(fake.first_name(), None)
            if len(names) >= size:
                break
        return tuple(names) or _FALLBACK_NAMES
    except (ImportError, AttributeError):
        return _FALLBACK_NAMES


class _Forgetful(set[Any]):
    """A set that remembers nothing: lets a non-unique factory share the unique one's hot path."""

    def __contains__(self, item: object) -> bool:
        return False

    def add(self, item: Any) -> None:
        pass


class IdentityFactory:
    """Invents device identities, deterministically for a given seed.

    Serials, UDIDs, IMEIs and Wi-Fi MACs are unique within a factory (remembered and redrawn on the
    rare collision); across factories they are unique in practice because the random spaces are
    large. ``models``/``family`` narrow the fleet; ``rng`` lets a caller (the Faker provider) share
    its own ``random.Random``; ``unique=False`` forgets what was drawn, so reseeding ``rng`` replays
    the same values (Faker semantics; ``fake.unique`` is the way to ask for uniqueness there).
    """

    def __init__(
        self,
        seed: int | None = None,
        *,
        family: str | None = None,
        models: Sequence[Model | str] | None = None,
        locale: str = "en_US",
        first_names: Sequence[str] | None = None,
        rng: random.Random | None = None,
        unique: bool = True,
    ) -> None:
        if seed is None and rng is None:
            seed = int.from_bytes(os.urandom(8), "big")
        self.seed = seed
        self._rng = rng if rng is not None else random.Random(seed)
        catalog = load_catalog()
        if models is not None:
            chosen = [self._resolve(m) for m in models]
        else:
            chosen = catalog.models(family)
        if family is not None:
            chosen = [m for m in chosen if m.device_family == family]
        if not chosen:
            raise ValueError("no catalog model matches the requested family/models")
        self._plans = tuple(_plan(m) for m in chosen)
        self._names = tuple(first_names) if first_names else _first_names(locale)
        memory = set if unique else _Forgetful
        self._serials: set[str] = memory()
        self._udids: set[str] = memory()
        self._imeis: set[str] = memory()
        self._macs: set[int] = memory()

    @staticmethod
    def _resolve(model: Model | str) -> Model:
        if isinstance(model, Model):
            return model
        catalog = load_catalog()
        try:
            return catalog.by_product_name(model)
        except KeyError:
            return catalog.by_model_name(model)

    # -- the pieces, each usable on its own (the Faker provider calls these) -------------------------

    def serial_number(self, plan: _ModelPlan, color: str, capacity_gb: int) -> str:
        # Draws index precomputed three-character tables with random() (a C call) instead of
        # rnd.choice per character: serials are the hottest path of a 100k-device fleet.
        rand = self._rng.random
        seen = self._serials
        while True:
            if plan.modern_serial:
                t = _modern_triples()
                n = len(t)
                s = (
                    _MODERN_SERIAL_LETTERS[int(rand() * len(_MODERN_SERIAL_LETTERS))]
                    + t[int(rand() * n)]
                    + t[int(rand() * n)]
                    + t[int(rand() * n)]
                )
            else:
                t = _legacy_triples()
                codes = plan.half_year_codes
                s = (
                    _LEGACY_LOCATIONS[int(rand() * len(_LEGACY_LOCATIONS))]
                    + codes[int(rand() * len(codes))]
                    + _WEEK_CODES[int(rand() * len(_WEEK_CODES))]
                    + t[int(rand() * len(t))]
                    + plan.config_codes[(color, capacity_gb)]
                )
            if s not in seen:
                seen.add(s)
                return s

    def mac_pair(self) -> tuple[str, str]:
        """(Wi-Fi, Bluetooth): an even NIC part for Wi-Fi so Bluetooth = Wi-Fi + 1 never collides."""
        rnd = self._rng
        seen = self._macs
        while True:
            oui_index = int(rnd.random() * len(APPLE_OUIS))
            nic = rnd.getrandbits(23) << 1
            key = (oui_index << 24) | nic
            if key not in seen:
                seen.add(key)
                break
        oui = APPLE_OUIS[oui_index]
        head = f"{oui}:{_HEX[nic >> 16]}:{_HEX[(nic >> 8) & 0xFF]}:"
        low = nic & 0xFF
        return head + _HEX[low], head + _HEX[low + 1]  # low is even, so + 1 never carries

    def udid(self, plan: _ModelPlan, serial: str, wifi_mac: str, bluetooth_mac: str) -> str:
        rnd = self._rng
        seen = self._udids
        while True:
            suffix = _ECID_SUFFIXES[int(rnd.random() * len(_ECID_SUFFIXES))]
            ecid = f"00{rnd.getrandbits(40):010X}{suffix}"
            if plan.modern_udid:
                u = plan.udid_prefix + ecid
            else:
                u = hashlib.sha1(f"{serial}{ecid}{wifi_mac}{bluetooth_mac}".encode()).hexdigest()
            if u not in seen:
                seen.add(u)
                return u

    def imei(self, plan: _ModelPlan) -> str:
        # The Luhn sum is assembled from per-TAC-stem sums and a 100-entry table of digit pairs
        # (the body has an even length, so every pair is "left + doubled right").
        rand = self._rng.random
        seen = self._imeis
        pair = _LUHN_PAIR
        while True:
            stem, stem_sum = plan.tac_stems[int(rand() * len(plan.tac_stems))]
            a = int(rand() * 100)
            snr = int(rand() * 1_000_000)
            total = stem_sum + pair[a] + pair[snr // 10_000] + pair[(snr // 100) % 100] + pair[snr % 100]
            s = f"{stem}{a:02d}{snr:06d}{-total % 10}"
            if s not in seen:
                seen.add(s)
                return s

    # -- whole devices -------------------------------------------------------------------------------

    def one(
        self,
        model: Model | str | None = None,
        *,
        os_version: str | None = None,
        cellular: bool | None = None,
    ) -> DeviceIdentity:
        """One new device; ``model`` (a ``Model``, product name or marketing name) and ``os_version``
        pin what would otherwise be drawn at random. ``cellular`` only matters for iPads."""
        rand = self._rng.random
        if model is not None:
            plan = _plan(self._resolve(model))
        else:
            plan = self._plans[int(rand() * len(self._plans))]
        m = plan.model
        color = plan.colors[int(rand() * len(plan.colors))]
        capacity = plan.capacities[int(rand() * len(plan.capacities))]
        if os_version is not None:
            release = m.release(os_version)
        else:
            release = plan.releases[int(rand() * len(plan.releases))]
        if plan.always_cellular:
            is_cell = True
        elif plan.wifi_only:
            is_cell = False
        elif cellular is not None:
            is_cell = cellular
        else:
            is_cell = rand() < _IPAD_CELLULAR_SHARE
        serial = self.serial_number(plan, color, capacity)
        wifi, bt = self.mac_pair()
        udid = self.udid(plan, serial, wifi, bt)
        if is_cell:
            imei: str | None = self.imei(plan)
            meid = imei[:14] if plan.cdma else None  # type: ignore[index]
            product_name = plan.cellular_product_name
            numbers = plan.cellular_model_numbers
        else:
            imei = meid = None
            product_name = m.product_name
            numbers = plan.model_numbers
        model_number = numbers[int(rand() * len(numbers))]
        names = self._names
        return DeviceIdentity(
            serial_number=serial,
            udid=udid,
            imei=imei,
            meid=meid,
            product_name=product_name,
            model_name=m.model_name,
            model_number=model_number,
            device_family=plan.family,
            os=plan.os,
            os_version=release.version,
            build_version=release.build,
            device_name=names[int(rand() * len(names))] + plan.name_suffix,
            wifi_mac=wifi,
            bluetooth_mac=bt,
            capacity_gb=capacity,
            color=color,
            description=plan.descriptions[(is_cell, color, capacity)],
            biometric=m.biometric,
        )

    def many(self, n: int, model: Model | str | None = None) -> list[DeviceIdentity]:
        """``n`` new devices (all of ``model`` if given)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        one = self.one
        return [one(model) for _ in range(n)]


class AppleDeviceProvider(BaseProvider):
    """Faker provider for Apple device identifiers: ``fake.add_provider(AppleDeviceProvider)``.

    It draws from the Faker instance's own random generator, so ``Faker.seed``/``seed_instance``
    make it reproducible, and it shares ``IdentityFactory``'s code, so its values have the same
    formats the simulator uses.
    """

    def _identity_factory(self) -> IdentityFactory:
        factory: IdentityFactory | None = getattr(self, "_apple_factory", None)
        if factory is None or factory._rng is not self.generator.random:
            factory = IdentityFactory(rng=self.generator.random, unique=False)
            self._apple_factory = factory
        return factory

    def _model(self, family: str | None = None, modern: bool | None = None) -> Model:
        models = load_catalog().models(family)
        if modern is not None:
            want = "modern" if modern else "legacy"
            models = [m for m in models if m.serial_format == want]
        return self.random_element(models)

    def apple_device(self, family: str | None = None, model: str | None = None) -> DeviceIdentity:
        """A complete ``DeviceIdentity`` (``family`` ``"iPhone"``/``"iPad"`` or a product/model name)."""
        f = self._identity_factory()
        return f.one(model if model is not None else self._model(family))

    def apple_serial_number(self, modern: bool | None = None) -> str:
        """A serial number; ``modern=True`` forces the 10-character format, False the 12-character one."""
        m = self._model(modern=modern)
        plan = _plan(m)
        return self._identity_factory().serial_number(
            plan, self.random_element(m.colors), self.random_element(m.capacities_gb)
        )

    def apple_udid(self, legacy: bool = False) -> str:
        """A UDID: ``00008xxx-…`` for A12 and later, or 40 hex digits when ``legacy``."""
        candidates = [m for m in load_catalog().models() if (m.udid_format == "legacy") == legacy]
        plan = _plan(self.random_element(candidates))
        f = self._identity_factory()
        wifi, bt = f.mac_pair()
        return f.udid(plan, self.apple_serial_number(), wifi, bt)

    def apple_imei(self) -> str:
        """A 15-digit IMEI with an Apple-like TAC and a valid Luhn check digit."""
        models = [m for m in load_catalog().models() if m.cellular is not False]
        return self._identity_factory().imei(_plan(self.random_element(models)))

    def apple_meid(self) -> str:
        """A 14-digit MEID as a CDMA-capable iPhone reports it (its IMEI without the check digit)."""
        models = [m for m in load_catalog().models() if m.cdma]
        return self._identity_factory().imei(_plan(self.random_element(models)))[:14]

    def apple_wifi_mac(self) -> str:
        """A Wi-Fi MAC address under one of Apple's OUIs."""
        return self._identity_factory().mac_pair()[0]

    def apple_product_name(self, family: str | None = None) -> str:
        """A ``ProductName`` such as ``iPhone15,2``."""
        return self._model(family).product_name

    def apple_model_name(self, family: str | None = None) -> str:
        """A marketing name such as ``iPhone 14 Pro``."""
        return self._model(family).model_name

    def apple_device_name(self, family: str = "iPhone") -> str:
        """A default-style device name such as ``Maria's iPhone``."""
        return f"{self.generator.first_name()}'s {family}"

    def apple_os_release(self, family: str | None = None) -> dict[str, Any]:
        """``{"product_name", "version", "build"}`` for a random model and an OS build it runs."""
        m = self._model(family)
        r = self.random_element(m.os_versions)
        return {"product_name": m.product_name, "version": r.version, "build": r.build}
