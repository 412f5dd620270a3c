"""How fast a test gets a world: a fresh in-memory World with 1,000 devices, and a reset.

Key material and the catalog are cached per process, so the first world pays for them and the
rest do not; the figures are medians over repeated runs after one warm-up. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from simulator import World


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    t0 = time.perf_counter()
    World(devices=args.devices, seed=1).close()  # warm-up: imports, catalog, seeded keys
    cold_ms = (time.perf_counter() - t0) * 1000
    fresh, resets = [], []
    for run in range(args.runs):
        t0 = time.perf_counter()
        world = World(devices=args.devices, seed=1 + run % 2)
        fresh.append((time.perf_counter() - t0) * 1000)
        world.http.post("/apple/portal/api/devices", json={"count": 10})
        t0 = time.perf_counter()
        world.reset()
        resets.append((time.perf_counter() - t0) * 1000)
        world.close()
    print(json.dumps({
        "devices": args.devices,
        "first_world_ms": round(cold_ms, 1),
        "fresh_world_ms": round(statistics.median(fresh), 1),
        "reset_ms": round(statistics.median(resets), 2),
    }))


if __name__ == "__main__":
    main()
