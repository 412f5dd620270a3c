"""Who a simulated iPhone or iPad is: serial number, UDID, IMEI, MACs, model, OS build, name.

Identities must look real enough that an MDM vendor's validation (serial length, UDID shape, IMEI
check digit, ``ProductName`` vs OS build) accepts them, be reproducible from a seed so a failing test
can be replayed, and be cheap: load tests invent 100,000 devices, so a factory makes them from
precomputed tables and a few cheap draws each instead of calling Faker per field.

Randomness
----------
Everything comes from :class:`~mdm.protocol.randomness.Randomness` with the factory's seed. What is
printed on the box (model, colour, capacity, OS build, cellular or not, serial number) comes off the
factory's production line, one stream (label ``device-factory:production-line``) drawn in order, so
the n-th device of a seeded factory is always the same. Everything else a device is (MACs, UDID,
IMEI, model number, name) is derived from the seed and its serial number (label
``device:<serial>:identity``), so it does not depend on what else the factory made, and
:meth:`IdentityFactory.for_serial` gives a serial added by hand the same kind of identity.

The formats (serial numbers, UDIDs, IMEIs, MACs) are :mod:`simulator.device.identity_formats`'s.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from faker.providers import BaseProvider

from mdm.protocol.randomness import Randomness
from simulator.catalog import Model, OSRelease, load_catalog

from .identity_formats import (
    APPLE_OUIS,
    ECID_SUFFIXES,
    HEX_BYTES,
    LEGACY_LOCATIONS,
    LUHN_PAIR,
    MODERN_SERIAL_LETTERS,
    WEEK_CODES,
    ModelPlan,
    eid_for,
    is_valid_imei,
    legacy_triples,
    luhn_check_digit,
    model_plan,
    modern_triples,
)

__all__ = [
    "APPLE_OUIS",
    "AppleDeviceProvider",
    "DeviceIdentity",
    "IdentityFactory",
    "is_valid_imei",
    "luhn_check_digit",
]

_IPAD_CELLULAR_SHARE = 0.4  # enterprises buy mostly Wi-Fi iPads
_FALLBACK_NAMES = ("Maria", "James", "Aiko", "Lukas", "Priya", "Omar", "Sofia", "Chen", "Noah", "Amara")


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

    @property
    def eid(self) -> str | None:
        """The EID of a cellular device's eSIM chip (None without a modem): derived from the serial, not
        stored, so identities kept by older worlds have one too."""
        return eid_for(self.serial_number) if self.imei is not None else None


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


class Draws(Protocol):
    """What the identity pieces draw from: a ``random.Random`` or a device's :class:`_DeviceDraws`."""

    def random(self) -> float: ...

    def getrandbits(self, k: int, /) -> int: ...


