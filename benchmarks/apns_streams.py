"""APNs streams: N devices hold a stream each, a provider pushes over HTTP/2 at a steady rate, every push awaited.

Starts ``mdmsim serve --data-dir <tmp> --workers W --apns-port P`` (each worker's gateway holds its
share of the streams: one process may hold at most so many open files), opens the device streams
from client processes (asyncio, one connection per device, as real devices hold one), then pushes
``{"mdm": …}`` to one device after another at ``--rate`` per second over one HTTP/2 connection
authenticated by a push certificate issued by the world's Push Certificates Portal (httpx with h2).
Each push's delivery time is taken where the device's stream receives it.

The floor, measured in the same run: the provider API's own answer time (push sent → 200), which a
delivery cannot beat. Memory: the RSS of the server's processes after the streams opened, less
before, per stream. Last line: JSON with ``streams_open``, ``pushes``, ``delivered_ratio``,
``push_to_delivery_p50_ms``, ``push_to_delivery_p99_ms``, ``server_kb_per_stream``, ``server_rss_mb``.
Targets (issue 18): 20,000 streams, delivered_ratio 1, p99 ≤ 250 ms, ≤ 32 KB per stream.

    python benchmarks/apns_streams.py --devices 20000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import resource
import secrets
import ssl
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import httpx  # noqa: E402
import psutil  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from simulator.load.server import mdmsim_serve  # noqa: E402
from simulator.load.stats import percentiles  # noqa: E402

#: Streams per client process: well under the 20,000 open files a process may hold here.
PER_CLIENT = 7000
OPENING_AT_ONCE = 256


def _raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- devices (client processes) -------------------------------------------------------------------------
class _Stream(asyncio.Protocol):
    """One device's stream: the request, then SSE lines; each ``data:`` line's push magic is timed."""

    def __init__(self, request: bytes, deliveries: list[tuple[str, float]], opened: asyncio.Future[None]) -> None:
        self.request = request
        self.deliveries = deliveries
        self.opened = opened
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buffer += data
        if not self.opened.done() and b": connected" in self.buffer:
            self.opened.set_result(None)
        while b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            if line.startswith(b"data: "):
                magic = json.loads(line[6:])["payload"]["mdm"]
                self.deliveries.append((magic, now))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(str(exc or "closed before the stream opened")))


def client_process(stream_url: str, tokens: list[str], pipe: Any) -> None:
    """Open a stream per token, say how many opened, collect deliveries until told to stop."""
    _raise_open_files()
    asyncio.run(_client(stream_url, tokens, pipe))


async def _client(stream_url: str, tokens: list[str], pipe: Any) -> None:
    loop = asyncio.get_running_loop()
    url = urllib.parse.urlsplit(stream_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    deliveries: list[tuple[str, float]] = []
    limit = asyncio.Semaphore(OPENING_AT_ONCE)
    transports: list[asyncio.BaseTransport] = []

    async def open_one(token: str) -> bool:
        request = f"GET /events?token={token} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
        async with limit:
            opened: asyncio.Future[None] = loop.create_future()
            try:
                transport, _ = await loop.create_connection(lambda: _Stream(request, deliveries, opened), host, port)
                transports.append(transport)
                await asyncio.wait_for(opened, 30)
                return True
            except (TimeoutError, OSError, ConnectionError):
                return False

    results = await asyncio.gather(*(open_one(t) for t in tokens))
    pipe.send(("open", sum(results)))
    stop = loop.create_future()
    loop.add_reader(pipe.fileno(), lambda: stop.done() or stop.set_result(pipe.recv()))
    await stop
    pipe.send(("deliveries", deliveries))
    for transport in transports:
        transport.close()


# -- the provider ----------------------------------------------------------------------------------------
def push_certificate(base_url: str, directory: Path) -> tuple[Path, Path]:
    """A push certificate from the world's Push Certificates Portal, as a vendor gets one."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # Apple issues RSA push certificates
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "benchmark MDM vendor")]))
           .sign(key, hashes.SHA256()))  # fmt: skip
    issued = httpx.post(f"{base_url}/apple/portal/push-certificates/api/certificates", timeout=30, json={
        "apple_id": "bench@example.com", "csr": csr.public_bytes(serialization.Encoding.PEM).decode()})  # fmt: skip
    issued.raise_for_status()
    cert_file, key_file = directory / "push.pem", directory / "push.key"
    cert_file.write_text(issued.json()["certificate"])
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_file, key_file


async def push_at_rate(apns_url: str, ca_file: Path, cert: tuple[Path, Path], tokens: list[str], rate: float,
                       seconds: float) -> tuple[dict[str, float], list[float], dict[int, int]]:  # fmt: skip
    """Push to ``tokens`` round robin, ``rate`` a second; send times by magic, answer times, statuses."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.load_cert_chain(str(cert[0]), str(cert[1]))
    sent: dict[str, float] = {}
    answers: list[float] = []
    statuses: dict[int, int] = {}
    total = int(rate * seconds)
    async with httpx.AsyncClient(http2=True, verify=context, timeout=30,
                                 limits=httpx.Limits(max_connections=1)) as client:  # fmt: skip

        async def one(i: int) -> None:
            magic = f"m{i}"
            token = tokens[i % len(tokens)]
            started = time.monotonic()
            sent[magic] = started
            response = await client.post(f"{apns_url}/3/device/{token}", content=json.dumps({"mdm": magic}),
                                         headers={"apns-push-type": "mdm", "apns-priority": "10"})  # fmt: skip
            answers.append((time.monotonic() - started) * 1000)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        await one(-1)  # the connection and its TLS handshake, outside the timed pushes
        sent.clear()
        answers.clear()
        statuses.clear()
        tasks = []
        start = time.monotonic()
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)
    return sent, answers, statuses


# -- the run ------------------------------------------------------------------------------------------
def _server_processes(pid: int) -> list[psutil.Process]:
    """The server's master and its workers."""
    master = psutil.Process(pid)
    return [master, *master.children(recursive=True)]


