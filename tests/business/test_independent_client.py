"""The Business API as an independent client sees it over real sockets: sign, get a token, page every
device, move devices between MDM servers with activities, wait for them on the world clock, read the
log, and see the same change in the DEP syncs of both servers; bad assertions refused as documented.

The client (:mod:`axm_client`) is written from Apple's documentation with httpx and PyJWT; it shares
no code with the simulator. Every JSON reply it receives is validated against ``fixtures/business``.
The world keeps Apple's default rate limits: the client honours ``Retry-After`` as real clients do, by
letting (world) time pass.
"""

from __future__ import annotations

import httpx
from axm_client import AxMClient
from business_support import DEPSync, advance, check_response, make_world

from simulator.apple.business.documents import api_server_id


def test_independent_client_pages_assigns_unassigns_and_dep_sees_it() -> None:
    with make_world(devices=2500, seed=21, business_rate_limits=None) as world, world.serve() as served, \
            httpx.Client(timeout=60.0) as http:  # fmt: skip
        second = world.portal.create_server("Second MDM")
        credentials = served.business_credentials
        assert credentials["token_url"].startswith(served.url) and credentials["api_url"].startswith(served.url)
        client = AxMClient(
            token_url=credentials["token_url"], api_url=credentials["api_url"], client_id=credentials["client_id"],
            key_id=credentials["key_id"], private_key_pem=credentials["private_key_pem"], http=http,
            on_response=check_response, sleep=lambda seconds: advance(http, served.sim_url, seconds),
        )
        dep_a = DEPSync(http, served.dep_url, world.dep_credentials)
        dep_b = DEPSync(http, served.dep_url, {k: second[k] for k in dep_a.keys})
        assert len(dep_a.fetch_all()) == 2500 and dep_b.fetch_all() == []

        # every device, 1,000 a page, by following links.next
        pages = list(client.pages("/v1/orgDevices", "OrgDevicesResponse", limit=1000))
        assert [len(p["data"]) for p in pages] == [1000, 1000, 500]
        assert [p["meta"]["paging"]["limit"] for p in pages] == [1000, 1000, 1000]
        assert "next" not in pages[-1]["links"] and "nextCursor" not in pages[-1]["meta"]["paging"]
        serials = [d["id"] for p in pages for d in p["data"]]
        assert serials == world.serials
        assert {d["attributes"]["status"] for p in pages for d in p["data"]} == {"ASSIGNED"}

        servers = client.get("/v1/mdmServers", "MdmServersResponse")["data"]
        by_name = {s["attributes"]["serverName"]: s for s in servers}
        target = by_name["Second MDM"]["id"]
        assert target == api_server_id(second["server_uuid"]) and by_name["mdmsim"]["attributes"]["deviceCount"] == 2500

        # assign three devices to the second server
        moving = serials[10:13]
        created = client.create_activity("ASSIGN_DEVICES", moving, target)
        assert created["attributes"]["status"] == "IN_PROGRESS" and created["attributes"]["subStatus"] == "SUBMITTED"
        assert dep_b.sync() == []  # submitted is not done: nothing has moved yet
        done = client.wait_for_activity(created["id"], lambda: advance(http, served.sim_url, 5))
        assert (done["attributes"]["status"], done["attributes"]["subStatus"]) == ("COMPLETED", "COMPLETED_WITH_SUCCESS")
        log = client.activity_log(done["attributes"]["downloadUrl"])
        assert [(r["serial_number"], r["operation_status"]) for r in log] == [(s, "SUCCESS") for s in moving]

        assert {(d["serial_number"], d["op_type"]) for d in dep_a.sync()} == {(s, "deleted") for s in moving}
        assert {(d["serial_number"], d["op_type"]) for d in dep_b.sync()} == {(s, "added") for s in moving}
        linkage = client.get(f"/v1/orgDevices/{moving[0]}/relationships/assignedServer",
                             "OrgDeviceAssignedServerLinkageResponse")
        assert linkage["data"] == {"type": "mdmServers", "id": target}
        on_b = client.get(f"/v1/mdmServers/{target}/relationships/devices", "MdmServerDevicesLinkagesResponse")
        assert [d["id"] for d in on_b["data"]] == moving

        # unassign one of them, and one that is not on that server: the log says which failed
        created = client.create_activity("UNASSIGN_DEVICES", [moving[0], serials[0]], target)
        done = client.wait_for_activity(created["id"], lambda: advance(http, served.sim_url, 5))
        assert done["attributes"]["subStatus"] == "COMPLETED_WITH_FAILURE"
        rows = {r["serial_number"]: r for r in client.activity_log(done["attributes"]["downloadUrl"])}
        assert rows[moving[0]]["operation_status"] == "SUCCESS"
        assert (rows[serials[0]]["operation_status"], rows[serials[0]]["operation_substatus"]) == (
            "FAILED", "NOT_ASSIGNED_TO_MDM_SERVER")
        assert [(d["serial_number"], d["op_type"]) for d in dep_b.sync()] == [(moving[0], "deleted")]
        device = client.get(f"/v1/orgDevices/{moving[0]}", "OrgDeviceResponse")["data"]
        assert device["attributes"]["status"] == "UNASSIGNED"
        assert client.get(f"/v1/orgDevices/{moving[0]}/relationships/assignedServer",
                          "OrgDeviceAssignedServerLinkageResponse")["data"] is None
        # one device at a time, as a careless client would: Apple's 20 GETs a minute run out and are waited out
        looked_up = [client.get(f"/v1/orgDevices/{s}", "OrgDeviceResponse")["data"]["id"] for s in serials[:25]]
        assert looked_up == serials[:25] and client.throttled > 0

        # assertions the token endpoint refuses, with RFC 6749's codes
        tampered = client.client_assertion()
        head, body, signature = tampered.split(".")
        tampered = f"{head}.{body}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
        now = int(world.clock.timestamp())
        refusals = {
            "tampered": client.token_request(tampered),
            "expired": client.token_request(client.client_assertion(iat=now - 7200, exp=now - 3600)),
            "wrong scope": client.token_request(scope="school.api"),
        }
        assert {name: (r.status_code, r.json()["error"]) for name, r in refusals.items()} == {
            "tampered": (400, "invalid_client"), "expired": (400, "invalid_client"), "wrong scope": (400, "invalid_scope"),
        }
