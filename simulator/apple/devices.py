"""Apple's device records: the ``devices`` and ``events`` tables that the portal, DEP and activation share.

In Apple's world one database holds the organisation's devices: the portal buys, assigns and releases
them, the DEP web service sets their profiles and disowns them, activation marks a profile pushed.
Every write to a device row goes through this module, for two reasons:

* **The pre-rendered document stays true.** A full fetch of 100,000 devices must run at tens of
  thousands of devices a second, so each row carries its DEP ``Device`` JSON object *without the
  closing brace* (``doc``), and beside it the keys only newer clients get, as fragments that start
  with a comma: ``doc_v8`` (``mdm_migration_deadline``, X-Server-Protocol-Version 8 and later) and
  ``doc_v10`` (MAC addresses, IMEI, MEID, EID, ``is_replacement_device``: version 10 and later). A
  fetch page is then one SQL statement that appends the fragments the client's version allows, the
  version dependent ``os``/``device_family`` (and for sync ``op_type``/``op_date``), closes the brace
  and joins the page with ``group_concat`` (:mod:`simulator.apple.dep.store`), so Python never
  touches a row. Every UPDATE here runs through :func:`_write`, which re-renders the rows it changed
  in the same transaction; an INSERT renders the documents from the very values it inserts.
* **Each rule about a device's state is written once**: leaving a server (or the organisation)
  detaches the device and clears its profile (:func:`detach`); moving to a server clears the profile
  (:func:`move_to_server`); and every change a server should hear about appends its event.

Events are ordered by their integer id, which is also a device's ``seq`` (its position in a fetch:
the id of the ``added`` event that assigned it to its current server). Fetch pages by ``seq`` and sync
pages by event id are keyset pages on indexed integers, never ``OFFSET``. Writers hold ``BEGIN
IMMEDIATE`` (the store's transactions), so numbering events in Python is safe.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

__all__ = [
    "MIGRATIONS",
    "DOC_COLUMNS",
    "EDITABLE_FIELDS",
    "DeviceRecord",
    "render_doc",
    "refresh_docs",
    "chunked",
    "next_event_id",
    "add_events",
    "serial_states",
    "devices_by_serial",
    "active_devices_in_order",
    "active_device",
    "device_owner",
    "last_device_id",
    "add_devices",
    "move_to_server",
    "detach",
    "assign_profile",
    "remove_profile",
    "mark_pushed",
    "edit_device",
    "set_migration_deadline",
    "replace_device",
    "replacement_of",
    "render_v8",
    "render_v10",
]

#: The device tables, part of the Apple store's first migration (see :mod:`simulator.apple.store`).
MIGRATIONS = [
    """
    CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        serial TEXT NOT NULL UNIQUE,
        model TEXT NOT NULL,
        description TEXT NOT NULL,
        color TEXT NOT NULL,
        asset_tag TEXT,
        os TEXT NOT NULL,
        device_family TEXT NOT NULL,
        order_number TEXT,
        released INTEGER NOT NULL DEFAULT 0,
        server_id INTEGER REFERENCES servers (id),
        seq INTEGER,
        assigned_date TEXT,
        assigned_by TEXT,
        profile_id INTEGER REFERENCES profiles (id),
        profile_uuid TEXT,
        profile_status TEXT NOT NULL DEFAULT 'empty',
        profile_assign_time TEXT,
        profile_push_time TEXT,
        doc TEXT NOT NULL
    );
    CREATE INDEX devices_by_server ON devices (server_id, seq);
    CREATE INDEX devices_by_order ON devices (order_number) WHERE order_number IS NOT NULL;

    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        server_id INTEGER NOT NULL,
        device_id INTEGER NOT NULL REFERENCES devices (id),
        op_type TEXT NOT NULL,
        op_date TEXT NOT NULL,
        doc TEXT
    );
    CREATE INDEX events_by_server ON events (server_id, id);
    """,
    # 2: the hardware identifiers and states that DEP protocol versions 8 and 10 report. Rows written
    # before have none of them: their v10 fragment says only that they are no replacement.
    """
    ALTER TABLE devices ADD COLUMN imei TEXT;
    ALTER TABLE devices ADD COLUMN meid TEXT;
    ALTER TABLE devices ADD COLUMN eid TEXT;
    ALTER TABLE devices ADD COLUMN wifi_mac TEXT;
    ALTER TABLE devices ADD COLUMN bluetooth_mac TEXT;
    ALTER TABLE devices ADD COLUMN ethernet_mac TEXT;
    ALTER TABLE devices ADD COLUMN mdm_migration_deadline TEXT;
    ALTER TABLE devices ADD COLUMN replaces_serial TEXT;
    ALTER TABLE devices ADD COLUMN replacement_date TEXT;
    ALTER TABLE devices ADD COLUMN doc_v8 TEXT NOT NULL DEFAULT '';
    ALTER TABLE devices ADD COLUMN doc_v10 TEXT NOT NULL DEFAULT ',"is_replacement_device":false';
    ALTER TABLE events ADD COLUMN by_replacement INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: what Apple Business Manager shows of a device beyond its DEP record (the Business API's
    # orgDevices): when it joined the organisation, last changed and left it, and the product as sold
    # (``product_type`` such as ``iPhone14,3``, ``capacity_gb``, Apple's ``part_number``; NULL for a
    # serial the portal was given without them). The hardware identifiers are migration 2's columns,
    # read by DEP and the Business API alike. Rows of a store made before this get their assignment
    # date as their dates.
    """
    ALTER TABLE devices ADD COLUMN added_at TEXT;
    ALTER TABLE devices ADD COLUMN updated_at TEXT;
    ALTER TABLE devices ADD COLUMN released_at TEXT;
    ALTER TABLE devices ADD COLUMN product_type TEXT;
    ALTER TABLE devices ADD COLUMN capacity_gb INTEGER;
    ALTER TABLE devices ADD COLUMN part_number TEXT;
    UPDATE devices SET added_at = assigned_date, updated_at = assigned_date;
    """,
]