def group_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each process of the server."""
    out: dict[int, float] = {}
    for process in _server_processes(pid):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            out[process.pid] = times.user + times.system
    return out


def group_rss_mb(pid: int) -> float:
    """Resident memory of the server's processes (master and workers), summed."""
    total = 0
    for process in _server_processes(pid):
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total / 1_048_576


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=20000, help="device streams to hold open")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--rate", type=float, default=500.0, help="pushes per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to push")
    parser.add_argument("--redis", help="fan pushes out through this Redis server (redis://…)")
    parser.add_argument("--settle-s", type=float, default=3.0,
                        help="pause between the last stream opening and the first push (steady state)")
    args = parser.parse_args()
    _raise_open_files()
    tokens = [secrets.token_hex(32) for _ in range(args.devices)]
    server: dict[str, Any] = {}
    extra = ["--redis", args.redis] if args.redis else []
    with tempfile.TemporaryDirectory(prefix="mdmsim-apns-bench-") as tmp:
        directory = Path(tmp)
        serve_args = ["--devices", "0", "--data-dir", str(directory / "world"), "--workers", str(args.workers),
                      "--apns-port", "0", *extra]  # fmt: skip
        with mdmsim_serve(*serve_args, on_start=lambda proc: server.update(proc=proc)) as url:
            info = httpx.get(f"{url}/_sim/", timeout=10).json()
            stream_url, apns_url = info["urls"]["apns_stream"], info["urls"]["apns_provider"]
            ca_file = directory / "ca.pem"
            ca_file.write_text(httpx.get(f"{url}/_sim/tls-ca.pem", timeout=10).text)
            cert = push_certificate(url, directory)
            server_pid = server["proc"].pid  # the master; its workers are its children
            rss_before = group_rss_mb(server_pid)
            ctx = mp.get_context("spawn")
            clients = []
            for start in range(0, len(tokens), PER_CLIENT):
                ours, theirs = ctx.Pipe()
                process = ctx.Process(target=client_process, args=(stream_url, tokens[start:start + PER_CLIENT], theirs))
                process.start()
                clients.append((process, ours))
            opened_at = time.monotonic()
            streams_open = sum(pipe.recv()[1] for _, pipe in clients)
            open_s = time.monotonic() - opened_at
            time.sleep(args.settle_s)  # the opening's tail (first looks, collections) is not what is measured
            rss_after = group_rss_mb(server_pid)
            pushed_to = tokens[: max(1, streams_open)]
            cpu_before, own_before, push_started = group_cpu_s(server_pid), time.process_time(), time.monotonic()
            sent, answers, statuses = asyncio.run(
                push_at_rate(apns_url, ca_file, cert, pushed_to, args.rate, args.seconds))
            push_s = time.monotonic() - push_started
            cpu_after = group_cpu_s(server_pid)
            # Share of one core each server process and the provider (this process) used while pushing.
            server_cpu = sorted((round((cpu_after[p] - cpu_before.get(p, 0.0)) / push_s, 2) for p in cpu_after),
                                reverse=True)  # fmt: skip
            provider_cpu = round((time.process_time() - own_before) / push_s, 2)
            deadline = time.monotonic() + 5  # what is still on its way gets five seconds
            while time.monotonic() < deadline:
                time.sleep(0.2)
                stats = httpx.get(f"{url}/apple/apns/stats", timeout=10).json()
                if stats["delivered"] >= len(sent) or stats["pending"] == 0:
                    break
            deliveries: dict[str, float] = {}
            for process, pipe in clients:
                pipe.send("stop")
                for magic, at in pipe.recv()[1]:
                    deliveries.setdefault(magic, at)
                process.join(30)
    latencies = [(deliveries[m] - t) * 1000 for m, t in sent.items() if m in deliveries]
    delivery = percentiles(latencies)
    floor = percentiles(answers)
    streams = max(streams_open, 1)
    print(json.dumps({
        "streams_open": streams_open, "devices": args.devices, "server_workers": args.workers,
        "redis": bool(args.redis), "pushes": len(sent), "push_statuses": statuses,
        "delivered": len(latencies), "delivered_ratio": round(len(latencies) / len(sent), 4) if sent else 0.0,
        "push_to_delivery_p50_ms": delivery.get("p50"), "push_to_delivery_p99_ms": delivery.get("p99"),
        "floor_push_answer_p50_ms": floor.get("p50"), "floor_push_answer_p99_ms": floor.get("p99"),
        "server_kb_per_stream": round((rss_after - rss_before) * 1024 / streams, 1),
        "server_rss_mb": round(rss_after, 1), "streams_open_s": round(open_s, 1), "rate_per_s": args.rate,
        "cores_used_by_server_processes": server_cpu, "cores_used_by_provider": provider_cpu,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
