"""An Apple Business API client (httpx + PyJWT) against mdmsim: the world's API account signs in with
a client assertion, lists devices and moves one to another MDM server with an activity."""

import time
import uuid

import httpx
import jwt
import pytest


def access_token(credentials):
    """Apple's OAuth flow: an ES256 client assertion for an hour-long bearer token."""
    now = int(time.time())
    assertion = jwt.encode(
        {"sub": credentials["client_id"], "iss": credentials["client_id"], "aud": credentials["audience"],
         "iat": now, "exp": now + 86400 * 180, "jti": str(uuid.uuid4())},
        credentials["private_key_pem"], algorithm="ES256", headers={"kid": credentials["key_id"]},
    )
    reply = httpx.post(credentials["token_url"], data={
        "grant_type": "client_credentials", "client_id": credentials["client_id"], "client_assertion": assertion,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "scope": credentials["scope"],
    })
    reply.raise_for_status()
    return reply.json()["access_token"]


@pytest.mark.mdmsim(devices=30, seed=2)
def test_my_client_moves_a_device_to_another_mdm_server(mdmsim_server):
    credentials = mdmsim_server.business_credentials
    api = httpx.Client(base_url=credentials["api_url"], headers={
        "Authorization": f"Bearer {access_token(credentials)}", "Accept": "application/json"})
    devices = api.get("/v1/orgDevices", params={"limit": 1000}).json()["data"]
    assert len(devices) == 30

    other = mdmsim_server.portal.create_server("Other MDM")["server_uuid"].replace("-", "")
    activity = api.post("/v1/orgDeviceActivities", json={"data": {
        "type": "orgDeviceActivities", "attributes": {"activityType": "ASSIGN_DEVICES"},
        "relationships": {"mdmServer": {"data": {"type": "mdmServers", "id": other}},
                          "devices": {"data": [{"type": "orgDevices", "id": devices[0]["id"]}]}}}}).json()["data"]
    mdmsim_server.clock.advance(seconds=30)  # activities run on the world clock: no waiting in a test
    done = api.get(f"/v1/orgDeviceActivities/{activity['id']}").json()["data"]["attributes"]

    assert done["status"] == "COMPLETED" and done["subStatus"] == "COMPLETED_WITH_SUCCESS"
    assert api.get(f"/v1/orgDevices/{devices[0]['id']}/relationships/assignedServer").json()["data"]["id"] == other
