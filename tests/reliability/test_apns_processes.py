"""The push gateway across processes: a crash with stored pushes, and two servers sharing pushes through Redis.

Both run ``mdmsim serve`` as real subprocesses (:mod:`served`), push over HTTP/2 with a push
certificate from the world's own Push Certificates Portal, and read deliveries on device streams, as
a provider and devices elsewhere would. The Redis test runs a real ``redis-server`` (Debian's package,
which ``scripts/test`` installs).
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from served import Served, poll

from simulator.load.server import free_port

pytestmark = pytest.mark.slow


def _push_client(served: Served, directory: Path) -> httpx.Client:
    """An HTTP/2 client holding a push certificate the world's portal issued, trusting the world's CA."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test MDM vendor")]))
           .sign(key, hashes.SHA256()))  # fmt: skip
    with httpx.Client(base_url=served.url, timeout=30) as http:
        issued = http.post("/apple/portal/push-certificates/api/certificates",
                           json={"apple_id": "admin@example.com",
                                 "csr": csr.public_bytes(serialization.Encoding.PEM).decode()})  # fmt: skip
        assert issued.status_code == 201, issued.text
        ca_pem = http.get("/_sim/tls-ca.pem").text
    (directory / "push.pem").write_text(issued.json()["certificate"])
    (directory / "push.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    context = ssl.create_default_context(cadata=ca_pem)
    context.load_cert_chain(str(directory / "push.pem"), str(directory / "push.key"))
    return httpx.Client(http2=True, verify=context, timeout=30)


def _push(client: httpx.Client, apns_url: str, token: str, magic: str) -> httpx.Response:
    response = client.post(f"{apns_url}/3/device/{token}", content=json.dumps({"mdm": magic}),
                           headers={"apns-push-type": "mdm"})  # fmt: skip
    assert response.http_version == "HTTP/2"
    return response


class _Stream:
    """A device's stream on a thread: the push magics it received, in order."""

    def __init__(self, stream_url: str, token: str) -> None:
        self.magics: list[str] = []
        self.opened = threading.Event()
        self.ended_cleanly = threading.Event()  # the server closed the stream with its last chunk
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=None))
        self._thread = threading.Thread(target=self._read, args=(f"{stream_url}/events?token={token}",), daemon=True)
        self._thread.start()
        assert self.opened.wait(20), "the device stream did not open"

    def _read(self, url: str) -> None:
        try:
            with self._client.stream("GET", url) as response:
                for line in response.iter_lines():
                    if line.startswith(": connected"):
                        self.opened.set()
                    elif line.startswith("data: "):
                        self.magics.append(json.loads(line[6:])["payload"]["mdm"])
            self.ended_cleanly.set()
        except httpx.HTTPError:
            pass

    def close(self) -> None:
        self._client.close()


def test_pushes_accepted_before_kill_9_are_delivered_after_the_restart(tmp_path: Path) -> None:
    apns_port, stream_port = free_port(), free_port()
    served = Served(tmp_path / "world", devices=2, workers=1,
                    extra=["--apns-port", str(apns_port), "--apns-stream-port", str(stream_port)]).start()  # fmt: skip
    apns_url, stream_url = f"https://127.0.0.1:{apns_port}", f"http://127.0.0.1:{stream_port}"
    away, erased = "a1" * 32, "e2" * 32
    try:
        with _push_client(served, tmp_path) as provider:
            assert _push(provider, apns_url, away, "first").status_code == 200
            assert _push(provider, apns_url, away, "newest").status_code == 200  # coalesced: only this one stays
            assert _push(provider, apns_url, erased, "never").status_code == 200
            httpx.post(f"{served.url}/apple/apns/devices/{erased}/unregister").raise_for_status()
        served.kill9()
        served.start()
        stream = _Stream(stream_url, away)
        try:
            poll(lambda: stream.magics, deadline_s=10, what="the stored push after the restart")
            assert stream.magics == ["newest"]
        finally:
            stream.close()
        with _push_client(served, tmp_path) as provider:  # a dead token stays dead across the restart
            gone = _push(provider, apns_url, erased, "again")
            assert gone.status_code == 410 and gone.json()["reason"] == "Unregistered"
            assert isinstance(gone.json()["timestamp"], int)
    finally:
        served.stop()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on a free port, nothing saved to disk."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: install it with `sudo apt-get install -y redis-server` (scripts/test does)"
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    import redis

    client = redis.Redis(port=port)
    try:
        poll(lambda: _pings(client), deadline_s=10, what="redis-server to answer")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        process.terminate()
        process.wait(10)


