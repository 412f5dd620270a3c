"""Real sockets, re-activation after an erase, and everything that goes wrong: the device must stop on
the right pane with the reason in its transcript, and never crash."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from device_stack import PASSWORD, USER, Stack

from mdm.protocol.plist import dumps
from mdm.protocol.x509 import cert_from_pem
from simulator.device.agent import agent_round
from simulator.device.drivers import HTTPDriver, WSGIDriver
from simulator.device.machine import Device, DeviceScript, DeviceState, Request, Response
from simulator.device.store import DeviceFleetService, open_device_store


def test_same_flow_over_real_sockets(stack: Stack) -> None:
    with stack.serve() as url, httpx.Client() as client:
        device = stack.new_device()
        assert device.state.apple_url == f"{url}/apple"
        stack.define_profile([device.serial], is_supervised=True, await_device_configured=True)
        driver = HTTPDriver(client, now=stack.clock.now)
        assert driver.run_until_home(device) == "awaiting_configuration"
        assert device.state.enrollment["server_url"] == f"{url}/mdm/connect"
        stack.command(device.udid, "DeviceConfigured")
        driver.run_agent(device)
        assert device.phase == "home"
        assert driver.exchanges >= 6  # activation, enroll, Authenticate, TokenUpdate, push poll, connect…


def test_erase_then_reactivation_fetches_the_new_profile(stack: Stack) -> None:
    device = stack.new_device()
    stack.define_profile([device.serial], skip_setup_items=["Siri"])
    driver = stack.driver()
    driver.run_until_home(device)
    assert not device.is_supervised

    # A new profile does not reach a device that is already set up...
    stack.define_profile([device.serial], profile_name="Kiosk", is_supervised=True, department="Front Desk",
                         skip_setup_items=["Siri", "Passcode"])  # fmt: skip
    assert not device.is_supervised
    # ...until it is erased and activates again.
    uuid = stack.command(device.udid, "EraseDevice")
    driver.run_agent(device)
    assert stack.command_result(uuid)["status"] == "Acknowledged"
    assert device.pane == "Hello" and not device.enrolled

    assert driver.run_until_home(device) == "home"
    assert device.is_supervised
    assert ("Passcode", "skipped") in device.panes()
    assert "Front Desk" in next(e for e in reversed(device.transcript) if e[0] == "RemoteManagement")[3]
    assert device.panes(since_erase=False).count(("Hello", "shown")) == 2


def test_wrong_password_stays_at_authentication(stack: Stack) -> None:
    device = stack.new_device(script=DeviceScript(username=USER, password="not-" + PASSWORD))
    stack.define_profile([device.serial], url=f"{stack.mdm_url}/enroll?auth=user")
    driver = stack.driver()
    assert driver.run_until_home(device) == "setup"
    assert device.pane == "Authentication"
    assert device.transcript[-1][:2] == ("Authentication", "error")
    assert "wrong user name or password" in device.transcript[-1][3]
    assert not device.enrolled

    # The user types the right password and tries again: setup resumes on the same pane.
    device.state.script["password"] = PASSWORD
    assert driver.run_until_home(device) == "home"
    assert device.state.user == USER


def test_no_credentials_scripted_stays_at_authentication(stack: Stack) -> None:
    device = stack.new_device()
    stack.define_profile([device.serial], url=f"{stack.mdm_url}/enroll?auth=user")
    assert stack.driver().run_until_home(device) == "setup"
    assert device.transcript[-1][:2] == ("Authentication", "error")


def test_mdm_server_down_stays_at_enrollment(stack: Stack) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with stack.serve(), httpx.Client() as client:
        device = stack.new_device()  # Apple is reachable, the MDM server is not
        stack.define_profile([device.serial], url=f"http://127.0.0.1:{port}/mdm/enroll")
        driver = HTTPDriver(client, now=stack.clock.now)
        assert driver.run_until_home(device) == "setup"
    assert device.pane == "Enrollment"
    assert device.transcript[-1][:2] == ("Enrollment", "error")
    assert "connection refused" in device.transcript[-1][3]

    # In process, the same outage: only the world's host exists.
    other = stack.new_device()
    stack.define_profile([other.serial], url="http://mdm.contoso.invalid/enroll")
    in_process = WSGIDriver(stack.wsgi, now=stack.clock.now, hosts={"mdmsim.test"})
    assert in_process.run_until_home(other) == "setup"
    assert other.pane == "Enrollment" and "connection refused" in other.transcript[-1][3]


class _Tampering(WSGIDriver):
    """A man in the middle that flips one byte of the enrollment profile's signature."""

    def send(self, request: Request) -> Response:
        response = super().send(request)
        if request.url.endswith("/mdm/enroll") and response.status == 200:
            body = bytearray(response.body)
            body[-5] ^= 0xFF
            return Response(response.status, response.headers, bytes(body))
        return response


