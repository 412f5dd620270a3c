from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdm.protocol import commands as C
from mdm.protocol.plist import PlistError, dumps, loads

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PAYLOADS = FIXTURES / "device-payloads"
#: Apple's documented RequestTypes, one line each (fixtures/mdm/commands.json).
COMMANDS_JSON = FIXTURES / "mdm" / "commands.json"
#: fixtures/device-payloads/results/<RequestType the server sent>/<device>-<case>.plist; Idle/ holds Idle reports.
RESULTS = sorted((PAYLOADS / "results").glob("*/*.plist"))
#: Every kind of result the sample set must keep (the device's answer to each command the simulator sends).
KINDS = {
    "DeviceInformation",
    "SecurityInfo",
    "ProfileList",
    "CertificateList",
    "InstalledApplicationList",
    "ManagedApplicationList",
    "AvailableOSUpdates",
    "DeviceLock",
    "InstallApplication",
    "InstallProfile",
    "RemoveProfile",
    "RemoveApplication",
    "EraseDevice",
    "ClearPasscode",
    "RestartDevice",
    "ShutDownDevice",
    "Settings",
    "DeviceConfigured",
    "ActivationLockBypassCode",
    "ProvisioningProfileList",
}


def test_found_the_sample_results():
    assert len(RESULTS) >= 45
    folders = {p.parent.name for p in RESULTS}
    assert KINDS <= folders
    assert folders - {"Idle"} <= set(C.COMMAND_SCHEMAS)
    statuses = [C.parse_result(p.read_bytes()).status for p in RESULTS]
    assert set(statuses) == C.STATUSES  # Idle, Acknowledged, Error, CommandFormatError and NotNow all occur
    assert statuses.count("Error") >= 5


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_results_accepted(path):
    r = C.parse_result(path.read_bytes())
    assert r.status in C.STATUSES and r.udid
    if path.parent.name == "Idle":
        assert r.status == "Idle" and r.command_uuid is None
    else:
        assert r.status != "Idle" and r.command_uuid
        assert r.request_type in (None, path.parent.name)
    if r.status == "Error":
        assert r.error_chain and all(isinstance(e.error_code, int) for e in r.error_chain)
        assert all(e.error_domain and e.localized_description for e in r.error_chain)
    assert C.parse_result(r.to_plist()) == r


def test_result_details():
    di = C.parse_result((PAYLOADS / "results/DeviceInformation/imac-macos10-12-host-names.plist").read_bytes())
    assert di.status == "Acknowledged" and di.request_type == "DeviceInformation"
    assert di.raw["QueryResponses"]["HostName"] == "reception-imac.example.org"
    assert di.raw["QueryResponses"]["UDID"] == di.udid
    err = C.parse_result((PAYLOADS / "results/SetRecoveryLock/ipad-ios17-invalid-request-type-error.plist").read_bytes())
    assert err.error_chain[0].error_code == 12021
    assert err.error_chain[0].error_domain == "MCMDMErrorDomain"
    nn = C.parse_result((PAYLOADS / "results/InstallProfile/iphone-ios17-locked-notnow.plist").read_bytes())
    assert nn.status == "NotNow"
    two = C.parse_result((PAYLOADS / "results/AvailableOSUpdates/ipad-ios17-none-available-error.plist").read_bytes())
    assert [e.error_code for e in two.error_chain] == [2213, 3]
    user = C.parse_result((PAYLOADS / "results/ProfileList/mac-macos14-user-channel.plist").read_bytes())
    assert user.is_user_channel and user.user_id == "8C1E4A7B-3F26-4D90-A5E1-72B9C0D4F318"
    certs = C.parse_result((PAYLOADS / "results/CertificateList/iphone-ios17-identity-and-cas.plist").read_bytes())
    [identity] = [c for c in certs.raw["CertificateList"] if c["IsIdentity"]]
    assert identity["CommonName"] == certs.udid and identity["Data"][:1] == b"\x30"


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
    documented = json.loads(COMMANDS_JSON.read_text(encoding="utf-8"))
    names = [c["request_type"] for c in documented]
    assert len(names) == len(set(names)) >= 60
    assert set(names) == set(C.COMMAND_SCHEMAS)
    for c in documented:
        assert c["description"].strip(), c["request_type"]
        schema = C.COMMAND_SCHEMAS[c["request_type"]]
        assert sorted(c["required_keys"]) == sorted(k for k, (_, required) in schema.items() if required), c


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