_ENCODE = json.JSONEncoder(separators=(",", ":")).encode

#: The columns the document is rendered from, in :func:`render_doc`'s argument order.
DOC_COLUMNS = (
    "serial, model, description, color, asset_tag, profile_status, profile_uuid, "
    "profile_assign_time, profile_push_time, assigned_date, assigned_by"
)
#: The columns of the version 8 fragment (:func:`render_v8`) and of the version 10 one (:func:`render_v10`).
V8_COLUMNS = "mdm_migration_deadline"
V10_COLUMNS = "imei, meid, eid, wifi_mac, bluetooth_mac, ethernet_mac, replaces_serial"
#: What an admin may edit on a device in the portal (each one is in the document).
EDITABLE_FIELDS = frozenset({"asset_tag", "description", "color"})

# A device without a profile: where every move between servers, and every departure, leaves it.
_NO_PROFILE = (
    "profile_id = NULL, profile_uuid = NULL, profile_status = 'empty', "
    "profile_assign_time = NULL, profile_push_time = NULL"
)
# A device that belongs to no server (unassigned, released or disowned): no migration to a server either.
_DETACHED = (
    "server_id = NULL, seq = NULL, assigned_date = NULL, assigned_by = NULL, mdm_migration_deadline = NULL, "
    + _NO_PROFILE
)

_DEVICE_COLUMNS = (
    "id, serial, server_id, doc, doc_v8, doc_v10, os, device_family, profile_id, profile_status, replaces_serial"
)

#: ``(server_id, device_id, op_type, op_date, doc snapshot or None)``
Event = tuple[int, int, str, str, str | None]


