"""Who makes a world's devices and certificates: the manufacturer, Apple's device CA, the TLS CA.

Each is kept in the world's store (``world.db``) the first time it is made, so that every worker
process and every restart of a data-dir world finds the same identities and trusts the same CAs;
with a seed they are the same in every run (keys derived from ``(seed, label)``).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from mdm.platform.storage import Store
from mdm.protocol.x509 import CertificateAuthority, cert_to_pem, seeded_key

from .control import store as queries
from .control.service import ControlService
from .device.identity import DeviceIdentity, IdentityFactory
from .tls import tls_now

__all__ = ["Manufacturer", "legacy_device_ca", "TLSAuthority", "dep_record"]

# Identities are stored as JSON arrays in field order: 100,000 of them must be written in well under a second.
_IDENTITY_FIELDS = operator.attrgetter(*(f.name for f in fields(DeviceIdentity)))
_dumps = json.JSONEncoder(separators=(",", ":")).encode


class Manufacturer:
    """The world as the devices' manufacturer: invents hardware identities and remembers each serial's.

    Apple only ever hears of a device's DEP record (:func:`dep_record`); powering the device on
    later needs the rest (UDID, IMEI, model…), which is why it is kept."""

    def __init__(self, store: Store, seed: int | None) -> None:
        self._store = store
        self._seed = seed
        self._factory = IdentityFactory(seed)

    def make(self, count: int) -> list[DeviceIdentity]:
        """``count`` new devices, their identities stored in one transaction."""
        identities = self._factory.many(count)
        with self._store.transaction() as db:
            queries.store_identities(db, [(i.serial_number, _dumps(_IDENTITY_FIELDS(i))) for i in identities])
        return identities

    def identity(self, serial: str) -> DeviceIdentity:
        """The hardware identity of a serial; serials added by hand get a plausible one, made once.

        That one is drawn for the serial (:meth:`IdentityFactory.for_serial`: from the seed and the
        serial alone, so a seeded world invents the same device whenever it is asked); two processes
        asked at once may invent two, the first stored wins and both answer with it."""
        with self._store.read() as db:
            doc = queries.identity_doc(db, serial)
        if doc is None:
            identity = self._factory.for_serial(serial)
            with self._store.transaction() as db:
                queries.add_identity_if_absent(db, serial, _dumps(_IDENTITY_FIELDS(identity)))
                doc = queries.identity_doc(db, serial)
        return DeviceIdentity(*json.loads(doc))


def dep_record(identity: DeviceIdentity) -> dict[str, Any]:
    """What Apple Business Manager knows of a device: its DEP record, from the device's identity.

    The hardware identifiers (IMEI, MEID, the eSIM's EID, the MAC addresses) are the very values the
    device reports in DeviceInformation, so an MDM vendor matching DEP's record (protocol v10) with the
    enrolled device finds one device."""
    record: dict[str, Any] = {
        "serial_number": identity.serial_number,
        "model": identity.model_name,
        "description": identity.description,
        "color": identity.color,
        "os": identity.os,
        "device_family": identity.device_family,
        "product_name": identity.product_name,
        "wifi_mac_address": identity.wifi_mac,
        "bluetooth_mac_address": identity.bluetooth_mac,
        # the product as sold, which the Business API's orgDevices show (productType, deviceCapacity)
        "capacity_gb": identity.capacity_gb,
    }
    if identity.imei:
        record["imei"] = [identity.imei]
        record["eid"] = identity.eid
    if identity.meid:
        record["meid"] = [identity.meid]
    return record


def _stored_ca(control: ControlService, key: str, create: Callable[[], CertificateAuthority]) -> tuple[str, CertificateAuthority]:
    """The CA kept in setting ``key`` (as ``[cert_pem, key_pem]``), made by ``create`` and kept if absent."""
    stored = control.get_setting(key)
    if stored is None:
        ca = create()
        cert_pem, key_pem = ca.to_pem()
        stored = json.dumps([_text(cert_pem), _text(key_pem)])
        control.set_setting(key, stored)
        return stored, ca
    cert_pem_s, key_pem_s = json.loads(stored)
    return stored, CertificateAuthority.from_pem(cert_pem_s.encode(), key_pem_s.encode())


def legacy_device_ca(control: ControlService) -> CertificateAuthority | None:
    """Apple's device CA as worlds before Apple kept it themselves stored it (in the world's settings),
    handed over to Apple's store once and then forgotten here; ``None`` for every newer world."""
    stored = control.get_setting("apple_device_ca")
    if stored is None:
        return None
    cert_pem, key_pem = json.loads(stored)
    control.delete_setting("apple_device_ca")
    return CertificateAuthority.from_pem(cert_pem.encode(), key_pem.encode())


class TLSAuthority:
    """The world's TLS CA, which issues the served world's HTTPS certificate (``--tls``).

    Made on first use (most worlds never serve TLS) and kept in the world's settings, like Apple's
    device CA, so every worker process and every restart serves certificates from the same CA and
    devices given its certificate as an anchor keep trusting the server. The parsed CA is reused
    while the stored one is unchanged (a data-dir world's ``reset`` makes a new one)."""

    def __init__(self, control: ControlService, seed: int | None) -> None:
        self._control = control
        self._seed = seed
        self._cache: tuple[str, CertificateAuthority] | None = None

    @property
    def ca(self) -> CertificateAuthority:
        stored = self._control.get_setting("tls_ca")
        cached = self._cache
        if stored is not None and cached is not None and cached[0] == stored:
            return cached[1]
        # After a reset wiped the setting, the CA made before is stored again: clients keep trusting it.
        self._cache = _stored_ca(self._control, "tls_ca", lambda: cached[1] if cached is not None else self._create())
        return self._cache[1]

    def _create(self) -> CertificateAuthority:
        return CertificateAuthority.create("mdmsim TLS CA", tls_now(), key=seeded_key(self._seed, "tls-ca"),
                                           organization="mdmsim")

    @property
    def anchor_pem(self) -> str:
        """PEM of what devices and clients must trust for this world's HTTPS: the world's TLS CA, or
        the top of the chain given with ``--tls-cert`` (setting ``tls_anchor_pem``)."""
        return self._control.get_setting("tls_anchor_pem") or _text(cert_to_pem(self.ca.certificate))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