def test_profile_with_bad_signature_is_refused(stack: Stack) -> None:
    device = stack.new_device()
    stack.define_profile([device.serial])
    driver = _Tampering(stack.wsgi, now=stack.clock.now)
    assert driver.run_until_home(device) == "setup"
    assert device.pane == "Enrollment" and not device.enrolled
    entry = device.transcript[-1]
    assert entry[:2] == ("Enrollment", "error") and "profile refused" in entry[3]
    assert stack.mdm.device(device.udid)["enrolled"] is False  # never checked in


def test_activation_server_error_is_recorded(stack: Stack) -> None:
    device = stack.new_device()
    driver = WSGIDriver(stack.wsgi, now=stack.clock.now, hosts={"elsewhere.test"})
    assert driver.run_until_home(device) == "setup"
    assert device.pane == "Activation" and device.transcript[-1][:2] == ("Activation", "error")


def test_app_needing_an_apple_id_waits_for_the_user(stack: Stack) -> None:
    driver = stack.driver()
    signs_in = stack.new_device(script=DeviceScript(apple_id_prompt="sign_in"))
    cancels = stack.new_device(script=DeviceScript(apple_id_prompt="cancel"))
    stack.define_profile([signs_in.serial, cancels.serial], skip_setup_items=["AppleID"])
    for device, final in ((signs_in, "Acknowledged"), (cancels, "Error")):
        driver.run_until_home(device)
        assert device.state.apple_id is None
        uuid = stack.command(device.udid, "InstallApplication", iTunesStoreID=586447913)
        driver.run_agent(device)
        assert stack.command_result(uuid)["status"] == "NotNow"
        driver.run_agent(device)  # the user answered the prompt in between
        assert stack.command_result(uuid)["status"] == final

    uuid = stack.command(signs_in.udid, "InstalledApplicationList")
    driver.run_agent(signs_in)
    apps = stack.command_result(uuid)["payload"]["InstalledApplicationList"]
    assert [a["Identifier"] for a in apps] == ["com.microsoft.Office.Word"]


def test_security_info_answer(stack: Stack) -> None:
    device = stack.new_device()
    stack.define_profile([device.serial])
    driver = stack.driver()
    driver.run_until_home(device)
    uuid = stack.command(device.udid, "SecurityInfo")
    driver.run_agent(device)
    assert stack.command_result(uuid)["payload"]["SecurityInfo"]["HardwareEncryptionCaps"] == 3


def test_sans_io_answers_unknown_and_malformed_commands(stack: Stack) -> None:
    """Driven by hand: the device never needs a real server to answer a command."""
    device = stack.new_device()
    stack.define_profile([device.serial])
    stack.driver().run_until_home(device)
    ok = Response(200, {}, b"")

    flow = agent_round(device, stack.clock.now, poll_push=False)
    idle = next(flow)
    assert idle.method == "PUT" and idle.url.endswith("/mdm/connect") and "Mdm-Signature" in idle.headers
    unknown = dumps({"CommandUUID": "u-1", "Command": {"RequestType": "OSUpdateStatusX"}})
    reply = flow.send(Response(200, {}, unknown))
    from mdm.protocol.plist import loads

    result = loads(reply.body)
    assert result["Status"] == "Error" and result["ErrorChain"][0]["ErrorCode"] == 12021
    malformed = dumps(
        {"CommandUUID": "u-2", "Command": {"RequestType": "DeviceInformation", "Queries": "UDID"}}
    )
    reply = flow.send(Response(200, {}, malformed))
    assert loads(reply.body)["Status"] == "CommandFormatError"
    with pytest.raises(StopIteration) as stop:
        flow.send(ok)  # empty body: nothing more to do this round
    assert stop.value.value.commands == [("OSUpdateStatusX", "Error"), ("?", "CommandFormatError")]


def test_state_round_trips_and_stays_small(stack: Stack) -> None:
    device = stack.new_device()
    stack.define_profile([device.serial], is_supervised=True)
    driver = stack.driver()
    driver.run_until_home(device)
    encoded = json.dumps(device.state.to_dict())
    assert len(encoded) < 20_000
    revived = Device(DeviceState.from_dict(json.loads(encoded)))
    assert revived.transcript == device.transcript and revived.enrolled
    assert _info(stack, revived, driver) == {"IsSupervised": True}  # the revived device still talks MDM


def _info(stack: Stack, device: Device, driver: WSGIDriver) -> dict:
    uuid = stack.command(device.udid, "DeviceInformation", Queries=["IsSupervised"])
    driver.run_agent(device)
    return stack.command_result(uuid)["payload"]["QueryResponses"]


