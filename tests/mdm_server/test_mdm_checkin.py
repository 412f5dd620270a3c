"""Check-in and command reports: sample device payloads, message authenticity, NanoMDM semantics."""

from __future__ import annotations

import base64
import plistlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from mdm_world import Device, World, issue, make_ca, mdm_signature

from mdm.protocol.plist import loads

#: The project's sample messages: checkin/<MessageType>/ and results/<RequestType>/ (README.md there).
PAYLOADS = Path(__file__).resolve().parents[2] / "fixtures" / "device-payloads"
MAC_UDID = "5B0E7C2D-9A41-5F83-B6D2-0C4E8A1F37D9"
MAC_USER_ID = "8C1E4A7B-3F26-4D90-A5E1-72B9C0D4F318"
#: The server's answer to check-ins that are not a plain 200: NanoMDM declines UserAuthenticate with 410
#: (no user channel for network users) and this server does not serve GetToken.
REPLY_STATUS = {"UserAuthenticate": 410, "GetToken": 400}


def sample_payloads() -> dict[str, list[tuple[Path, dict[str, Any]]]]:
    """Every sample check-in / result plist, grouped by the UDID that sent it."""
    by_udid: dict[str, list[tuple[Path, dict[str, Any]]]] = defaultdict(list)
    files = sorted(PAYLOADS.glob("checkin/*/*.plist")) + sorted(PAYLOADS.glob("results/*/*.plist"))
    for path in files:
        d = loads(path.read_bytes())
        by_udid[d["UDID"]].append((path, d))
    return by_udid


def _order(item: tuple[Path, dict[str, Any]]) -> int:
    d = item[1]
    order = {"Authenticate": 0, "TokenUpdate": 1, "SetBootstrapToken": 2, "GetBootstrapToken": 3, "CheckOut": 9}
    return order.get(d.get("MessageType", ""), 5)


def test_every_sample_payload_is_accepted_and_stored(world: World, client: Any) -> None:
    groups = sample_payloads()
    assert sum(len(v) for v in groups.values()) == 67  # 20 check-ins + 47 results
    assert len(groups) == 4  # iPhone, iPad, Apple silicon Mac, Intel iMac
    escrowed: dict[str, bytes] = {}
    for udid, items in groups.items():
        cert, key = world.mdm.issue_identity(udid)
        device = Device(client, udid, cert, key)
        if not any(d.get("MessageType") == "Authenticate" for _, d in items):
            assert device.authenticate(world.mdm.topic).status_code == 200
        for path, d in sorted(items, key=_order):
            body = path.read_bytes()
            endpoint = "/mdm/checkin" if "MessageType" in d else "/mdm/connect"
            response = device.put(endpoint, body)
            text = response.get_data(as_text=True)
            assert response.status_code == REPLY_STATUS.get(d.get("MessageType", ""), 200), (path, text)
            message_type = d.get("MessageType")
            if d.get("Status") == "Idle":
                assert response.get_data() == b"", path  # nothing queued for these devices
            elif "Status" in d:
                eid = f"{udid}:{d['UserID']}" if "UserID" in d else udid
                status = world.mdm.command_status(d["CommandUUID"])
                entry = next(e for e in status["devices"] if e["enrollment_id"] == eid)
                assert entry["result"]["status"] == d["Status"], path
                expected_chain = d.get("ErrorChain", [])
                assert [e.get("ErrorCode") for e in entry["result"]["error_chain"]] == [
                    e.get("ErrorCode") for e in expected_chain
                ], path
            elif message_type == "TokenUpdate" and "UserID" not in d:
                state = world.mdm.device(udid)
                assert state["enrolled"] is True and state["push_token_present"] is True
                assert state["awaiting_configuration"] is d.get("AwaitingConfiguration", False)
            elif message_type == "SetBootstrapToken":
                escrowed[udid] = d["BootstrapToken"]
                assert world.mdm.bootstrap_token(udid) == d["BootstrapToken"]
            elif message_type == "GetBootstrapToken":
                assert plistlib.loads(response.get_data()) == {"BootstrapToken": escrowed[udid]}
            elif message_type == "DeclarativeManagement":
                if d["Endpoint"] == "tokens":
                    assert "DeclarationsToken" in response.get_json()["SyncTokens"]
                elif d["Endpoint"] == "declaration-items":
                    assert set(response.get_json()["Declarations"]) >= {"Activations", "Configurations"}
                else:
                    assert response.get_data() == b""
            elif message_type == "UserAuthenticate":
                assert response.get_data() == b""
            elif message_type == "GetToken":
                assert "not supported" in text
        if any(d.get("MessageType") == "CheckOut" for _, d in items):
            assert world.mdm.device(udid)["enrollment_state"] == "checked_out"
        else:
            assert world.mdm.device(udid)["enrollment_state"] == "enrolled"
    assert escrowed.keys() == {MAC_UDID}
    user = world.mdm.device(MAC_UDID)["user_channels"]
    assert user == [{"user_id": MAC_USER_ID, "short_name": "alindqvist", "state": "enrolled"}]


