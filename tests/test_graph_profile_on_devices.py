"""What a Graph enrollment profile does to real (simulated) devices: held at Setup Assistant until the MDM
server releases them, named from the template, a Shared iPad, web-based enrollment, and the exported
``.mobileconfig`` enrolling a device that never saw Setup Assistant."""

from __future__ import annotations

import base64
import plistlib
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Response
from tests_support import GRAPH, onboard
from werkzeug.test import Client

from mdm.protocol import cms, mobileconfig
from mdm.server.enrollment import PROFILE_SUBJECT
from simulator import World
from simulator.device.drivers import HTTPDriver
from simulator.device.scep_enroll import obtain_identity


@pytest.fixture
def world() -> Iterator[World]:
    with World(devices=6, seed=3, background_sync=False) as w:
        yield w


def _profile(world: World, sid: str, **settings: Any) -> str:
    reply = world.http.post(f"{GRAPH}/{sid}/enrollmentProfiles", json={"displayName": "Graph", **settings})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def _assign(world: World, sid: str, profile_id: str, serial: str) -> None:
    reply = world.http.post(
        f"{GRAPH}/{sid}/enrollmentProfiles/{profile_id}/updateDeviceProfileAssignment", json={"deviceIds": [serial]}
    )
    assert reply.status_code == 204, reply.text


def _synced(world: World) -> str:
    sid = onboard(world)
    assert world.http.post(f"{GRAPH}/{sid}/syncWithAppleDeviceEnrollmentProgram").status_code == 204
    return sid


def _panes(run: Any, pane: str) -> list[str]:
    return [event for name, event, _when, _detail in run.transcript if name == pane]


def _command(world: World, udid: str, command: dict[str, Any]) -> str:
    reply = world.http.post("/mdm/api/v1/commands", json={"udids": [udid], "command": command})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["command_uuid"])


class Enrollee:
    """A device that installed the exported profile: it checks in with the identity SCEP gave it."""

    def __init__(self, world: World, udid: str, cert: Any, key: Any) -> None:
        self.client, self.udid, self.cert, self.key, self.topic = Client(world.wsgi, Response), udid, cert, key, world.mdm.topic

    def checkin(self, message_type: str, **keys: Any) -> Any:
        body = plistlib.dumps({"MessageType": message_type, "UDID": self.udid, "Topic": self.topic, **keys})
        signature = base64.b64encode(cms.sign(body, self.cert, self.key, detached=True)).decode()
        return self.client.put("/mdm/checkin", data=body, headers={"Mdm-Signature": signature},
                               content_type="application/x-apple-aspen-mdm-checkin")

    def authenticate(self) -> Any:
        return self.checkin("Authenticate", SerialNumber="C02EXPORT01", ProductName="iPhone15,2", OSVersion="17.4",
                            BuildVersion="21E219")

    def token_update(self) -> Any:
        return self.checkin("TokenUpdate", Token=bytes(32), PushMagic="magic", UnlockToken=b"unlock")


def test_a_waiting_device_stays_at_setup_assistant_until_the_mdm_server_releases_it(world: World) -> None:
    sid = _synced(world)
    held = _profile(world, sid, waitForDeviceConfiguredConfirmation=True)
    serial = world.serials[0]
    _assign(world, sid, held, serial)
    apple = world.http.get(f"{GRAPH}/{sid}/enrollmentProfiles/{held}/appleProfile").json()["profile"]
    assert apple["await_device_configured"] is True

    listeners = world.mdm.webhook_urls
    world.mdm.webhook_urls = lambda: []  # the controller hears nothing: nobody releases the device
    run = world.devices.power_on(serial)
    assert (run.phase, run.pane) == ("awaiting_configuration", "AwaitingConfiguration")
    assert world.devices.run_agent(serial, rounds=2).phase == "awaiting_configuration"  # still held

    world.mdm.webhook_urls = listeners
    _command(world, world.identity(serial).udid, {"RequestType": "DeviceConfigured"})  # the MDM server releases it
    released = world.devices.run_agent(serial)
    assert released.phase == "home"
    assert _panes(released, "AwaitingConfiguration") == ["shown", "released"]


def test_the_controller_names_a_waiting_device_then_releases_it(world: World) -> None:
    sid = _synced(world)
    held = _profile(world, sid, awaitDeviceConfiguredConfirmation=True, deviceNameTemplate="{{DEVICETYPE}}-{{SERIAL}}")
    serial = world.serials[1]
    _assign(world, sid, held, serial)
    run = world.devices.power_on(serial)
    assert run.phase == "home"
    assert _panes(run, "AwaitingConfiguration") == ["shown", "released"]
    family = world.identity(serial).device_family
    assert run.state.device_name == f"{family}-{serial}"
    setting = world.http.get(f"{GRAPH}/{sid}/importedAppleDeviceIdentities", params={"$filter": f"serialNumber eq '{serial}'"})
    assert setting.json()["value"][0]["enrollmentState"] == "enrolled"

    # a device whose profile does not hold it is named too, and never waits
    free = _profile(world, sid, deviceNameTemplate="Contoso {{SERIAL}}")
    other = world.serials[2]
    _assign(world, sid, free, other)
    run = world.devices.power_on(other)
    assert run.phase == "home" and _panes(run, "AwaitingConfiguration") == []
    assert world.devices.run_agent(other).state.device_name == f"Contoso {other}"  # pushed, answered when it wakes


