"""Every exchange of a device's enrollment, recorded where its HTTP goes: who called whom, in order, with bodies.

The timeline a user opens on the dashboard and reads in ``mdmsim demo --json`` is this record; these
tests check it on worlds without a browser: the order of an enrollment, the calls the parties make while
answering (a webhook, a push), work a party does on its own threads, bounds, and ``/_sim`` serving it.
"""

from __future__ import annotations

import base64
import json

import pytest
from tests_support import GRAPH, onboard

import simulator.device.store as device_store
from simulator import World
from simulator.device.drivers import WSGIDriver
from simulator.exchanges import MAX_BODY, Tape, note_of, render_body


def assigned(world: World, serials: list[str], **profile: object) -> None:
    setting = onboard(world)
    world.http.post(f"{GRAPH}/{setting}/syncWithAppleDeviceEnrollmentProgram")
    world.controller.wait_for_sync(setting, 30)
    created = world.http.post(f"{GRAPH}/{setting}/enrollmentProfiles", json={"displayName": "P", **profile})
    assert created.status_code == 201, created.text
    reply = world.http.post(f"{GRAPH}/{setting}/enrollmentProfiles/{created.json()['id']}/updateDeviceProfileAssignment",
                            json={"deviceIds": serials})  # fmt: skip
    assert reply.status_code == 204, reply.text


def steps(world: World, serial: str) -> list[tuple[str, str, str, str]]:
    timeline = world.http.get(f"/_sim/devices/{serial}/exchanges").json()
    return [(e["source"], e["target"], e["method"], e["note"]) for e in timeline["exchanges"]]


ENROLLMENT = [
    ("device", "activation", "POST", "RequestProfileConfiguration"),
    ("device", "enroll", "POST", "MachineInfo → enrollment profile"),
    ("device", "scep", "GET", "GetCACert"),
    ("device", "scep", "GET", "GetCACaps"),
    ("device", "scep", "POST", "PKIOperation"),
    ("device", "checkin", "PUT", "Authenticate"),
    ("checkin", "controller", "POST", "mdm.Authenticate"),
    ("device", "checkin", "PUT", "TokenUpdate"),
    ("checkin", "controller", "POST", "mdm.TokenUpdate"),
]


def test_an_enrollment_is_recorded_in_order_with_the_calls_parties_make_while_answering() -> None:
    with World(devices=2, seed=11, background_sync=False) as world:
        serial = world.serials[0]
        assigned(world, [serial])
        world.devices.power_on(serial)
        assert steps(world, serial) == ENROLLMENT
        timeline = world.http.get(f"/_sim/devices/{serial}/exchanges").json()
        assert [lane for lane, _label in timeline["parties"]] == ["device", "activation", "enroll", "scep", "checkin",
                                                                     "controller"]
        first = timeline["exchanges"][0]
        assert first["path"] == "/apple/activation/profile" and first["status"] == 200 and first["depth"] == 0
        webhook = timeline["exchanges"][6]
        assert webhook["path"] == "/intune/webhooks/mdm" and webhook["depth"] == 1 and webhook["status"] == 204
        assert first["at"][:10] == world.clock.now().date().isoformat()  # world time, not the machine's

        # Bodies on demand: the check-in as its plist, MachineInfo as the plist Apple's device identity signs.
        authenticate = world.http.get(f"/_sim/devices/{serial}/exchanges/{timeline['exchanges'][5]['id']}").json()
        assert authenticate["request"]["body"]["kind"] == "plist"
        assert "<string>Authenticate</string>" in authenticate["request"]["body"]["text"]
        assert "Mdm-Signature".lower() in authenticate["request"]["headers"]
        enroll = world.http.get(f"/_sim/devices/{serial}/exchanges/{timeline['exchanges'][1]['id']}").json()
        assert enroll["request"]["body"]["kind"] == "cms" and "O=Apple Inc." in enroll["request"]["body"]["note"]
        assert "<key>SERIAL</key>" in enroll["request"]["body"]["text"]
        assert enroll["response"]["body"]["kind"] == "cms" and "PayloadContent" in enroll["response"]["body"]["text"]
        posted = world.http.get(f"/_sim/devices/{serial}/exchanges/{webhook['id']}").json()
        assert "raw_payload, decoded" in posted["request"]["body"]["text"]  # the webhook's check-in plist, readable
        assert "authorization" not in posted["request"]["headers"]  # the world's admin token is never kept

        # An agent round adds its own exchanges after the enrollment's.
        command = world.http.post("/mdm/api/v1/commands", json={
            "udids": [world.identity(serial).udid], "command": {"RequestType": "DeviceInformation", "Queries": ["UDID"]}})
        assert command.status_code in (200, 201)
        world.devices.run_agent(serial)
        later = steps(world, serial)[len(ENROLLMENT):]
        assert later[0] == ("device", "apns", "GET", "look for pushes")
        assert ("device", "connect", "PUT", "Idle → DeviceInformation") in later
        assert world.http.get(f"/_sim/devices/{world.serials[1]}/exchanges").status_code == 404  # never powered on


def test_webhooks_sent_on_the_mdm_servers_own_threads_still_join_the_device_timeline() -> None:
    """``mdmsim serve`` sends webhooks after the check-in answered, on outbound threads: they arrive after
    the device was saved, and are stored as they come."""
    with World(devices=1, seed=12, background_sync=False, synchronous_push=False) as world:
        serial = world.serials[0]
        assigned(world, [serial])
        world.devices.power_on(serial)
        assert world.mdm.outbound.dispatcher.drain(10)
        assert steps(world, serial) == ENROLLMENT


