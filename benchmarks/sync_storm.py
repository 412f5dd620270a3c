"""Sync storm: K concurrent sync requests to the controller; exactly one may start.

Runs against ``mdmsim serve --data-dir <tmp> --workers 2`` so the single-flight rule is tested across
processes sharing SQLite. Apple's fetch gets ``--apple-latency-ms`` so the sync is still running while
the storm lands. Last line: JSON ``{"started" (must be 1), "refused", "p50_ms", "p99_ms" (target
≤ 200), "apple_session_calls", …}``.

    python benchmarks/sync_storm.py --requests 1000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from simulator.load.server import served_world  # noqa: E402
from simulator.load.storm import run_storm  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--apple-latency-ms", type=int, default=2000)
    args = parser.parse_args()
    with served_world(devices=args.devices, seed=1, data_dir="tmp", workers=args.workers) as url:
        report = run_storm(url, requests=args.requests, concurrency=args.concurrency,
                           apple_latency_ms=args.apple_latency_ms)
    for problem in report.problems:
        print(problem, file=sys.stderr)
    print(json.dumps({**report.headline(), "concurrency": args.concurrency, "server_workers": args.workers}))


if __name__ == "__main__":
    main()