def test_enable_shared_ipad_reaches_the_device_as_a_multi_user_ipad(world: World) -> None:
    sid = _synced(world)
    ipad = next(s for s in world.serials if world.identity(s).device_family == "iPad")
    shared = _profile(world, sid, enableSharedIPad=True, sharedIPadMaximumUserCount=8, supervisedModeEnabled=True)
    profile = world.http.get(f"{GRAPH}/{sid}/enrollmentProfiles/{shared}").json()
    assert (profile["enableSharedIPad"], profile["sharedIPadMaximumUserCount"]) == (True, 8)
    _assign(world, sid, shared, ipad)
    assert world.devices.power_on(ipad).phase == "home"

    udid = world.identity(ipad).udid
    command_uuid = _command(world, udid, {"RequestType": "DeviceInformation", "Queries": ["IsMultiUser", "IsSupervised"]})
    world.devices.run_agent(ipad)
    [answer] = world.http.get(f"/mdm/api/v1/commands/{command_uuid}").json()["devices"]
    assert answer["result"]["payload"]["QueryResponses"] == {"IsMultiUser": True, "IsSupervised": True}


def test_configuration_web_url_makes_setup_assistant_enroll_in_a_web_view(world: World) -> None:
    sid = _synced(world)
    web = _profile(world, sid, configurationWebUrl=True)
    apple = world.http.get(f"{GRAPH}/{sid}/enrollmentProfiles/{web}/appleProfile").json()["profile"]
    assert apple["configuration_web_url"] == apple["url"] == f"{world.mdm_url}/enroll"
    serial = world.serials[3]
    _assign(world, sid, web, serial)
    before = world.traffic().get("mdm", {}).get("get_enroll", {}).get("200", 0)
    assert world.devices.power_on(serial).phase == "home"
    # the web view GETs the page with the signed MachineInfo in x-apple-aspen-deviceinfo
    assert world.traffic()["mdm"]["get_enroll"]["200"] == before + 1


def test_exported_mobileconfig_enrolls_the_first_device_that_authenticates(world: World) -> None:
    sid = onboard(world)
    profile_id = _profile(world, sid)
    reply = world.http.get(f"{GRAPH}/{sid}/enrollmentProfiles/{profile_id}/exportMobileConfig()")
    assert reply.status_code == 200, reply.text
    signed = base64.b64decode(reply.json()["value"])
    verified = cms.verify(signed, trust_roots=[world.mdm.ca_certificate()])  # signed by the MDM server
    config = mobileconfig.parse(verified.content)
    kinds = {p["PayloadType"]: p for p in config.data["PayloadContent"]}
    assert kinds["com.apple.mdm"]["Topic"] == world.mdm.topic
    scep_payload = mobileconfig.SCEPPayload.from_dict(kinds["com.apple.security.scep"])
    assert scep_payload.subject[0] == [["CN", PROFILE_SUBJECT]]  # no UDID is known when the file is made

    # a device installs it: SCEP gets it an identity, as the payload says
    driver = HTTPDriver(world.http, now=world.clock.now)
    keys = iter(range(10))
    result = driver.run(obtain_identity(
        scep_payload, now=world.clock.now, progress={}, make_key=lambda bits: world.mdm.random.rsa_key(
            f"test:export:{next(keys)}", bits), default_cn="unused",
    ))
    assert result.status == "issued", result.reason
    device = Enrollee(world, "00008120-0000000000000E01", result.certificate, result.key)
    intruder = Enrollee(world, "00008120-0000000000000E02", result.certificate, result.key)
    assert intruder.token_update().status_code == 403  # no device owns it before an Authenticate
    assert device.authenticate().status_code == 200  # the first Authenticate takes it
    assert device.token_update().status_code == 200
    assert world.http.get(f"/mdm/api/v1/devices/{device.udid}").json()["enrolled"] is True
    refused = intruder.authenticate()  # and it is that device's from now on
    assert refused.status_code == 403 and device.udid in refused.get_data(as_text=True)

    # the challenge in an export is one-time: the same file cannot enroll a second device
    again = driver.run(obtain_identity(
        scep_payload, now=world.clock.now, progress={}, make_key=lambda bits: world.mdm.random.rsa_key(
            f"test:export:{next(keys)}", bits), default_cn="unused",
    ))
    assert again.status == "failed" and "used" in again.reason