class _DeviceDraws:
    """Draws for one device, read from bits derived from ``(seed, device:<serial>:identity)``.

    Cheaper than seeding a ``random.Random`` per device (~5 µs for the Mersenne Twister's state,
    against one SHAKE-256 call here): 64 bytes held as one integer, consumed from the low end; a
    redraw after a collision may need another block (``…:identity:1``, …).
    """

    __slots__ = ("_randomness", "_label", "_pool", "_bits", "_block")

    def __init__(self, randomness: Randomness, label: str) -> None:
        self._randomness = randomness
        self._label = label
        self._pool = int.from_bytes(randomness.bytes(64, label), "little")
        self._bits = 512
        self._block = 0

    def _refill(self) -> None:
        self._block += 1
        self._pool = int.from_bytes(self._randomness.bytes(64, f"{self._label}:{self._block}"), "little")
        self._bits = 512

    def random(self) -> float:
        """A float in [0, 1) with 53 random bits, as ``random.random``."""
        if self._bits < 53:
            self._refill()
        pool = self._pool
        self._pool = pool >> 53
        self._bits -= 53
        return (pool & 0x1FFFFFFFFFFFFF) * 1.1102230246251565e-16  # 2 ** -53

    def getrandbits(self, k: int, /) -> int:
        if self._bits < k:
            self._refill()
        pool = self._pool
        self._pool = pool >> k
        self._bits -= k
        return pool & ((1 << k) - 1)


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
    its own ``random.Random`` for every draw; ``unique=False`` forgets what was drawn, so reseeding
    ``rng`` replays the same values (Faker semantics; ``fake.unique`` is the way to ask for uniqueness
    there). Without ``seed`` or ``rng`` the factory picks a random seed (kept in :attr:`seed`).
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
            seed = Randomness(None).below(2**64, "device-factory:seed")
        self.seed = seed
        self._randomness = Randomness(seed)
        self._rng = rng if rng is not None else self._randomness.stream("device-factory:production-line")
        self._shared_rng = rng is not None
        catalog = load_catalog()
        if models is not None:
            chosen = [self._resolve(m) for m in models]
        else:
            chosen = catalog.models(family)
        if family is not None:
            chosen = [m for m in chosen if m.device_family == family]
        if not chosen:
            raise ValueError("no catalog model matches the requested family/models")
        self._plans = tuple(model_plan(m) for m in chosen)
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

    def _device_draws(self, serial: str) -> Draws:
        """Where the rest of a device with this serial comes from (the caller's ``rng`` if it gave one)."""
        if self._shared_rng:
            return self._rng
        return _DeviceDraws(self._randomness, f"device:{serial}:identity")

    # -- the pieces, each usable on its own (the Faker provider calls these) -------------------------

    def serial_number(self, plan: ModelPlan, color: str, capacity_gb: int) -> str:
        # Draws index precomputed three-character tables with random() (a C call) instead of
        # rnd.choice per character: serials are the hottest path of a 100k-device fleet.
        rand = self._rng.random
        seen = self._serials
        while True:
            if plan.modern_serial:
                t = modern_triples()
                n = len(t)
                s = (
                    MODERN_SERIAL_LETTERS[int(rand() * len(MODERN_SERIAL_LETTERS))]
                    + t[int(rand() * n)]
                    + t[int(rand() * n)]
                    + t[int(rand() * n)]
                )
            else:
                t = legacy_triples()
                codes = plan.half_year_codes
                s = (
                    LEGACY_LOCATIONS[int(rand() * len(LEGACY_LOCATIONS))]
                    + codes[int(rand() * len(codes))]
                    + WEEK_CODES[int(rand() * len(WEEK_CODES))]
                    + t[int(rand() * len(t))]
                    + plan.config_codes[(color, capacity_gb)]
                )
            if s not in seen:
                seen.add(s)
                return s

    def mac_pair(self, rnd: Draws | None = None) -> tuple[str, str]:
        """(Wi-Fi, Bluetooth): an even NIC part for Wi-Fi so Bluetooth = Wi-Fi + 1 never collides."""
        rnd = rnd or self._rng
        seen = self._macs
        while True:
            oui_index = int(rnd.random() * len(APPLE_OUIS))
            nic = rnd.getrandbits(23) << 1
            key = (oui_index << 24) | nic
            if key not in seen:
                seen.add(key)
                break
        oui = APPLE_OUIS[oui_index]
        head = f"{oui}:{HEX_BYTES[nic >> 16]}:{HEX_BYTES[(nic >> 8) & 0xFF]}:"
        low = nic & 0xFF
        return head + HEX_BYTES[low], head + HEX_BYTES[low + 1]  # low is even, so + 1 never carries

    def udid(self, plan: ModelPlan, serial: str, wifi_mac: str, bluetooth_mac: str, rnd: Draws | None = None) -> str:
        rnd = rnd or self._rng
        seen = self._udids
        while True:
            suffix = ECID_SUFFIXES[int(rnd.random() * len(ECID_SUFFIXES))]
            ecid = f"00{rnd.getrandbits(40):010X}{suffix}"
            if plan.modern_udid:
                u = plan.udid_prefix + ecid
            else:
                u = hashlib.sha1(f"{serial}{ecid}{wifi_mac}{bluetooth_mac}".encode()).hexdigest()
            if u not in seen:
                seen.add(u)
                return u

    def imei(self, plan: ModelPlan, rnd: Draws | None = None) -> str:
        # The Luhn sum is assembled from per-TAC-stem sums and a 100-entry table of digit pairs
        # (the body has an even length, so every pair is "left + doubled right").
        rand = (rnd or self._rng).random
        seen = self._imeis
        pair = LUHN_PAIR
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
        plan, color, capacity, release, is_cell = self._box(self._rng.random, model, os_version, cellular)
        serial = self.serial_number(plan, color, capacity)
        return self._device(plan, color, capacity, release, is_cell, serial, self._device_draws(serial))

    def for_serial(
        self,
        serial: str,
        model: Model | str | None = None,
        *,
        os_version: str | None = None,
        cellular: bool | None = None,
    ) -> DeviceIdentity:
        """The device behind a serial number that did not come off this factory's line (one typed
        into the portal by hand): every value drawn from the seed and the serial, so a seeded world
        gives that serial the same device whenever and in whatever order it is asked."""
        draws = self._device_draws(serial)
        plan, color, capacity, release, is_cell = self._box(draws.random, model, os_version, cellular)
        self._serials.add(serial)
        return self._device(plan, color, capacity, release, is_cell, serial, draws)

    def _box(
        self, rand: Any, model: Model | str | None, os_version: str | None, cellular: bool | None
    ) -> tuple[ModelPlan, str, int, OSRelease, bool]:
        """What is printed on the box: model, colour, capacity, OS build, cellular or not."""
        if model is not None:
            plan = model_plan(self._resolve(model))
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
        return plan, color, capacity, release, is_cell

    def _device(
        self, plan: ModelPlan, color: str, capacity: int, release: OSRelease, is_cell: bool, serial: str,
        draws: Draws,
    ) -> DeviceIdentity:
        """The rest of a device, from its own draws: MACs, UDID, IMEI, model number and name."""
        m = plan.model
        wifi, bt = self.mac_pair(draws)
        udid = self.udid(plan, serial, wifi, bt, draws)
        if is_cell:
            imei: str | None = self.imei(plan, draws)
            meid = imei[:14] if plan.cdma else None  # type: ignore[index]
            product_name = plan.cellular_product_name
            numbers = plan.cellular_model_numbers
        else:
            imei = meid = None
            product_name = m.product_name
            numbers = plan.model_numbers
        rand = draws.random
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
        plan = model_plan(m)
        return self._identity_factory().serial_number(
            plan, self.random_element(m.colors), self.random_element(m.capacities_gb)
        )

    def apple_udid(self, legacy: bool = False) -> str:
        """A UDID: ``00008xxx-…`` for A12 and later, or 40 hex digits when ``legacy``."""
        candidates = [m for m in load_catalog().models() if (m.udid_format == "legacy") == legacy]
        plan = model_plan(self.random_element(candidates))
        f = self._identity_factory()
        wifi, bt = f.mac_pair()
        return f.udid(plan, self.apple_serial_number(), wifi, bt)

    def apple_imei(self) -> str:
        """A 15-digit IMEI with an Apple-like TAC and a valid Luhn check digit."""
        models = [m for m in load_catalog().models() if m.cellular is not False]
        return self._identity_factory().imei(model_plan(self.random_element(models)))

    def apple_meid(self) -> str:
        """A 14-digit MEID as a CDMA-capable iPhone reports it (its IMEI without the check digit)."""
        models = [m for m in load_catalog().models() if m.cdma]
        return self._identity_factory().imei(model_plan(self.random_element(models)))[:14]

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