def test_a_device_and_the_world_keep_their_newest_exchanges_and_each_body_is_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(device_store, "EXCHANGE_LIMIT", 6)
    monkeypatch.setattr(device_store, "WORLD_EXCHANGE_LIMIT", 10)
    with World(devices=2, seed=13, background_sync=False) as world:
        first, second = world.serials
        assigned(world, [first, second])
        world.devices.power_on(first)
        assert steps(world, first) == ENROLLMENT[-6:]
        world.devices.power_on(second)
        assert steps(world, second) == ENROLLMENT[-6:]
        # The world keeps its ten newest exchanges at most (by id: 18 recorded, so ids 9..18): of the first
        # device's six kept (ids 4..9), only its last is that new.
        assert steps(world, first) == ENROLLMENT[-1:]

        tape = Tape(world.clock.now)
        exchange = tape.start("device", "POST", "http://mdmsim.invalid/mdm/checkin", {"Content-Type": "text/plain"},
                              b"x" * (MAX_BODY * 3), 0)  # fmt: skip
        assert len(exchange.request_body) == MAX_BODY and exchange.request_size == MAX_BODY * 3
        shown = render_body(exchange.request_headers, exchange.request_body, exchange.request_size)
        assert shown["kind"] == "text" and f"first {MAX_BODY:,} of {MAX_BODY * 3:,} bytes kept" in shown["note"]


def test_a_tape_hands_late_exchanges_to_its_sink_and_keeps_at_most_its_limit() -> None:
    with World(devices=0, seed=14) as world:
        tape = Tape(world.clock.now, limit=2)
        for method in ("GET", "PUT", "POST"):
            tape.add(tape.start("device", method, "http://mdmsim.invalid/mdm/connect", {}, b"", 0))
        assert [e.method for e in tape.close(lambda late: got.extend(late))] == ["GET", "PUT"]
        got: list = []
        tape.add(tape.start("checkin", "POST", "http://mdmsim.invalid/intune/webhooks/mdm", {}, b"{}", 1))
        assert [(e.source, e.target) for e in got] == [("checkin", "controller")]


def test_a_device_driven_by_a_wsgi_driver_records_its_own_exchanges_only() -> None:
    """httpx's WSGI transport is not the world's client: the calls its app makes are not the device's."""
    with World(devices=1, seed=15, background_sync=False) as world:
        serial = world.serials[0]
        assigned(world, [serial])
        driver = WSGIDriver(world.wsgi, now=world.clock.now)
        world.fleet.power_on(serial, world.identity(serial), driver)
        found = steps(world, serial)
        assert [s for s in found if s[0] == "device"] == [s for s in ENROLLMENT if s[0] == "device"]
        assert [s for s in found if s[0] != "device"] == []


def test_sim_controls_erase_power_on_several_and_refuse_bad_requests() -> None:
    with World(devices=4, seed=16, background_sync=False) as world:
        serials = world.serials
        assigned(world, serials[:2])
        many = world.http.post("/_sim/devices/power-on", json={"assigned": True})
        assert many.status_code == 200
        assert [d["serial_number"] for d in many.json()["devices"]] == serials[:2]
        assert all(d["phase"] == "home" for d in many.json()["devices"])
        chosen = world.http.post("/_sim/devices/power-on", json={"serials": [serials[2], "NOSUCHSERIAL"]}).json()
        assert [d["serial_number"] for d in chosen["devices"]] == [serials[2]] and chosen["missing"] == ["NOSUCHSERIAL"]
        for bad in ({}, {"assigned": "yes"}, {"serials": []}, {"serials": [1]}, [serials[0]]):
            refused = world.http.post("/_sim/devices/power-on", json=bad)
            assert refused.status_code == 400 and "assigned" in refused.json()["error"], bad

        erased = world.http.post(f"/_sim/devices/{serials[0]}/erase")
        assert erased.status_code == 200
        assert (erased.json()["phase"], erased.json()["pane"], erased.json()["enrolled"]) == ("setup", "Hello", False)
        assert world.http.post(f"/_sim/devices/{serials[3]}/erase").status_code == 404  # never powered on
        assert world.http.get(f"/_sim/devices/{serials[0]}/exchanges/999999").status_code == 404
        again = world.devices.power_on(serials[0])
        assert again.phase == "home" and steps(world, serials[0])[-len(ENROLLMENT):] == ENROLLMENT

        screens = world.http.get("/_sim/screens").json()["screens"]
        assert screens["RemoteManagement"]["rows"] == [["About Configuration", "{department}"], ["Need Help?", "{phone}"]]


def test_an_acme_request_is_named_by_the_resource_its_jws_was_signed_for() -> None:
    protected = base64.urlsafe_b64encode(json.dumps({"alg": "ES256", "nonce": "n",
                                                     "url": "https://mdm.example/mdm/acme/new-order"}).encode())
    body = json.dumps({"protected": protected.rstrip(b"=").decode(), "payload": "", "signature": "s"}).encode()
    assert note_of({"target": "acme", "url": "https://mdm.example/mdm/acme/new-order", "request_body": body}) == "new-order"
    assert note_of({"target": "acme", "url": "https://mdm.example/mdm/acme/x", "request_body": b'{"protected": "%%"}'}) == ""
