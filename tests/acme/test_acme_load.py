"""ACME at load: the fleet runner's and Locust's devices enroll over ACME when a served world's profiles
name it (no change to either runner: devices made from identity bundles carry their own Secure Enclave)."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from simulator import World
from simulator.load.admin import WorldAdmin
from simulator.load.fleet import FleetOptions, run_fleet
from simulator.load.locustfile_path import LOCUSTFILE
from simulator.load.server import served_world


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


def test_mdmsim_serve_identity_acme_across_two_workers_on_one_data_directory() -> None:
    """``mdmsim serve --identity acme --data-dir … --workers 2``: a device enrolled by one worker process
    checks in through whichever worker answers next: every worker unwraps its Secure Enclave key with the
    fuse file beside the device store (nobody else can: the key is in no answer). Devices do not wake on
    their pushes here (``--no-wake-devices``): the test runs the agent itself, on whichever worker answers."""
    with served_world(devices=6, seed=54, data_dir="tmp", workers=2, identity="acme", extra=("--no-wake-devices",)) as url, \
            WorldAdmin(url) as admin, httpx.Client(base_url=url, timeout=60) as http:
        serials = admin.serials()
        admin.assign_profile(admin.define_profile(), serials)
        bundles = {b["identity"]["serial_number"]: b for b in admin.identity_bundles(serials)}
        serial = next(s for s in serials if int(bundles[s]["identity"]["os_version"].split(".")[0]) >= 16)
        powered = http.post(f"/_sim/devices/{serial}/power-on").json()
        assert powered["enrolled"] is True, powered["transcript"][-3:]
        assert any("identity from ACME (hardware-bound, attested)" in e[3] for e in powered["transcript"])
        udid = bundles[serial]["identity"]["udid"]
        identity = http.get(f"/mdm/api/v1/devices/{udid}").json()["identity"]
        assert identity["attested"] and identity["attestation"]["serial_number"] == serial
        for _ in range(4):  # four commands, four agent runs, each on whichever worker answers it
            command = admin.enqueue([udid], {"RequestType": "DeviceInformation", "Queries": ["UDID"]})
            ran = http.post(f"/_sim/devices/{serial}/agent").json()
            assert [c for c in ran["commands"] if c[3] == command][0][2] == "Acknowledged"
        assert http.get("/apple/activation/attestation-root.pem").text.startswith("-----BEGIN CERTIFICATE-----")