def _pings(client: object) -> bool:
    import redis

    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except redis.RedisError:
        return False


def test_two_servers_share_one_worlds_pushes_through_redis(tmp_path: Path, redis_url: str) -> None:
    """Host A takes the provider's push, the device streams from host B: Redis carries the wake-up.

    With ``--redis`` a server does not watch the store for other processes' pushes, so B's devices
    wake only through the channel; a subscriber of the test's own counts what crossed it."""
    data = tmp_path / "world"
    ports = {name: free_port() for name in ("a_apns", "a_stream", "b_apns", "b_stream")}
    host_a = Served(data, devices=2, workers=1, extra=["--redis", redis_url, "--apns-port", str(ports["a_apns"]),
                                                       "--apns-stream-port", str(ports["a_stream"])]).start()  # fmt: skip
    host_b = Served(data, devices=2, workers=1, extra=["--redis", redis_url, "--apns-port", str(ports["b_apns"]),
                                                       "--apns-stream-port", str(ports["b_stream"])]).start()  # fmt: skip
    tokens = [f"{i:02x}" * 32 for i in range(1, 6)]
    streams = [_Stream(f"http://127.0.0.1:{ports['b_stream']}", token) for token in tokens]
    import redis

    watcher = redis.Redis.from_url(redis_url).pubsub()
    watcher.psubscribe("mdmsim:apns:*")
    assert watcher.get_message(timeout=5)["type"] == "psubscribe"
    try:
        with _push_client(host_a, tmp_path) as provider:
            for i, token in enumerate(tokens):
                assert _push(provider, f"https://127.0.0.1:{ports['a_apns']}", token, f"m{i}").status_code == 200
        poll(lambda: all(s.magics for s in streams), deadline_s=10, what="every device on host B to wake")
        assert [s.magics for s in streams] == [[f"m{i}"] for i in range(len(tokens))]
        crossed = [watcher.get_message(timeout=5) for _ in tokens]
        assert sorted(m["data"].decode() for m in crossed if m) == sorted(tokens)
        channel = crossed[0]["channel"].decode()
        assert dict(redis.Redis.from_url(redis_url).pubsub_numsub(channel)) == {channel.encode(): 2}
    finally:
        watcher.close()
        for stream in streams:
            stream.close()
        host_a.stop()
        host_b.stop()


def test_two_workers_share_pushes_through_the_store_and_split_the_streams(tmp_path: Path) -> None:
    """``--workers 2`` on one data directory, no Redis: each worker listens on the stream port itself
    (SO_REUSEPORT), so both hold device streams, and a push accepted by either wakes the device on
    the other through the store."""
    import psutil

    apns_port, stream_port = free_port(), free_port()
    served = Served(tmp_path / "world", devices=2, workers=2,
                    extra=["--apns-port", str(apns_port), "--apns-stream-port", str(stream_port)]).start()  # fmt: skip
    tokens = [f"{i:02x}" * 32 for i in range(16, 56)]
    streams = [_Stream(f"http://127.0.0.1:{stream_port}", token) for token in tokens]
    try:
        assert served.process is not None
        workers = psutil.Process(served.process.pid).children()
        holding = [sum(1 for c in w.net_connections("tcp") if c.laddr.port == stream_port and c.status == "ESTABLISHED")
                   for w in workers]  # fmt: skip
        assert len(workers) == 2 and sum(holding) == len(tokens) and min(holding) > 0, holding
        with _push_client(served, tmp_path) as provider:
            for i, token in enumerate(tokens):
                assert _push(provider, f"https://127.0.0.1:{apns_port}", token, f"m{i}").status_code == 200
        poll(lambda: all(s.magics for s in streams), deadline_s=10, what="every device to wake")
        assert [s.magics for s in streams] == [[f"m{i}"] for i in range(len(tokens))]
    finally:
        for stream in streams:
            stream.close()
        served.stop()


def test_stopping_mdmsim_serve_ends_device_streams_cleanly(tmp_path: Path) -> None:
    """A polite stop (SIGTERM) stops each worker's gateway: device streams get their last chunk
    instead of a reset connection (and providers GOAWAY Shutdown, tested with World.serve)."""
    stream_port = free_port()
    served = Served(tmp_path / "world", devices=2, workers=2, extra=["--apns-stream-port", str(stream_port)]).start()
    streams = [_Stream(f"http://127.0.0.1:{stream_port}", f"{i:02x}" * 32) for i in range(60, 64)]
    try:
        served.stop()
        for stream in streams:
            assert stream.ended_cleanly.wait(10), "a device stream was cut, not ended"
    finally:
        for stream in streams:
            stream.close()