def test_not_now_and_error_replies_update_the_queue(world: World, make_device: Any, api_enqueue: Any) -> None:
    device = make_device()
    not_now = api_enqueue([device.udid], {"RequestType": "ProfileList"})
    failing = api_enqueue([device.udid], {"RequestType": "AvailableOSUpdates"})
    assert plistlib.loads(device.connect().get_data())["CommandUUID"] == not_now
    nxt = device.connect("NotNow", not_now)
    assert plistlib.loads(nxt.get_data())["CommandUUID"] == failing
    assert world.mdm.command_status(not_now)["devices"][0]["status"] == "NotNow"
    chain = [{"ErrorCode": 12021, "ErrorDomain": "MCMDMErrorDomain", "LocalizedDescription": "nope"}]
    retry = device.connect("Error", failing, ErrorChain=chain)
    result = world.mdm.command_status(failing)["devices"][0]
    assert result["status"] == "Error" and result["result"]["error_chain"] == chain
    # the NotNow'd command comes back once the device answers something other than NotNow
    assert plistlib.loads(retry.get_data())["CommandUUID"] == not_now
    entry = world.mdm.command_status(not_now)["devices"][0]
    assert entry["status"] == "sent" and entry["deliveries"] == 2 and entry["reports"] == 1


@pytest.fixture
def enrolled(world: World, make_device: Any) -> Device:
    return make_device()


def refused(world: World, response: Any, status: int, words: str, before: list[str]) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert words in response.get_data(as_text=True)
    assert world.dump() == before


def test_tampered_body_is_refused(world: World, enrolled: Device) -> None:
    before = world.dump()
    body = plistlib.dumps({"UDID": enrolled.udid, "Status": "Idle"})
    signature = mdm_signature(body, enrolled.cert, enrolled.key)
    tampered = body.replace(b"Idle", b"Idl\x65 ")
    refused(world, enrolled.put("/mdm/connect", tampered, signature=signature), 403, "digest", before)


def test_missing_or_unreadable_signature_is_403_never_401(world: World, enrolled: Device) -> None:
    before = world.dump()
    refused(
        world,
        enrolled.put("/mdm/connect", {"UDID": enrolled.udid, "Status": "Idle"}, signature=""),
        403,
        "missing Mdm-Signature",
        before,
    )
    refused(
        world,
        enrolled.put("/mdm/connect", {"UDID": enrolled.udid, "Status": "Idle"}, signature="!!"),
        403,
        "not base64",
        before,
    )
    refused(
        world,
        enrolled.put("/mdm/connect", {"UDID": enrolled.udid, "Status": "Idle"}, signature="AAAA"),
        403,
        "Mdm-Signature",
        before,
    )


def test_wrong_identity_is_refused(world: World, enrolled: Device) -> None:
    before = world.dump()
    rogue = issue(make_ca("Rogue CA"), enrolled.udid)
    refused(
        world,
        enrolled.checkin({"MessageType": "Authenticate", "Topic": "t"}, sign_with=rogue),
        403,
        "does not chain",
        before,
    )


def test_identity_of_another_udid_is_refused(world: World, enrolled: Device, make_device: Any) -> None:
    other = make_device()
    before = world.dump()
    response = enrolled.put("/mdm/connect", {"UDID": other.udid, "Status": "Idle"})
    refused(world, response, 403, "belongs to", before)


def test_expired_identity_is_refused(world: World, enrolled: Device) -> None:
    world.clock.set(enrolled.cert.not_valid_after_utc)
    world.clock.advance(seconds=1)
    before = world.dump()
    refused(world, enrolled.connect(), 403, "expired", before)


def test_garbage_plist_is_400(world: World, enrolled: Device) -> None:
    before = world.dump()
    refused(world, enrolled.put("/mdm/checkin", b"<plist><dict><key>oops"), 400, "bad check-in", before)
    refused(world, enrolled.put("/mdm/connect", b"\x00\x01binary junk"), 400, "bad command report", before)
    refused(world, enrolled.checkin({"MessageType": "Frobnicate"}), 400, "unknown MessageType", before)
    refused(
        world,
        enrolled.put("/mdm/connect", {"UDID": enrolled.udid, "Status": "Sleeping"}),
        400,
        "Status",
        before,
    )


def test_binary_plist_is_accepted(world: World, enrolled: Device) -> None:
    response = enrolled.checkin(
        {"MessageType": "TokenUpdate", "Topic": world.mdm.topic, "Token": b"\x01" * 32, "PushMagic": "B"},
        binary=True,
    )
    assert response.status_code == 200
    assert (
        enrolled.put("/mdm/connect", {"UDID": enrolled.udid, "Status": "Idle"}, binary=True).status_code
        == 200
    )


