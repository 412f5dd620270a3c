"""The Business API's read endpoints and its gate: tokens, ``Accept``, query parameters, documents,
rate limits and scripted faults. Every reply is validated against ``fixtures/business/schemas``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from axm_client import AxMClient, AxMError
from business_support import DEPSync, make_world, schema_validate

from simulator.apple.business.documents import api_server_id
from simulator.apple.business.service import RateLimits
from simulator.world import World


def _get(world: World, client: AxMClient, path: str, **kwargs: Any) -> httpx.Response:
    token = client.access_token or client.authenticate()
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    return world.http.get(f"{world.business_url}{path}", headers=headers, **kwargs)


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    schema_validate(body, "ErrorResponse")
    error = body["errors"][0]
    assert (error["status"], error["code"]) == (str(status), code), error
    return dict(error)


def test_no_token_a_wrong_token_and_an_expired_token_are_401(world: World, client: AxMClient) -> None:
    url = f"{world.business_url}/v1/orgDevices"
    _error(world.http.get(url), 401, "NOT_AUTHORIZED")
    _error(world.http.get(url, headers={"Authorization": "Bearer nope"}), 401, "NOT_AUTHORIZED")
    _error(world.http.get(url, headers={"Authorization": "Basic dTpw"}), 401, "NOT_AUTHORIZED")
    assert _get(world, client, "/v1/orgDevices").status_code == 200
    world.clock.advance(seconds=3600)
    error = _error(_get(world, client, "/v1/orgDevices"), 401, "NOT_AUTHORIZED")
    assert "expired" in error["detail"]
    assert len(client.all_devices()) == 20  # the client's retry-once-on-401 gets a new token and goes on


@pytest.mark.parametrize("accept", ["application/json", "*/*", "application/*", "application/json;charset=UTF8", None])
def test_accept_json_or_anything_is_served(world: World, client: AxMClient, accept: str | None) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    assert _get(world, client, "/v1/mdmServers", headers=headers).status_code == 200


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "text/csv"])
def test_another_accept_is_406(world: World, client: AxMClient, accept: str) -> None:
    _error(_get(world, client, "/v1/mdmServers", headers={"Accept": accept}), 406, "NOT_ACCEPTABLE")


@pytest.mark.parametrize(("query", "code", "parameter"), [
    ("limit=0", "PARAMETER_ERROR.INVALID", "limit"),
    ("limit=1001", "PARAMETER_ERROR.INVALID", "limit"),
    ("limit=ten", "PARAMETER_ERROR.INVALID", "limit"),
    ("limit=5&limit=6", "PARAMETER_ERROR.INVALID", "limit"),
    ("cursor=%%%", "PARAMETER_ERROR.INVALID", "cursor"),
    ("cursor=bm90LWEtY3Vyc29y", "PARAMETER_ERROR.INVALID", "cursor"),
    ("fields[orgDevices]=serialNumber,shoeSize", "PARAMETER_ERROR.INVALID", "fields[orgDevices]"),
    ("fields[mdmServers]=serverName", "PARAMETER_ERROR.ILLEGAL", "fields[mdmServers]"),
    ("filter[serialNumber]=X", "PARAMETER_ERROR.ILLEGAL", "filter[serialNumber]"),
])
def test_query_parameters_are_checked(world: World, client: AxMClient, query: str, code: str, parameter: str) -> None:
    error = _error(_get(world, client, f"/v1/orgDevices?{query}"), 400, code)
    assert error["source"] == {"parameter": parameter}


def test_limit_and_links_next_page_every_device_once(world: World, client: AxMClient) -> None:
    pages = list(client.pages("/v1/orgDevices", "OrgDevicesResponse", limit=7))
    assert [len(p["data"]) for p in pages] == [7, 7, 6]
    assert "limit=7" in pages[0]["links"]["next"] and pages[0]["meta"]["paging"]["nextCursor"]
    assert [d["id"] for p in pages for d in p["data"]] == world.serials
    # nextCursor works as a parameter too, and the default page is 100
    first = client.get("/v1/orgDevices", "OrgDevicesResponse", limit=7)
    second = client.get("/v1/orgDevices", "OrgDevicesResponse", cursor=first["meta"]["paging"]["nextCursor"])
    assert second["meta"]["paging"]["limit"] == 100 and [d["id"] for d in second["data"]] == world.serials[7:]


def test_fields_choose_attributes_and_relationships(world: World, client: AxMClient) -> None:
    page = client.get("/v1/orgDevices", "OrgDevicesResponse", **{"fields[orgDevices]": "serialNumber,status", "limit": 2})
    assert all(set(d["attributes"]) == {"serialNumber", "status"} and "relationships" not in d for d in page["data"])
    assert "fields%5BorgDevices%5D=serialNumber%2Cstatus" in page["links"]["next"]
    one = client.get(f"/v1/orgDevices/{world.serials[0]}", "OrgDeviceResponse", **{"fields[orgDevices]": "assignedServer"})
    assert one["data"]["attributes"] == {} and set(one["data"]["relationships"]) == {"assignedServer"}


def test_a_device_document_carries_apples_attributes(world: World, client: AxMClient) -> None:
    serial = world.serials[0]
    device = client.get(f"/v1/orgDevices/{serial}", "OrgDeviceResponse")["data"]
    identity = world.identity(serial)
    attributes = device["attributes"]
    assert attributes["serialNumber"] == serial and attributes["deviceModel"] == identity.model_name
    assert attributes["productType"] == identity.product_name and attributes["productFamily"] == identity.device_family
    assert attributes["imei"] == ([identity.imei] if identity.imei else [])
    assert attributes["wifiMacAddress"] == identity.wifi_mac and attributes["color"] == identity.color.upper()
    assert attributes["status"] == "ASSIGNED" and attributes["releasedFromOrgDateTime"] is None
    assert device["links"]["self"] == f"{world.business_url}/v1/orgDevices/{serial}"


def test_unknown_ids_are_apples_documented_404(world: World, client: AxMClient) -> None:
    error = _error(_get(world, client, "/v1/orgDevices/XABC123X0ABC123X0"), 404, "NOT_FOUND")
    assert error["title"] == "The specified resource doesn't exist"
    assert error["detail"] == "There is no resource of type 'orgDevices' with id 'XABC123X0ABC123X0'"
    _error(_get(world, client, "/v1/mdmServers/00000000000000000000000000000000"), 404, "NOT_FOUND")
    _error(_get(world, client, "/v1/orgDeviceActivities/0b0e6c7e-0000-4000-8000-000000000000"), 404, "NOT_FOUND")
    _error(_get(world, client, "/v1/nothingHere"), 404, "NOT_FOUND")
    _error(world.http.delete(f"{world.business_url}/v1/orgDevices"), 405, "METHOD_NOT_ALLOWED")


def test_a_released_device_leaves_the_list_but_shows_its_release_by_serial(world: World, client: AxMClient) -> None:
    gone = world.serials[3]
    world.portal.release([gone])
    assert gone not in [d["id"] for d in client.all_devices()]
    device = client.get(f"/v1/orgDevices/{gone}", "OrgDeviceResponse")["data"]["attributes"]
    assert device["releasedFromOrgDateTime"] is not None and device["status"] == "UNASSIGNED"


def test_assigned_server_linkage_server_and_coverage(world: World, client: AxMClient) -> None:
    serial = world.serials[0]
    server_id = api_server_id(world.default_server_uuid)
    linkage = client.get(f"/v1/orgDevices/{serial}/relationships/assignedServer", "OrgDeviceAssignedServerLinkageResponse")
    assert linkage["data"] == {"type": "mdmServers", "id": server_id}
    assert linkage["links"]["related"].endswith(f"/v1/orgDevices/{serial}/assignedServer")
    server = client.get(linkage["links"]["related"], "MdmServerResponse")["data"]
    assert server["attributes"]["serverName"] == "mdmsim" and server["attributes"]["deviceCount"] == 20
    world.portal.unassign([serial])
    assert client.get(f"/v1/orgDevices/{serial}/assignedServer", "MdmServerResponse")["data"] is None
    coverage = client.get(f"/v1/orgDevices/{serial}/appleCareCoverage", "AppleCareCoveragesResponse")["data"]
    assert [c["attributes"]["description"] for c in coverage] == ["Limited Warranty"]
    assert coverage[0]["attributes"]["status"] == "ACTIVE"
    world.clock.advance(days=366)
    client.access_token = None
    coverage = client.get(f"/v1/orgDevices/{serial}/appleCareCoverage", "AppleCareCoveragesResponse")["data"]
    assert coverage[0]["attributes"]["status"] == "INACTIVE"


def test_mdm_servers_and_their_devices(world: World, client: AxMClient) -> None:
    second = world.portal.create_server("Second")
    world.portal.assign(second["server_uuid"], world.serials[:3])
    servers = client.get("/v1/mdmServers", "MdmServersResponse", limit=1)
    assert len(servers["data"]) == 1 and servers["links"]["next"]
    everyone = client.get(servers["links"]["next"], "MdmServersResponse")["data"]
    assert [s["attributes"]["serverName"] for s in everyone] == ["Second"]
    one = client.get(f"/v1/mdmServers/{everyone[0]['id']}", "MdmServerResponse")["data"]
    assert one["attributes"]["deviceCount"] == 3
    dashed = client.get(f"/v1/mdmServers/{second['server_uuid'].lower()}", "MdmServerResponse")["data"]
    assert dashed["id"] == everyone[0]["id"]
    pages = list(client.pages(f"/v1/mdmServers/{one['id']}/relationships/devices", "MdmServerDevicesLinkagesResponse",
                              limit=2))
    assert [d["id"] for p in pages for d in p["data"]] == world.serials[:3]


def test_a_dep_session_shows_as_the_servers_last_connection(world: World, client: AxMClient) -> None:
    server_id = api_server_id(world.default_server_uuid)
    before = client.get(f"/v1/mdmServers/{server_id}", "MdmServerResponse")["data"]["attributes"]
    assert "lastConnectedDateTime" not in before
    DEPSync(world.http, world.dep_url, world.dep_credentials)
    after = client.get(f"/v1/mdmServers/{server_id}", "MdmServerResponse")["data"]["attributes"]
    assert "lastConnectedDateTime" in after


def test_rate_limits_answer_429_with_retry_after_until_the_window_passes() -> None:
    with make_world(devices=2, business_rate_limits=RateLimits(get_per_minute=3, post_per_hour=1)) as world:
        client = AxMClient(**_client_args(world))
        for _ in range(3):
            assert _get(world, client, "/v1/mdmServers").status_code == 200
        refused = _get(world, client, "/v1/mdmServers")
        error = _error(refused, 429, "RATE_LIMIT_EXCEEDED")
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 60 and "Retry-After" in error["detail"]
        world.clock.advance(seconds=retry_after)
        assert _get(world, client, "/v1/mdmServers").status_code == 200
        # POSTs have their own hourly window
        body = {"data": {"type": "orgDeviceActivities", "attributes": {"activityType": "RELEASE_DEVICES"},
                         "relationships": {"devices": {"data": [{"type": "orgDevices", "id": world.serials[0]}]}}}}
        headers = {"Authorization": f"Bearer {client.access_token}"}
        url = f"{world.business_url}/v1/orgDeviceActivities"
        assert world.http.post(url, json=body, headers=headers).status_code == 201
        refused = world.http.post(url, json=body, headers=headers)
        _error(refused, 429, "RATE_LIMIT_EXCEEDED")
        assert 60 < int(refused.headers["Retry-After"]) <= 3600
        world.business_api.set_rate_limits(post_per_hour=0)
        assert world.http.post(url, json=body, headers=headers).status_code == 201


def _client_args(world: World) -> dict[str, Any]:
    c = world.business_credentials
    return {"token_url": c["token_url"], "api_url": c["api_url"], "client_id": c["client_id"], "key_id": c["key_id"],
            "private_key_pem": c["private_key_pem"], "http": world.http, "now": world.clock.timestamp}


def test_scripted_faults_through_sim_faults(world: World, client: AxMClient) -> None:
    script = {"party": "business", "get_v1_orgDevices_responses": [
        {"count": 1, "response": "service_unavailable"}, {"count": 1, "response": "too_many_requests"}]}
    assert world.http.post(f"{world.sim_url}/faults", json=script).status_code == 200
    unavailable = _get(world, client, "/v1/orgDevices")
    _error(unavailable, 503, "SERVICE_UNAVAILABLE")
    _error(_get(world, client, "/v1/orgDevices"), 429, "RATE_LIMIT_EXCEEDED")
    assert _get(world, client, "/v1/orgDevices").status_code == 200
    bad = world.http.post(f"{world.sim_url}/faults", json={"party": "business", "get_v1_orgDevices_responses": [
        {"count": 1, "response": "no_such_fault"}]})
    assert bad.status_code == 400


def test_the_client_surfaces_refusals(world: World, client: AxMClient) -> None:
    with pytest.raises(AxMError) as caught:
        client.get("/v1/orgDevices/NOPE", "OrgDeviceResponse")
    assert caught.value.status == 404
