"""Persistence of simulated devices, and the fleet service that powers them on and runs their agents.

Each device's whole :class:`~simulator.device.machine.DeviceState` is one JSON document keyed by
serial number, with its phase, pane and enrollment flag copied into columns so ``mdmsim device list``
and a dashboard can list a fleet without parsing every document. The store is the truth (DESIGN.md
rule 3): the fleet service loads a device, runs a flow and saves it, so any process sharing the
SQLite file sees live state.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.isotime import isoformat
from mdm.protocol.x509 import PrivateKey, PublicKey
from simulator.exchanges import Exchange, Tape

from .agent import erase, pair_with_host
from .drivers import Driver
from .identity import DeviceIdentity
from .machine import Device, DeviceScript, DeviceState, device_key_for
from .secure_enclave import new_fuse

__all__ = [
    "MIGRATIONS",
    "DeviceStore",
    "DeviceFleetService",
    "DeviceRun",
    "IssueIdentity",
    "open_device_store",
]

MIGRATIONS = [
    """
    CREATE TABLE devices (
        serial TEXT PRIMARY KEY,
        udid TEXT NOT NULL,
        phase TEXT NOT NULL,
        pane TEXT NOT NULL,
        enrolled INTEGER NOT NULL,
        last_entry TEXT,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX devices_by_phase ON devices (phase);
    """,
    """
    -- The push token of an enrolled device: a push for it wakes the device (served worlds).
    ALTER TABLE devices ADD COLUMN push_token TEXT;
    CREATE INDEX devices_by_push_token ON devices (push_token) WHERE push_token IS NOT NULL;
    """,
    """
    -- Which save came last, store-wide: a live view asks "what changed since N" in one indexed query
    -- (the world clock may stand still, so updated_at cannot say it).
    ALTER TABLE devices ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX devices_by_change ON devices (change_seq);
    -- Each device's HTTP exchanges (simulator.exchanges), newest EXCHANGE_LIMIT kept per device.
    CREATE TABLE exchanges (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        serial TEXT NOT NULL,
        started_ns INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        at TEXT NOT NULL,
        source TEXT NOT NULL,
        target TEXT NOT NULL,
        method TEXT NOT NULL,
        url TEXT NOT NULL,
        depth INTEGER NOT NULL,
        status INTEGER NOT NULL,
        ms REAL NOT NULL,
        error TEXT,
        request_headers TEXT NOT NULL,
        request_body BLOB NOT NULL,
        request_size INTEGER NOT NULL,
        response_headers TEXT NOT NULL,
        response_body BLOB NOT NULL,
        response_size INTEGER NOT NULL
    );
    CREATE INDEX exchanges_by_serial ON exchanges (serial, started_ns, seq);
    """,
]

#: Exchanges kept per device (a few enrollments and many agent rounds), and in the whole world (the
#: newest; a 10,000-device world keeps the timelines of its latest few thousand enrollments, not gigabytes).
EXCHANGE_LIMIT = 200
WORLD_EXCHANGE_LIMIT = 50_000
_EXCHANGE_COLUMNS = (
    "started_ns, seq, at, source, target, method, url, depth, status, ms, error, request_headers, request_body, "
    "request_size, response_headers, response_body, response_size"
)

#: Apple's device CA issuing a device its identity: ``(udid, serial, public_key) -> certificate``
#: (``ActivationService.issue_device_identity``; the world passes it in, the device never calls Apple).
IssueIdentity = Callable[[str, str, PublicKey], x509.Certificate]


def open_device_store(path: str | Path | None = None) -> Store:
    """``None`` for an in-memory store (tests), a file to share live state with other processes."""
    return Store(path, MIGRATIONS)


class DeviceStore:
    """Device states by serial number."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def save(self, device: Device, now: float, exchanges: Sequence[Exchange] = ()) -> None:
        """Write the device (the one place devices are written, so the one place a change is
        numbered) and the exchanges of what it just did."""
        st = device.state
        last = json.dumps(list(st.transcript[-1])) if st.transcript else None
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO devices (serial, udid, phase, pane, enrolled, last_entry, state, "
                "updated_at, push_token, change_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "(SELECT coalesce(max(change_seq), 0) + 1 FROM devices))",
                (device.serial, device.udid, st.phase if st.powered else "off", st.pane, int(device.enrolled),
                 last, json.dumps(st.to_dict(), separators=(",", ":")), now,
                 st.push_token.lower() if st.push_token and st.powered else None),
            )  # fmt: skip
            if exchanges:
                self._insert_exchanges(db, device.serial, exchanges)

    # -- exchanges -----------------------------------------------------------------------------------
    def add_exchanges(self, serial: str, exchanges: Sequence[Exchange]) -> None:
        """Exchanges that arrived after the device was saved (a party's outbound thread)."""
        if exchanges:
            with self.store.transaction() as db:
                self._insert_exchanges(db, serial, exchanges)

    @staticmethod
    def _insert_exchanges(db: Any, serial: str, exchanges: Sequence[Exchange]) -> None:
        db.executemany(
            f"INSERT INTO exchanges (serial, {_EXCHANGE_COLUMNS}) VALUES ({', '.join('?' * 18)})",
            [(serial, e.started_ns, e.seq, e.at, e.source, e.target, e.method, e.url, e.depth, e.status, e.ms, e.error,
              json.dumps(e.request_headers), e.request_body, e.request_size, json.dumps(e.response_headers),
              e.response_body, e.response_size) for e in exchanges],
        )  # fmt: skip
        db.execute(
            "DELETE FROM exchanges WHERE serial = ? AND id NOT IN (SELECT id FROM exchanges WHERE serial = ? "
            "ORDER BY started_ns DESC, seq DESC LIMIT ?)",
            (serial, serial, EXCHANGE_LIMIT),
        )
        # ids only grow (AUTOINCREMENT): the world's oldest go by one range delete on the primary key
        db.execute("DELETE FROM exchanges WHERE id <= (SELECT max(id) FROM exchanges) - ?", (WORLD_EXCHANGE_LIMIT,))

    def exchanges(self, serial: str) -> list[dict[str, Any]]:
        """A device's exchanges, oldest first, bodies included (bounded when recorded)."""
        with self.store.read() as db:
            rows = db.execute(
                f"SELECT id, {_EXCHANGE_COLUMNS} FROM exchanges WHERE serial = ? ORDER BY started_ns, seq", (serial,)
            ).fetchall()
        return [_exchange_row(r) for r in rows]

    def exchange(self, serial: str, exchange_id: int) -> dict[str, Any] | None:
        with self.store.read() as db:
            row = db.execute(
                f"SELECT id, {_EXCHANGE_COLUMNS} FROM exchanges WHERE serial = ? AND id = ?", (serial, exchange_id)
            ).fetchone()
        return _exchange_row(row) if row is not None else None

    # -- changes, for live views ----------------------------------------------------------------------
    def last_change(self) -> int:
        with self.store.read() as db:
            return int(db.execute("SELECT coalesce(max(change_seq), 0) FROM devices").fetchone()[0])

    def changed_since(self, seq: int, limit: int = 500) -> list[tuple[int, DeviceState]]:
        """``(change number, state)`` of the devices saved after change ``seq``, oldest change first."""
        with self.store.read() as db:
            rows = db.execute(
                "SELECT change_seq, state FROM devices WHERE change_seq > ? ORDER BY change_seq LIMIT ?", (seq, limit)
            ).fetchall()
        return [(int(r["change_seq"]), DeviceState.from_dict(json.loads(r["state"]))) for r in rows]

    def serial_for_push_token(self, token: str) -> str | None:
        """The powered-on device that holds ``token`` (its latest TokenUpdate), if it is one of ours."""
        with self.store.read() as db:
            row = db.execute("SELECT serial FROM devices WHERE push_token = ?", (token.lower(),)).fetchone()
        return None if row is None else str(row[0])

    def load(self, serial: str) -> DeviceState | None:
        with self.store.read() as db:
            row = db.execute("SELECT state FROM devices WHERE serial = ?", (serial,)).fetchone()
        return DeviceState.from_dict(json.loads(row[0])) if row is not None else None

    def summaries(self, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        with self.store.read() as db:
            rows = db.execute(
                "SELECT serial, udid, phase, pane, enrolled, last_entry, updated_at FROM devices "
                "ORDER BY serial LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        return self._summaries(rows)

    def summaries_for(self, serials: list[str]) -> list[dict[str, Any]]:
        """Summaries of the named devices that have been powered on (others are simply absent)."""
        rows: list[Any] = []
        with self.store.read() as db:
            for start in range(0, len(serials), 500):
                part = serials[start : start + 500]
                rows += db.execute(
                    "SELECT serial, udid, phase, pane, enrolled, last_entry, updated_at FROM devices "
                    f"WHERE serial IN ({','.join('?' * len(part))})",
                    part,
                ).fetchall()
        return self._summaries(rows)

    @staticmethod
    def _summaries(rows: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "serial_number": r["serial"],
                "udid": r["udid"],
                "phase": r["phase"],
                "pane": r["pane"],
                "enrolled": bool(r["enrolled"]),
                "last_entry": json.loads(r["last_entry"]) if r["last_entry"] else None,
                "updated_at": r["updated_at"],
            }
            for r in rows
        ]

    def count(self) -> int:
        with self.store.read() as db:
            return int(db.execute("SELECT count(*) FROM devices").fetchone()[0])


def _exchange_row(row: Any) -> dict[str, Any]:
    found = dict(row)
    found["request_headers"] = json.loads(found["request_headers"])
    found["response_headers"] = json.loads(found["response_headers"])
    found["request_body"] = bytes(found["request_body"])
    found["response_body"] = bytes(found["response_body"])
    return found


@dataclass(frozen=True)
class DeviceRun:
    """What a run left behind: where the device stopped and everything it showed."""

    serial: str
    phase: str
    pane: str
    transcript: list[tuple[str, str, str, str]]
    state: DeviceState


class DeviceFleetService:
    """Powers devices on and runs their MDM agents through a driver, persisting every step's result.

    ``issue_identity`` is Apple's device CA (``ActivationService.issue_device_identity``): used once per
    device, when it is first seen without a certificate. ``apple_url`` is Apple's base URL as devices
    reach it (``http://host/apple``); ``mdm_url_override`` sends every new device's enrollment there.
    ``seed``: every device made here gets it (:class:`~mdm.protocol.randomness.Randomness`, labels naming
    the serial), so a seeded world's devices have the same keys and tokens in every run.
    ``fuse``: the secret the devices' Secure Enclaves wrap their hardware-bound keys under
    (:mod:`~simulator.device.secure_enclave`); every process that loads these devices must be given the
    same one (a world on disk keeps it in a file beside the store). ``None``: a fresh one, in memory.
    ``record_exchanges``: keep each device's HTTP exchanges (:mod:`simulator.exchanges`) for its timeline.
    """

    def __init__(
        self,
        store: Store | DeviceStore,
        clock: Clock,
        *,
        apple_url: str | Callable[[], str],
        issue_identity: IssueIdentity | None = None,
        mdm_url_override: str | None = None,
        seed: int | None = None,
        fuse: bytes | None = None,
        record_exchanges: bool = True,
    ) -> None:
        self.devices = store if isinstance(store, DeviceStore) else DeviceStore(store)
        self._fuse = fuse if fuse is not None else new_fuse()
        self.record_exchanges = record_exchanges
        self.clock = clock
        self._apple_url = apple_url
        self.issue_identity = issue_identity
        self.mdm_url_override = mdm_url_override
        self.seed = seed

    @property
    def apple_url(self) -> str:
        return self._apple_url() if callable(self._apple_url) else self._apple_url

    # -- devices -------------------------------------------------------------------------------------
    def add(
        self,
        identity: DeviceIdentity,
        *,
        script: DeviceScript | None = None,
        device_key: PrivateKey | None = None,
        device_cert: x509.Certificate | None = None,
        powered: bool = True,
    ) -> Device:
        """A factory-fresh device (identity certificate from ``device_cert`` or Apple's device CA);
        ``powered=False``: still in its box, so its first power-on starts at the Apple logo."""
        key = device_key or device_key_for(identity.serial_number, self.seed)
        if device_cert is None:
            if self.issue_identity is None:
                raise ValueError("no device certificate given and no device CA to issue one")
            device_cert = self.issue_identity(identity.udid, identity.serial_number, key.public_key())
        device = Device.create(
            identity,
            device_key=key,
            device_cert=device_cert,
            apple_url=self.apple_url,
            script=script,
            mdm_url_override=self.mdm_url_override,
            seed=self.seed,
            fuse=self._fuse,
        )
        device.state.powered = powered
        self.save(device)
        return device

    def get(self, serial: str) -> Device | None:
        state = self.devices.load(serial)
        return Device(state, fuse=self._fuse) if state is not None else None

    def list(self, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        return self.devices.summaries(limit, offset)

    def save(self, device: Device, tape: Tape | None = None) -> None:
        """Save the device with the exchanges ``tape`` recorded; exchanges recorded on it later (a
        party's outbound thread) are stored as they come."""
        exchanges: list[Exchange] = []
        if tape is not None:
            serial = device.serial
            exchanges = tape.close(lambda late: self.devices.add_exchanges(serial, late))
        self.devices.save(device, self.clock.timestamp(), exchanges)

    @contextmanager
    def _recording(self, driver: Driver) -> Iterator[Tape | None]:
        """A tape on ``driver`` for one activity (unless the world records no exchanges)."""
        if not self.record_exchanges:
            yield None
            return
        previous, driver.tape = driver.tape, Tape(self.clock.now)
        try:
            yield driver.tape
        finally:
            driver.tape = previous

    def _device(self, serial: str) -> Device:
        device = self.get(serial)
        if device is None:
            raise KeyError(f"no simulated device {serial}")
        return device

    # -- activities ----------------------------------------------------------------------------------
    def power_on(
        self,
        serial: str,
        identity: DeviceIdentity | None,
        driver: Driver,
        script: DeviceScript | None = None,
        *,
        device_key: PrivateKey | None = None,
        device_cert: x509.Certificate | None = None,
        max_steps: int = 500,
    ) -> DeviceRun:
        """Power a device on (creating it on first sight) and walk Setup Assistant as far as it goes."""
        device = self.get(serial)
        if device is None:
            if identity is None:
                raise KeyError(f"no simulated device {serial} and no identity to make one")
            if identity.serial_number != serial:
                raise ValueError(f"identity is for {identity.serial_number}, not {serial}")
            device = self.add(identity, script=script, device_key=device_key, device_cert=device_cert, powered=False)
        elif script is not None:
            device.state.script = script.to_dict()
        with self._recording(driver) as tape:
            try:
                driver.run_until_home(device, max_steps=max_steps)
            finally:
                self.save(device, tape)
        return self._run(device)

    def run_agent(self, serial: str, driver: Driver, rounds: int = 1) -> DeviceRun:
        """Wake a device's MDM agent ``rounds`` times."""
        device = self._device(serial)
        with self._recording(driver) as tape:
            try:
                driver.run_agent(device, rounds)
            finally:
                self.save(device, tape)
        return self._run(device)

    def remove_mdm_profile(self, serial: str, driver: Driver) -> bool:
        device = self._device(serial)
        with self._recording(driver) as tape:
            try:
                return driver.remove_mdm_profile(device)
            finally:
                self.save(device, tape)

    def erase(self, serial: str) -> DeviceRun:
        """Erase All Content and Settings, as the person holding the device chooses it in Settings (no
        MDM command): back to Hello, with only the hardware identity kept."""
        device = self._device(serial)
        erase(device, self.clock.now, reason="Erase All Content and Settings")
        self.save(device)
        return self._run(device)

    def pair_with_host(self, serial: str, cert_der: bytes | None) -> bool:
        device = self._device(serial)
        ok = pair_with_host(device, cert_der, self.clock.now)
        self.save(device)
        return ok

    @staticmethod
    def _run(device: Device) -> DeviceRun:
        st = device.state
        return DeviceRun(device.serial, st.phase, st.pane, list(st.transcript), st)

    def describe(self, serial: str) -> dict[str, Any] | None:
        """A JSON view of one device for a dashboard or ``/_sim``."""
        device = self.get(serial)
        if device is None:
            return None
        st = device.state
        return {
            "serial_number": device.serial,
            "udid": device.udid,
            "phase": st.phase if st.powered else "off",
            "pane": st.pane,
            "enrolled": device.enrolled,
            "supervised": device.is_supervised,
            "organization": device.cloud_config.get("OrganizationName"),
            "user": st.user,
            "apple_id": st.apple_id,
            "transcript": [list(t) for t in st.transcript],
            "commands": [list(c) for c in st.commands],
            "now": isoformat(self.clock.now()),
        }
