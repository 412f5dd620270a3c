"""Steady check-ins: enrolled devices idle-polling (push events + /mdm/connect) and answering the
commands an admin pushes, against a floor: the same client concurrency on ``/_sim/bench/page``, a bare
endpoint on the very same server stack. Last line: JSON ``{"requests_per_s", "floor_requests_per_s",
"floor_ratio", …}``.

    python benchmarks/checkin.py --devices 500 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from simulator.load.checkin import run_checkins  # noqa: E402
from simulator.load.server import served_world  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="0: in-memory world, one process")
    args = parser.parse_args()
    data_dir = "tmp" if args.workers else None
    with served_world(devices=args.devices, seed=1, data_dir=data_dir, workers=args.workers or None) as url:
        report = run_checkins(url, devices=args.devices, seconds=args.seconds, concurrency=args.concurrency)
    print(json.dumps({**report.headline(), "concurrency": args.concurrency, "server_workers": args.workers or 1}))


if __name__ == "__main__":
    main()
