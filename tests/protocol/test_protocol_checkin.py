from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdm.protocol import checkin
from mdm.protocol.plist import PlistError, dumps, loads

PAYLOADS = Path("/work/shared/reference/device-payloads")
REAL = sorted(
    [p for d in ("Authenticate", "TokenUpdate", "CheckOut") for p in (PAYLOADS / "commandment" / d).iterdir()]
    + [p for p in (PAYLOADS / "nanomdm").glob("*.plist") if not p.name.startswith("DeviceInformation")]
)


def test_found_the_real_payloads():
    assert len(REAL) >= 16


@pytest.mark.parametrize("path", REAL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_checkin_payloads_accepted(path):
    msg = checkin.parse_checkin(path.read_bytes())
    assert msg.message_type == path.parent.name if path.parent.name != "nanomdm" else path.name.split(".")[0]
    assert msg.udid
    assert msg.raw["MessageType"] == msg.message_type
    assert checkin.parse_checkin(msg.to_plist()) == msg


def test_token_update_fields():
    msg = checkin.parse_checkin((PAYLOADS / "nanomdm/TokenUpdate.1.plist").read_bytes())
    assert isinstance(msg, checkin.TokenUpdate)
    assert msg.token_hex == msg.token.hex() and len(msg.token) == 32
    assert msg.push_magic == "CEFDF0BD-E342-4A27-8742-E930EA116B0A"
    assert msg.unlock_token and msg.awaiting_configuration is False
    assert msg.topic.startswith("com.apple.mgmt.")
    assert not msg.is_user_channel


def test_user_channel_token_update():
    msg = checkin.parse_checkin((PAYLOADS / "commandment/TokenUpdate/10.12.2-user.xml").read_bytes())
    assert msg.is_user_channel and msg.user_short_name == "cjoe" and msg.not_on_console is False


def test_authenticate_fields():
    msg = checkin.parse_checkin((PAYLOADS / "commandment/Authenticate/iOS-11.3.1-cell.xml").read_bytes())
    assert isinstance(msg, checkin.Authenticate)
    assert (msg.imei, msg.meid, msg.product_name) == ("11 111111 111111 1", "1111111111111", "iPhone7,2")
    assert msg.serial_number and msg.os_version == "11.3.1" and msg.build_version


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
