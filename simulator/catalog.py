"""The device model catalog: which iPhones and iPads exist, what they look like and what they run.

Every party that invents or checks a device (the portal when it "orders" devices, the device when it
reports ``ProductName``/``BuildVersion``, the Setup Assistant when it decides which panes to show)
reads the same packaged data here, so a simulated fleet never contains an iPhone 8 on iOS 18 or a
Face ID pane on a Touch ID iPad.

The data lives in ``simulator/fixtures/*.json`` and is read through ``importlib.resources`` because
the installed package must not depend on the source tree (``fixtures/`` is for tests) at run time. Parsing happens
once per process (``functools.lru_cache``); the result is immutable, so the cache holds no state.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

DeviceFamily = Literal["iPhone", "iPad"]
UdidFormat = Literal["legacy", "modern"]
SerialFormat = Literal["legacy", "modern"]
Biometric = Literal["FaceID", "TouchID"]

__all__ = [
    "Catalog",
    "Model",
    "OSRelease",
    "SkipKey",
    "load_catalog",
    "version_tuple",
]


@functools.lru_cache(maxsize=4096)
def version_tuple(version: str) -> tuple[int, ...]:
    """``"17.5.1"`` → ``(17, 5, 1)``, with trailing zeros dropped so ``"17.0"`` equals ``"17"``.

    OS versions must be compared numerically (``"17.10" > "17.9"``), never as strings. Memoised: a pure
    function of a short string, called for every pane of every device's Setup Assistant.
    """
    try:
        parts = [int(p) for p in version.strip().split(".")]
    except ValueError:
        raise ValueError(f"not an OS version: {version!r}") from None
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


@dataclass(slots=True, frozen=True)
class OSRelease:
    """One public OS build, e.g. iOS 17.5.1 (21F90). iPadOS shares iOS's numbers and builds."""

    version: str
    build: str

    @property
    def major(self) -> int:
        return version_tuple(self.version)[0]


@dataclass(slots=True, frozen=True)
class Model:
    """One marketing model (``iPhone 14 Pro``) with everything needed to invent a unit of it.

    iPads sold as Wi-Fi and Wi-Fi + Cellular are one model with ``cellular == "optional"``: the two
    variants differ in ``ProductName`` (``iPad13,16`` vs ``iPad13,17``) and model number, which is
    why the cellular ones are kept in ``cellular_product_name``/``cellular_model_numbers``.
    """

    product_name: str
    model_name: str
    abm_name: str
    device_family: DeviceFamily
    os: str
    model_numbers: tuple[str, ...]
    colors: tuple[str, ...]
    capacities_gb: tuple[int, ...]
    cellular: bool | Literal["optional"]
    cdma: bool
    biometric: Biometric
    soc: str
    soc_year: int
    released: int
    chip_id: str | None
    udid_format: UdidFormat
    serial_format: SerialFormat
    tac_prefixes: tuple[str, ...]
    launch_os: str
    last_major: int | None
    min_os: str
    max_os: str
    os_versions: tuple[OSRelease, ...]
    cellular_product_name: str | None = None
    cellular_model_numbers: tuple[str, ...] = ()

    @property
    def has_face_id(self) -> bool:
        return self.biometric == "FaceID"

    @property
    def has_touch_id(self) -> bool:
        return self.biometric == "TouchID"

    @property
    def product_names(self) -> tuple[str, ...]:
        """Every ``ProductName`` a unit of this model can report (Wi-Fi and cellular variants)."""
        if self.cellular_product_name:
            return (self.product_name, self.cellular_product_name)
        return (self.product_name,)

    def supports(self, os_version: str) -> bool:
        """True when the catalog lists ``os_version`` for this model."""
        wanted = version_tuple(os_version)
        return any(version_tuple(r.version) == wanted for r in self.os_versions)

    def release(self, os_version: str) -> OSRelease:
        """The build of ``os_version`` on this model; ``KeyError`` if the model never ran it."""
        wanted = version_tuple(os_version)
        for r in self.os_versions:
            if version_tuple(r.version) == wanted:
                return r
        raise KeyError(f"{self.model_name} does not run {self.os} {os_version}")

    @property
    def latest_release(self) -> OSRelease:
        return self.os_versions[-1]


@dataclass(slots=True, frozen=True)
class SkipKey:
    """A Setup Assistant pane an enrollment profile can skip (``skip_setup_items``).

    ``deprecated`` keys are still accepted by the OS (it ignores them), so they stay in
    ``Catalog.skip_keys_for``; ``removed`` ones are not. ``always_skippable`` is False for panes that
    appear before the device has fetched its cloud configuration (Keyboard, Dictation, ...).
    """

    key: str
    title: str
    description: str
    introduced: str
    deprecated: str | None
    removed: str | None
    always_skippable: bool
    platforms: tuple[str, ...]
    device_families: tuple[str, ...]

    def available_in(self, os_version: str) -> bool:
        v = version_tuple(os_version)
        if v < version_tuple(self.introduced):
            return False
        return self.removed is None or v < version_tuple(self.removed)

    def is_deprecated_in(self, os_version: str) -> bool:
        return self.deprecated is not None and version_tuple(os_version) >= version_tuple(self.deprecated)


