"""One fact, one place: what the Business API shows of a device that DEP shows too (the hardware
identifiers DEP lists from protocol version 10, the MDM migration deadline of version 8) is read from
the same device record, whichever party wrote it; what only the Business API shows (the product as
sold, the dates) follows the portal's purchases, replacements and releases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from axm_client import AxMClient
from business_support import DEPSync, client_for, make_world

from simulator.apple.business.documents import api_server_id
from simulator.apple.portal.service import PortalError
from simulator.world import World

_KEYS = ("consumer_key", "consumer_secret", "access_token", "access_secret")


def _attributes(client: AxMClient, serial: str) -> dict:
    return client.get(f"/v1/orgDevices/{serial}", "OrgDeviceResponse")["data"]["attributes"]


def _deadline(world: World, days: int) -> str:
    return (datetime.fromtimestamp(world.clock.timestamp(), UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_every_device_shows_the_identifiers_dep_lists_and_the_product_its_maker_made(world: World,
                                                                                     client: AxMClient) -> None:
    listed = {d["serial_number"]: d for d in DEPSync(world.http, world.dep_url, world.dep_credentials, 10).fetch_all()}
    devices = client.all_devices()
    assert sorted(d["id"] for d in devices) == sorted(listed) == sorted(world.serials)
    assert any(d["attributes"]["imei"] for d in devices), "the world should have cellular devices"
    for device in devices:
        attributes, dep, identity = device["attributes"], listed[device["id"]], world.identity(device["id"])
        assert attributes["imei"] == dep.get("imei", []) and attributes["meid"] == dep.get("meid", [])
        assert attributes.get("eid") == dep.get("eid")
        assert attributes["wifiMacAddress"] == dep["wifi_mac_address"]
        assert attributes["bluetoothMacAddress"] == dep["bluetooth_mac_address"]
        assert attributes["productType"] == identity.product_name
        gigabytes = identity.capacity_gb
        assert attributes["deviceCapacity"] == (f"{gigabytes // 1024}TB" if gigabytes % 1024 == 0 else f"{gigabytes}GB")
        assert attributes["purchaseSourceType"] == "APPLE"


def test_an_order_line_s_identifiers_and_product_reach_dep_and_the_api_a_bare_one_is_manually_added(
    world: World, client: AxMClient,
) -> None:
    line = {"serial_number": "F2LXQ0AAHG7K", "model": "iPhone 15 Pro", "imei": ["356938035643809", "356938035643817"],
            "meid": ["a1000049a3c1b2"], "eid": "89049032005008882600033191224577", "wifi_mac_address": "f0:18:98:aa:bb:01",
            "bluetooth_mac_address": "f0:18:98:aa:bb:02", "ethernet_mac_address": "f0:18:98:aa:bb:03",
            "product_name": "iPhone16,1", "capacity_gb": 1024, "part_number": "MTUV3LL/A"}  # fmt: skip
    identified = {"serial_number": "F2LXQ0AAHG7P", "wifi_mac_address": "f0:18:98:aa:bb:04"}
    world.portal.add_devices([line, {"serial_number": "F2LXQ0AAHG7M"}, identified], server_uuid=world.default_server_uuid)
    dep = DEPSync(world.http, world.dep_url, world.dep_credentials, 10)
    listed = {d["serial_number"]: d for d in dep.fetch_all()}["F2LXQ0AAHG7K"]
    attributes = _attributes(client, "F2LXQ0AAHG7K")
    assert attributes["imei"] == listed["imei"] == line["imei"]
    assert attributes["meid"] == ["A1000049A3C1B2"]  # the API's pattern is upper-case hex
    assert attributes["eid"] == listed["eid"] == line["eid"]
    assert attributes["ethernetMacAddress"] == [listed["ethernet_mac_address"]] == ["f0:18:98:aa:bb:03"]
    assert (attributes["productType"], attributes["deviceCapacity"], attributes["partNumber"]) == (
        "iPhone16,1", "1TB", "MTUV3LL/A")
    assert attributes["purchaseSourceType"] == "APPLE"
    bare = _attributes(client, "F2LXQ0AAHG7M")
    assert bare["purchaseSourceType"] == "MANUALLY_ADDED" and bare["imei"] == [] and "productType" not in bare
    assert _attributes(client, "F2LXQ0AAHG7P")["purchaseSourceType"] == "APPLE"  # its maker's data, no product
    try:
        world.portal.add_devices([{"serial_number": "F2LXQ0AAHG7N", "capacity_gb": "lots"}])
    except PortalError as refused:
        assert refused.status == 400 and "capacity_gb" in refused.message
    else:
        raise AssertionError("a capacity that is not a number of GB was taken")


def test_a_migration_deadline_is_one_fact_for_the_api_dep_and_the_portal() -> None:
    with make_world(frozen_clock=True) as world:
        client = client_for(world)
        new = world.portal.create_server("New MDM")
        dep_new = DEPSync(world.http, world.dep_url, {k: new[k] for k in _KEYS}, protocol_version=8)
        dep_new.fetch_all()
        moving, by_portal = world.serials[:2]
        deadline = _deadline(world, 30)
        created = client.create_activity("ASSIGN_DEVICES_WITH_MDM_MIGRATION_DEADLINE", [moving],
                                         api_server_id(new["server_uuid"]), deadline)
        client.wait_for_activity(created["id"], lambda: world.clock.advance(seconds=2))
        # set by an activity: DEP (v8) lists it to the new server, the portal shows it
        added = [d for d in dep_new.sync() if d["serial_number"] == moving]
        assert [(d["op_type"], d["mdm_migration_deadline"]) for d in added] == [("added", deadline)]
        assert world.portal.device(moving)["mdm_migration_deadline"] == deadline
        v7 = DEPSync(world.http, world.dep_url, {k: new[k] for k in _KEYS}, protocol_version=7).fetch_all()
        assert "mdm_migration_deadline" not in v7[0]  # DEP's version rule is main's, untouched

        # set in the portal: the API reports a migration, and an activity may update it
        later = _deadline(world, 45)
        world.portal.assign(new["server_uuid"], [by_portal], mdm_migration_deadline=later)
        attributes = _attributes(client, by_portal)
        assert attributes["mdmMigrationStatus"] == "REQUESTED"
        assert attributes["mdmMigrationDeadlineDateTime"] == later.replace("Z", ".000Z")
        latest = _deadline(world, 60)
        done = client.wait_for_activity(
            client.create_activity("UPDATE_MDM_MIGRATION_DEADLINE", [by_portal], deadline=latest)["id"],
            lambda: world.clock.advance(seconds=2),
        )
        assert done["attributes"]["subStatus"] == "COMPLETED_WITH_SUCCESS"
        assert world.portal.device(by_portal)["mdm_migration_deadline"] == latest
        assert [(d["op_type"], d.get("mdm_migration_deadline")) for d in dep_new.sync()
                if d["serial_number"] == by_portal][-1] == ("modified", latest)

        # cancelled through the API: gone for DEP and the portal as well
        client.wait_for_activity(client.create_activity("CANCEL_MDM_MIGRATION", [moving, by_portal])["id"],
                                 lambda: world.clock.advance(seconds=2))
        assert world.portal.device(moving)["mdm_migration_deadline"] is None
        cancelled = dep_new.sync()
        assert sorted(d["serial_number"] for d in cancelled) == sorted([moving, by_portal])
        assert all(d["op_type"] == "modified" and "mdm_migration_deadline" not in d for d in cancelled)
        assert "mdmMigrationStatus" not in _attributes(client, moving)


def test_a_replacement_joins_the_api_s_organisation_and_the_original_leaves_it(world: World, client: AxMClient) -> None:
    original = world.serials[4]
    before = _attributes(client, original)
    world.clock.advance(hours=5)
    replaced = world.portal.replace_device(original)
    replacement = replaced["replacement"]["serial_number"]
    gone, new = _attributes(client, original), _attributes(client, replacement)
    assert gone["releasedFromOrgDateTime"] is not None and gone["status"] == "UNASSIGNED"
    assert gone["updatedDateTime"] == gone["releasedFromOrgDateTime"] > before["updatedDateTime"]
    assert new["addedToOrgDateTime"] == gone["releasedFromOrgDateTime"] and new["status"] == "ASSIGNED"
    assert new["imei"] == ([world.identity(replacement).imei] if world.identity(replacement).imei else [])
    assert original not in [d["id"] for d in client.all_devices()] and replacement in [d["id"] for d in client.all_devices()]
