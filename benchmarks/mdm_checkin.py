"""MDM check-in throughput over real HTTP against ``mdmsim serve``: Idle and command round trips, and a floor.

The server is ``mdmsim serve --data-dir <tmp> --workers W`` (started by :mod:`simulator.load.server`, as
every benchmark does). D devices (one per client thread) enroll over HTTP first, exactly as the fleet
runner enrolls them (activation, MachineInfo, profile, Authenticate, TokenUpdate, DeviceInformation).
Then every body the clients send is signed with each device's own MDM identity (``Mdm-Signature`` over
Idle, and over Acknowledged for chosen CommandUUIDs) before the clock starts, so the timed loops only
send bytes. The floor is a bare endpoint on the same server stack in the same run: ``/_sim/bench/page``
(gunicorn, the world's middleware and routing, no work).

Phases (each ``--seconds`` long, ``--threads`` client threads, one device per thread):
  floor      POST /_sim/bench/page with an Idle-sized body
  idle       PUT /mdm/connect {Status: Idle} → empty 200 (signature verified, enrollment touched)
  command    POST /mdm/api/v1/commands → PUT Idle (gets it) → PUT Acknowledged (stored) ; counted once

Last line: JSON ``{"requests_per_s", "floor_requests_per_s", "floor_ratio", "command_round_trips_per_s", …}``.

    python benchmarks/mdm_checkin.py --threads 16 --seconds 5
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import plistlib
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mdm.protocol import cms  # noqa: E402
from simulator.load.fleet import FleetOptions, FleetRunner, run_fleet  # noqa: E402
from simulator.load.server import served_world  # noqa: E402


def presign(runner: FleetRunner, commands: int) -> list[dict[str, Any]]:
    """Per enrolled device: its connect URL, a signed Idle and ``commands`` signed acknowledgements."""
    out = []
    for i, device in enumerate(runner.devices):
        identity = device.mdm_identity()
        assert identity is not None and device.state.enrollment is not None, f"{device.serial} is not enrolled"
        cert, key = identity

        def sign(message: dict[str, Any], cert: Any = cert, key: Any = key) -> tuple[bytes, str]:
            body = plistlib.dumps(message)
            return body, base64.b64encode(cms.sign(body, cert, key, detached=True)).decode()

        acks = []
        for k in range(commands):
            command_uuid = f"bench-{i:06d}-{k:06d}-{os.urandom(4).hex()}"
            acks.append((command_uuid, *sign({"UDID": device.udid, "Status": "Acknowledged",
                                               "CommandUUID": command_uuid})))
        out.append({"udid": device.udid, "url": device.state.enrollment["server_url"],
                    "idle": sign({"UDID": device.udid, "Status": "Idle"}), "acks": acks})
    return out


def run_phase(threads: int, seconds: float, work: Callable[[int, httpx.Client], int]) -> tuple[float, int]:
    """Each thread repeats ``work(thread_index, client)`` (returns units done) until the deadline."""
    counts = [0] * threads
    errors: list[str] = []
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def loop(index: int) -> None:
        with httpx.Client(timeout=30) as client:
            start.wait()
            try:
                while time.monotonic() < stop_at[0]:
                    counts[index] += work(index, client)
            except Exception as exc:  # reported, not swallowed
                errors.append(f"{type(exc).__name__}: {exc}")

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    stop_at[0] = time.monotonic() + seconds
    began = time.monotonic()
    start.wait()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - began
    if errors:
        raise RuntimeError(errors[0])
    return sum(counts) / elapsed, sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=16, help="client threads (one device each)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2, help="mdmsim serve --workers")
    parser.add_argument("--server-threads", type=int, default=16, help="mdmsim serve --threads")
    parser.add_argument("--commands", type=int, default=500, help="pre-signed acks per device")
    args = parser.parse_args()

    with served_world(devices=args.threads, seed=1, data_dir="tmp", workers=args.workers,
                      threads=args.server_threads) as url:
        holder: dict[str, FleetRunner] = {}
        enrolled = run_fleet(url, FleetOptions(devices=args.threads, concurrency=args.threads), keep=holder)
        if enrolled.acknowledged < args.threads:
            raise SystemExit(f"only {enrolled.acknowledged}/{args.threads} devices enrolled: {enrolled.errors[:3]}")
        devices = presign(holder["runner"], args.commands)
        with httpx.Client() as http:
            mdm_url = http.get(f"{url}/_sim/").json()["urls"]["mdm"]
        floor_url = f"{url}/_sim/bench/page"
        floor_body = devices[0]["idle"][0]

        def floor(i: int, client: httpx.Client) -> int:
            r = client.post(floor_url, content=floor_body, headers={"Mdm-Signature": devices[i]["idle"][1]})
            assert r.status_code == 200, r.text
            return 1

        def idle_checkin(i: int, client: httpx.Client) -> int:
            body, sig = devices[i]["idle"]
            r = client.put(devices[i]["url"], content=body, headers={"Mdm-Signature": sig})
            assert r.status_code == 200 and not r.content, r.text
            return 1

        next_ack = [0] * len(devices)

        def command(i: int, client: httpx.Client) -> int:
            device = devices[i]
            if next_ack[i] >= len(device["acks"]):
                return 0
            command_uuid, ack_body, ack_sig = device["acks"][next_ack[i]]
            next_ack[i] += 1
            r = client.post(f"{mdm_url}/api/v1/commands", json={
                "udids": [device["udid"]],
                "command": {"CommandUUID": command_uuid, "Command": {"RequestType": "SecurityInfo"}}})
            assert r.status_code == 201, r.text
            body, sig = device["idle"]
            r = client.put(device["url"], content=body, headers={"Mdm-Signature": sig})
            assert command_uuid.encode() in r.content, r.text
            r = client.put(device["url"], content=ack_body, headers={"Mdm-Signature": ack_sig})
            assert r.status_code == 200 and not r.content, r.text
            return 1

        run_phase(args.threads, 1.0, floor)  # warm up connections and workers
        floor_rps, _ = run_phase(args.threads, args.seconds, floor)
        idle_rps, idle_n = run_phase(args.threads, args.seconds, idle_checkin)
        cmd_rps, cmd_n = run_phase(args.threads, args.seconds, command)
    result = {
        "requests_per_s": round(idle_rps, 1),
        "floor_requests_per_s": round(floor_rps, 1),
        "floor_ratio": round(idle_rps / floor_rps, 3),
        "command_round_trips_per_s": round(cmd_rps, 1),
        "command_requests_per_s": round(cmd_rps * 3, 1),
        "idle_checkins": idle_n,
        "command_round_trips": cmd_n,
        "threads": args.threads,
        "workers": args.workers,
        "seconds": args.seconds,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
