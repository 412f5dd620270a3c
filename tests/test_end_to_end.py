"""The whole story in one process: token, profile, sync, assignment, power-on, enrollment, a command."""

from __future__ import annotations

import pytest
from tests_support import GRAPH, onboard

from simulator import World


@pytest.mark.parametrize("skip_passcode", [True, False])
def test_device_enrolls_with_the_profile_the_controller_assigned(skip_passcode: bool) -> None:
    with World(devices=5, seed=11, background_sync=False) as world:
        http = world.http
        setting = onboard(world)
        profile = http.post(f"{GRAPH}/{setting}/enrollmentProfiles", json={
            "@odata.type": "#microsoft.graph.depIOSEnrollmentProfile",
            "displayName": "Corporate iPhones", "supervisedModeEnabled": True, "profileRemovalDisabled": True,
            "supportDepartment": "IT Help Desk", "supportPhoneNumber": "+1 555 0100",
            "passCodeDisabled": skip_passcode, "siriDisabled": True,
        })
        assert profile.status_code == 201, profile.text
        profile_id = profile.json()["id"]
        assert http.post(f"{GRAPH}/{setting}/syncWithAppleDeviceEnrollmentProgram").status_code == 204
        synced = world.controller.wait_for_sync(setting, 30)
        assert synced["syncedDeviceCount"] == 5
        serial = world.serials[0]
        assigned = http.post(f"{GRAPH}/{setting}/enrollmentProfiles/{profile_id}/updateDeviceProfileAssignment",
                             json={"deviceIds": [serial]})
        assert assigned.status_code == 204, assigned.text

        run = world.devices.power_on(serial)
        panes = {entry[0]: entry[1] for entry in run.transcript}
        assert panes["RemoteManagement"] == "shown"
        assert panes["Siri"] == "skipped"
        assert panes["Passcode"] == ("skipped" if skip_passcode else "shown")
        assert run.phase == "home"
        assert world.devices.describe(serial)["enrolled"] is True

        udid = world.identity(serial).udid
        command = http.post("/mdm/api/v1/commands", json={
            "udids": [udid], "command": {"RequestType": "DeviceInformation", "Queries": ["SerialNumber", "IsSupervised"]}})
        assert command.status_code in (200, 201), command.text
        world.devices.run_agent(serial)
        status = http.get(f"/mdm/api/v1/commands/{command.json()['command_uuid']}").json()
        text = str(status)
        assert "Acknowledged" in text and serial in text

        imported = http.get(f"{GRAPH}/{setting}/importedAppleDeviceIdentities",
                            params={"$filter": f"serialNumber eq '{serial}'"}).json()["value"]
        assert imported[0]["enrollmentState"] == "enrolled"
        dep_device = world.http.get(f"/apple/portal/api/devices?server_uuid={world.default_server_uuid}").json()
        assert any(d["serial_number"] == serial and d["profile_status"] == "pushed" for d in dep_device["devices"])
