"""Every DEP endpoint through an independent client on a real socket; every 200 matches Apple's schemas."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from dep_client import DEPClientError

from simulator.apple.dep.faults import DEVICE_FAULTS, FAULT_RESPONSES

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _error(call: Any, *args: Any, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(DEPClientError) as caught:
        call(*args, **kwargs)
    return caught.value.status, caught.value.body


@pytest.fixture
def fleet(live: Any) -> dict[str, Any]:
    """Six devices on our server (two iPads), one on another server, one unassigned."""
    portal = live.world.portal
    ours = live.world.server["server_uuid"]
    serials = portal.generate(6, server_uuid=ours)["serial_numbers"]
    other = portal.create_server("elsewhere")
    theirs = portal.generate(1, server_uuid=other["server_uuid"])["serial_numbers"]
    loose = portal.generate(1)["serial_numbers"]
    return {"ours": serials, "theirs": theirs, "loose": loose, "other": other}


def test_account_fields_follow_the_protocol_version(live: Any, validate) -> None:
    v1 = live.client(protocol_version=None).account()
    validate(v1, "AccountDetail")
    assert "urls" not in v1 and "org_id" not in v1
    assert v1["org_name"] == "Contoso Pharmaceuticals" and v1["server_name"] == "mdmsim"
    v3 = live.client(protocol_version=3).account()
    validate(v3, "AccountDetail")
    assert v3["org_type"] == "org" and v3["org_version"] == "v1" and len(v3["org_id_hash"]) == 64
    # Apple's paths, as Apple's replies list them: a client finds the paging limit under "/server/devices"
    urls = {u["uri"]: u for u in v3["urls"]}
    for path in ("/server/devices", "/devices/sync"):
        assert urls[path]["http_method"] == ["POST"] and urls[path]["limit"] == {"default": 1000, "maximum": 1000}
    assert urls["/profile/devices"]["http_method"] == ["DELETE", "POST", "PUT"] and "limit" not in urls["/profile/devices"]
    assert {"/session", "/account", "/devices", "/devices/disown", "/profile", "/device/activationlock",
            "/device/replacementDetails", "/os-beta-enrollment/tokens", "/account-driven-enrollment/profile"} < set(urls)


@pytest.mark.parametrize(
    ("version", "ipad_os"), [(None, None), (2, "iOS"), (6, "iOS"), (7, "iPadOS"), (10, "iPadOS")]
)
def test_device_fields_follow_the_protocol_version(
    live: Any, fleet: dict, validate, version, ipad_os
) -> None:
    page = live.client(protocol_version=version).fetch_devices(limit=10)
    validate(page, "FetchDeviceResponse")
    ipads = [d for d in page["devices"] if d["model"].startswith("iPad")]
    assert ipads
    for device in ipads:
        assert device.get("os") == ipad_os
        assert device.get("device_family") == (None if version is None else "iPad")


def test_fetch_limits(live: Any, validate) -> None:
    live.world.portal.generate(1100, server_uuid=live.world.server["server_uuid"])
    client = live.client()
    assert len(client.fetch_devices()["devices"]) == 1000  # the default the account advertises
    assert len(client.fetch_devices(limit=100)["devices"]) == 100
    big = client.fetch_devices(limit=5000)  # silently capped
    validate(big, "FetchDeviceResponse")
    assert len(big["devices"]) == 1000 and big["more_to_follow"] is True
    assert len(client.fetch_devices(limit=0)["devices"]) == 1
    for bad in ("100", 10.5, True, [1]):
        assert _error(client.fetch_devices, limit=bad) == (400, "MALFORMED_REQUEST_BODY")


def test_cursor_errors(live: Any, fleet: dict) -> None:
    client = live.client()
    cursor = client.fetch_devices(limit=2)["cursor"]
    tampered = cursor[:-3] + ("AAA" if cursor[-3:] != "AAA" else "BBB")
    for bad in (tampered, "not a cursor", "A" * 2000, "", "0123abcd"):
        if bad == "":
            assert _error(client.sync_devices, bad) == (400, "CURSOR_REQUIRED")
        else:
            assert _error(client.fetch_devices, bad) == (400, "INVALID_CURSOR"), bad
            assert _error(client.sync_devices, bad) == (400, "INVALID_CURSOR"), bad
    assert _error(client.call, "POST", "/devices/sync", {}) == (400, "CURSOR_REQUIRED")
    assert _error(client.call, "POST", "/devices/sync", {"cursor": 12}) == (400, "MALFORMED_REQUEST_BODY")
    response = client.raw("POST", "/server/devices", data=b"{not json")
    assert (response.status_code, response.text) == (400, "MALFORMED_REQUEST_BODY")
    # A sync cursor sent to fetch means "you already have everything: sync".
    sync_cursor = client.sync_devices(cursor)["cursor"]
    assert _error(client.fetch_devices, sync_cursor) == (400, "EXHAUSTED_CURSOR")


def test_device_details(live: Any, fleet: dict, validate) -> None:
    client = live.client(protocol_version=7)
    asked = fleet["ours"][:2] + fleet["theirs"] + fleet["loose"] + ["NOSUCHSERIAL"]
    reply = client.device_details(asked)
    validate(reply, "DeviceListResponse")
    statuses = {s: d["response_status"] for s, d in reply["devices"].items()}
    assert statuses == {
        fleet["ours"][0]: "SUCCESS",
        fleet["ours"][1]: "SUCCESS",
        fleet["theirs"][0]: "NOT_ACCESSIBLE",
        fleet["loose"][0]: "NOT_ACCESSIBLE",
        "NOSUCHSERIAL": "NOT_ACCESSIBLE",
    }
    mine = reply["devices"][fleet["ours"][0]]
    assert mine["profile_status"] == "empty" and mine["device_assigned_by"].startswith("admin@")
    assert _error(client.device_details, []) == (400, "DEVICE_ID_REQUIRED")
    assert _error(client.call, "POST", "/devices", {}) == (400, "DEVICE_ID_REQUIRED")
    assert _error(client.device_details, ["S"] * 1001 + ["T"]) == (400, "TOO_MANY_DEVICES")
    assert _error(client.call, "POST", "/devices", {"devices": [1, 2]}) == (400, "MALFORMED_REQUEST_BODY")


def test_disown(live: Any, fleet: dict, validate) -> None:
    client = live.client()
    cursor = list(client.fetch_pages())[-1]["cursor"]
    reply = client.disown([fleet["ours"][0], fleet["theirs"][0]])
    validate(reply, "DeviceStatusResponse")
    assert reply["devices"] == {fleet["ours"][0]: "SUCCESS", fleet["theirs"][0]: "NOT_ACCESSIBLE"}
    remaining = [d["serial_number"] for p in client.fetch_pages() for d in p["devices"]]
    assert fleet["ours"][0] not in remaining and len(remaining) == 5
    deleted = client.sync_devices(cursor)["devices"]
    assert [(d["serial_number"], d["op_type"]) for d in deleted] == [(fleet["ours"][0], "deleted")]
    assert _error(client.disown, []) == (400, "DEVICE_ID_REQUIRED")


def _certificate_b64(rsa_identity: Any) -> str:
    _, cert_path = rsa_identity("anchor")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


PROFILE = {
    "profile_name": "Contoso iPhones",
    "url": "https://mdm.contoso.example/enroll",
    "is_supervised": True,
    "is_mdm_removable": False,
    "await_device_configured": True,
    "department": "IT",
    "support_phone_number": "+1 408 555 1010",
    "support_email_address": "help@contoso.example",
    "org_magic": "contoso-magic",
    "language": "en",
    "region": "US",
    "skip_setup_items": ["AppleID", "Siri"],
}


def test_profiles_define_get_assign_clear(live: Any, fleet: dict, validate, rsa_identity) -> None:
    client = live.client(protocol_version=10)
    anchor = _certificate_b64(rsa_identity)
    defined = client.define_profile({**PROFILE, "anchor_certs": [anchor], "devices": fleet["ours"][:2]})
    validate(defined, "DefineProfileResponse")
    uuid = defined["profile_uuid"]
    assert defined["devices"] == {s: "SUCCESS" for s in fleet["ours"][:2]}
    got = client.get_profile(uuid)
    validate(got, "Profile")
    assert got["profile_uuid"] == uuid and got["is_mdm_removable"] is False and got["allow_pairing"] is True
    old = live.client(protocol_version=1).get_profile(uuid)
    assert "await_device_configured" not in old and "support_email_address" not in old

    for method in ("POST", "PUT"):
        assigned = client.assign_profile(
            uuid, [fleet["ours"][2], fleet["theirs"][0], "NOSUCH"], method=method
        )
        validate(assigned, "AssignProfileResponse")
        assert assigned["devices"] == {
            fleet["ours"][2]: "SUCCESS",
            fleet["theirs"][0]: "NOT_ACCESSIBLE",
            "NOSUCH": "NOT_ACCESSIBLE",
        }
    details = client.device_details(fleet["ours"][:3])["devices"]
    assert {d["profile_status"] for d in details.values()} == {"assigned"}
    assert {d["profile_uuid"] for d in details.values()} == {uuid}

    assert live.world.dep.mark_pushed(fleet["ours"][0])
    pushed = client.device_details([fleet["ours"][0]])["devices"][fleet["ours"][0]]
    assert pushed["profile_status"] == "pushed" and pushed["profile_push_time"] == "2026-03-01T09:00:00Z"
    config = live.world.dep.cloud_configuration_for(fleet["ours"][0])
    assert config["profile"]["url"] == PROFILE["url"] and config["org_name"] == "Contoso Pharmaceuticals"
    assert config["server_uuid"] == live.world.server["server_uuid"]
    assert live.world.dep.cloud_configuration_for(fleet["ours"][5]) is None

    cleared = client.remove_profile([fleet["ours"][0], fleet["theirs"][0]], uuid)
    validate(cleared, "ClearProfileResponse")
    assert cleared["devices"] == {fleet["ours"][0]: "SUCCESS", fleet["theirs"][0]: "NOT_ACCESSIBLE"}
    assert (
        client.device_details([fleet["ours"][0]])["devices"][fleet["ours"][0]]["profile_status"] == "removed"
    )
    assert live.world.dep.cloud_configuration_for(fleet["ours"][0]) is None

    assert _error(client.get_profile, "") == (400, "PROFILE_UUID_REQUIRED")
    assert _error(client.get_profile, "NOPE") == (400, "NOT_FOUND")
    assert _error(client.assign_profile, "NOPE", fleet["ours"][:1]) == (404, "NOT_FOUND")
    assert _error(client.assign_profile, "", fleet["ours"][:1]) == (400, "PROFILE_UUID_REQUIRED")
    assert _error(client.assign_profile, uuid, []) == (400, "DEVICE_ID_REQUIRED")
    assert _error(client.assign_profile, uuid, [f"S{i}" for i in range(1001)]) == (400, "TOO_MANY_DEVICES")
    assert _error(client.remove_profile, []) == (400, "DEVICE_ID_REQUIRED")
    # Another server cannot see this profile.
    other = live.client(fleet["other"])
    assert _error(other.get_profile, uuid) == (400, "NOT_FOUND")


def test_profile_assignment_shows_in_sync(live: Any, fleet: dict) -> None:
    client = live.client()
    cursor = list(client.fetch_pages())[-1]["cursor"]
    uuid = client.define_profile({"profile_name": "p", "url": "https://x.example/e"})["profile_uuid"]
    client.assign_profile(uuid, fleet["ours"][:2])
    changes = client.sync_devices(cursor)["devices"]
    assert [(d["op_type"], d["profile_status"]) for d in changes] == [("modified", "assigned")] * 2


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"profile_name": None}, "CONFIG_NAME_REQUIRED"),
        ({"profile_name": "x" * 126}, "CONFIG_NAME_INVALID"),
        ({"profile_name": 5}, "CONFIG_NAME_INVALID"),
        ({"url": None}, "CONFIG_URL_REQUIRED"),
        ({"url": "not a url"}, "CONFIG_URL_INVALID"),
        ({"url": "https://e.example/" + "x" * 2000}, "CONFIG_URL_INVALID"),
        ({"configuration_web_url": "ftp://nope"}, "CONFIG_URL_INVALID"),
        ({"is_supervised": False, "is_mdm_removable": False}, "FLAGS_INVALID"),
        ({"allow_pairing": "yes"}, "FLAGS_INVALID"),
        ({"support_phone_number": "1" * 51}, "SUPPORT_PHONE_INVALID"),
        ({"support_email_address": "nobody"}, "SUPPORT_EMAIL_INVALID"),
        ({"department": "d" * 126}, "DEPARTMENT_INVALID"),
        ({"org_magic": "m" * 257}, "MAGIC_INVALID"),
        ({"language": "english"}, "LOCALE_INVALID"),
        ({"region": "USA"}, "LOCALE_INVALID"),
        ({"anchor_certs": ["not base64!"]}, "ANCHOR_CERTS_INVALID"),
        (
            {"supervising_host_certs": [base64.b64encode(b"not DER").decode()]},
            "SUPERVISING_HOST_CERTS_INVALID",
        ),
        ({"skip_setup_items": "AppleID"}, "MALFORMED_REQUEST_BODY"),
        ({"devices": "SERIAL"}, "MALFORMED_REQUEST_BODY"),
    ],
)
def test_profile_validation_codes(live: Any, change: dict, code: str) -> None:
    profile = {k: v for k, v in {**PROFILE, **change}.items() if v is not None}
    assert _error(live.client().define_profile, profile) == (400, code)


def test_sample_profile_is_accepted_for_its_devices(live: Any, validate) -> None:
    """fixtures/depsim/profile.json: every key a DEP profile may carry, for two devices of ours and one unknown."""
    example = json.loads((FIXTURES / "depsim" / "profile.json").read_text())
    live.world.portal.add_serials(example["devices"], server_uuid=live.world.server["server_uuid"])
    example["devices"] = [*example["devices"], "C7QX0000NONE"]
    reply = live.client().define_profile(example)
    validate(reply, "DefineProfileResponse")
    assert reply["devices"] == {"C7QX0000FIX1": "SUCCESS", "C7QX0000FIX2": "SUCCESS", "C7QX0000NONE": "NOT_ACCESSIBLE"}
    stored = live.client().get_profile(reply["profile_uuid"])
    assert {k: stored[k] for k in ("department", "skip_setup_items", "support_phone_number")} == {
        k: example[k] for k in ("department", "skip_setup_items", "support_phone_number")
    }


def test_activation_lock(live: Any, fleet: dict, validate) -> None:
    client = live.client()
    first = client.activation_lock(fleet["ours"][0], escrow_key="ab" * 32, lost_message="Call IT")
    validate(first, "ActivationLockStatusResponse")
    assert first == {"serial_number": fleet["ours"][0], "response_status": "SUCCESS"}
    assert client.activation_lock(fleet["ours"][0])["response_status"] == "DEVICE_ALREADY_LOCKED"
    assert client.activation_lock(fleet["theirs"][0])["response_status"] == "NOT_ACCESSIBLE"
    for bad in ({}, {"device": 5}, {"device": "X", "escrow_key": "short"}):
        assert _error(client.call, "POST", "/device/activationlock", bad) == (400, "MALFORMED_REQUEST_BODY")


@pytest.mark.parametrize(("version", "expected"), [(7, "FAILED"), (9, "THROTTLED"), (10, "THROTTLED")])
def test_scripted_per_device_faults(live: Any, fleet: dict, validate, version: int, expected: str) -> None:
    client = live.client(protocol_version=version)
    uuid = client.define_profile({"profile_name": "p", "url": "https://x.example/e"})["profile_uuid"]
    live.world.faults["post_profile_devices"] = "throttled"
    reply = client.assign_profile(uuid, fleet["ours"][:2])
    validate(reply, "AssignProfileResponse")
    assert set(reply["devices"].values()) == {expected}
    assert ("retry_after_seconds" in reply) is (version >= 10)
    live.world.faults["post_devices"] = "not_accessible"
    details = client.device_details(fleet["ours"][:1])["devices"]
    assert details[fleet["ours"][0]]["response_status"] == "NOT_ACCESSIBLE"
    live.world.faults["post_devices_disown"] = "failed"
    assert client.disown(fleet["ours"][:1])["devices"] == {fleet["ours"][0]: "FAILED"}
    assert fleet["ours"][0] in live.world.portal.device(fleet["ours"][0])["serial_number"]  # not disowned


def test_fault_table_covers_every_depsim_response_name() -> None:
    config = json.loads((FIXTURES / "depsim" / "every-failure.json").read_text())
    names = {entry["response"] for queue in config.values() for entry in queue}
    assert names <= set(FAULT_RESPONSES) | set(DEVICE_FAULTS)
    assert FAULT_RESPONSES["too_many_requests"] == (429, "TOO_MANY_REQUESTS")
    assert FAULT_RESPONSES["invalid_method"][0] == 405


def test_bodies_are_bounded_and_content_types_lenient(live: Any, fleet: dict) -> None:
    client = live.client()
    client.authenticate()
    huge = client.raw("POST", "/devices", data=b'{"devices": ["' + b"A" * 1_100_000 + b'"]}')
    assert huge.status_code == 413
    for content_type in ("application/json", "text/plain", "application/json;charset=UTF8", None):
        response = client.raw("POST", "/server/devices", {"limit": 1}, headers={"Content-Type": content_type})
        assert response.status_code == 200, content_type
    assert client.raw("GET", "/nowhere").status_code == 404
    assert client.raw("GET", "/server/devices").status_code == 405