class DeviceRecord(NamedTuple):
    """A device as the organisation bought it (the portal's normalised form of an order line).

    ``imei`` and ``meid`` are tuples because Apple reports them as arrays (a dual-SIM device has two
    IMEIs); the hardware identifiers are empty for a serial known only by its number."""

    serial: str
    model: str
    description: str
    color: str
    asset_tag: str | None
    os: str
    device_family: str
    order_number: str | None
    imei: tuple[str, ...] = ()
    meid: tuple[str, ...] = ()
    eid: str | None = None
    wifi_mac: str | None = None
    bluetooth_mac: str | None = None
    ethernet_mac: str | None = None
    #: The product as sold, which the Business API shows and DEP does not: the product type (MDM's
    #: ProductName, ``iPhone14,3``), the capacity in GB and Apple's part number.
    product_type: str | None = None
    capacity_gb: int | None = None
    part_number: str | None = None

    def hardware(self) -> tuple[str | None, str | None, str | None, str | None, str | None, str | None]:
        """The :data:`V10_COLUMNS` values (without ``replaces_serial``) as stored: arrays as JSON."""
        return (
            _ENCODE(list(self.imei)) if self.imei else None,
            _ENCODE(list(self.meid)) if self.meid else None,
            self.eid,
            self.wifi_mac,
            self.bluetooth_mac,
            self.ethernet_mac,
        )


# -- the document -----------------------------------------------------------------------------------


def render_doc(
    serial: str,
    model: str,
    description: str,
    color: str,
    asset_tag: str | None,
    profile_status: str,
    profile_uuid: str | None,
    profile_assign_time: str | None,
    profile_push_time: str | None,
    assigned_date: str | None,
    assigned_by: str | None,
) -> str:
    """A device's DEP JSON object without its closing ``}`` (the arguments are :data:`DOC_COLUMNS`).

    Absent values are left out rather than sent as ``null``: Apple omits them, and the JSON Schema
    types them as strings.
    """
    fields: dict[str, Any] = {
        "serial_number": serial,
        "model": model,
        "description": description,
        "color": color,
    }
    if asset_tag:
        fields["asset_tag"] = asset_tag
    fields["profile_status"] = profile_status
    if profile_uuid:
        fields["profile_uuid"] = profile_uuid
    if profile_assign_time:
        fields["profile_assign_time"] = profile_assign_time
    if profile_push_time:
        fields["profile_push_time"] = profile_push_time
    if assigned_date:
        fields["device_assigned_date"] = assigned_date
    if assigned_by:
        fields["device_assigned_by"] = assigned_by
    return _ENCODE(fields)[:-1]


def render_v8(mdm_migration_deadline: str | None) -> str:
    """The keys of protocol version 8 and later, as a fragment to append to the document (or ``""``)."""
    if mdm_migration_deadline:
        return ',"mdm_migration_deadline":' + _ENCODE(mdm_migration_deadline)
    return ""


def render_v10(
    imei: str | None,
    meid: str | None,
    eid: str | None,
    wifi_mac: str | None,
    bluetooth_mac: str | None,
    ethernet_mac: str | None,
    replaces_serial: str | None,
) -> str:
    """The keys of protocol version 10 and later, as a fragment (the arguments are :data:`V10_COLUMNS`).

    Identifiers the device does not have are left out; ``is_replacement_device`` is always there,
    ``false`` unless the device replaced another (Apple's Device page)."""
    parts: list[str] = []
    for key, value in (
        ("wifi_mac_address", wifi_mac),
        ("bluetooth_mac_address", bluetooth_mac),
        ("ethernet_mac_address", ethernet_mac),
    ):
        if value:
            parts.append(f',"{key}":{_ENCODE(value)}')
    if imei:
        parts.append(',"imei":' + imei)  # stored as a JSON array already
    if meid:
        parts.append(',"meid":' + meid)
    if eid:
        parts.append(',"eid":' + _ENCODE(eid))
    parts.append(',"is_replacement_device":' + ("true" if replaces_serial else "false"))
    return "".join(parts)