class Catalog:
    """Read-only lookups over the packaged models and skip keys. Get one with ``load_catalog()``."""

    __slots__ = ("_models", "_by_product", "_skip_keys")

    def __init__(self, models: Iterable[Model], skip_keys: Iterable[SkipKey] = ()) -> None:
        self._models: tuple[Model, ...] = tuple(models)
        by_product: dict[str, Model] = {}
        for m in self._models:
            for pn in m.product_names:
                if pn in by_product:
                    raise ValueError(f"duplicate product name {pn} in catalog")
                by_product[pn] = m
        self._by_product = by_product
        self._skip_keys: tuple[SkipKey, ...] = tuple(skip_keys)

    def __len__(self) -> int:
        return len(self._models)

    def __iter__(self) -> Iterator[Model]:
        return iter(self._models)

    def models(self, family: DeviceFamily | str | None = None) -> list[Model]:
        """All models, or those of one ``device_family`` (``"iPhone"``/``"iPad"``), oldest first."""
        if family is None:
            return list(self._models)
        if family not in ("iPhone", "iPad"):
            raise ValueError(f"unknown device family {family!r}; expected 'iPhone' or 'iPad'")
        return [m for m in self._models if m.device_family == family]

    def by_product_name(self, product_name: str) -> Model:
        """The model behind a ``ProductName`` such as ``iPhone15,2`` (either iPad variant works)."""
        try:
            return self._by_product[product_name]
        except KeyError:
            raise KeyError(f"unknown product name {product_name!r}") from None

    def by_model_name(self, model_name: str) -> Model:
        """The model with marketing name ``model_name`` (case-insensitive), e.g. ``"iPhone 14 Pro"``."""
        wanted = model_name.casefold()
        for m in self._models:
            if m.model_name.casefold() == wanted:
                return m
        raise KeyError(f"unknown model {model_name!r}")

    @property
    def skip_keys(self) -> tuple[SkipKey, ...]:
        return self._skip_keys

    def skip_keys_for(
        self,
        os_version: str,
        family: DeviceFamily | str = "iPhone",
        *,
        include_deprecated: bool = True,
    ) -> list[SkipKey]:
        """Skip keys a device of ``family`` on ``os_version`` understands, sorted by key.

        Deprecated keys are included by default because devices still accept them in a profile's
        ``skip_setup_items`` (they just have no pane to skip); pass ``include_deprecated=False`` to
        get only keys that still hide something.
        """
        version_tuple(os_version)  # reject garbage early
        return sorted(
            (
                k
                for k in self._skip_keys
                if family in k.device_families
                and k.available_in(os_version)
                and (include_deprecated or not k.is_deprecated_in(os_version))
            ),
            key=lambda k: k.key,
        )


def _model_from_json(d: dict[str, Any]) -> Model:
    return Model(
        product_name=d["product_name"],
        model_name=d["model_name"],
        abm_name=d["abm_name"],
        device_family=d["device_family"],
        os=d["os"],
        model_numbers=tuple(d["model_numbers"]),
        colors=tuple(d["colors"]),
        capacities_gb=tuple(d["capacities_gb"]),
        cellular=d["cellular"],
        cdma=bool(d.get("cdma", False)),
        biometric=d["biometric"],
        soc=d["soc"],
        soc_year=d["soc_year"],
        released=d["released"],
        chip_id=d.get("chip_id"),
        udid_format=d["udid_format"],
        serial_format=d["serial_format"],
        tac_prefixes=tuple(d.get("tac_prefixes", ())),
        launch_os=d["launch_os"],
        last_major=d.get("last_major"),
        min_os=d["min_os"],
        max_os=d["max_os"],
        os_versions=tuple(OSRelease(r["version"], r["build"]) for r in d["os_versions"]),
        cellular_product_name=d.get("cellular_product_name"),
        cellular_model_numbers=tuple(d.get("cellular_model_numbers", ())),
    )


def _skip_key_from_json(d: dict[str, Any]) -> SkipKey:
    return SkipKey(
        key=d["key"],
        title=d["title"],
        description=d["description"],
        introduced=d["introduced"],
        deprecated=d.get("deprecated"),
        removed=d.get("removed"),
        always_skippable=bool(d.get("always_skippable", True)),
        platforms=tuple(d.get("platforms", ("iOS", "iPadOS"))),
        device_families=tuple(d.get("device_families", ("iPhone", "iPad"))),
    )


def _read_fixture(name: str) -> Any:
    return json.loads((resources.files("simulator") / "fixtures" / name).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The packaged catalog, parsed once per process."""
    models = [_model_from_json(m) for m in _read_fixture("catalog.json")["models"]]
    skip_keys = [_skip_key_from_json(k) for k in _read_fixture("skipkeys.json")["skip_keys"]]
    return Catalog(models, skip_keys)
