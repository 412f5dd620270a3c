"""MDM check-in throughput over real HTTP: Idle round trips and command round trips, against a floor.

The server is this script itself run with ``--serve`` in a subprocess: gunicorn (gthread workers) around
the MDM server and fake APNs apps on one SQLite data directory, plus a bare endpoint on the very same
stack (``/floor/ping``: a party app that answers an empty 200 with no work) as the floor. Before
gunicorn starts, the server process enrolls D devices (Authenticate + TokenUpdate through the service)
and writes pre-signed bodies (``Mdm-Signature`` over Idle, and over Acknowledged for chosen
CommandUUIDs) to the data directory, so the client needs only the standard library and httpx.

Phases (each ``--seconds`` long, ``--threads`` client threads, one device per thread):
  floor      PUT /floor/ping with an Idle-sized body
  idle       PUT /mdm/connect {Status: Idle} → empty 200 (signature verified, enrollment touched)
  command    POST /mdm/api/v1/commands → PUT Idle (gets it) → PUT Acknowledged (stored) ; counted once

Last line: JSON ``{"requests_per_s", "floor_requests_per_s", "floor_ratio", "command_round_trips_per_s", …}``.

    python benchmarks/mdm_checkin.py --threads 16 --seconds 5
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


# == server side (run in the subprocess) ==================================================================
def _build(data_dir: Path) -> tuple[Any, Any]:
    sys.path.insert(0, str(ROOT))
    from flask import Flask, Response
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from mdm.protocol.clock import Clock
    from mdm.protocol.storage import Store
    from mdm.protocol.web import create_party_app
    from mdm.protocol.x509 import cert_from_pem
    from mdm.server import http as mdm_http
    from mdm.server.service import MDMService
    from mdm.server.store import open_mdm_store
    from simulator.apple.apns import http as apns_http
    from simulator.apple.apns.service import APNsService, open_apns_store

    config = json.loads((data_dir / "server.json").read_text())
    base = config["base"]
    clock = Clock(Store(data_dir / "world.db", []))
    outbound = httpx.Client(limits=httpx.Limits(max_connections=16))
    mdm = MDMService(
        open_mdm_store(data_dir / "mdm.db"), clock,
        trust_roots=[cert_from_pem(config["apple_ca"].encode())], http=outbound,
        base_url=lambda: base + "/mdm", apns_url=lambda: base + "/apple/apns",
    )
    apns = APNsService(open_apns_store(data_dir / "apns.db"), clock)
    floor = create_party_app("floor", "floor")

    @floor.route("/ping", methods=["GET", "PUT", "POST"])
    def ping() -> Response:
        return Response(b"", 200)

    app = DispatcherMiddleware(
        Flask("root"),
        {"/mdm": mdm_http.create_app(mdm), "/apple/apns": apns_http.create_app(apns), "/floor": floor},
    )
    return app, mdm


def _prepare(data_dir: Path, devices: int, commands: int) -> None:
    """Enroll devices and pre-sign every body the client will send (not timed)."""
    import plistlib

    sys.path.insert(0, str(ROOT))
    from mdm.protocol import cms
    from mdm.protocol.x509 import CertificateAuthority, cert_to_pem

    apple = CertificateAuthority.create("Bench Apple Device CA", datetime.datetime.now(datetime.UTC))
    config = json.loads((data_dir / "server.json").read_text())
    config["apple_ca"] = cert_to_pem(apple.certificate).decode()
    (data_dir / "server.json").write_text(json.dumps(config))
    _, mdm = _build(data_dir)
    topic = mdm.topic
    out = []
    for i in range(devices):
        udid = f"BENCH-{i:06d}"
        cert, key = mdm.issue_identity(udid)

        def sign(message: dict[str, Any], cert: Any = cert, key: Any = key) -> dict[str, str]:
            body = plistlib.dumps(message)
            sig = base64.b64encode(cms.sign(body, cert, key, detached=True)).decode()
            return {"body": base64.b64encode(body).decode(), "signature": sig}

        for message in (
            {"MessageType": "Authenticate", "UDID": udid, "Topic": topic},
            {"MessageType": "TokenUpdate", "UDID": udid, "Topic": topic, "Token": os.urandom(32),
             "PushMagic": f"magic-{i}"},
        ):
            signed = sign(message)
            mdm.checkin(base64.b64decode(signed["body"]), signed["signature"])
        acks = []
        for k in range(commands):
            command_uuid = f"bench-{i:06d}-{k:06d}"
            acks.append({"uuid": command_uuid, **sign({"UDID": udid, "Status": "Acknowledged",
                                                       "CommandUUID": command_uuid})})
        out.append({"udid": udid, "idle": sign({"UDID": udid, "Status": "Idle"}), "acks": acks})
    mdm.close()
    (data_dir / "devices.json").write_text(json.dumps(out))


def serve(port: int, data_dir: Path, workers: int, threads: int, devices: int, commands: int) -> None:
    from gunicorn.app.base import BaseApplication

    (data_dir / "server.json").write_text(json.dumps({"base": f"http://127.0.0.1:{port}"}))
    _prepare(data_dir, devices, commands)

    class App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {
                "bind": f"127.0.0.1:{port}", "workers": workers, "threads": threads,
                "worker_class": "gthread", "keepalive": 30, "accesslog": None, "errorlog": "-",
                "loglevel": "warning", "preload_app": False,
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return _build(data_dir)[0]

    (data_dir / "ready").touch()
    App().run()


# == client side ============================================================================================
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(args: argparse.Namespace) -> Iterator[tuple[str, Path]]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mdmsim-bench-") as tmp:
        data_dir = Path(tmp)
        cmd = [sys.executable, __file__, "--serve", str(port), "--data-dir", tmp,
               "--workers", str(args.workers), "--server-threads", str(args.server_threads),
               "--threads", str(args.threads), "--commands", str(args.commands)]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(proc.stderr.read().decode()[-3000:])  # type: ignore[union-attr]
                try:
                    if httpx.get(f"{url}/floor/ping", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("benchmark server did not start")
                time.sleep(0.1)
            yield url, data_dir
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=16, help="client threads (one device each)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=max(2, os.cpu_count() or 2))
    parser.add_argument("--server-threads", type=int, default=8)
    parser.add_argument("--commands", type=int, default=2000, help="pre-signed acks per device")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, Path(args.data_dir), args.workers, args.server_threads, args.threads, args.commands)
        return

    with server(args) as (url, data_dir):
        devices = json.loads((data_dir / "devices.json").read_text())
        idle = [(base64.b64decode(d["idle"]["body"]), d["idle"]["signature"]) for d in devices]
        floor_body = idle[0][0]

        def floor(i: int, client: httpx.Client) -> int:
            r = client.put(f"{url}/floor/ping", content=floor_body, headers={"Mdm-Signature": idle[i][1]})
            assert r.status_code == 200, r.text
            return 1

        def idle_checkin(i: int, client: httpx.Client) -> int:
            body, sig = idle[i]
            r = client.put(f"{url}/mdm/connect", content=body, headers={"Mdm-Signature": sig})
            assert r.status_code == 200 and not r.content, r.text
            return 1

        next_ack = [0] * len(devices)

        def command(i: int, client: httpx.Client) -> int:
            device = devices[i]
            if next_ack[i] >= len(device["acks"]):
                return 0
            ack = device["acks"][next_ack[i]]
            next_ack[i] += 1
            r = client.post(f"{url}/mdm/api/v1/commands", json={
                "udids": [device["udid"]],
                "command": {"CommandUUID": ack["uuid"], "Command": {"RequestType": "SecurityInfo"}}})
            assert r.status_code == 201, r.text
            body, sig = idle[i]
            r = client.put(f"{url}/mdm/connect", content=body, headers={"Mdm-Signature": sig})
            assert ack["uuid"].encode() in r.content, r.text
            r = client.put(f"{url}/mdm/connect", content=base64.b64decode(ack["body"]),
                           headers={"Mdm-Signature": ack["signature"]})
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