def test_ten_megabyte_body_is_413(world: World, enrolled: Device) -> None:
    before = world.dump()
    body = b"<plist>" + b" " * (10 * 1024 * 1024) + b"</plist>"
    response = enrolled.client.put("/mdm/checkin", data=body, headers={"Mdm-Signature": "AAAA"})
    refused(world, response, 413, "too large", before)


def test_embedded_signature_is_accepted(world: World, enrolled: Device) -> None:
    body = plistlib.dumps({"UDID": enrolled.udid, "Status": "Idle"})
    signature = mdm_signature(body, enrolled.cert, enrolled.key, detached=False)
    assert enrolled.put("/mdm/connect", body, signature=signature).status_code == 200


def test_authenticate_resets_but_keeps_the_queue(world: World, enrolled: Device, api_enqueue: Any) -> None:
    command = api_enqueue([enrolled.udid], {"RequestType": "SecurityInfo"})
    assert enrolled.authenticate(world.mdm.topic).status_code == 200
    state = world.mdm.device(enrolled.udid)
    assert state["enrollment_state"] == "authenticated" and not state["enrolled"]
    assert state["push_token_present"] is False
    enrolled.token_update(world.mdm.topic, awaiting=True)
    assert world.mdm.device(enrolled.udid)["awaiting_configuration"] is True
    assert plistlib.loads(enrolled.connect().get_data())["CommandUUID"] == command


def test_checkout_user_authenticate_bootstrap_declarative(world: World, enrolled: Device) -> None:
    response = enrolled.checkin({"MessageType": "UserAuthenticate", "UserID": "U1", "DigestResponse": ""})
    assert response.status_code == 410 and response.get_data() == b""
    assert enrolled.checkin({"MessageType": "GetBootstrapToken"}).get_data() == plistlib.dumps({})
    assert (
        enrolled.checkin({"MessageType": "SetBootstrapToken", "BootstrapToken": b"secret"}).status_code == 200
    )
    got = plistlib.loads(enrolled.checkin({"MessageType": "GetBootstrapToken"}).get_data())
    assert got == {"BootstrapToken": b"secret"}
    dm = enrolled.checkin({"MessageType": "DeclarativeManagement", "Endpoint": "tokens"})
    assert dm.status_code == 200 and "DeclarationsToken" in dm.get_json()["SyncTokens"]
    assert enrolled.checkin({"MessageType": "CheckOut", "Topic": world.mdm.topic}).status_code == 200
    state = world.mdm.device(enrolled.udid)
    assert state["enrollment_state"] == "checked_out" and state["enrolled"] is False


def test_unknown_enrollment_is_403(world: World, make_device: Any) -> None:
    device = make_device(enrolled=False)
    before = world.dump()
    refused(world, device.connect(), 403, "send Authenticate first", before)


def test_webhook_events_follow_nanomdm_shape(world: World, enrolled: Device, api_enqueue: Any) -> None:
    command = api_enqueue([enrolled.udid], {"RequestType": "SecurityInfo"})
    enrolled.connect()
    enrolled.connect("Acknowledged", command, SecurityInfo={})
    events = world.webhook.config["events"]
    topics = [e["topic"] for e in events]
    assert topics[:2] == ["mdm.Authenticate", "mdm.TokenUpdate"] and topics.count("mdm.Connect") == 2
    auth = events[0]
    assert auth["checkin_event"]["udid"] == enrolled.udid and auth["event_id"] and auth["created_at"]
    assert loads(base64.b64decode(auth["checkin_event"]["raw_payload"]))["MessageType"] == "Authenticate"
    ack = events[-1]["acknowledge_event"]
    assert ack["status"] == "Acknowledged" and ack["command_uuid"] == command and ack["udid"] == enrolled.udid


def test_fast_signature_path_agrees_with_cms_verify(world: World, enrolled: Device) -> None:
    from mdm.server.signature import fast_verify

    ca, now = world.mdm.ca_certificate(), world.clock.now()
    body = plistlib.dumps({"UDID": enrolled.udid, "Status": "Idle"})
    der = base64.b64decode(mdm_signature(body, enrolled.cert, enrolled.key))
    memo: dict[bytes, bool] = {}
    assert fast_verify(der, body, ca, now, memo) == enrolled.cert
    assert fast_verify(der, body, ca, now, memo) == enrolled.cert and len(memo) == 1
    assert fast_verify(der, body + b" ", ca, now, memo) is None
    assert fast_verify(der, body, make_ca("other")[0], now) is None
    assert fast_verify(der, body, ca, enrolled.cert.not_valid_after_utc.replace(year=2099)) is None
    assert fast_verify(b"\x30\x00", body, ca, now) is None
