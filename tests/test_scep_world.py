"""SCEP in a world: the default enrollment profile carries a SCEP payload, a device waits at Remote
Management while the SCEP server answers PENDING, and polls on the world clock until it is issued."""

from __future__ import annotations

from tests_support import GRAPH, onboard

from mdm.protocol import mobileconfig
from simulator import World


def _assign_profile(world: World) -> str:
    http = world.http
    setting = onboard(world)
    profile = http.post(f"{GRAPH}/{setting}/enrollmentProfiles", json={
        "@odata.type": "#microsoft.graph.depIOSEnrollmentProfile", "displayName": "Corporate iPhones",
        "supportDepartment": "IT Help Desk", "supportPhoneNumber": "+1 555 0100",
    })
    assert profile.status_code == 201, profile.text
    assert http.post(f"{GRAPH}/{setting}/syncWithAppleDeviceEnrollmentProgram").status_code == 204
    world.controller.wait_for_sync(setting, 30)
    serial = world.serials[0]
    assigned = http.post(f"{GRAPH}/{setting}/enrollmentProfiles/{profile.json()['id']}/updateDeviceProfileAssignment",
                         json={"deviceIds": [serial]})
    assert assigned.status_code == 204, assigned.text
    return serial


def test_a_device_waits_at_remote_management_while_scep_is_pending() -> None:
    with World(devices=1, seed=32, background_sync=False) as world:
        world.mdm.identity.scep_pending_seconds = 120
        serial = _assign_profile(world)
        first = world.devices.power_on(serial)
        assert first.pane == "RemoteManagement", first.transcript[-3:]
        assert any("PENDING" in detail for _, _, _, detail in first.transcript)
        again = world.devices.power_on(serial)  # the world clock has not moved: still waiting, nothing sent
        assert again.pane == "RemoteManagement"
        world.clock.advance(seconds=121)
        done = world.devices.power_on(serial)
        assert done.phase == "home", done.transcript[-5:]
        assert any("identity from SCEP" in detail for _, _, _, detail in done.transcript)
        assert world.devices.describe(serial)["enrolled"] is True


def test_pkcs12_stays_selectable_and_the_default_profile_is_scep() -> None:
    for identity, payload_type in (("scep", mobileconfig.SCEPPayload), ("pkcs12", mobileconfig.PKCS12Payload)):
        with World(devices=1, seed=33, background_sync=False, identity=identity) as world:
            serial = _assign_profile(world)
            run = world.devices.power_on(serial)
            assert run.phase == "home", run.transcript[-4:]
            device = world.fleet.get(serial)
            cert, _ = device.mdm_identity()
            assert cert.issuer == world.mdm.ca_certificate().subject
            assert world.mdm.identity.identity_method == identity
            from_scep = any("identity from SCEP" in detail for _, _, _, detail in run.transcript)
            assert from_scep is (payload_type is mobileconfig.SCEPPayload)


def test_the_agent_renews_a_scep_identity_before_it_expires_signed_with_the_current_one() -> None:
    with World(devices=1, seed=34, background_sync=False) as world:
        serial = _assign_profile(world)
        assert world.devices.power_on(serial).phase == "home"
        first, _ = world.fleet.get(serial).mdm_identity()
        world.devices.run_agent(serial)  # early in its life: nothing to renew
        assert world.fleet.get(serial).mdm_identity()[0] == first
        world.clock.advance(days=600)  # 730-day identities: less than a fifth left
        world.devices.run_agent(serial)
        device = world.fleet.get(serial)
        renewed, _ = device.mdm_identity()
        assert renewed.serial_number != first.serial_number and renewed.subject == first.subject
        assert renewed.public_key() != first.public_key()
        assert renewed.not_valid_after_utc > first.not_valid_after_utc
        assert any("identity renewed over SCEP" in detail for _, _, _, detail in device.state.transcript)
        # the MDM server takes check-ins signed by the renewed identity
        command = world.http.post("/mdm/api/v1/commands", json={
            "udids": [device.identity.udid], "command": {"RequestType": "DeviceInformation", "Queries": ["UDID"]}})
        assert command.status_code == 201, command.text
        world.devices.run_agent(serial)
        status = world.http.get(f"/mdm/api/v1/commands/{command.json()['command_uuid']}").json()
        assert [entry["result"]["status"] for entry in status["devices"]] == ["Acknowledged"]
