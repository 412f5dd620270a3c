from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdm.protocol import checkin
from mdm.protocol.plist import PlistError, dumps, loads

PAYLOADS = Path(__file__).resolve().parents[2] / "fixtures" / "device-payloads"
#: fixtures/device-payloads/checkin/<MessageType>/<device>-<case>.plist, written by make_payloads.py there.
SAMPLES = sorted((PAYLOADS / "checkin").glob("*/*.plist"))


def test_found_the_sample_payloads():
    assert len(SAMPLES) >= 20
    # at least one sample of every message type the parser knows, and no folder it does not
    assert {p.parent.name for p in SAMPLES} == set(checkin.MESSAGE_TYPES)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_checkin_payloads_accepted(path):
    msg = checkin.parse_checkin(path.read_bytes())
    assert msg.message_type == path.parent.name
    assert type(msg) is checkin.MESSAGE_TYPES[path.parent.name]
    assert msg.udid
    assert msg.raw["MessageType"] == msg.message_type
    assert checkin.parse_checkin(msg.to_plist()) == msg


def test_token_update_fields():
    msg = checkin.parse_checkin((PAYLOADS / "checkin/TokenUpdate/iphone-ios17-device-awaiting-configuration.plist").read_bytes())
    assert isinstance(msg, checkin.TokenUpdate)
    assert msg.token_hex == msg.token.hex() and len(msg.token) == 32
    assert msg.push_magic == "AF5AF2C4-8F33-4190-A807-2C9EE8587B7C"
    assert msg.unlock_token and msg.unlock_token[:4] == b"DATA" and msg.awaiting_configuration is True
    assert msg.topic.startswith("com.apple.mgmt.")
    assert not msg.is_user_channel


def test_user_channel_token_update():
    msg = checkin.parse_checkin((PAYLOADS / "checkin/TokenUpdate/mac-macos14-user.plist").read_bytes())
    assert msg.is_user_channel and msg.user_short_name == "alindqvist" and msg.not_on_console is False
    assert msg.user_long_name == "Avery Lindqvist" and msg.user_id == "8C1E4A7B-3F26-4D90-A5E1-72B9C0D4F318"


def test_authenticate_fields():
    msg = checkin.parse_checkin((PAYLOADS / "checkin/Authenticate/iphone-ios17-cellular.plist").read_bytes())
    assert isinstance(msg, checkin.Authenticate)
    assert (msg.imei, msg.meid, msg.product_name) == ("35 391843 217904 8", "35391843217904", "iPhone16,1")
    assert msg.serial_number and msg.os_version == "17.5.1" and msg.build_version
    mac = checkin.parse_checkin((PAYLOADS / "checkin/Authenticate/mac-macos14-apple-silicon.plist").read_bytes())
    assert (mac.device_name, mac.model, mac.model_name) == ("Design Studio MacBook Air", "Mac14,2", "MacBook Air")
    assert mac.imei is None and mac.challenge is None
    old_mac = checkin.parse_checkin((PAYLOADS / "checkin/Authenticate/imac-macos10-12-intel.plist").read_bytes())
    assert isinstance(old_mac.challenge, bytes) and len(old_mac.challenge) == 16


def test_bootstrap_declarative_token_and_user_authenticate_samples():
    def read(rel: str) -> checkin.CheckinMessage:
        return checkin.parse_checkin((PAYLOADS / "checkin" / rel).read_bytes())

    escrow = read("SetBootstrapToken/mac-macos14-escrow.plist")
    assert isinstance(escrow, checkin.SetBootstrapToken) and len(escrow.bootstrap_token or b"") == 64
    assert read("GetBootstrapToken/mac-macos14-fetch.plist").awaiting_configuration is False
    status = read("DeclarativeManagement/mac-macos14-status.plist")
    assert isinstance(status, checkin.DeclarativeManagement) and status.endpoint == "status"
    report = json.loads(status.data or b"")
    assert report["StatusItems"]["device"]["identifier"]["udid"] == status.udid
    assert read("DeclarativeManagement/iphone-ios17-tokens.plist").data is None
    watch = read("GetToken/iphone-ios17-watch-pairing.plist")
    assert isinstance(watch, checkin.GetToken) and watch.token_service_type == "com.apple.watch.pairing"
    assert watch.token_parameters and watch.token_parameters["PhoneUDID"] == watch.udid
    first = read("UserAuthenticate/mac-macos14-network-user.plist")
    second = read("UserAuthenticate/mac-macos14-network-user-digest.plist")
    assert isinstance(first, checkin.UserAuthenticate) and first.digest_response is None and first.is_user_channel
    assert second.user_id == first.user_id and (second.digest_response or "").startswith("Digest ")


