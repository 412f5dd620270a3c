"""The endpoints, fields and token renewals of Apple's DEP service that clients written to Apple's pages
meet beyond the basics: beta enrollment tokens, the account-driven enrollment profile, replacement
details, the keys of protocol versions 8 and 10, and a server token downloaded again.

Everything goes over a real socket through the independent test client (tests/apple/dep_client.py);
the portal operations that make what DEP reports are the portal's JSON API.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from dep_client import DEPClientError

V8_KEYS = {"mdm_migration_deadline"}
V10_KEYS = {"wifi_mac_address", "bluetooth_mac_address", "imei", "is_replacement_device"}


def _error(call: Any, *args: Any, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(DEPClientError) as caught:
        call(*args, **kwargs)
    return caught.value.status, caught.value.body


def _ok(response: Any) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.fixture
def ours(live: Any) -> list[str]:
    """Four devices on our server: three iPhones (with IMEIs) and an iPad (the generator's cycle)."""
    return live.world.portal.generate(4, server_uuid=live.world.server["server_uuid"])["serial_numbers"]


# -- beta enrollment tokens ----------------------------------------------------------------------------


def test_beta_enrollment_tokens_list_the_portals_programs_until_seed_for_it_is_turned_off(live: Any, validate) -> None:
    client = live.client(protocol_version=10)
    empty = client.beta_enrollment_tokens()
    validate(empty, "GetSeedBuildTokenResponse")
    assert empty["betaEnrollmentTokens"] == []
    made = _ok(live.portal("POST", "/api/beta-programs", json={"title": "iOS 26 Beta", "os": "iOS"}))
    listed = client.beta_enrollment_tokens()
    validate(listed, "GetSeedBuildTokenResponse")
    assert listed["betaEnrollmentTokens"] == [made] == listed["seedBuildTokens"]
    assert _ok(live.portal("GET", "/api/beta-programs")) == [made]
    assert live.portal("POST", "/api/beta-programs", json={"title": "x", "os": "Windows"}).status_code == 400

    _ok(live.portal("PATCH", "/api/organization", json={"apple_seed_for_it": False}))
    assert _error(client.beta_enrollment_tokens) == (403, "APPLE_SEED_FOR_IT_TURNED_OFF")
    _ok(live.portal("PATCH", "/api/organization", json={"apple_seed_for_it": True}))
    _ok(live.portal("DELETE", f"/api/beta-programs/{made['token']}"))
    assert client.beta_enrollment_tokens()["betaEnrollmentTokens"] == []
    assert live.portal("PATCH", "/api/organization", json={"apple_seed_for_it": "no"}).status_code == 400


# -- account-driven enrollment service discovery -----------------------------------------------------------


def test_account_driven_enrollment_profile_is_set_read_and_removed_with_apples_errors(live: Any, validate) -> None:
    client = live.client(protocol_version=10)
    assert _error(client.discovery_profile) == (404, "NOT_FOUND")
    url = "https://mdm.contoso.example/.well-known/com.apple.remotemanagement"
    assert client.set_discovery_profile(url) == {}
    read = client.discovery_profile()
    validate(read, "GetAccountDrivenEnrollmentProfileResponse")
    assert read["mdm_service_discovery_url"] == url
    assert read["last_updated_timestamp"] == live.world.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")

    for body, code in (
        ({}, "MDM_SERVICE_DISCOVERY_URL_REQUIRED"),
        ({"mdm_service_discovery_url": ""}, "MDM_SERVICE_DISCOVERY_URL_REQUIRED"),
        ({"mdm_service_discovery_url": "http://mdm.contoso.example/discovery"}, "MDM_SERVICE_DISCOVERY_URL_NOT_VALID"),
        ({"mdm_service_discovery_url": "not a url"}, "MDM_SERVICE_DISCOVERY_URL_NOT_VALID"),
        ({"mdm_service_discovery_url": 42}, "MDM_SERVICE_DISCOVERY_URL_NOT_VALID"),
        ({"mdm_service_discovery_url": "https://" + "a" * 2000}, "MDM_SERVICE_DISCOVERY_URL_NOT_VALID"),
    ):
        assert _error(client.call, "POST", "/account-driven-enrollment/profile", body) == (400, code), body
    assert _error(client.call, "POST", "/account-driven-enrollment/profile", [1]) == (400, "MALFORMED_REQUEST_BODY")
    assert client.discovery_profile()["mdm_service_discovery_url"] == url  # refused requests changed nothing

    # another server of the organisation has its own (none yet)
    other = live.world.portal.create_server("elsewhere")
    assert _error(live.client(other, protocol_version=10).discovery_profile) == (404, "NOT_FOUND")

    _ok(live.portal("PATCH", "/api/organization", json={"account_driven_enrollment": False}))
    for call in (client.discovery_profile, client.delete_discovery_profile, lambda: client.set_discovery_profile(url)):
        assert _error(call) == (400, "ORG_NOT_SUPPORTED")
    _ok(live.portal("PATCH", "/api/organization", json={"account_driven_enrollment": True}))
    assert client.delete_discovery_profile() == {}
    assert client.delete_discovery_profile() == {}  # Apple lists no error for removing what is not there
    assert _error(client.discovery_profile) == (404, "NOT_FOUND")


# -- replacements, migration deadlines and the fields of each protocol version ---------------------------


def test_a_replaced_device_is_reported_as_apple_documents(live: Any, ours: list[str], validate) -> None:
    client = live.client(protocol_version=10)
    cursor = list(client.fetch_pages())[-1]["cursor"]
    original = ours[0]
    replaced = _ok(live.portal("POST", f"/api/devices/{original}/replace", json={"replacement_date": "2026-02-27"}))
    replacement = replaced["replacement"]["serial_number"]
    assert replaced["replacement"]["server_uuid"] == live.world.server["server_uuid"]  # on the original's server

    details = client.replacement_details(replacement)
    validate(details, "GetReplacementDetailsResponse")
    assert details == {"serial_number": replacement, "original_device_serial_number": original,
                       "replacement_date": "2026-02-27"}  # fmt: skip
    assert _error(client.call, "GET", "/device/replacementDetails") == (400, "DEVICE_ID_REQUIRED")
    assert _error(client.call, "GET", "/device/replacementDetails", params={"device": ""}) == (400, "DEVICE_ID_REQUIRED")
    for not_one in (ours[1], original, "NOSUCHSERIAL"):  # no replacement, gone, unknown
        assert _error(client.replacement_details, not_one) == (404, "DEVICE_NOT_FOUND")
    other = live.world.portal.create_server("elsewhere")
    assert _error(live.client(other, protocol_version=10).replacement_details, replacement) == (404, "DEVICE_NOT_FOUND")

    # sync: the original leaves "released by replacement", the replacement arrives marked as one
    live.world.portal.release([ours[1]])  # an ordinary departure, for contrast
    page = client.sync_devices(cursor)
    validate(page, "FetchDeviceResponse")
    by_serial = {d["serial_number"]: d for d in page["devices"]}
    assert by_serial[original]["op_type"] == "deleted" and by_serial[original]["released_by_replacement"] is True
    assert by_serial[ours[1]]["op_type"] == "deleted" and by_serial[ours[1]]["released_by_replacement"] is False
    assert by_serial[replacement]["op_type"] == "added" and by_serial[replacement]["is_replacement_device"] is True
    assert "released_by_replacement" not in by_serial[replacement]  # only with deleted
    # older clients hear the same departures without the version 10 keys
    older = live.client(protocol_version=9).sync_devices(cursor)["devices"]
    assert not any({"released_by_replacement", "is_replacement_device"} & set(d) for d in older)
    # a device details call says the same
    assert client.device_details([replacement])["devices"][replacement]["is_replacement_device"] is True

    assert live.portal("POST", f"/api/devices/{replacement}/replace", json={"replacement_date": "27.02.2026"}).status_code == 400
    assert live.portal("POST", "/api/devices/NOSUCHSERIAL/replace").status_code == 404
    taken = live.portal("POST", f"/api/devices/{replacement}/replace", json={"replacement": {"serial_number": ours[2]}})
    assert taken.status_code == 400 and ours[2] in taken.json()["error"]


@pytest.mark.parametrize("version", [None, 7, 8, 9, 10])
def test_device_keys_follow_the_protocol_version(live: Any, ours: list[str], validate, version: int | None) -> None:
    deadline = "2026-09-30T12:00:00Z"
    _ok(live.portal("POST", "/api/devices/migration-deadline",
                    json={"serial_numbers": ours[:1], "mdm_migration_deadline": deadline}))  # fmt: skip
    client = live.client(protocol_version=version)
    page = client.fetch_devices(limit=10)
    validate(page, "FetchDeviceResponse")
    details = client.device_details(ours)["devices"]
    validate({"devices": details}, "DeviceListResponse")
    v = version or 1
    for device in [*page["devices"], *details.values()]:
        keys = set(device)
        assert bool(keys & V10_KEYS) is (v >= 10), (version, keys)
        if device["serial_number"] == ours[0]:
            assert (device.get("mdm_migration_deadline") == deadline) is (v >= 8)
        else:
            assert "mdm_migration_deadline" not in keys
    if v >= 10:
        iphone = next(d for d in details.values() if d["model"].startswith("iPhone"))
        ipad = next(d for d in details.values() if d["model"].startswith("iPad"))
        assert len(iphone["imei"]) == 1 and len(iphone["imei"][0]) == 15 and iphone["is_replacement_device"] is False
        assert "imei" not in ipad and "eid" not in ipad  # a Wi-Fi iPad has no modem
        assert iphone["bluetooth_mac_address"] != iphone["wifi_mac_address"]


def test_migration_deadline_comes_with_an_assignment_and_is_cleared_by_leaving(live: Any, ours: list[str]) -> None:
    other = live.world.portal.create_server("next")
    deadline = "2026-12-31T23:59:59Z"
    _ok(live.portal("POST", "/api/assignments", json={"server_uuid": other["server_uuid"], "serial_numbers": ours[:2],
                                                      "mdm_migration_deadline": deadline}))  # fmt: skip
    moved = live.client(other, protocol_version=8).device_details(ours[:2])["devices"]
    assert {d["mdm_migration_deadline"] for d in moved.values()} == {deadline}
    cleared = _ok(live.portal("POST", "/api/devices/migration-deadline",
                              json={"serial_numbers": ours[:1], "mdm_migration_deadline": None}))  # fmt: skip
    assert cleared["updated"] == 1
    assert "mdm_migration_deadline" not in live.client(other, protocol_version=8).device_details(ours[:1])["devices"][ours[0]]
    live.world.portal.unassign(ours[1:2])
    assert live.world.portal.device(ours[1])["mdm_migration_deadline"] is None
    for bad in ("tomorrow", "2026-12-31", 5):
        response = live.portal("POST", "/api/devices/migration-deadline",
                               json={"serial_numbers": ours[2:3], "mdm_migration_deadline": bad})  # fmt: skip
        assert response.status_code == 400, bad


def test_profile_push_time_appears_once_the_device_fetched_its_profile(live: Any, ours: list[str]) -> None:
    client = live.client(protocol_version=10)
    profile = {"profile_name": "p", "url": "https://mdm.contoso.example/enroll", "devices": ours[:1]}
    uuid = client.define_profile(profile)["profile_uuid"]
    before = client.device_details(ours[:1])["devices"][ours[0]]
    assert before["profile_status"] == "assigned" and "profile_push_time" not in before
    assert live.world.dep.mark_pushed(ours[0])  # what activation does when the device asks for its cloud configuration
    after = client.device_details(ours[:1])["devices"][ours[0]]
    assert after["profile_status"] == "pushed" and after["profile_uuid"] == uuid
    assert after["profile_push_time"] == live.world.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    _ok(live.portal("PATCH", f"/api/devices/{ours[1]}", json={"asset_tag": "CONTOSO-0042"}))
    assert client.device_details(ours[1:2])["devices"][ours[1]]["asset_tag"] == "CONTOSO-0042"


# -- server tokens renewed as Apple Business Manager renews them --------------------------------------------


def test_a_new_token_replaces_the_active_one(live: Any, rsa_identity: Any) -> None:
    server_uuid = live.world.server["server_uuid"]
    old = live.world.token()
    old_client = live.client(protocol_version=7)
    old_client.account()  # a session opened with the old token

    live.world.clock.advance(seconds=30)  # the old session is still young: only the renewal can end it
    renewed = _ok(live.portal("POST", f"/api/servers/{server_uuid}/token"))
    assert renewed["consumer_key"] == old["consumer_key"]  # it names the MDM server, not one token
    assert renewed["access_token"] != old["access_token"] and renewed["access_secret"] != old["access_secret"]
    expiry = datetime.fromisoformat(renewed["access_token_expiry"].replace("Z", "+00:00"))
    assert expiry == live.world.clock.now().replace(microsecond=0) + timedelta(days=365)
    assert _ok(live.portal("GET", f"/api/servers/{server_uuid}/token")) == renewed  # downloading it again: the same

    # the previous token opens no session, and the session it opened has ended
    assert old_client.session_request().status_code == 401
    assert old_client.raw("GET", "/account").status_code == 401
    new_client = live.client(protocol_version=7)
    assert new_client.account()["server_uuid"] == server_uuid

    # the .p7m way: POST makes a new token enveloped to the uploaded certificate, GET downloads the current one
    assert live.portal("POST", f"/api/servers/{server_uuid}/token.p7m").status_code == 400  # no certificate yet
    _, cert = rsa_identity("vendor")
    _ok(live.portal("POST", f"/api/servers/{server_uuid}/public-key", data=cert.read_bytes()))
    p7m = live.portal("POST", f"/api/servers/{server_uuid}/token.p7m")
    assert p7m.status_code == 200 and p7m.headers["Content-Type"].startswith("application/pkcs7-mime")
    assert live.world.token()["access_token"] != renewed["access_token"]
    assert new_client.session_request().status_code == 401
    assert live.portal("POST", "/api/servers/NOSUCHSERVER/token").status_code == 404


def test_the_account_lists_exactly_the_endpoints_the_service_answers(apple: Any) -> None:
    """``GET /account``'s urls and the HTTP layer's routes are one list: no endpoint served unlisted, none
    listed that answers 404."""
    from simulator.apple.dep.service import ACCOUNT_URLS

    routes: dict[str, set[str]] = {}
    for rule in apple.dep_app().url_map.iter_rules():
        if rule.endpoint != "static":
            routes.setdefault(rule.rule, set()).update((rule.methods or set()) - {"HEAD", "OPTIONS"})
    assert {path: set(methods) for path, methods, _ in ACCOUNT_URLS} == routes
