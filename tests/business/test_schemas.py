"""The Business API's JSON Schemas in ``fixtures/business/schemas``: each is a valid draft 2020-12
schema, each is matched by what the simulator really sends (or what a client sends it), and each
catches a missing required key or a wrong value, so validating against them proves something."""

from __future__ import annotations

import copy
import json
from typing import Any

import jwt
import pytest
from business_support import SCHEMAS, client_for, make_world, schema_validate
from jsonschema import Draft202012Validator, ValidationError

from simulator.apple.business.documents import api_server_id


@pytest.fixture(scope="module")
def samples() -> dict[str, Any]:
    """One real document per schema, from a world."""
    with make_world(devices=3, seed=31) as world:
        client = client_for(world, on_response=lambda kind, response: None)
        serial, server = world.serials[0], api_server_id(world.default_server_uuid)
        out: dict[str, Any] = {
            "TokenResponse": client.token_request().json(),
            "TokenErrorResponse": client.token_request(scope="nope").json(),
            "ClientAssertionClaims": jwt.decode(client.client_assertion(), options={"verify_signature": False}),
            "OrgDevicesResponse": client.get("/v1/orgDevices", "x", limit=2),
            "OrgDeviceResponse": client.get(f"/v1/orgDevices/{serial}", "x"),
            "OrgDeviceAssignedServerLinkageResponse": client.get(f"/v1/orgDevices/{serial}/relationships/assignedServer", "x"),
            "MdmServersResponse": client.get("/v1/mdmServers", "x"),
            "MdmServerResponse": client.get(f"/v1/mdmServers/{server}", "x"),
            "MdmServerDevicesLinkagesResponse": client.get(f"/v1/mdmServers/{server}/relationships/devices", "x"),
            "AppleCareCoveragesResponse": client.get(f"/v1/orgDevices/{serial}/appleCareCoverage", "x"),
        }
        body = {"data": {"type": "orgDeviceActivities", "attributes": {"activityType": "ASSIGN_DEVICES"},
                         "relationships": {"mdmServer": {"data": {"type": "mdmServers", "id": server}},
                                           "devices": {"data": [{"type": "orgDevices", "id": serial}]}}}}
        out["OrgDeviceActivityCreateRequest"] = body
        created = world.http.post(f"{world.business_url}/v1/orgDeviceActivities", json=body,
                                  headers={"Authorization": f"Bearer {client.access_token}"})
        out["OrgDeviceActivityResponse"] = created.json()
        out["ErrorResponse"] = world.http.get(f"{world.business_url}/v1/orgDevices/NOPE",
                                              headers={"Authorization": f"Bearer {client.access_token}"}).json()
        out["OrgDevice"] = out["OrgDeviceResponse"]["data"]
        out["MdmServer"] = out["MdmServerResponse"]["data"]
        out["OrgDeviceActivity"] = out["OrgDeviceActivityResponse"]["data"]
    return out


def test_every_schema_is_valid_and_matched_by_a_real_document(samples: dict[str, Any]) -> None:
    names = {p.stem for p in SCHEMAS.glob("*.json")}
    for name in names:
        Draft202012Validator.check_schema(json.loads((SCHEMAS / f"{name}.json").read_text()))
    assert names - {"Common"} == set(samples)
    for name, sample in samples.items():
        schema_validate(sample, name)


def _required_paths(schema: dict[str, Any], sample: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every required key (at any depth the sample reaches through ``properties``) as a key path."""
    if "$ref" in schema and not schema["$ref"].startswith(("#", "Common")):
        schema = json.loads((SCHEMAS / schema["$ref"]).read_text())
    found = [(*path, key) for key in schema.get("required", []) if isinstance(sample, dict) and key in sample]
    for key, sub in schema.get("properties", {}).items():
        if isinstance(sample, dict) and key in sample and isinstance(sub, dict):
            found += _required_paths(sub, sample[key], (*path, key))
    return found


def test_dropping_any_required_key_fails(samples: dict[str, Any]) -> None:
    checked = 0
    for name, sample in samples.items():
        schema = json.loads((SCHEMAS / f"{name}.json").read_text())
        for key_path in _required_paths(schema, sample):
            broken = copy.deepcopy(sample)
            holder = broken
            for key in key_path[:-1]:
                holder = holder[key]
            del holder[key_path[-1]]
            with pytest.raises(ValidationError):
                schema_validate(broken, name)
            checked += 1
    assert checked > 40


@pytest.mark.parametrize(("name", "path", "value"), [
    ("OrgDevice", ("attributes", "status"), "SOMETIMES"),
    ("OrgDevice", ("attributes", "productFamily"), "Newton"),
    ("OrgDevice", ("attributes", "imei"), "359243295603198"),
    ("OrgDevice", ("attributes", "addedToOrgDateTime"), "yesterday"),
    ("OrgDevice", ("attributes", "shoeSize"), 42),
    ("OrgDevice", ("type",), "devices"),
    ("MdmServer", ("id",), "1f973497-36cf-4614-a94f-624e705841ad"),
    ("MdmServer", ("attributes", "serverType"), "JAMF"),
    ("OrgDeviceActivity", ("attributes", "status"), "DONE"),
    ("OrgDeviceActivity", ("attributes", "downloadUrl"), "https://example.com/log.csv"),
    ("OrgDevicesResponse", ("meta", "paging", "limit"), 1001),
    ("ErrorResponse", ("errors", 0, "status"), 404),
    ("ErrorResponse", ("errors", 0, "source"), {"pointer": "/a", "parameter": "b"}),
    ("TokenResponse", ("token_type",), "bearer"),
    ("TokenResponse", ("expires_in",), 86400),
    ("ClientAssertionClaims", ("aud",), "https://account.apple.com/auth/oauth2/token"),
])
def test_a_wrong_value_fails(samples: dict[str, Any], name: str, path: tuple[Any, ...], value: Any) -> None:
    broken = copy.deepcopy(samples[name])
    holder = broken
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    with pytest.raises(ValidationError):
        schema_validate(broken, name)
