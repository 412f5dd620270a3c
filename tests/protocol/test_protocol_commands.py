from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdm.protocol import commands as C
from mdm.protocol.plist import PlistError, dumps, loads

PAYLOADS = Path("/work/shared/reference/device-payloads")
COMMANDS = Path("/work/shared/reference/apple-device-management/mdm/commands")
CHECKIN_DIRS = {"Authenticate", "TokenUpdate", "CheckOut", "dep"}
RESULTS = sorted(
    p
    for p in (PAYLOADS / "commandment").rglob("*")
    if p.is_file() and p.suffix in (".xml", ".plist") and p.parent.name not in CHECKIN_DIRS
) + [PAYLOADS / "nanomdm/DeviceInformation.1.plist"]


def test_found_the_real_results():
    assert len(RESULTS) >= 30


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_results_accepted(path):
    r = C.parse_result(path.read_bytes())
    assert r.status in C.STATUSES and r.udid and r.command_uuid
    if r.status == "Error":
        assert r.error_chain and all(isinstance(e.error_code, int) for e in r.error_chain)
    assert C.parse_result(r.to_plist()) == r


def test_result_details():
    di = C.parse_result((PAYLOADS / "nanomdm/DeviceInformation.1.plist").read_bytes())
    assert di.status == "Acknowledged" and di.request_type == "DeviceInformation"
    assert di.raw["QueryResponses"]["HostName"] == "fruit.example.com"
    err = C.parse_result((PAYLOADS / "commandment/Errors/error_invalid_request_type.plist").read_bytes())
    assert err.error_chain[0].error_code == 12021
    assert err.error_chain[0].error_domain == "MCMDMErrorDomain"
    nn = C.parse_result((PAYLOADS / "commandment/NotNow/iOS-11.3.1.xml").read_bytes())
    assert nn.status == "NotNow"


def test_idle_and_user_channel_results():
    idle = C.parse_result(dumps({"UDID": "U", "Status": "Idle"}))
    assert idle.status == "Idle" and idle.command_uuid is None
    user = C.parse_result(dumps({"UDID": "U", "Status": "Idle", "UserID": "u1", "EnrollmentUserID": "eu"}))
    assert user.is_user_channel and user.user_id == "u1" and user.enrollment_user_id == "eu"
    byod = C.parse_result(dumps({"EnrollmentID": "E", "Status": "Idle"}))
    assert byod.device_id == "E" and byod.udid is None


@pytest.mark.parametrize(
    "d, reason",
    [
        ({"UDID": "U"}, "missing Status"),
        ({"UDID": "U", "Status": "Done"}, "unknown Status Done"),
        ({"Status": "Idle"}, "missing UDID"),
        ({"UDID": "U", "Status": "Acknowledged"}, "missing CommandUUID"),
        ({"UDID": "U", "Status": "Error", "CommandUUID": "c", "ErrorChain": ["x"]}, "ErrorChain items"),
        (
            {"UDID": "U", "Status": "Error", "CommandUUID": "c", "ErrorChain": [{"ErrorCode": "1"}]},
            "ErrorCode must be integer",
        ),
        ({"UDID": 5, "Status": "Idle"}, "UDID must be string"),
    ],
)
def test_bad_results_rejected(d, reason):
    with pytest.raises(PlistError, match=reason):
        C.parse_result(dumps(d))


def test_schema_covers_every_documented_command():
    import yaml

    documented = {yaml.safe_load(p.read_text())["payload"]["requesttype"] for p in COMMANDS.glob("*.yaml")}
    assert documented == set(C.COMMAND_SCHEMAS)


