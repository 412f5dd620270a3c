"""Atomic rules under concurrent load, with two gunicorn worker processes sharing one data directory.

In-process locks would not hold across workers; these rules are enforced by the store in one SQLite
transaction, so they hold whichever worker a request lands on: one sync in flight, a signed DEP
session request accepted once (its nonce), and each MDM command delivered once, in queue order.
"""

from __future__ import annotations

import plistlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from oauthlib.oauth1 import Client as OAuthClient
from served import GRAPH, Served, create_profile, onboard, wait_synced

from simulator.device.cli import fetch_device
from simulator.device.drivers import HTTPDriver
from simulator.device.machine import DeviceScript

pytestmark = pytest.mark.slow
DEVICES = 30


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str, str]]:
    server = Served(tmp_path_factory.mktemp("workers") / "world", devices=DEVICES, workers=2).start()
    try:
        with server.client() as http:
            setting = onboard(http)
            profile = create_profile(http, setting)
        yield server, setting, profile
    finally:
        server.kill9()


def test_hundred_concurrent_sync_requests_start_exactly_one(served: tuple[Served, str, str]) -> None:
    server, setting, _ = served
    with server.client() as http:
        # Slow pages keep the one sync in flight while the other 99 requests arrive.
        http.post("/_sim/faults", json={"latency_ms": {"post_server_devices": 1500}}).raise_for_status()
    barrier = threading.Barrier(100)

    def press_sync(_: int) -> int:
        with server.client() as client:  # one connection each: spread over both workers
            barrier.wait()
            return client.post(f"{GRAPH}/{setting}/syncWithAppleDeviceEnrollmentProgram").status_code

    try:
        with ThreadPoolExecutor(max_workers=100) as pool:
            statuses = list(pool.map(press_sync, range(100)))
    finally:
        with server.client() as http:
            http.delete("/_sim/faults").raise_for_status()
    assert statuses.count(204) == 1, sorted(statuses)
    assert set(statuses) <= {204, 409, 429}
    with server.client() as http:
        assert wait_synced(http, setting)["syncedDeviceCount"] == DEVICES


def test_one_signed_session_request_replayed_at_both_workers_is_accepted_once(served: tuple[Served, str, str]) -> None:
    server, _, _ = served
    with server.client() as http:
        server_uuid = next(s for s in http.get("/apple/portal/api/servers").json() if s["server_name"] == "mdmsim")["server_uuid"]
        keys = http.get(f"/apple/portal/api/servers/{server_uuid}/token").json()
    oauth = OAuthClient(keys["consumer_key"], client_secret=keys["consumer_secret"],
                        resource_owner_key=keys["access_token"], resource_owner_secret=keys["access_secret"], realm="ADM")
    url, headers, _ = oauth.sign(f"{server.url}/apple/dep/session")
    copies = 24
    barrier = threading.Barrier(copies)

    def replay(_: int) -> int:
        with httpx.Client(timeout=30) as client:  # separate connections: the two workers accept them
            barrier.wait()
            return client.get(url, headers={**headers, "User-Agent": "replay"}).status_code

    with ThreadPoolExecutor(max_workers=copies) as pool:
        statuses = list(pool.map(replay, range(copies)))
    assert statuses.count(200) == 1, statuses
    assert set(statuses) - {200} <= {400, 401, 403}


def _connect(client: httpx.Client, device: Any, url: str, report: dict[str, Any]) -> str | None:
    body = plistlib.dumps({"UDID": device.udid, **report})
    reply = client.put(url, content=body, headers={"Mdm-Signature": device.mdm_signature(body),
                                                    "Content-Type": "application/x-apple-aspen-mdm"})
    assert reply.status_code == 200, reply.text
    if not reply.content:
        return None
    return str(plistlib.loads(reply.content)["CommandUUID"])


def test_commands_are_delivered_once_each_and_in_order_to_concurrent_connects(served: tuple[Served, str, str]) -> None:
    server, setting, profile = served
    with server.client() as http:
        wait_synced(http, setting)
        serial = http.get("/apple/portal/api/devices", params={"limit": 1}).json()["devices"][0]["serial_number"]
        assigned = http.post(f"{GRAPH}/{setting}/enrollmentProfiles/{profile}/updateDeviceProfileAssignment",
                             json={"deviceIds": [serial]})
        assert assigned.status_code == 204, assigned.text
    with httpx.Client(timeout=30) as client:
        device = fetch_device(client, server.url, serial, DeviceScript())  # a device in this process
        assert HTTPDriver(client).run_until_home(device) == "home", device.transcript[-3:]
        url = device.state.enrollment["server_url"]
        while (pending := _connect(client, device, url, {"Status": "Idle"})) is not None:  # drain enrollment's own
            _connect(client, device, url, {"Status": "Acknowledged", "CommandUUID": pending})
    with server.client() as http:
        queued = [http.post("/mdm/api/v1/commands", json={
            "udids": [device.udid], "command": {"RequestType": "DeviceInformation", "Queries": ["SerialNumber"]},
        }).raise_for_status().json()["command_uuid"] for _ in range(20)]
    order = {uuid: index for index, uuid in enumerate(queued)}
    barrier = threading.Barrier(6)

    def agent(_: int) -> list[str]:
        """One of six concurrent connections: poll, answer what it got, and go on until the queue is empty."""
        received: list[str] = []
        with httpx.Client(timeout=30) as client:
            barrier.wait()
            command = _connect(client, device, url, {"Status": "Idle"})
            while command is not None:
                received.append(command)
                command = _connect(client, device, url, {"Status": "Acknowledged", "CommandUUID": command})
        return received

    with ThreadPoolExecutor(max_workers=6) as pool:
        per_connection = list(pool.map(agent, range(6)))
    delivered = [uuid for received in per_connection for uuid in received]
    assert sorted(delivered, key=order.__getitem__) == queued  # every command, each exactly once
    for received in per_connection:  # and no connection ever got an older command after a newer one
        assert [order[u] for u in received] == sorted(order[u] for u in received)
    with server.client() as http:
        for uuid in queued:
            assert "Acknowledged" in str(http.get(f"/mdm/api/v1/commands/{uuid}").json())


def test_recent_traffic_shows_what_every_worker_answered(served: tuple[Served, str, str]) -> None:
    """``/_sim/traffic/recent`` is read from the data directory, not from the worker that answers it."""
    server, _, _ = served
    probes = [f"/apple/dep/recent-probe-{i}" for i in range(20)]

    def probe(path: str) -> int:
        with httpx.Client(timeout=30) as client:  # a connection each: both workers answer some
            return client.get(f"{server.url}{path}").status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert set(pool.map(probe, probes)) == {404}
    for _ in range(6):  # each read on a connection of its own, so either worker may answer it
        with server.client() as http:
            recent = [entry["path"] for entry in http.get("/_sim/traffic/recent").json()]
        assert set(probes) <= set(recent)
