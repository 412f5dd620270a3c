"""The same device logic enrolls over real sockets, against ``mdmsim serve`` in another process.

The device runs here, in the ``mdmsim device power-on`` command; Apple, the MDM server and the
controller run in the server process. Only HTTP crosses between them. Over sockets a device learns of
pushes on the stream it holds to the push gateway's device listener, as a real device does.
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
from oauthlib.oauth1 import Client

from simulator import World
from simulator.device.agent import agent_round
from simulator.device.drivers import HTTPDriver, SocketPushStream
from simulator.load.admin import WorldAdmin, device_from_bundle
from simulator.load.server import served_world


def dep_session(http: httpx.Client, dep: str, creds: dict) -> str:
    oauth = Client(creds["consumer_key"], client_secret=creds["consumer_secret"],
                   resource_owner_key=creds["access_token"], resource_owner_secret=creds["access_secret"], realm="ADM")
    _, headers, _ = oauth.sign(f"{dep}/session")
    reply = http.get(f"{dep}/session", headers={**headers, "User-Agent": "test/1"})
    assert reply.status_code == 200, reply.text
    return reply.json()["auth_session_token"]


def test_device_enrolls_against_mdmsim_serve_in_another_process() -> None:
    with served_world(devices=3, seed=21) as url, httpx.Client(base_url=url, timeout=30) as http:
        info = http.get("/_sim/").json()
        creds = http.get(info["credentials"]).json()
        dep = info["urls"]["dep"]
        headers = {"X-ADM-Auth-Session": dep_session(http, dep, creds), "User-Agent": "test/1"}
        serial = http.get("/apple/portal/api/devices", params={"limit": 1}).json()["devices"][0]["serial_number"]
        defined = http.post(f"{dep}/profile", headers=headers, json={
            "profile_name": "Over sockets", "url": f"{info['urls']['mdm']}/enroll", "is_supervised": True,
            "skip_setup_items": ["Siri"], "department": "Sockets", "devices": [serial]})
        assert defined.status_code == 200 and defined.json()["devices"][serial] == "SUCCESS"

        run = subprocess.run(
            [sys.executable, "-m", "simulator.cli", "device", "power-on", serial, "--server", url],
            capture_output=True, text=True, timeout=120, env={"COLUMNS": "200", "PATH": ""},
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert "RemoteManagement" in run.stdout and "Sockets" in run.stdout
        assert "stopped: home" in run.stdout

        devices = http.get("/mdm/api/v1/devices").json()
        listed = devices.get("devices", devices) if isinstance(devices, dict) else devices
        enrolled = [d for d in listed if d.get("serial_number") == serial]
        assert enrolled and enrolled[0]["enrolled"] is True


def test_an_enrolled_device_wakes_on_the_push_its_stream_delivers() -> None:
    with World(devices=2, seed=22) as world, world.serve() as served, WorldAdmin(served.url) as admin:
        assert admin.info["urls"]["apns_stream"] == served.apns_stream_url  # the world advertises it
        serial = admin.serials(1)[0]
        admin.assign_profile(admin.define_profile(), [serial])
        device = device_from_bundle(admin.identity_bundles([serial])[0])
        with httpx.Client(timeout=30) as http:
            driver = HTTPDriver(http, now=admin.world_now())
            assert driver.run_until_home(device) == "home" and device.enrolled
            token = device.state.push_token
            assert token is not None
            stream = SocketPushStream(served.apns_stream_url, token, timeout=10)
            assert stream.open(), stream.error
            try:
                assert stream.wait(0) == []  # nothing pending: the stream is quiet
                admin.enqueue([device.udid], {"RequestType": "DeviceInformation", "Queries": ["OSVersion"]})
                notes = stream.wait(10)
                assert [n["payload"] for n in notes] == [{"mdm": device.state.push_magic}]
                report = driver.run(agent_round(device, driver.now, notifications=notes, connect=False))
                assert report.pushed and report.commands == [("DeviceInformation", "Acknowledged")]
            finally:
                stream.close()

            # A push sent while the device is away waits at APNs and arrives as soon as the stream opens.
            admin.enqueue([device.udid], {"RequestType": "SecurityInfo"})
            again = SocketPushStream(served.apns_stream_url, token, timeout=10)
            try:
                assert again.open(), again.error
                notes = again.wait(10)
                report = driver.run(agent_round(device, driver.now, notifications=notes, connect=False))
                assert report.commands == [("SecurityInfo", "Acknowledged")]
                # a stream's notifications that are not this device's push wake nothing
                stranger = [{"payload": {"mdm": "someone else's magic"}}]
                assert not driver.run(agent_round(device, driver.now, notifications=stranger, connect=False)).connected
            finally:
                again.close()
        assert served.gateway is not None and served.gateway.delivered_count == 2


def test_mdmsim_device_listens_on_its_stream_and_answers_a_push() -> None:
    with World(devices=2, seed=24) as world, world.serve() as served, WorldAdmin(served.url) as admin:
        serial = admin.serials(1)[0]
        admin.assign_profile(admin.define_profile(), [serial])
        udid = world.identity(serial).udid
        device = subprocess.Popen(
            [sys.executable, "-m", "simulator.cli", "device", "power-on", serial, "--server", served.url,
             "--listen", "60", "--pushes", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"COLUMNS": "200", "PATH": ""},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not any(d["udid"] == udid and d["enrolled"] for d in world.mdm.devices()):
                assert time.monotonic() < deadline and device.poll() is None, device.stderr.read() if device.stderr else ""
                time.sleep(0.05)
            admin.enqueue([udid], {"RequestType": "DeviceInformation", "Queries": ["OSVersion"]})
            out, err = device.communicate(timeout=60)
        finally:
            if device.poll() is None:
                device.kill()
                device.wait()
        assert device.returncode == 0, out[-2000:] + err[-2000:]
        assert f"holding the push stream at {served.apns_stream_url}" in out
        assert "push → connected: DeviceInformation Acknowledged" in out
        assert "stopped: home" in out