def test_fleet_service_persists_live_state(stack: Stack) -> None:
    fleet = DeviceFleetService(open_device_store(None), stack.clock, apple_url=stack.apple_url,
                               issue_identity=stack.activation.issue_device_identity)  # fmt: skip
    identity = stack.identities.one("iPad Air (5th generation)", os_version="17.5")
    record = {"serial_number": identity.serial_number, "model": identity.model_name,
              "description": identity.description, "color": identity.color, "os": identity.os,
              "device_family": "iPad"}  # fmt: skip
    stack.portal.add_devices([record], server_uuid=stack.server_uuid)
    stack.define_profile([identity.serial_number], await_device_configured=True, is_supervised=True)
    driver = stack.driver()
    run = fleet.power_on(identity.serial_number, identity, driver)
    assert run.phase == "awaiting_configuration" and run.pane == "AwaitingConfiguration"
    [row] = fleet.list()
    assert row["phase"] == "awaiting_configuration" and row["enrolled"] is True

    stack.command(identity.udid, "DeviceConfigured")
    run = fleet.run_agent(identity.serial_number, driver)
    assert run.phase == "home" and fleet.get(identity.serial_number).phase == "home"
    device = fleet.get(identity.serial_number)
    issuer = cert_from_pem(device.state.device_cert_pem).issuer
    assert issuer == stack.activation.device_ca_certificate().subject
    assert "ActionButton" not in [p for p, _ in device.panes()]  # an iPad has none


def test_activation_endpoint_shapes(stack: Stack) -> None:
    base = "http://mdmsim.test/apple/activation"
    assert stack.http.post(f"{base}/profile", content=b"[]").status_code == 400
    r = stack.http.post(f"{base}/profile", json={"action": "Nope", "sn": "X"})
    assert (r.status_code, r.text) == (400, "INVALID_ACTION")
    r = stack.http.post(f"{base}/profile", json={"action": "RequestProfileConfiguration", "sn": "UNKNOWN123"})
    assert (r.status_code, r.json()) == (200, {})
    device = stack.new_device()
    stack.define_profile([device.serial], is_supervised=True, is_mdm_removable=False, org_magic="m-1")
    record = stack.http.post(f"{base}/profile", json={"action": "RequestProfileConfiguration",
                                                      "sn": device.serial}).json()  # fmt: skip
    assert record["IsSupervised"] is True and record["IsMDMUnremovable"] is True
    assert record["ConfigurationURL"] == f"{stack.mdm_url}/enroll"
    assert record["OrganizationName"] == "Contoso Pharmaceuticals" and record["OrganizationMagic"] == "m-1"
    pem = stack.http.get(f"{base}/device-ca.pem")
    assert pem.status_code == 200 and cert_from_pem(pem.content) == stack.activation.device_ca_certificate()


def test_cli_power_on_walks_a_device_from_the_identity_endpoint(stack: Stack, tmp_path) -> None:
    """``mdmsim device power-on`` against a served world, with the identity document the lead serves."""
    import dataclasses

    from click.testing import CliRunner
    from flask import Flask, jsonify

    from mdm.protocol.x509 import cert_to_pem, key_to_pem, new_private_key
    from simulator.device.cli import device as device_group

    identity = stack.identities.one("iPhone 15 Pro", os_version="17.5")
    stack.portal.add_devices([{"serial_number": identity.serial_number, "model": identity.model_name,
                               "description": identity.description, "color": identity.color,
                               "os": identity.os, "device_family": "iPhone"}],
                             server_uuid=stack.server_uuid)  # fmt: skip
    key = new_private_key()
    cert = stack.activation.issue_device_identity(identity.udid, identity.serial_number, key.public_key())
    sim = Flask("sim")

    @sim.get("/devices/<serial>/identity")
    def identity_document(serial: str):  # the shape the CLI documents
        return jsonify({"identity": dataclasses.asdict(identity), "device_key_pem": key_to_pem(key).decode(),
                        "device_certificate_pem": cert_to_pem(cert).decode()})  # fmt: skip

    @sim.get("/clock")
    def clock():  # world time, so the device checks certificates against the world's clock
        from mdm.platform.clock import isoformat

        return jsonify({"now": isoformat(stack.clock.now()), "frozen": True})

    stack.apps["/_sim"] = sim
    with stack.serve() as url:
        stack.define_profile([identity.serial_number], is_supervised=True, skip_setup_items=["Siri"])
        result = CliRunner().invoke(
            device_group, ["power-on", identity.serial_number, "--server", url, "--data-dir", str(tmp_path)]
        )
    assert result.exit_code == 0, result.output
    assert "ActionButton" in result.output and "HomeScreen" in result.output
    listed = CliRunner().invoke(device_group, ["list", "--data-dir", str(tmp_path)])
    assert identity.serial_number in listed.output and "home" in listed.output