def test_unknown_keys_kept_in_raw_and_round_trip():
    body = dumps({"MessageType": "CheckOut", "UDID": "U", "Topic": "t", "NewKey": [1, 2]})
    msg = checkin.parse_checkin(body)
    assert isinstance(msg, checkin.CheckOut) and msg.raw["NewKey"] == [1, 2]
    assert loads(msg.to_plist())["NewKey"] == [1, 2]


@pytest.mark.parametrize(
    "d, reason",
    [
        ({"MessageType": "Hello", "UDID": "U"}, "unknown MessageType Hello"),
        ({"UDID": "U"}, "missing MessageType"),
        ({"MessageType": 3, "UDID": "U"}, "MessageType must be string"),
        ({"MessageType": "Authenticate", "UDID": "U"}, "missing Topic"),
        ({"MessageType": "Authenticate", "Topic": "t"}, "missing UDID"),
        ({"MessageType": "TokenUpdate", "UDID": "U", "Topic": "t", "PushMagic": "m"}, "missing Token"),
        (
            {"MessageType": "TokenUpdate", "UDID": "U", "Topic": "t", "PushMagic": "m", "Token": "abc"},
            "Token must be data",
        ),
        (
            {
                "MessageType": "TokenUpdate",
                "UDID": "U",
                "Topic": "t",
                "PushMagic": "m",
                "Token": b"x",
                "AwaitingConfiguration": 0,
            },
            "AwaitingConfiguration must be boolean",
        ),
    ],
)
def test_bad_checkins_rejected_with_reason(d, reason):
    with pytest.raises(PlistError) as e:
        checkin.parse_checkin(dumps(d))
    assert e.value.reason == reason or reason in e.value.reason


def test_all_message_types_build_and_parse():
    msgs = [
        checkin.Authenticate(udid="U", topic="t", serial_number="S", device_name="iPhone"),
        checkin.TokenUpdate(udid="U", topic="t", token=b"\x01", push_magic="m", awaiting_configuration=True),
        checkin.CheckOut(udid="U", topic="t"),
        checkin.UserAuthenticate(udid="U", user_id="u1", digest_response="r"),
        checkin.SetBootstrapToken(udid="U", bootstrap_token=b"bt"),
        checkin.GetBootstrapToken(udid="U", awaiting_configuration=False),
        checkin.DeclarativeManagement(enrollment_id="E", endpoint="tokens", data=b"{}"),
        checkin.GetToken(udid="U", token_service_type="com.apple.maid", token_parameters={"a": "b"}),
    ]
    for m in msgs:
        again = checkin.parse_checkin(m.to_plist())
        assert again == m and type(again) is type(m)
    assert msgs[6].device_id == "E"


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "MessageType",
                "UDID",
                "Topic",
                "Token",
                "PushMagic",
                "Endpoint",
                "EnrollmentID",
                "AwaitingConfiguration",
                "TokenServiceType",
                "X",
            ]
        ),
        st.sampled_from(list(checkin.MESSAGE_TYPES))
        | st.text(max_size=5)
        | st.binary(max_size=4)
        | st.booleans()
        | st.integers(-5, 5)
        | st.lists(st.integers(), max_size=2),
        max_size=8,
    )
)
def test_fuzz_checkin_dicts_only_raise_plist_error(d):
    try:
        msg = checkin.parse_checkin(dumps(d))
    except PlistError:
        return
    assert msg.message_type == d["MessageType"]
