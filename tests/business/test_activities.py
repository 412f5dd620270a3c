"""Device activities on the world clock: their steps, when devices move (and what DEP, the portal and
activation see meanwhile), migrations with deadlines, releases, the log and its presigned URL, and
the 409/422 refusals of a request that names the wrong thing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from axm_client import AxMClient
from business_support import DEPSync, client_for, make_world, schema_validate
from jsonschema import ValidationError

from simulator.apple.business.activities import STEPS
from simulator.apple.business.documents import api_server_id
from simulator.world import World


def _post(world: World, client: AxMClient, body: Any) -> httpx.Response:
    token = client.access_token or client.authenticate()
    return world.http.post(f"{world.business_url}/v1/orgDeviceActivities", json=body,
                           headers={"Authorization": f"Bearer {token}"})


def _activity(activity_type: str, serials: list[str], server: str | None = None, *, valid: bool = True,
              **attributes: Any) -> dict[str, Any]:  # fmt: skip
    """A create-activity body; ``valid=False`` for one the request schema itself must refuse."""
    relationships: dict[str, Any] = {"devices": {"data": [{"type": "orgDevices", "id": s} for s in serials]}}
    if server is not None:
        relationships["mdmServer"] = {"data": {"type": "mdmServers", "id": server}}
    body = {"data": {"type": "orgDeviceActivities", "attributes": {"activityType": activity_type, **attributes},
                     "relationships": relationships}}
    if valid:
        schema_validate(body, "OrgDeviceActivityCreateRequest")
    else:
        with pytest.raises(ValidationError):
            schema_validate(body, "OrgDeviceActivityCreateRequest")
    return body


def _status(client: AxMClient, activity_id: str) -> tuple[str, str]:
    attributes = client.get(f"/v1/orgDeviceActivities/{activity_id}", "OrgDeviceActivityResponse")["data"]["attributes"]
    return attributes["status"], attributes["subStatus"]


def _finish(world: World, client: AxMClient, activity_id: str) -> dict[str, Any]:
    return client.wait_for_activity(activity_id, lambda: world.clock.advance(seconds=2))


def test_an_activity_steps_through_its_states_and_moves_devices_after_processing() -> None:
    with make_world(frozen_clock=True) as world:
        client = client_for(world)
        second = world.portal.create_server("Second")
        dep = DEPSync(world.http, world.dep_url, {k: second[k] for k in ("consumer_key", "consumer_secret",
                                                                            "access_token", "access_secret")})
        dep.fetch_all()
        serial = world.serials[0]
        created = client.create_activity("ASSIGN_DEVICES", [serial], api_server_id(second["server_uuid"]))
        for step in STEPS[:4]:
            assert _status(client, created["id"]) == ("IN_PROGRESS", step)
            assert world.portal.device(serial)["server_uuid"] == world.default_server_uuid  # not yet
            assert dep.sync() == []
            world.clock.advance(seconds=2)
        assert _status(client, created["id"]) == ("IN_PROGRESS", "POST_PROCESSING")
        assert world.portal.device(serial)["server_uuid"] == second["server_uuid"]  # moved when PROCESSING ended
        assert [(d["serial_number"], d["op_type"]) for d in dep.sync()] == [(serial, "added")]
        world.clock.advance(seconds=2)
        assert _status(client, created["id"]) == ("COMPLETED", "COMPLETED_WITH_SUCCESS")


def test_a_dep_profile_stays_until_the_activity_moves_the_device(world: World, client: AxMClient) -> None:
    dep = DEPSync(world.http, world.dep_url, world.dep_credentials)
    dep.fetch_all()
    serial = world.serials[1]
    profile = dep._post("/profile", {"profile_name": "Kiosk", "url": "https://mdm.example.com/enroll"})
    dep._post("/profile/devices", {"profile_uuid": profile["profile_uuid"], "devices": [serial]})
    dep.sync()
    second = world.portal.create_server("Second")
    created = client.create_activity("ASSIGN_DEVICES", [serial], api_server_id(second["server_uuid"]))
    world.clock.advance(seconds=7)  # still PROCESSING
    assert world.portal.device(serial)["profile_status"] == "assigned"
    assert dep.sync() == []
    _finish(world, client, created["id"])
    synced = dep.sync()
    assert [(d["serial_number"], d["op_type"], d["profile_status"]) for d in synced] == [(serial, "deleted", "assigned")]
    assert world.portal.device(serial)["profile_status"] == "empty"


def test_activation_reads_the_moved_device_without_anyone_else_looking_first(world: World, client: AxMClient) -> None:
    serial = world.serials[2]
    created = client.create_activity("UNASSIGN_DEVICES", [serial], api_server_id(world.default_server_uuid))
    world.clock.advance(seconds=60)
    assert world.activation.profile_for(serial) == {}  # the first reader after the activity's time applies it
    assert world.portal.device(serial)["server_uuid"] is None
    assert _status(client, created["id"]) == ("COMPLETED", "COMPLETED_WITH_SUCCESS")


def test_the_log_lists_every_device_and_its_url_is_signed_and_expires(world: World, client: AxMClient) -> None:
    serials = world.serials[:3]
    created = client.create_activity("UNASSIGN_DEVICES", serials, api_server_id(world.default_server_uuid))
    assert "downloadUrl" not in created["attributes"]
    done = _finish(world, client, created["id"])
    url = done["attributes"]["downloadUrl"]
    assert done["attributes"]["completedDateTime"] > done["attributes"]["createdDateTime"]
    response = world.http.get(url)  # no token: a presigned URL
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    assert 'filename="ABM-ActivityLog_' in response.headers["content-disposition"]
    assert [(r["serial_number"], r["operation_status"]) for r in client.activity_log(url)] == [
        (s, "SUCCESS") for s in serials]
    assert f"Activity ID,{created['id']}" in response.text
    tampered = url.replace("Expires=", "Expires=1")
    assert world.http.get(tampered).status_code == 403
    assert world.http.get(url.split("&Signature=")[0]).status_code == 403
    world.clock.advance(seconds=3601)
    expired = world.http.get(url)
    assert expired.status_code == 403 and "expired" in expired.text
    assert world.http.get(_finish(world, client, created["id"])["attributes"]["downloadUrl"]).status_code == 200


def test_activities_are_readable_for_thirty_days(world: World, client: AxMClient) -> None:
    created = client.create_activity("RELEASE_DEVICES", [world.serials[0]])
    world.clock.advance(days=29)
    assert _status(client, created["id"])[0] == "COMPLETED"
    world.clock.advance(days=2)
    client.access_token = None
    token = client.authenticate()
    gone = world.http.get(f"{world.business_url}/v1/orgDeviceActivities/{created['id']}",
                          headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 404


def test_release_devices_takes_them_out_of_the_organization(world: World, client: AxMClient) -> None:
    dep = DEPSync(world.http, world.dep_url, world.dep_credentials)
    dep.fetch_all()
    serial = world.serials[4]
    done = _finish(world, client, client.create_activity("RELEASE_DEVICES", [serial])["id"])
    assert done["attributes"]["subStatus"] == "COMPLETED_WITH_SUCCESS"
    assert not world.has_device(serial)
    assert [(d["serial_number"], d["op_type"]) for d in dep.sync()] == [(serial, "deleted")]
    released = client.get(f"/v1/orgDevices/{serial}", "OrgDeviceResponse")["data"]["attributes"]
    assert released["releasedFromOrgDateTime"] is not None
    # a device released meanwhile fails in the log, not in the request
    other = world.serials[5]
    created = client.create_activity("ASSIGN_DEVICES", [other], api_server_id(world.default_server_uuid))
    world.portal.release([other])
    done = _finish(world, client, created["id"])
    assert done["attributes"]["subStatus"] == "COMPLETED_WITH_ERROR"
    assert client.activity_log(done["attributes"]["downloadUrl"])[0]["operation_substatus"] == "DEVICE_NOT_FOUND"


def test_migration_deadlines(world: World, client: AxMClient) -> None:
    second = api_server_id(world.portal.create_server("New MDM")["server_uuid"])
    now = datetime.fromtimestamp(world.clock.timestamp(), UTC)
    deadline = (now + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    moving, staying = world.serials[6], world.serials[7]
    created = client.create_activity("ASSIGN_DEVICES_WITH_MDM_MIGRATION_DEADLINE", [moving], second, deadline)
    _finish(world, client, created["id"])
    attributes = client.get(f"/v1/orgDevices/{moving}", "OrgDeviceResponse")["data"]["attributes"]
    assert attributes["mdmMigrationStatus"] == "REQUESTED"
    assert attributes["mdmMigrationDeadlineDateTime"] == deadline.replace("Z", ".000Z")
    later = (now + timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    done = _finish(world, client, client.create_activity("UPDATE_MDM_MIGRATION_DEADLINE", [moving, staying],
                                                         deadline=later)["id"])
    assert done["attributes"]["subStatus"] == "COMPLETED_WITH_FAILURE"
    rows = {r["serial_number"]: r for r in client.activity_log(done["attributes"]["downloadUrl"])}
    assert rows[staying]["operation_substatus"] == "DEVICE_NOT_MIGRATING" and rows[moving]["operation_status"] == "SUCCESS"
    assert client.get(f"/v1/orgDevices/{moving}", "OrgDeviceResponse")["data"]["attributes"][
        "mdmMigrationDeadlineDateTime"] == later.replace("Z", ".000Z")
    _finish(world, client, client.create_activity("CANCEL_MDM_MIGRATION", [moving])["id"])
    assert "mdmMigrationStatus" not in client.get(f"/v1/orgDevices/{moving}", "OrgDeviceResponse")["data"]["attributes"]


@pytest.mark.parametrize(("body", "status", "code", "pointer"), [
    ("not json", 422, "ENTITY_UNPROCESSABLE", ""),
    ([], 422, "ENTITY_UNPROCESSABLE", ""),
    ({"data": []}, 422, "ENTITY_UNPROCESSABLE", "/data"),
    ({"data": {"type": "orgDevices"}}, 409, "ENTITY_ERROR.ATTRIBUTE.INVALID", "/data/type"),
    ({"data": {"type": "orgDeviceActivities"}}, 409, "ENTITY_ERROR.ATTRIBUTE.REQUIRED", "/data/attributes/activityType"),
    ({"data": {"type": "orgDeviceActivities", "attributes": {"activityType": "PAINT_DEVICES"}}}, 409,
     "ENTITY_ERROR.ATTRIBUTE.INVALID", "/data/attributes/activityType"),
    ({"data": {"type": "orgDeviceActivities", "attributes": {"activityType": "ASSIGN_DEVICES"}}}, 409,
     "ENTITY_ERROR.RELATIONSHIP.REQUIRED", "/data/relationships/mdmServer"),
    ({"data": {"type": "orgDeviceActivities", "attributes": {"activityType": "RELEASE_DEVICES"},
               "relationships": {"devices": {"data": []}}}}, 409, "ENTITY_ERROR.RELATIONSHIP.INVALID",
     "/data/relationships/devices/data"),
])
def test_malformed_requests(world: World, client: AxMClient, body: Any, status: int, code: str, pointer: str) -> None:
    token = client.authenticate()
    content = body if isinstance(body, str) else None
    response = world.http.post(f"{world.business_url}/v1/orgDeviceActivities", content=content,
                               json=None if content is not None else body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == status, response.text
    schema_validate(response.json(), "ErrorResponse")
    error = response.json()["errors"][0]
    assert error["code"] == code and error["source"] == {"pointer": pointer}, error


def test_conflicts_name_the_server_serial_or_deadline(world: World, client: AxMClient) -> None:
    server = api_server_id(world.default_server_uuid)
    cases = [
        (_activity("ASSIGN_DEVICES", [world.serials[0]], "F" * 32), "/data/relationships/mdmServer/data/id"),
        (_activity("ASSIGN_DEVICES", [world.serials[0], "NOTASERIAL1"], server), "/data/relationships/devices/data/1/id"),
        (_activity("RELEASE_DEVICES", [world.serials[0]], server, valid=False), "/data/relationships/mdmServer"),
        (_activity("ASSIGN_DEVICES_WITH_MDM_MIGRATION_DEADLINE", [world.serials[0]], server,
                   activityTypeMetadata={"mdmMigrationDeadlineDateTime": "2099-01-01T00:00:00Z"}),
         "/data/attributes/activityTypeMetadata/mdmMigrationDeadlineDateTime"),
    ]
    for body, pointer in cases:
        response = _post(world, client, body)
        assert response.status_code == 409, response.text
        schema_validate(response.json(), "ErrorResponse")
        assert response.json()["errors"][0]["source"] == {"pointer": pointer}


def test_a_school_cannot_release_devices() -> None:
    with make_world(devices=2, seed=8) as world:
        world.portal.ensure_organization(org_type="edu")
        account = world.portal.api_accounts.create("SIS")
        school = client_for(world, client_id=account["client_id"], key_id=account["key_id"],
                            private_key_pem=world.portal.api_accounts.private_key(account["client_id"]))
        response = _post(world, school, _activity("RELEASE_DEVICES", [world.serials[0]]))
        error = response.json()["errors"][0]
        assert response.status_code == 409 and error["code"] == "ENTITY_ERROR.ATTRIBUTE.INVALID"
        assert "RELEASE_DEVICES" not in error["detail"].split("use one of")[1]  # not among a school's types
        created = school.create_activity("UNASSIGN_DEVICES", [world.serials[0]], api_server_id(world.default_server_uuid))
        done = _finish(world, school, created["id"])
        assert 'filename="ASM-ActivityLog_' in world.http.get(done["attributes"]["downloadUrl"]).headers[
            "content-disposition"]
