"""Simulated device identities: the values an MDM server, DEP and activation would check."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest
from faker import Faker

from simulator.catalog import load_catalog
from simulator.device.identity import (
    APPLE_OUIS,
    AppleDeviceProvider,
    DeviceIdentity,
    IdentityFactory,
    is_valid_imei,
    luhn_check_digit,
)

MODERN_SERIAL = re.compile(r"^[BCDFGHJKLMNPQRSTVWXYZ][BCDFGHJKLMNPQRSTVWXYZ0-9]{9}$")
LEGACY_SERIAL = re.compile(r"^[A-Z0-9]{3}[CDFGHJKLMNPQRSTVWXYZ][1-9CDFGHJKLMNPQRTVWXY][0-9A-HJ-NP-Z]{7}$")
LEGACY_UDID = re.compile(r"^[0-9a-f]{40}$")
MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
N = 100_000


@pytest.fixture(scope="module")
def fleet() -> tuple[list[DeviceIdentity], float]:
    started = time.perf_counter()
    devices = IdentityFactory(seed=2024).many(N)
    return devices, time.perf_counter() - started


def test_100k_identities_are_quick(fleet: tuple[list[DeviceIdentity], float]) -> None:
    devices, seconds = fleet
    assert len(devices) == N
    assert seconds < 8.0, f"{N} identities took {seconds:.2f}s"


def test_identifiers_are_unique_over_100k(fleet: tuple[list[DeviceIdentity], float]) -> None:
    devices, _ = fleet
    assert len({d.serial_number for d in devices}) == N
    assert len({d.udid for d in devices}) == N
    imeis = [d.imei for d in devices if d.imei]
    assert len(set(imeis)) == len(imeis) > N // 2
    assert len({d.wifi_mac for d in devices} | {d.bluetooth_mac for d in devices}) == 2 * N


def test_every_imei_passes_luhn(fleet: tuple[list[DeviceIdentity], float]) -> None:
    devices, _ = fleet
    for d in devices:
        if d.imei is not None:
            assert is_valid_imei(d.imei), d
            tac_stems = load_catalog().by_product_name(d.product_name).tac_prefixes
            assert d.imei[:6] in tac_stems


def test_identities_match_their_model(fleet: tuple[list[DeviceIdentity], float]) -> None:
    catalog = load_catalog()
    devices, _ = fleet
    for d in devices[:20_000]:
        m = catalog.by_product_name(d.product_name)
        assert d.model_name == m.model_name and d.device_family == m.device_family and d.os == m.os
        assert (d.os_version, d.build_version) in {(r.version, r.build) for r in m.os_versions}
        assert d.color in m.colors and d.capacity_gb in m.capacities_gb
        assert d.biometric == m.biometric
        # serial era
        pattern = MODERN_SERIAL if m.released >= 2021 else LEGACY_SERIAL
        assert pattern.match(d.serial_number), (m.model_name, d.serial_number)
        # UDID follows the chip
        if m.udid_format == "legacy":
            assert LEGACY_UDID.match(d.udid)
        else:
            assert re.fullmatch(rf"0000{m.chip_id}-[0-9A-F]{{16}}", d.udid), d.udid
        # cellular variant decides product name, model number and IMEI
        cellular = d.imei is not None
        if m.device_family == "iPhone":
            assert cellular
        assert d.product_name == (
            m.cellular_product_name if cellular and m.cellular_product_name else m.product_name
        )
        assert d.model_number in (
            m.cellular_model_numbers if cellular and m.cellular_model_numbers else m.model_numbers
        )
        assert d.meid == (d.imei[:14] if cellular and m.cdma else None)  # type: ignore[index]
        assert d.device_name.endswith(f"'s {m.device_family}")
        assert d.description.startswith(m.abm_name + " ") and d.description.endswith(d.color.upper())
        assert d.description == d.description.upper()


def test_macs_are_apple_and_bluetooth_follows_wifi(fleet: tuple[list[DeviceIdentity], float]) -> None:
    devices, _ = fleet
    for d in devices[:5000]:
        assert MAC.match(d.wifi_mac) and MAC.match(d.bluetooth_mac)
        assert d.wifi_mac[:8] in APPLE_OUIS
        assert int(d.bluetooth_mac.replace(":", ""), 16) == int(d.wifi_mac.replace(":", ""), 16) + 1


def test_both_serial_and_udid_eras_appear(fleet: tuple[list[DeviceIdentity], float]) -> None:
    devices, _ = fleet
    assert any(len(d.serial_number) == 12 for d in devices)
    assert any(len(d.serial_number) == 10 for d in devices)
    assert any(LEGACY_UDID.match(d.udid) for d in devices)
    assert any(d.imei is None for d in devices) and any(d.meid for d in devices)


def test_legacy_config_code_is_stable_per_configuration() -> None:
    f = IdentityFactory(seed=7)
    a = [f.one("iPhone 12", os_version="17.0") for _ in range(300)]
    codes: dict[tuple[str, int], set[str]] = {}
    for d in a:
        codes.setdefault((d.color, d.capacity_gb), set()).add(d.serial_number[-4:])
    assert all(len(c) == 1 for c in codes.values())
    assert len({next(iter(c)) for c in codes.values()}) == len(codes)


def test_same_seed_same_fleet_and_other_seed_other_fleet() -> None:
    assert IdentityFactory(seed=42).many(500) == IdentityFactory(seed=42).many(500)
    a = IdentityFactory(seed=1).many(20_000)
    b = IdentityFactory(seed=2).many(20_000)
    assert a[:10] != b[:10]
    assert not {d.serial_number for d in a} & {d.serial_number for d in b}
    assert not {d.udid for d in a} & {d.udid for d in b}


def test_pinning_model_os_and_family() -> None:
    f = IdentityFactory(seed=3)
    d = f.one("iPhone15,2", os_version="17.5.1")
    assert (d.model_name, d.os, d.build_version) == ("iPhone 14 Pro", "iOS", "21F90")
    assert re.fullmatch(r"00008120-[0-9A-F]{16}", d.udid)
    with pytest.raises(KeyError):
        f.one("iPhone 8", os_version="17.0")
    ipad = f.one("iPad Air (5th generation)", cellular=False)
    assert ipad.imei is None and ipad.product_name == "iPad13,16" and " WI-FI " in ipad.description
    assert ipad.os == "iPadOS"
    assert f.one("iPad Air (5th generation)", cellular=True).product_name == "iPad13,17"
    ipads = IdentityFactory(seed=3, family="iPad").many(200)
    assert {d.device_family for d in ipads} == {"iPad"}
    only = IdentityFactory(seed=3, models=["iPhone 16 Pro"]).many(50)
    assert {d.product_name for d in only} == {"iPhone17,1"}
    assert IdentityFactory(seed=3).many(0) == []


def test_a_serial_added_by_hand_gets_the_same_device_whatever_was_made_before() -> None:
    busy = IdentityFactory(seed=5)
    busy.many(100)
    a = busy.for_serial("F2LXK1ABCDEF")
    assert a == IdentityFactory(seed=5).for_serial("F2LXK1ABCDEF")
    assert a.serial_number == "F2LXK1ABCDEF"
    assert IdentityFactory(seed=6).for_serial("F2LXK1ABCDEF") != a
    assert IdentityFactory().for_serial("F2LXK1ABCDEF") != IdentityFactory().for_serial("F2LXK1ABCDEF")
    pinned = IdentityFactory(seed=5).for_serial("F2LXK1ABCDEF", "iPhone15,2", os_version="17.5.1")
    assert (pinned.model_name, pinned.build_version) == ("iPhone 14 Pro", "21F90")
    assert re.fullmatch(r"00008120-[0-9A-F]{16}", pinned.udid) and is_valid_imei(pinned.imei or "")


def test_unseeded_factories_differ_and_keep_the_seed_they_picked() -> None:
    a, b = IdentityFactory(), IdentityFactory()
    assert isinstance(a.seed, int) and a.seed != b.seed
    assert a.many(5) != b.many(5)
    assert IdentityFactory(seed=a.seed).many(10)[5:] == a.many(5)


def test_identity_is_immutable() -> None:
    d = IdentityFactory(seed=1).one()
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.serial_number = "X"  # type: ignore[misc]


def test_luhn() -> None:
    assert luhn_check_digit("49015420323751") == "8"
    assert is_valid_imei("490154203237518")
    assert not is_valid_imei("490154203237519")
    assert not is_valid_imei("49015420323751")
    assert not is_valid_imei("49015420323751a")
    assert luhn_check_digit("7992739871") == "3"
    with pytest.raises(ValueError):
        luhn_check_digit("12a")


def test_faker_provider_is_seeded_by_faker() -> None:
    fake = Faker()
    fake.add_provider(AppleDeviceProvider)

    def draw() -> list[object]:
        return [fake.apple_serial_number(), fake.apple_udid(), fake.apple_imei(), fake.apple_device()]

    fake.seed_instance(99)
    first = draw()
    fake.seed_instance(99)
    assert draw() == first
    assert is_valid_imei(fake.apple_imei())
    assert len(fake.apple_meid()) == 14
    assert MODERN_SERIAL.match(fake.apple_serial_number(modern=True))
    assert LEGACY_SERIAL.match(fake.apple_serial_number(modern=False))
    assert LEGACY_UDID.match(fake.apple_udid(legacy=True))
    assert re.fullmatch(r"0000[0-9]{4}-[0-9A-F]{16}", fake.apple_udid())
    assert fake.apple_wifi_mac()[:8] in APPLE_OUIS
    assert load_catalog().by_product_name(fake.apple_product_name("iPad")).device_family == "iPad"
    assert fake.apple_device(family="iPad").device_family == "iPad"
    release = fake.apple_os_release()
    model = load_catalog().by_product_name(release["product_name"])
    assert model.release(release["version"]).build == release["build"]
    assert len({fake.unique.apple_serial_number() for _ in range(500)}) == 500
