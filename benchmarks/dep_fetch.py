"""Full DEP fetch of N devices over real HTTP against ``mdmsim serve``, against a floor.

The floor is the same server stack (gunicorn, Flask, the world's middleware) answering the same POST
with an identical, pre-serialised page, so ``floor_ratio`` says how much of the time the DEP service
itself costs. The client parses the JSON in both. Last line: JSON.

    python benchmarks/dep_fetch.py --devices 100000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx
from oauthlib.oauth1 import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import mdmsim_serve  # noqa: E402

UA = {"User-Agent": "mdmsim-bench/1", "X-Server-Protocol-Version": "3"}


def session(http: httpx.Client, dep: str, creds: dict) -> str:
    oauth = Client(creds["consumer_key"], client_secret=creds["consumer_secret"],
                   resource_owner_key=creds["access_token"], resource_owner_secret=creds["access_secret"],
                   realm="ADM")
    _, headers, _ = oauth.sign(f"{dep}/session")
    reply = http.get(f"{dep}/session", headers={**headers, **UA})
    reply.raise_for_status()
    return reply.json()["auth_session_token"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    with mdmsim_serve("--devices", str(args.devices), "--seed", "1") as url, httpx.Client(timeout=60) as http:
        startup_s = time.perf_counter() - started
        info = http.get(f"{url}/_sim/").json()
        creds = http.get(info["credentials"]).json()
        dep = info["urls"]["dep"]
        headers = {**UA, "X-ADM-Auth-Session": session(http, dep, creds), "Content-Type": "application/json;charset=UTF8"}
        best_fetch, pages, seen = float("inf"), 0, 0
        first_page = b""
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            cursor, pages, seen = None, 0, 0
            while True:
                body = {"limit": args.limit, **({"cursor": cursor} if cursor else {})}
                reply = http.post(f"{dep}/server/devices", json=body, headers=headers)
                reply.raise_for_status()
                page = reply.json()
                first_page = first_page or reply.content
                pages += 1
                seen += len(page["devices"])
                cursor = page["cursor"]
                if not page["more_to_follow"]:
                    break
            best_fetch = min(best_fetch, time.perf_counter() - t0)
        http.put(f"{url}/_sim/bench/page", content=first_page).raise_for_status()
        best_floor = float("inf")
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for _ in range(pages):
                reply = http.post(f"{url}/_sim/bench/page", json={"limit": args.limit}, headers=headers)
                reply.raise_for_status()
                reply.json()
            best_floor = min(best_floor, time.perf_counter() - t0)
    result = {
        "devices": seen,
        "pages": pages,
        "fetch_s": round(best_fetch, 3),
        "devices_per_s": round(seen / best_fetch),
        "floor_devices_per_s": round(seen / best_floor),
        "floor_ratio": round(best_floor / best_fetch, 3),
        "server_startup_s": round(startup_s, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
