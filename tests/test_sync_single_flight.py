"""100 admins press Sync at once: one sync runs, 99 are told when to come back, Apple sees one sync."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import httpx
from tests_support import GRAPH, onboard

from simulator import World


def test_hundred_concurrent_syncs_start_exactly_one() -> None:
    with World(devices=50, seed=9) as world, world.serve() as served:
        setting = onboard(world)
        world.http.delete("/_sim/traffic")  # onboarding called Apple too: count from here
        # Apple answers slowly, so the one sync is still in flight while the others arrive.
        world.faults.latency("post_server_devices", 400)
        url = f"{served.url}{GRAPH}/{setting}/syncWithAppleDeviceEnrollmentProgram"
        with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=100)) as http, \
                ThreadPoolExecutor(max_workers=50) as pool:
            replies = list(pool.map(lambda _: http.post(url), range(100)))
        statuses = sorted(r.status_code for r in replies)
        assert statuses.count(204) == 1 and statuses.count(409) == 99, statuses
        for refused in (r for r in replies if r.status_code == 409):
            retry_after = int(refused.headers["Retry-After"])
            assert 590 <= retry_after <= 600  # what is left of the 10-minute window, in whole seconds
            assert refused.json()["error"]["code"]
        done = world.controller.wait_for_sync(setting, 30)
        assert done["syncedDeviceCount"] == 50
        apple = world.traffic()["dep"]
        assert apple["post_server_devices"] == {"200": math.ceil(50 / 1000)}
        assert sum(apple.get("get_session", {}).values()) <= 1
        assert set(apple) <= {"post_server_devices", "get_session", "get_account", "post_devices_sync"}
