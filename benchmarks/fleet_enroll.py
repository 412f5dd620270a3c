"""Fleet enrollment: N devices from power-on to their first DeviceInformation acknowledged.

Starts ``mdmsim serve`` (in memory, or ``--data-dir tmp --workers 2``) in a subprocess, prepares the
world over HTTP (DEP profile assigned to every serial, identity bundles), then runs the fleet in this
process. Target on a 2-core machine: 10,000 devices in ≤ 120 s, ≤ 50 KB per idle device.

With ``--wake push`` (the default) each enrolled device holds a stream to the server's push gateway
(the world's ``urls.apns_stream``) until the run ends and wakes on the push that arrives on it; the
JSON then says ``"streams_open": 10000`` and ``"push_missed": 0``. A server that advertises no stream
listener leaves ``streams_open`` at 0 and devices poll APNs instead, as before streams existed.

The floor, measured right after the run on the same server: the fleet's concurrency on a bare endpoint
(``/_sim/bench/page``). ``floor_ratio`` is the fleet's requests per second over the floor's: how much
of what this machine's server stack can answer at all the enrollment work leaves, a figure that moves
far less than ``elapsed_s`` when the machine is busier or slower.
Last line: JSON ``{"enrolled", "devices_per_s", "peak_rss_mb", "kb_per_idle_device", "elapsed_s",
"push_missed", "streams_open", "streams_failed", "floor_requests_per_s", "floor_ratio", …}``.

    python benchmarks/fleet_enroll.py --devices 10000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from simulator.load.checkin import floor_rate  # noqa: E402
from simulator.load.fleet import FleetOptions, run_fleet  # noqa: E402
from simulator.load.server import FLEET_SERVER_THREADS, served_world  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--wake", choices=["push", "poll"], default="push")
    parser.add_argument("--workers", type=int, default=0, help="0: in-memory world, one process")
    parser.add_argument("--threads", type=int, default=FLEET_SERVER_THREADS,
                        help="mdmsim serve --threads (see simulator.load.server.FLEET_SERVER_THREADS)")
    parser.add_argument("--identity", choices=["pkcs12", "scep", "acme"], default="pkcs12",
                        help="scep: devices get identities over SCEP, keys from a pool made before the timed run; "
                             "acme: iOS 16+ devices over ACME with attested Secure Enclave keys (the rest over SCEP)")
    parser.add_argument("--scep-key-pool", type=int, default=256)
    args = parser.parse_args()
    started = time.perf_counter()
    data_dir = "tmp" if args.workers else None
    with served_world(devices=args.devices, seed=1, data_dir=data_dir, workers=args.workers or None,
                      threads=args.threads, identity=args.identity) as url:
        startup = time.perf_counter() - started
        pool = args.scep_key_pool if args.identity in ("scep", "acme") else 0
        report = run_fleet(url, FleetOptions(devices=args.devices, concurrency=args.concurrency, wake=args.wake,
                                             scep_key_pool=pool))
        floor = floor_rate(url, 5.0, args.concurrency)
    result = {**report.headline(), "identity": args.identity, "server_startup_s": round(startup, 2),
              "concurrency": args.concurrency,
              "floor_requests_per_s": round(floor, 1),
              "floor_ratio": round(report.requests_per_s / floor, 3) if floor else 0.0,
              "server_workers": args.workers or 1, "endpoints": {k: {m: v[m] for m in ("count", "p50", "p95", "p99")}
                                                                 for k, v in report.endpoints.items()}}
    if report.errors:
        print("\n".join(report.errors), file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
