"""Apple's shared device records: every write keeps the pre-rendered document true, one store holds
every Apple party, and activation works on that store (one device CA, beside the devices)."""

from __future__ import annotations

import json
from typing import Any

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from simulator.apple import devices
from simulator.apple.activation import store as activation_store
from simulator.apple.activation.service import ActivationService
from simulator.apple.apns import store as apns_store
from simulator.apple.dep import store as dep_store
from simulator.apple.dep.service import DEPService
from simulator.apple.portal import store as portal_store
from simulator.apple.pushcert import store as pushcert_store
from simulator.apple.store import MIGRATIONS, open_apple_store

PROFILE = {"profile_name": "Contoso", "url": "https://mdm.example.com/enroll", "is_supervised": True}


def _assert_docs_true(apple: Any) -> int:
    """Every device row's document is exactly what its columns render; returns how many rows."""
    with apple.store.read() as db:
        rows = db.execute(
            f"SELECT doc, doc_v8, doc_v10, {devices.V8_COLUMNS}, {devices.V10_COLUMNS}, {devices.DOC_COLUMNS} "
            "FROM devices"
        ).fetchall()
    for row in rows:
        values = tuple(row)
        assert row["doc"] == devices.render_doc(*values[11:]), row["serial"]
        assert row["doc_v8"] == devices.render_v8(values[3]), row["serial"]
        assert row["doc_v10"] == devices.render_v10(*values[4:11]), row["serial"]
        whole = json.loads(row["doc"] + row["doc_v8"] + row["doc_v10"] + "}")
        assert whole["serial_number"] == row["serial"]
    return len(rows)


def _session(apple: Any, server: dict[str, Any]) -> Any:
    with apple.store.transaction() as db:
        server_id = portal_store.server_id(db, server["server_uuid"])
        return apple.dep.authenticate(apple.dep._mint(db, server_id, 1, apple.clock.timestamp()))


def test_every_portal_dep_and_activation_write_keeps_the_document_true(apple: Any) -> None:
    portal, dep = apple.portal, apple.dep
    other = portal.create_server("Other")
    serials = portal.generate(8, server_uuid=apple.server["server_uuid"], order_number="PO-1")["serial_numbers"]
    assert _assert_docs_true(apple) == 8
    session = _session(apple, apple.server)

    reply = dep.define_profile(session, {**PROFILE, "devices": serials[:6]}, version=3)
    assert set(reply["devices"].values()) == {"SUCCESS"}
    _assert_docs_true(apple)
    activation = ActivationService(None, apple.clock, dep=dep)
    assert activation.profile_for(serials[0])["ProfileUUID"] == reply["profile_uuid"]
    assert portal.device(serials[0])["profile_status"] == "pushed"
    _assert_docs_true(apple)
    dep.clear_profile(session, {"devices": serials[1:2]}, version=3)
    assert portal.device(serials[1])["profile_status"] == "removed"
    _assert_docs_true(apple)
    portal.edit_device(serials[2], {"asset_tag": "TAG-2", "color": None})
    _assert_docs_true(apple)
    portal.assign(other["server_uuid"], serials[3:5])
    assert portal.device(serials[3])["profile_status"] == "empty"  # a move clears the profile
    _assert_docs_true(apple)
    portal.unassign(serials[5:6])
    portal.release(serials[6:7])
    dep.disown_devices(session, {"devices": serials[7:8]}, version=3)
    _assert_docs_true(apple)
    again = portal.add_serials(serials[6:8], server_uuid=apple.server["server_uuid"])  # bought again
    assert again["added"] == 2
    assert _assert_docs_true(apple) == 8
    portal.assign(apple.server["server_uuid"], serials[3:4], mdm_migration_deadline="2026-09-30T12:00:00Z")
    portal.set_migration_deadline(serials[4:5], "2026-10-01T00:00:00Z")
    _assert_docs_true(apple)
    replaced = portal.replace_device(serials[0])
    assert replaced["replacement"]["replaces_serial_number"] == serials[0]
    assert _assert_docs_true(apple) == 9


def test_leaving_a_server_detaches_and_clears_alike_from_the_portal_and_over_dep(apple: Any) -> None:
    """Unassign, release and disown share one rule: no server, no profile, ``deleted`` for the server."""
    serials = apple.portal.generate(3, server_uuid=apple.server["server_uuid"])["serial_numbers"]
    session = _session(apple, apple.server)
    apple.dep.define_profile(session, {**PROFILE, "devices": serials}, version=3)
    apple.portal.unassign(serials[:1])
    apple.portal.release(serials[1:2])
    apple.dep.disown_devices(session, {"devices": serials[2:]}, version=3)
    with apple.store.read() as db:
        rows = db.execute(
            "SELECT serial, released, server_id, seq, assigned_date, assigned_by, profile_id, profile_uuid, "
            "profile_status, profile_assign_time, profile_push_time FROM devices ORDER BY id"
        ).fetchall()
        deleted = [r[0] for r in db.execute("SELECT op_type FROM events WHERE op_type = 'deleted'")]
    assert [tuple(r)[1] for r in rows] == [0, 1, 1]
    assert {tuple(r)[2:] for r in rows} == {(None, None, None, None, None, None, "empty", None, None)}
    assert deleted == ["deleted"] * 3


def test_the_apple_store_holds_every_partys_migration_once_and_in_order() -> None:
    parts = (
        portal_store.MIGRATIONS + devices.MIGRATIONS + dep_store.MIGRATIONS + activation_store.MIGRATIONS
        + apns_store.MIGRATIONS + pushcert_store.MIGRATIONS
    )
    for script in parts:
        assert sum(script in migration for migration in MIGRATIONS) == 1, script[:80]
    store = open_apple_store(None)
    with store.read() as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert {"devices", "events", "servers", "profiles", "activation_device_ca", "pending", "certificates"} <= tables


def test_a_store_from_before_the_split_gains_the_new_tables(tmp_path: Any) -> None:
    """A ``--data-dir`` made when the Apple store had one migration opens and upgrades in place."""
    path = tmp_path / "apple.db"
    Store(path, MIGRATIONS[:1]).close()
    store = open_apple_store(path)
    try:
        with store.read() as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
            assert db.execute("SELECT count(*) FROM activation_device_ca").fetchone()[0] == 0
    finally:
        store.close()


def test_activation_keeps_the_one_device_ca_in_apples_store() -> None:
    store = open_apple_store(None)
    clock = Clock(Store(None, []))
    dep = DEPService(store, clock)
    first = ActivationService(None, clock, dep=dep)
    assert first.store is store  # the DEP service's store, not a private one
    with store.read() as db:
        assert activation_store.device_ca(db) == first.device_ca.to_pem()
    second = ActivationService(store, clock)  # another process of the same world
    assert second.device_ca.certificate == first.device_ca.certificate
