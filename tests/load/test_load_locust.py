"""The packaged locustfile: devices enroll under Locust, headless and in a master/worker pair."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import simulator.load.locustfile_path as locustfile_path
from simulator import World
from simulator.load.server import free_port

LOCUSTFILE = locustfile_path.LOCUSTFILE


def _locust(*args: str, timeout: float = 40) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args],
                          capture_output=True, text=True, timeout=timeout)


def _entries(stdout: str) -> dict[str, dict[str, Any]]:
    """Locust's ``--json`` stats, by "<type> <name>"."""
    start = stdout.index("[")
    return {f"{e['method']} {e['name']}": e for e in json.loads(stdout[start:])}


def _assert_devices_enrolled(stats: dict[str, dict[str, Any]], stderr: str, at_least: int) -> None:
    assert "DEVICE enrollment" in stats, stderr[-2000:]
    assert stats["DEVICE enrollment"]["num_requests"] >= at_least
    assert stats["POST /mdm/enroll"]["num_requests"] >= at_least
    failures = {name: e["num_failures"] for name, e in stats.items() if e["num_failures"]}
    assert failures == {}, stderr[-2000:]


def test_the_locustfile_ships_in_the_package() -> None:
    assert Path(LOCUSTFILE).name == "locustfile.py" and Path(LOCUSTFILE).is_file()


def _push_to_enrolled(world: World, count: int, deadline_s: float) -> list[str]:
    """Once ``count`` devices are enrolled (polled until ``deadline_s``), send them DeviceInformation."""
    deadline = time.monotonic() + deadline_s
    udids: list[str] = []
    while len(udids) < count and time.monotonic() < deadline:
        udids = [d["udid"] for d in world.mdm.devices() if d["enrolled"]][:count]
        time.sleep(0.05)
    if udids:
        reply = world.http.post("/mdm/api/v1/commands", json={
            "udids": udids, "command": {"RequestType": "DeviceInformation", "Queries": ["OSVersion"]}})
        assert reply.status_code == 201, reply.text
    return udids


def test_headless_locust_enrolls_devices_without_failures() -> None:
    with World(devices=30, seed=31) as world, world.serve() as served:
        locust = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "10", "-r", "10", "-t", "8s",
             "--host", served.url, "--json", "--only-summary", "--loglevel", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            pushed = _push_to_enrolled(world, 5, deadline_s=30)
            stdout, stderr = locust.communicate(timeout=40)
        finally:
            if locust.poll() is None:
                locust.kill()
                locust.wait()
        stats = _entries(stdout)
        _assert_devices_enrolled(stats, stderr, at_least=5)
        # each device user held its stream and woke on the push that came over it
        assert len(pushed) == 5
        assert stats["STREAM /events (open)"]["num_requests"] >= 5
        assert stats["APNS push"]["num_requests"] >= 5, stats.keys()
        assert stats["COMMAND DeviceInformation"]["num_requests"] >= 5
        assert not [name for name in stats if "/apple/apns" in name]  # nobody polled APNs
        enrolled = [d for d in world.devices.list() if d["enrolled"]]
        assert enrolled == []  # devices ran in Locust's process, not the world's: the MDM saw them
        assert len([d for d in world.mdm.devices() if d["enrolled"]]) >= 5
        # the world's profiles name a SCEP payload: Locust's devices got their identities over SCEP
        mdm = world.traffic()["mdm"]
        assert mdm["get_scep"]["200"] >= 2 * 5 and mdm["post_scep"]["200"] >= 5  # GetCACert+Caps, PKIOperation


def test_a_master_and_a_worker_enroll_devices_without_failures() -> None:
    with World(devices=30, seed=32) as world, world.serve() as served:
        port = free_port()
        worker = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host", "127.0.0.1",
             "--master-port", str(port), "--loglevel", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            run = _locust("--master", "--expect-workers", "1", "--master-bind-host", "127.0.0.1",
                          "--master-bind-port", str(port), "--headless", "-u", "8", "-r", "8", "-t", "6s",
                          "--host", served.url, "--json", "--only-summary", "--loglevel", "WARNING")
        finally:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        _assert_devices_enrolled(_entries(run.stdout), run.stderr, at_least=4)
        # serials were claimed through the world's counter: no two users shared a device
        assert world.http.post("/_sim/counters/locust-devices").json()["value"] >= 7
