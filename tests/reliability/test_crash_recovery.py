"""``kill -9`` in the middle of real work, then a restart on the same data directory.

What an API acknowledged before the crash (a token, a profile, assignments, synced devices, enrolled
devices, queued commands) must still be there after it, because every acknowledgement is a committed
SQLite transaction (WAL) and nothing is kept in process memory. Work cut off mid-way must end by the
rules rather than hang: a sync whose worker died stays "running" only until its 10-minute window
closes in world time, and devices cut off mid-enrollment finish when powered on again.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from served import GRAPH, Served, create_profile, onboard, poll, setting_of, wait_synced

pytestmark = pytest.mark.slow

SYNC = "/syncWithAppleDeviceEnrollmentProgram"


def test_kill_9_mid_way_through_a_100000_device_sync(tmp_path: Path) -> None:
    data = tmp_path / "world"
    served = Served(data, devices=100_000).start(deadline_s=120)
    try:
        with served.client() as http:
            setting = onboard(http)
            profile = create_profile(http, setting)
            # Apple answers each page of 1,000 slowly, so the crash certainly lands with pages in flight.
            http.post("/_sim/faults", json={"latency_ms": {"post_server_devices": 250}}).raise_for_status()
            assert http.post(f"{GRAPH}/{setting}{SYNC}").status_code == 204
            before = poll(lambda: (s := setting_of(http, setting))["syncProgress"]["pages"] >= 3 and s,
                          deadline_s=60, what="three pages of the sync")
            assert before["syncStatus"] == "running"
        served.kill9()

        served.start(deadline_s=60)
        with served.client() as http:
            after = setting_of(http, setting)
            # Acknowledged before the crash, there after it: the token, the profile, the pages synced.
            assert after["tokenType"] == "dep" and after["tokenName"] == "Contoso"
            assert http.get(f"{GRAPH}/{setting}/enrollmentProfiles/{profile}").status_code == 200
            assert after["syncProgress"]["pages"] >= before["syncProgress"]["pages"]
            listed = http.get(f"{GRAPH}/{setting}/importedAppleDeviceIdentities", params={"$top": "5"}).json()["value"]
            assert len(listed) == 5
            # The sync's worker is gone; until its window closes the sync counts as in flight.
            assert after["syncStatus"] == "running"
            assert http.post(f"{GRAPH}/{setting}{SYNC}").status_code == 409
            http.delete("/_sim/faults").raise_for_status()
            http.post("/_sim/clock", json={"advance_seconds": 11 * 60}).raise_for_status()
            ended = setting_of(http, setting)
            assert ended["syncStatus"] in ("failed", "idle"), ended
            assert http.post(f"{GRAPH}/{setting}{SYNC}").status_code == 204  # a new sync is accepted
            done = wait_synced(http, setting, deadline_s=120)
            assert (done["syncStatus"], done["syncedDeviceCount"]) == ("idle", 100_000), done
    finally:
        served.kill9()


def test_kill_9_mid_way_through_a_fleet_enrollment(tmp_path: Path) -> None:
    data = tmp_path / "world"
    devices = 40
    served = Served(data, devices=devices).start()
    try:
        with served.client() as http:
            setting = onboard(http)
            profile = create_profile(http, setting)
            assert http.post(f"{GRAPH}/{setting}{SYNC}").status_code == 204
            assert wait_synced(http, setting)["syncedDeviceCount"] == devices
            listed = http.get("/apple/portal/api/devices", params={"limit": devices}).json()["devices"]
            serials = [d["serial_number"] for d in listed]
            assigned = http.post(f"{GRAPH}/{setting}/enrollmentProfiles/{profile}/updateDeviceProfileAssignment",
                                 json={"deviceIds": serials})
            assert assigned.status_code == 204, assigned.text

        enrolled: dict[str, dict[str, Any]] = {}
        commands: dict[str, str] = {}
        lock = threading.Lock()
        enough = threading.Event()

        def power_on(serial: str) -> None:
            if enough.is_set():
                return
            try:
                with served.client() as client:
                    reply = client.post(f"/_sim/devices/{serial}/power-on")
                    if reply.status_code != 200 or not reply.json().get("enrolled"):
                        return
                    udid = reply.json().get("udid") or client.get(f"/_sim/devices/{serial}/identity").json()["identity"]["udid"]
                    queued = client.post("/mdm/api/v1/commands", json={
                        "udids": [udid], "command": {"RequestType": "DeviceInformation", "Queries": ["SerialNumber"]}})
                    if queued.status_code != 201:
                        return
            except httpx.HTTPError:
                return  # the server died under this request: nothing was acknowledged
            with lock:
                enrolled[serial] = {"udid": udid}
                commands[serial] = queued.json()["command_uuid"]
                if len(enrolled) >= 10:
                    enough.set()

        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(power_on, s) for s in serials]
            assert enough.wait(120), "ten devices did not enroll"
            served.kill9()  # while the other threads' power-ons are in flight
            for future in futures:
                future.result()
        with lock:
            acknowledged = dict(enrolled)
            queued = dict(commands)
        assert len(acknowledged) >= 10

        served.start()
        with served.client() as http:
            for serial, seen in acknowledged.items():
                device = http.get(f"/_sim/devices/{serial}").json()
                assert device["enrolled"] is True, (serial, device)
                assert http.get(f"/mdm/api/v1/devices/{seen['udid']}").status_code == 200
                status = http.get(f"/mdm/api/v1/commands/{queued[serial]}")
                assert status.status_code == 200, status.text  # the queued command survived
            listed = http.get("/apple/portal/api/devices", params={"limit": devices}).json()["devices"]
            portal = {d["serial_number"]: d for d in listed}
            assert all(portal[s].get("profile_uuid") for s in serials)  # the assignments survived
            for serial in serials:  # power on again: the devices cut off mid-way finish enrolling
                reply = http.post(f"/_sim/devices/{serial}/power-on")
                assert reply.status_code == 200 and reply.json()["enrolled"] is True, (serial, reply.json()["transcript"][-4:])
            for serial in acknowledged:  # and the queued commands are answered after the crash
                http.post(f"/_sim/devices/{serial}/agent").raise_for_status()
                status = http.get(f"/mdm/api/v1/commands/{queued[serial]}").json()
                assert "Acknowledged" in str(status), status
    finally:
        served.kill9()