def test_builders_produce_valid_commands():
    built = [
        C.device_information(["UDID", "SerialNumber"]),
        C.security_info(),
        C.profile_list(managed_only=True),
        C.install_profile(b"profile"),
        C.remove_profile("com.example.p"),
        C.installed_application_list(managed_apps_only=True),
        C.install_application(itunes_store_id=361309726),
        C.install_application(manifest_url="https://example.org/m.plist"),
        C.install_application(identifier="com.example.app", management_flags=1),
        C.device_lock(pin="123456", message="Lost"),
        C.erase_device(pin="123456", preserve_data_plan=True),
        C.clear_passcode(b"unlock"),
        C.restart_device(notify_user=True),
        C.shut_down_device(),
        C.settings([{"Item": "DeviceName", "DeviceName": "Kiosk"}]),
        C.device_configured(),
        C.activation_lock_bypass_code(),
    ]
    for cmd in built:
        d = loads(cmd.to_plist())
        assert d["CommandUUID"] == cmd.command_uuid
        assert d["Command"]["RequestType"] == cmd.request_type
        assert C.validate_command(d) == cmd
        assert C.parse_command(cmd.to_plist()) == cmd
    assert loads(built[0].to_plist())["Command"] == {
        "RequestType": "DeviceInformation",
        "Queries": ["UDID", "SerialNumber"],
    }
    assert "ManagedOnly" not in loads(C.profile_list().to_plist())["Command"]


def test_builder_argument_errors():
    with pytest.raises(C.CommandError):
        C.install_application()
    with pytest.raises(C.CommandError):
        C.install_application(itunes_store_id=1, identifier="x")
    with pytest.raises(C.CommandError):
        C.settings([{"DeviceName": "no Item"}])


def test_validate_command_inner_form_and_strictness():
    cmd = C.validate_command({"RequestType": "RemoveProfile", "Identifier": "x"})
    assert cmd.params == {"Identifier": "x"} and cmd.command_uuid
    with pytest.raises(C.CommandError, match="RemoveProfile requires Identifier"):
        C.validate_command({"RequestType": "RemoveProfile"})
    with pytest.raises(C.CommandError, match="unknown RequestType Frobnicate"):
        C.validate_command({"RequestType": "Frobnicate"})
    assert C.validate_command({"RequestType": "Frobnicate", "X": 1}, strict=False).params == {"X": 1}
    with pytest.raises(C.CommandError, match="ManagedOnly must be boolean, not integer"):
        C.validate_command({"RequestType": "ProfileList", "ManagedOnly": 1})
    with pytest.raises(C.CommandError, match="iTunesStoreID must be integer, not boolean"):
        C.validate_command({"RequestType": "InstallApplication", "iTunesStoreID": True})
    with pytest.raises(C.CommandError, match="Queries must be an array of strings"):
        C.validate_command({"RequestType": "DeviceInformation", "Queries": [1]})
    with pytest.raises(C.CommandError, match="missing RequestType"):
        C.validate_command({"Command": {}, "CommandUUID": "c"})
    with pytest.raises(C.CommandError, match="cannot serialise"):
        C.validate_command({"RequestType": "Frobnicate", "X": None}, strict=False)
    with pytest.raises(C.CommandError, match="cannot serialise"):
        C.validate_command({"RequestType": "InstallApplication", "iTunesStoreID": 2**70})
    full = C.validate_command({"CommandUUID": "abc", "Command": {"RequestType": "SecurityInfo"}})
    assert full.command_uuid == "abc"


def test_parse_command_device_side():
    assert C.parse_command(
        dumps({"CommandUUID": "c", "Command": {"RequestType": "NewThing"}})
    ).request_type == ("NewThing")
    with pytest.raises(C.CommandError, match="missing Command"):
        C.parse_command(dumps({"CommandUUID": "c"}))
    with pytest.raises(PlistError):
        C.parse_command(b"junk")


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["RequestType", "Queries", "Identifier", "Payload", "Settings", "iTunesStoreID", "PIN"]
        ),
        st.sampled_from(sorted(C.COMMAND_SCHEMAS))
        | st.text(max_size=4)
        | st.binary(max_size=3)
        | st.booleans()
        | st.integers()
        | st.just(2**70)
        | st.none()
        | st.lists(st.text(max_size=2) | st.integers(), max_size=2),
        max_size=5,
    ),
    st.booleans(),
)
def test_fuzz_validate_command_only_raises_command_error(d, strict):
    try:
        cmd = C.validate_command(d, strict=strict)
    except C.CommandError:
        return
    assert loads(cmd.to_plist())["Command"]["RequestType"] == d["RequestType"]
