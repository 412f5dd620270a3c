"""The life of an MDM server's device list, over real sockets: full fetch, portal changes, sync, expiry."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from dep_client import DEPClientError


def test_fetch_then_sync_reports_exactly_the_portal_changes(live: Any, validate) -> None:
    world = live.world
    uuid = world.server["server_uuid"]
    response = live.portal(
        "POST", "/api/devices", json={"count": 2500, "server_uuid": uuid, "order_number": "PO-1"}
    )
    assert response.status_code == 201, response.text
    client = live.client()

    pages = list(client.fetch_pages(limit=1000))
    assert [len(p["devices"]) for p in pages] == [1000, 1000, 500]
    assert [p["more_to_follow"] for p in pages] == [True, True, False]
    for page in pages:
        validate(page, "FetchDeviceResponse")
    serials = [d["serial_number"] for p in pages for d in p["devices"]]
    assert len(set(serials)) == 2500
    with pytest.raises(DEPClientError) as exhausted:
        client.fetch_devices(pages[-1]["cursor"], 1000)
    assert (exhausted.value.status, exhausted.value.body) == (400, "EXHAUSTED_CURSOR")

    world.clock.advance(minutes=5)
    added = live.portal("POST", "/api/devices", json={"count": 10, "server_uuid": uuid}).json()[
        "serial_numbers"
    ]
    for serial in serials[:5]:
        assert live.portal("PATCH", f"/api/devices/{serial}", json={"asset_tag": f"TAG-{serial}"}).ok
    released = serials[100:103]
    assert (
        live.portal("POST", "/api/devices/release", json={"serial_numbers": released}).json()["released"] == 3
    )

    sync = client.sync_devices(pages[-1]["cursor"], limit=1000)
    validate(sync, "FetchDeviceResponse")
    ops = Counter(d["op_type"] for d in sync["devices"])
    assert ops == {"added": 10, "modified": 5, "deleted": 3}
    assert {d["serial_number"] for d in sync["devices"] if d["op_type"] == "added"} == set(added)
    assert {d["serial_number"] for d in sync["devices"] if d["op_type"] == "deleted"} == set(released)
    edited = {d["serial_number"]: d for d in sync["devices"] if d["op_type"] == "modified"}
    assert edited[serials[0]]["asset_tag"] == f"TAG-{serials[0]}"
    assert all(d["op_date"] == "2026-03-01T09:05:00Z" for d in sync["devices"])
    assert sync["more_to_follow"] is False

    # Nothing new: an empty page, and the new cursor keeps working.
    again = client.sync_devices(sync["cursor"])
    assert again["devices"] == [] and again["more_to_follow"] is False

    world.clock.advance(days=8)
    with pytest.raises(DEPClientError) as expired:
        client.sync_devices(sync["cursor"])
    assert (expired.value.status, expired.value.body) == (400, "EXPIRED_CURSOR")


def test_sync_pages_follow_more_to_follow(live: Any, validate) -> None:
    uuid = live.world.server["server_uuid"]
    client = live.client()
    start = client.fetch_devices(limit=10)
    assert start["devices"] == [] and start["more_to_follow"] is False
    live.portal("POST", "/api/devices", json={"count": 25, "server_uuid": uuid})
    seen, cursor = [], start["cursor"]
    while True:
        page = client.sync_devices(cursor, limit=10)
        validate(page, "FetchDeviceResponse")
        seen.extend(page["devices"])
        cursor = page["cursor"]
        if not page["more_to_follow"]:
            break
    assert len(seen) == 25 and {d["op_type"] for d in seen} == {"added"}


def test_reassignment_is_added_for_one_server_and_deleted_for_the_other(live: Any) -> None:
    portal = live.world.portal
    other = portal.create_server("second")
    first = live.world.server
    portal.generate(4, server_uuid=first["server_uuid"])
    a, b = live.client(first), live.client(other)
    cursor_a = list(a.fetch_pages())[-1]["cursor"]
    cursor_b = list(b.fetch_pages())[-1]["cursor"]
    serial = portal.devices(first["server_uuid"])["devices"][0]["serial_number"]
    moved = live.portal(
        "POST", "/api/assignments", json={"server_uuid": other["server_uuid"], "serial_numbers": [serial]}
    )
    assert moved.json()["assigned"] == 1
    assert [(d["serial_number"], d["op_type"]) for d in a.sync_devices(cursor_a)["devices"]] == [
        (serial, "deleted")
    ]
    assert [(d["serial_number"], d["op_type"]) for d in b.sync_devices(cursor_b)["devices"]] == [
        (serial, "added")
    ]
    # Each server sees only its own devices.
    assert [d["serial_number"] for p in b.fetch_pages() for d in p["devices"]] == [serial]
    assert len([d for p in a.fetch_pages() for d in p["devices"]]) == 3
    # A cursor of one server is not a cursor for the other.
    with pytest.raises(DEPClientError) as foreign:
        b.sync_devices(cursor_a)
    assert foreign.value.body == "INVALID_CURSOR"
