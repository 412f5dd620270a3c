"""The device catalog: the facts every simulated iPhone/iPad and Setup Assistant are built from."""

from __future__ import annotations

import pytest

from simulator.catalog import Catalog, Model, load_catalog, version_tuple

EXPECTED_MODELS = [
    "iPhone 8", "iPhone X", "iPhone XR", "iPhone XS", "iPhone 11", "iPhone 11 Pro",
    "iPhone SE (2nd generation)", "iPhone SE (3rd generation)", "iPhone 12", "iPhone 12 Pro", "iPhone 13",
    "iPhone 13 mini", "iPhone 14", "iPhone 14 Pro", "iPhone 15", "iPhone 15 Pro", "iPhone 16",
    "iPhone 16 Pro", "iPhone 17", "iPhone 17 Pro", "iPad (9th generation)", "iPad (10th generation)",
    "iPad (A16)", "iPad Air (4th generation)", "iPad Air (5th generation)", "iPad mini (6th generation)",
    "iPad Pro (11-inch)", "iPad Pro (12.9-inch) (3rd generation)", "iPad Pro 11-inch (M4)",
]  # fmt: skip

# Chip ids that prefix modern UDIDs, by system on a chip.
CHIP_IDS = {
    "A12 Bionic": "8020", "A12X Bionic": "8027", "A12Z Bionic": "8027", "A13 Bionic": "8030",
    "A14 Bionic": "8101", "A15 Bionic": "8110", "A16 Bionic": "8120", "A16": "8120", "A17 Pro": "8130",
    "A18": "8140", "A18 Pro": "8140", "M1": "8103", "M2": "8112", "M4": "8132",
}  # fmt: skip


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def test_catalog_is_parsed_once_per_process() -> None:
    assert load_catalog() is load_catalog()


@pytest.mark.parametrize("name", EXPECTED_MODELS)
def test_common_models_are_in_the_catalog(catalog: Catalog, name: str) -> None:
    assert catalog.by_model_name(name).model_name == name


def test_every_model_is_complete(catalog: Catalog) -> None:
    assert len(catalog) >= 40
    for m in catalog:
        assert m.os_versions, m.model_name
        assert m.colors and m.capacities_gb and m.model_numbers, m.model_name
        assert m.device_family in ("iPhone", "iPad")
        assert m.os == ("iOS" if m.device_family == "iPhone" else "iPadOS")
        assert m.biometric in ("FaceID", "TouchID")
        assert m.has_face_id != m.has_touch_id
        assert all(n.startswith("A") and len(n) == 5 for n in m.model_numbers + m.cellular_model_numbers)
        versions = [version_tuple(r.version) for r in m.os_versions]
        assert versions == sorted(versions) and len(set(versions)) == len(versions), m.model_name
        assert m.min_os == m.os_versions[0].version and m.max_os == m.os_versions[-1].version
        assert version_tuple(m.min_os) >= version_tuple(m.launch_os)
        if m.last_major is not None:
            assert m.os_versions[-1].major == m.last_major


def test_a_version_has_one_build_across_models(catalog: Catalog) -> None:
    builds: dict[str, str] = {}
    for m in catalog:
        for r in m.os_versions:
            assert builds.setdefault(r.version, r.build) == r.build, (m.model_name, r.version)
    assert builds["17.5.1"] == "21F90"
    assert builds["16.0"] == "20A362"


def test_udid_format_follows_the_chip(catalog: Catalog) -> None:
    for m in catalog:
        if m.soc.startswith("A11"):
            assert m.udid_format == "legacy" and m.chip_id is None
        else:
            assert m.udid_format == "modern"
            assert m.chip_id == CHIP_IDS.get(m.soc, m.chip_id), m.model_name
            assert len(m.chip_id or "") == 4


def test_serial_format_follows_release_year(catalog: Catalog) -> None:
    for m in catalog:
        assert m.serial_format == ("modern" if m.released >= 2021 else "legacy"), m.model_name


def test_os_support_matches_apple(catalog: Catalog) -> None:
    iphone8 = catalog.by_model_name("iPhone 8")
    assert iphone8.supports("16.7.2") and not iphone8.supports("17.0")
    xs = catalog.by_model_name("iPhone XS")
    assert xs.supports("18.0") and not any(r.major == 26 for r in xs.os_versions)
    assert catalog.by_model_name("iPhone 11").supports("26.0")
    assert catalog.by_model_name("iPhone 15 Pro").min_os == "17.0"
    assert catalog.by_model_name("iPhone 14 Pro").release("17.5.1").build == "21F90"
    with pytest.raises(KeyError):
        iphone8.release("17.0")


def test_lookup_by_product_name_covers_both_ipad_variants(catalog: Catalog) -> None:
    assert catalog.by_product_name("iPhone15,2").model_name == "iPhone 14 Pro"
    air5 = catalog.by_model_name("iPad Air (5th generation)")
    assert air5.cellular == "optional"
    assert catalog.by_product_name("iPad13,16") is air5
    assert catalog.by_product_name("iPad13,17") is air5
    with pytest.raises(KeyError):
        catalog.by_product_name("iPhone99,9")


def test_models_filters_by_family(catalog: Catalog) -> None:
    ipads = catalog.models("iPad")
    iphones = catalog.models(family="iPhone")
    assert ipads and iphones
    assert all(m.device_family == "iPad" for m in ipads)
    assert len(ipads) + len(iphones) == len(catalog.models())
    with pytest.raises(ValueError):
        catalog.models("Mac")


def test_iphones_are_cellular_and_ipads_optional(catalog: Catalog) -> None:
    for m in catalog:
        if m.device_family == "iPhone":
            assert m.cellular is True and m.tac_prefixes
        else:
            assert m.cellular == "optional" and m.cellular_product_name and m.cellular_model_numbers


def test_models_are_hashable_values() -> None:
    m = load_catalog().by_product_name("iPhone15,2")
    assert isinstance(m, Model) and {m: 1}[m] == 1


IOS17_MUST_HAVE = {
    "Passcode", "Biometric", "Payment", "Siri", "Location", "Restore", "AppleID", "TOS", "Zoom",
    "Diagnostics", "ScreenTime",
}  # fmt: skip


def test_skip_keys_for_ios_17(catalog: Catalog) -> None:
    keys = {k.key for k in catalog.skip_keys_for("17.0", "iPhone")}
    assert IOS17_MUST_HAVE <= keys
    assert "ActionButton" in keys
    assert "CameraButton" not in keys  # iOS 18
    assert not keys & {"FileVault", "Accessibility", "TVRoom", "ScreenSaver"}  # not iOS keys


def test_skip_keys_depend_on_version_and_family(catalog: Catalog) -> None:
    assert "Intelligence" not in {k.key for k in catalog.skip_keys_for("17.5.1")}
    assert "Intelligence" in {k.key for k in catalog.skip_keys_for("18.0")}
    ipad18 = {k.key for k in catalog.skip_keys_for("18.0", "iPad")}
    assert "CameraButton" not in ipad18 and "Passcode" in ipad18
    current = {k.key for k in catalog.skip_keys_for("17.0", include_deprecated=False)}
    assert "Zoom" not in current and "Passcode" in current
    keys = catalog.skip_keys_for("16.0")
    assert [k.key for k in keys] == sorted(k.key for k in keys)
    keyboard = next(k for k in keys if k.key == "Keyboard")
    assert keyboard.always_skippable is False
    with pytest.raises(ValueError):
        catalog.skip_keys_for("seventeen")
