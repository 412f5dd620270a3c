"""ACME at load: the fleet runner's and Locust's devices enroll over ACME when a served world's profiles
name it (no change to either runner: devices made from identity bundles carry their own Secure Enclave)."""

from __future__ import annotations

import json
import subprocess
import sys

from simulator import World
from simulator.load.fleet import FleetOptions, run_fleet
from simulator.load.locustfile_path import LOCUSTFILE


def _modern(world: World, serials: list[str]) -> int:
    return sum(1 for s in serials if int(world.identity(s).os_version.split(".")[0]) >= 16)


def test_a_fleet_enrolls_over_acme_with_attested_keys() -> None:
    with World(devices=24, seed=52, identity="acme") as world, world.serve() as served:
        report = run_fleet(served.url, FleetOptions(devices=24, concurrency=8, scep_key_pool=4))
        assert (report.enrolled, report.acknowledged, report.failed) == (24, 24, 0), report.errors
        modern = _modern(world, world.serials)
        assert modern >= 12
        finalize = {k: v for k, v in report.endpoints.items() if k.endswith("/finalize")}
        assert sum(row["statuses"].get("200", 0) for row in finalize.values()) == modern, report.endpoints.keys()
        assert report.endpoints["POST /apple/activation/attestation"]["statuses"] == {"200": modern}
        attested = [d for d in world.mdm.devices() if (world.mdm.device(d["udid"]) or {}).get("identity")]
        assert len(attested) == modern and all(world.mdm.device(d["udid"])["identity"]["attested"] for d in attested)


def test_locust_devices_enroll_over_acme() -> None:
    with World(devices=20, seed=53, identity="acme") as world, world.serve() as served:
        run = subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "6", "-r", "6",
                              "-t", "5s", "--host", served.url, "--json", "--only-summary", "--loglevel", "WARNING"],
                             capture_output=True, text=True, timeout=60)
        stats = {f"{e['method']} {e['name']}": e for e in json.loads(run.stdout[run.stdout.index("["):])}
        assert stats["DEVICE enrollment"]["num_requests"] >= 4 and stats["DEVICE enrollment"]["num_failures"] == 0, \
            run.stderr[-2000:]
        mdm = world.traffic()["mdm"]
        assert mdm["post_acme_order_object_id_finalize"]["200"] >= 3  # identities over ACME
        assert world.traffic()["activation"]["post_attestation"]["200"] == mdm["post_acme_order_object_id_finalize"]["200"]
        assert not any(e["num_failures"] for e in stats.values())