def chunked(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    """Slices small enough for SQLite's bound-parameter limit."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


_DOC_WIDTH = DOC_COLUMNS.count(",") + 1
_V10_WIDTH = V10_COLUMNS.count(",") + 1


def refresh_docs(db: sqlite3.Connection, device_ids: Sequence[int]) -> None:
    """Re-render the documents of devices whose fields changed (inside the changing transaction)."""
    updates: list[tuple[str, str, str, int]] = []
    for part in chunked(list(device_ids)):
        marks = ",".join("?" * len(part))
        for row in db.execute(
            f"SELECT id, {DOC_COLUMNS}, {V8_COLUMNS}, {V10_COLUMNS} FROM devices WHERE id IN ({marks})", tuple(part)
        ):
            values = tuple(row)[1:]
            doc = render_doc(*values[:_DOC_WIDTH])
            v8 = render_v8(values[_DOC_WIDTH])
            v10 = render_v10(*values[_DOC_WIDTH + 1 : _DOC_WIDTH + 1 + _V10_WIDTH])
            updates.append((doc, v8, v10, row[0]))
    db.executemany("UPDATE devices SET doc = ?, doc_v8 = ?, doc_v10 = ? WHERE id = ?", updates)


def _write(db: sqlite3.Connection, assignments: str, rows: Sequence[tuple[Any, ...]], stamp: str) -> None:
    """``UPDATE devices SET <assignments> WHERE id = ?`` once per parameter row (the id last), then
    re-render those rows: the only way this module changes a device row, so no write forgets the doc,
    nor the ``updated_at`` the Business API reports (``stamp``)."""
    if not rows:
        return
    db.executemany(
        f"UPDATE devices SET {assignments}, updated_at = ? WHERE id = ?", [(*row[:-1], stamp, row[-1]) for row in rows]
    )
    refresh_docs(db, [row[-1] for row in rows])


# -- events -----------------------------------------------------------------------------------------


def next_event_id(db: sqlite3.Connection) -> int:
    """The id the next event gets; safe because writers hold ``BEGIN IMMEDIATE``."""
    return int(db.execute("SELECT coalesce(max(id), 0) + 1 FROM events").fetchone()[0])


def add_events(
    db: sqlite3.Connection, events: Sequence[Event], first: int | None = None, *, by_replacement: bool = False
) -> int:
    """Append ``(server_id, device_id, op_type, op_date, doc_snapshot)`` events; returns the first id.

    ``first`` (from :func:`next_event_id` in the same transaction) lets a caller that needs the ids in
    advance, to set a device's ``seq`` to its ``added`` event, number the events itself.
    The snapshot is only kept for ``deleted`` events (the device as the server last knew it, since the
    device row moves on); other events show the device as it is now. ``by_replacement`` marks the
    events as a departure because another device replaced this one (sync's ``released_by_replacement``).
    """
    if first is None:
        first = next_event_id(db)
    flag = 1 if by_replacement else 0
    db.executemany(
        "INSERT INTO events (id, server_id, device_id, op_type, op_date, doc, by_replacement) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(first + i, *event, flag) for i, event in enumerate(events)],
    )
    return first


def _modified(db: sqlite3.Connection, server_id: int, device_ids: Iterable[int], stamp: str) -> None:
    add_events(db, [(server_id, device_id, "modified", stamp, None) for device_id in device_ids])


# -- reads ------------------------------------------------------------------------------------------


def serial_states(db: sqlite3.Connection, serials: Sequence[str]) -> dict[str, tuple[int, bool]]:
    """``serial → (device id, released)`` for the serials Apple has ever known."""
    known: dict[str, tuple[int, bool]] = {}
    for part in chunked(list(serials)):
        marks = ",".join("?" * len(part))
        for row in db.execute(f"SELECT serial, id, released FROM devices WHERE serial IN ({marks})", tuple(part)):
            known[row[0]] = (row[1], bool(row[2]))
    return known


def devices_by_serial(
    db: sqlite3.Connection, serials: Sequence[str], *, active_only: bool = False
) -> dict[str, sqlite3.Row]:
    """``serial → row`` (id, serial, server_id, doc, doc_v8, doc_v10, os, device_family, profile_id,
    profile_status, replaces_serial); ``active_only`` leaves out devices released from the organisation."""
    where = "released = 0 AND " if active_only else ""
    found: dict[str, sqlite3.Row] = {}
    for part in chunked(list(serials)):
        marks = ",".join("?" * len(part))
        for row in db.execute(
            f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE {where}serial IN ({marks})", tuple(part)
        ):
            found[row["serial"]] = row
    return found


def active_devices_in_order(db: sqlite3.Connection, order_number: str) -> list[sqlite3.Row]:
    """The organisation's devices of one order, oldest first."""
    return db.execute(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE released = 0 AND order_number = ? ORDER BY id",
        (order_number,),
    ).fetchall()


def active_device(db: sqlite3.Connection, serial: str) -> sqlite3.Row | None:
    """A device of the organisation (not released) by serial."""
    return db.execute(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE serial = ? AND released = 0", (serial,)
    ).fetchone()


def last_device_id(db: sqlite3.Connection) -> int:
    """The highest device id so far (0 in an empty organisation)."""
    return int(db.execute("SELECT coalesce(max(id), 0) FROM devices").fetchone()[0])


def device_owner(db: sqlite3.Connection, serial: str) -> sqlite3.Row | None:
    """``(id, server_id)`` of a serial Apple knows, released or not."""
    return db.execute("SELECT id, server_id FROM devices WHERE serial = ?", (serial,)).fetchone()


# -- writes -----------------------------------------------------------------------------------------


def add_devices(
    db: sqlite3.Connection,
    purchases: Sequence[tuple[int | None, DeviceRecord]],
    *,
    server_id: int | None,
    stamp: str,
    assigned_by: str | None,
) -> None:
    """Devices the organisation bought: ``(None, record)`` is a new serial, ``(id, record)`` one
    released earlier and bought again (the row comes back as new: no profile, the new record's fields).

    With ``server_id`` each device is assigned at once and the server hears ``added``; ids, events and
    ``seq`` are numbered here in one pass, and each document rendered from the values written, so a
    world of 100,000 devices is built in about a second.
    """
    next_id = last_device_id(db) + 1
    first_event = next_event_id(db)
    assigned_date = stamp if server_id is not None else None
    assigned_by = assigned_by if server_id is not None else None
    inserts: list[tuple[Any, ...]] = []
    revivals: list[tuple[Any, ...]] = []
    events: list[Event] = []
    for prior_id, record in purchases:
        device_id = prior_id if prior_id is not None else next_id
        if prior_id is None:
            next_id += 1
        seq = None
        if server_id is not None:
            seq = first_event + len(events)
            events.append((server_id, device_id, "added", stamp, None))
        serial, model, description, color, asset_tag, os_name, family, order = record[:8]
        hardware = record.hardware()
        values = (
            model, description, color, asset_tag, os_name, family, order, server_id, seq, assigned_date, assigned_by,
            *hardware, record.product_type, record.capacity_gb, record.part_number,
        )  # fmt: skip
        if prior_id is None:
            doc = render_doc(
                serial, model, description, color, asset_tag, "empty", None, None, None, assigned_date, assigned_by
            )
            inserts.append((device_id, serial, *values, stamp, stamp, doc, render_v10(*hardware, None)))
        else:
            revivals.append((*values, stamp, device_id))
    db.executemany(
        "INSERT INTO devices (id, serial, model, description, color, asset_tag, os, device_family, "
        "order_number, server_id, seq, assigned_date, assigned_by, imei, meid, eid, wifi_mac, bluetooth_mac, "
        "ethernet_mac, product_type, capacity_gb, part_number, added_at, updated_at, doc, doc_v10) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        inserts,
    )
    _write(
        db,
        "model = ?, description = ?, color = ?, asset_tag = ?, os = ?, device_family = ?, order_number = ?, "
        "server_id = ?, seq = ?, assigned_date = ?, assigned_by = ?, imei = ?, meid = ?, eid = ?, wifi_mac = ?, "
        "bluetooth_mac = ?, ethernet_mac = ?, product_type = ?, capacity_gb = ?, part_number = ?, added_at = ?, "
        "released = 0, released_at = NULL, mdm_migration_deadline = NULL, replaces_serial = NULL, "
        "replacement_date = NULL, " + _NO_PROFILE,
        revivals,
        stamp,
    )
    if events:
        add_events(db, events, first=first_event)


def move_to_server(
    db: sqlite3.Connection,
    rows: Sequence[sqlite3.Row],
    server_id: int,
    stamp: str,
    assigned_by: str,
    migration_deadline: str | None = None,
) -> None:
    """Assign devices (rows of :func:`devices_by_serial`) to ``server_id``: the server they leave hears
    ``deleted`` (with the device as it knew it), the new one ``added``; the profile is cleared. The
    device must migrate by ``migration_deadline`` (none: no deadline, also clearing an earlier one)."""
    first = next_event_id(db)
    events: list[Event] = []
    updates: list[tuple[Any, ...]] = []
    for row in rows:
        if row["server_id"] is not None:
            events.append((row["server_id"], row["id"], "deleted", stamp, row["doc"]))
        seq = first + len(events)
        events.append((server_id, row["id"], "added", stamp, None))
        updates.append((server_id, seq, stamp, assigned_by, migration_deadline, row["id"]))
    _write(
        db,
        "server_id = ?, seq = ?, assigned_date = ?, assigned_by = ?, mdm_migration_deadline = ?, " + _NO_PROFILE,
        updates,
        stamp,
    )
    if events:
        add_events(db, events, first=first)


def detach(
    db: sqlite3.Connection, rows: Sequence[sqlite3.Row], stamp: str, *, release: bool, by_replacement: bool = False
) -> None:
    """Devices leave their server (unassigned), or with ``release`` the organisation for good (released
    in the portal, disowned over DEP, replaced): no server, no profile, and the server they left hears
    ``deleted`` with the device as it last knew it (``by_replacement``: because another device replaced it)."""
    events: list[Event] = [
        (row["server_id"], row["id"], "deleted", stamp, row["doc"]) for row in rows if row["server_id"] is not None
    ]
    released_at = stamp if release else None
    updates = [(1 if release else 0, released_at, row["id"]) for row in rows]
    _write(db, "released = ?, released_at = ?, " + _DETACHED, updates, stamp)
    if events:
        add_events(db, events, by_replacement=by_replacement)


def assign_profile(
    db: sqlite3.Connection, device_ids: Sequence[int], *, server_id: int, profile_id: int, profile_uuid: str, stamp: str
) -> None:
    """A DEP profile assigned: status ``assigned``, not pushed yet; the server hears ``modified``."""
    _write(
        db,
        "profile_id = ?, profile_uuid = ?, profile_status = 'assigned', profile_assign_time = ?, "
        "profile_push_time = NULL",
        [(profile_id, profile_uuid, stamp, device_id) for device_id in device_ids],
        stamp,
    )
    if device_ids:
        _modified(db, server_id, device_ids, stamp)


def remove_profile(db: sqlite3.Connection, device_ids: Sequence[int], *, server_id: int, stamp: str) -> None:
    """A DEP profile removed: status ``removed`` (the assign time stays); the server hears ``modified``."""
    _write(
        db,
        "profile_id = NULL, profile_uuid = NULL, profile_status = 'removed', profile_push_time = NULL",
        [(device_id,) for device_id in device_ids],
        stamp,
    )
    if device_ids:
        _modified(db, server_id, device_ids, stamp)


def mark_pushed(db: sqlite3.Connection, serial: str, stamp: str) -> bool:
    """The device fetched its cloud configuration: ``assigned`` → ``pushed``, and its server hears
    ``modified``. False when the serial has no profile on a server."""
    row = db.execute(
        "SELECT id, server_id FROM devices WHERE serial = ? AND profile_id IS NOT NULL AND server_id IS NOT NULL",
        (serial,),
    ).fetchone()
    if row is None:
        return False
    _write(db, "profile_status = 'pushed', profile_push_time = ?", [(stamp, row["id"])], stamp)
    _modified(db, row["server_id"], [row["id"]], stamp)
    return True


def edit_device(
    db: sqlite3.Connection, row: sqlite3.Row, changes: Mapping[str, str | None], stamp: str
) -> None:
    """An admin's edit of :data:`EDITABLE_FIELDS` (``None`` or ``""`` clears an asset tag; ``None``
    empties a description or colour); the device's server, if any, hears ``modified``."""
    unknown = set(changes) - EDITABLE_FIELDS
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    columns = list(changes)
    if not columns:
        return
    values = [(changes[c] or None) if c == "asset_tag" else (changes[c] if changes[c] is not None else "") for c in columns]
    _write(db, ", ".join(f"{c} = ?" for c in columns), [(*values, row["id"])], stamp)
    if row["server_id"] is not None:
        _modified(db, row["server_id"], [row["id"]], stamp)


def set_migration_deadline(
    db: sqlite3.Connection, rows: Sequence[sqlite3.Row], deadline: str | None, stamp: str
) -> None:
    """When devices must have migrated to their (new) server (``None`` clears it); each device's server
    hears ``modified``. Only devices on a server can have one: the others are left as they are."""
    on_server = [row for row in rows if row["server_id"] is not None]
    _write(db, "mdm_migration_deadline = ?", [(deadline, row["id"]) for row in on_server], stamp)
    by_server: dict[int, list[int]] = {}
    for row in on_server:
        by_server.setdefault(row["server_id"], []).append(row["id"])
    for server_id, ids in by_server.items():
        _modified(db, server_id, ids, stamp)


def replace_device(
    db: sqlite3.Connection, original: sqlite3.Row, replacement: DeviceRecord, prior_id: int | None, *,
    stamp: str, replacement_date: str, assigned_by: str | None,
) -> None:
    """AppleCare replaced ``original`` with ``replacement``: the new device joins the organisation on the
    original's server (``added``, ``is_replacement_device``), the original leaves the organisation and
    its server hears ``deleted`` with ``released_by_replacement``. ``prior_id``: the replacement's row
    when its serial was released earlier (as :func:`add_devices`)."""
    add_devices(db, [(prior_id, replacement)], server_id=original["server_id"], stamp=stamp, assigned_by=assigned_by)
    new_id = db.execute("SELECT id FROM devices WHERE serial = ?", (replacement.serial,)).fetchone()[0]
    _write(db, "replaces_serial = ?, replacement_date = ?", [(original["serial"], replacement_date, new_id)], stamp)
    detach(db, [original], stamp, release=True, by_replacement=True)


def replacement_of(db: sqlite3.Connection, serial: str, server_id: int) -> sqlite3.Row | None:
    """``(serial, replaces_serial, replacement_date)`` of a replacement device assigned to ``server_id``;
    None when the serial is unknown, no replacement, or another server's."""
    return db.execute(
        "SELECT serial, replaces_serial, replacement_date FROM devices "
        "WHERE serial = ? AND server_id = ? AND released = 0 AND replaces_serial IS NOT NULL",
        (serial, server_id),
    ).fetchone()
