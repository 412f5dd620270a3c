"""Enrolled simulated devices over time: the push certificate issued, expired, renewed, replaced; an erase."""

from __future__ import annotations

from tests_support import GRAPH, onboard

from simulator import World

PUSH_CERT = "/intune/deviceManagement/applePushNotificationCertificate"


def enrolled_device(world: World) -> tuple[str, str]:
    setting = onboard(world)
    world.http.post(f"{GRAPH}/{setting}/syncWithAppleDeviceEnrollmentProgram")
    world.controller.wait_for_sync(setting, 30)
    profile = world.http.post(f"{GRAPH}/{setting}/enrollmentProfiles", json={"displayName": "P"}).json()["id"]
    serial = world.serials[0]
    world.http.post(f"{GRAPH}/{setting}/enrollmentProfiles/{profile}/updateDeviceProfileAssignment",
                    json={"deviceIds": [serial]})
    assert world.devices.power_on(serial).phase == "home"
    return serial, world.identity(serial).udid


def command(world: World, udid: str) -> str:
    reply = world.http.post("/mdm/api/v1/commands", json={
        "udids": [udid], "command": {"RequestType": "DeviceInformation", "Queries": ["UDID"]}})
    assert reply.status_code in (200, 201), reply.text
    return reply.json()["command_uuid"]


def push_state(world: World, udid: str) -> dict:
    return world.http.get(f"/mdm/api/v1/devices/{udid}").json()["push"]


def status(world: World, uuid: str) -> str:
    return world.http.get(f"/mdm/api/v1/commands/{uuid}").json()["devices"][0]["status"]


def test_push_certificate_issued_expired_renewed_and_replaced() -> None:
    with World(devices=2, seed=5, background_sync=False) as world:
        serial, udid = enrolled_device(world)
        topic = world.http.get(PUSH_CERT).json()["topicIdentifier"]
        assert topic.startswith("com.apple.mgmt.External.")
        assert world.http.get(f"/mdm/api/v1/devices/{udid}").json()["topic"] == topic

        first = command(world, udid)
        assert push_state(world, udid)["last_status"] == 200  # Apple accepted the push for this topic
        world.devices.run_agent(serial)
        assert status(world, first) == "Acknowledged"

        world.clock.advance(days=366)  # the push certificate is valid one year
        command(world, udid)
        assert push_state(world, udid)["last_error"] == "403 Forbidden"
        shown = world.http.get(PUSH_CERT).json()
        assert shown["expired"] is True and "Renew" in shown["warnings"][0]

        renewed = world.renew_push_certificate()
        assert renewed["topicIdentifier"] == topic  # same Apple ID: same topic, no re-enrollment
        after_renewal = command(world, udid)
        assert push_state(world, udid)["last_status"] == 200
        world.devices.run_agent(serial)
        assert status(world, after_renewal) == "Acknowledged"

        replaced = world.setup_push_certificate()  # a new certificate: a new topic
        assert replaced["topicIdentifier"] != topic
        assert replaced["topicChanged"] is True and replaced["devicesRequiringReenrollmentCount"] >= 1
        command(world, udid)
        assert push_state(world, udid)["last_status"] == 400  # Apple: this token is not for that topic


def test_an_erased_device_shows_pending_reset_in_the_controller() -> None:
    with World(devices=2, seed=6, background_sync=False) as world:
        serial, udid = enrolled_device(world)
        setting = world.http.get(GRAPH).json()["value"][0]["id"]

        def state() -> str:
            found = world.http.get(f"{GRAPH}/{setting}/importedAppleDeviceIdentities",
                                   params={"$filter": f"serialNumber eq '{serial}'"}).json()["value"]
            return found[0]["enrollmentState"]

        assert state() == "enrolled"
        world.http.post("/mdm/api/v1/commands", json={"udids": [udid], "command": {"RequestType": "EraseDevice"}})
        world.devices.run_agent(serial)
        assert state() == "pendingReset"
        assert world.devices.describe(serial)["pane"] == "Hello"  # wiped: back to the first pane


def test_served_devices_wake_on_their_push_and_answer_by_themselves() -> None:
    """``mdmsim serve``'s devices (``wake_devices``): the MDM server enqueues and pushes, the device's
    agent runs on the push alone, with no call to run it."""
    import time

    with World(devices=2, seed=5, background_sync=False) as world:
        serial, udid = enrolled_device(world)
        with world.serve(wake_devices=True):
            uuid = command(world, udid)
            deadline = time.monotonic() + 15
            while status(world, uuid) != "Acknowledged":
                assert time.monotonic() < deadline, f"the device did not wake: {status(world, uuid)}"
                time.sleep(0.05)
            pushes = world.apns.stats(world.fleet.devices.load(serial).push_token)
            assert pushes["accepted"] >= 1 and pushes["delivered"] >= 1
