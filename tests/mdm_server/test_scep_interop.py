"""SCEP with real peers: micromdm's scepclient against our /mdm/scep, our devices against micromdm's
scepserver (``mdmsim demo --scep-url``), and the PENDING path of a device on the world clock."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mdm.protocol import scep
from mdm.protocol import x509 as X
from mdm.protocol.mobileconfig import SCEPPayload
from mdm.protocol.randomness import Randomness
from simulator.device.machine import Request, Response
from simulator.device.scep_enroll import obtain_identity
from simulator.world import World

SCEP_PACKAGE_HINT = "run scripts/test as root, or: sudo apt-get install -y scep"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"micromdm's {name} is missing: {SCEP_PACKAGE_HINT}")
    return found


@pytest.fixture
def served():
    with World(devices=2, seed=31) as world, world.serve() as served:
        yield served


def _challenge(url: str, **body) -> str:
    reply = httpx.post(f"{url}/mdm/api/v1/scep/challenges", json=body, timeout=30)
    assert reply.status_code == 201, reply.text
    return reply.json()["challenge"]


def _scepclient(url: str, tmp: Path, challenge: str, name: str) -> subprocess.CompletedProcess:
    """micromdm's scepclient, unmodified; -ca-fingerprint picks our RSA registration authority as the
    recipient (GetCACert answers RA + CA, as NDES does; the MDM CA is EC and takes no envelope)."""
    ra_and_ca = scep.parse_certs_only(httpx.get(f"{url}/mdm/scep", params={"operation": "GetCACert"}).content)
    ra = next(c for c in ra_and_ca if not X.is_ca(c))
    fingerprint = hashlib.sha256(ra.public_bytes(serialization.Encoding.DER)).hexdigest()
    work = tmp / name  # scepclient keeps its throwaway self-signed certificate beside the key (self.pem)
    work.mkdir()
    return subprocess.run(
        [_tool("scepclient"), "-server-url", f"{url}/mdm/scep", "-challenge", challenge, "-cn", name,
         "-private-key", str(work / "key.pem"), "-certificate", str(work / "cert.pem"),
         "-ca-fingerprint", fingerprint],
        capture_output=True, text=True, timeout=120, cwd=work,
    )


def test_micromdm_scepclient_gets_a_certificate_from_our_scep_endpoint(served, tmp_path: Path) -> None:
    caps = httpx.get(f"{served.url}/mdm/scep", params={"operation": "GetCACaps"})
    assert caps.status_code == 200 and "POSTPKIOperation" in caps.text
    ca_cert = httpx.get(f"{served.url}/mdm/scep", params={"operation": "GetCACert"})
    assert ca_cert.headers["content-type"] == "application/x-x509-ca-ra-cert"
    challenge = _challenge(served.url)
    done = _scepclient(served.url, tmp_path, challenge, "first-tool")
    assert done.returncode == 0, done.stderr[-1500:]
    cert = x509.load_pem_x509_certificate((tmp_path / "first-tool" / "cert.pem").read_bytes())
    assert X.verify_issued_by(cert, served.world.mdm.ca_certificate())
    assert "CN=first-tool" in cert.subject.rfc4514_string()
    reused = _scepclient(served.url, tmp_path, challenge, "second-tool")
    assert reused.returncode != 0 and "badRequest" in reused.stderr + reused.stdout
    wrong = _scepclient(served.url, tmp_path, "not-a-challenge", "third-tool")
    assert wrong.returncode != 0 and "badRequest" in wrong.stderr + wrong.stdout
    assert not (tmp_path / "second-tool" / "cert.pem").exists() and not (tmp_path / "third-tool" / "cert.pem").exists()


def test_bad_scep_requests_get_the_protocols_answer(served) -> None:
    url = f"{served.url}/mdm/scep"
    assert httpx.get(url, params={"operation": "GetNextCACert"}).status_code == 400
    assert httpx.get(url).status_code == 400
    garbage = httpx.get(url, params={"operation": "PKIOperation", "message": "bm90IGEgbWVzc2FnZQ=="})
    assert garbage.status_code == 400 and "not a SCEP pkiMessage" in garbage.text
    assert httpx.get(url, params={"operation": "PKIOperation", "message": "%%%"}).status_code == 400
    big = httpx.post(url, params={"operation": "PKIOperation"}, content=b"\x30" * 300_000)
    assert big.status_code == 413
    api = f"{served.url}/mdm/api/v1/scep/challenges"
    for body in ({"pending_seconds": -1}, {"subject_cn": 5}, {"other": 1}, [1]):
        reply = httpx.post(api, json=body)
        assert reply.status_code == 400 and "error" in reply.json(), body


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def micromdm_scepserver(tmp_path: Path):
    """micromdm's scepserver on a free port with a fresh depot (2048-bit CA) and challenge ``s3cret``."""
    depot = tmp_path / "depot"
    subprocess.run([_tool("scepserver"), "ca", "-init", "-depot", str(depot), "-keySize", "2048"],
                   check=True, capture_output=True, timeout=120)
    port = _free_port()
    server = subprocess.Popen([_tool("scepserver"), "-depot", str(depot), "-port", str(port), "-challenge", "s3cret"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/scep"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url, params={"operation": "GetCACaps"}, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "scepserver did not start"
            time.sleep(0.05)
        yield url, depot
    finally:
        server.terminate()
        server.wait(timeout=10)


def _over_http(request: Request) -> Response:
    reply = httpx.request(request.method, request.url, headers=request.headers, content=request.body or None, timeout=30)
    return Response(reply.status_code, {k.lower(): v for k, v in reply.headers.items()}, reply.content)


def test_a_device_gets_an_identity_from_micromdm_scepserver(micromdm_scepserver) -> None:
    """The device's SCEP client alone, against micromdm's server: issued, and refused with badRequest."""
    url, depot = micromdm_scepserver
    udid = "00008130-0016253A0E81801C"

    def payload(challenge: str) -> SCEPPayload:
        return SCEPPayload(payload_identifier="com.example.scep", url=url, challenge=challenge,
                           subject=[[["CN", udid]], [["O", "Example Org"]]], keysize=2048, key_usage=5)

    def obtain(challenge: str):
        flow = obtain_identity(payload(challenge), now=lambda: dt.datetime.now(dt.UTC), progress={},
                               make_key=lambda bits: Randomness(5).rsa_key(f"interop:{bits}", bits), default_cn=udid)
        try:
            request = next(flow)
            while True:
                request = flow.send(_over_http(request))
        except StopIteration as done:
            return done.value

    result = obtain("s3cret")
    assert result.status == "issued", result.reason
    ca = x509.load_pem_x509_certificate((depot / "ca.pem").read_bytes())
    assert X.verify_issued_by(result.certificate, ca) and udid in result.certificate.subject.rfc4514_string()
    assert udid in (depot / "index.txt").read_text()  # scepserver's own record of what it issued
    refused = obtain("wrong")
    assert refused.status == "failed" and refused.reason.endswith("badRequest")


def test_our_devices_enroll_through_micromdm_scepserver(micromdm_scepserver) -> None:
    scep_url, depot = micromdm_scepserver
    demo = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "demo", "--devices", "3", "--json", "--scep-url", scep_url,
         "--scep-challenge", "s3cret", "--identity-ca", str(depot / "ca.pem")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    outcome = json.loads(demo.stdout.strip().splitlines()[-1])
    assert outcome["enrolled"] == 3 and outcome["failures"] == []
    ca = x509.load_pem_x509_certificate((depot / "ca.pem").read_bytes())
    assert outcome["identity"] == {"method": "scep", "issuer": ca.subject.rfc4514_string()}
    issued = [line for line in (depot / "index.txt").read_text().splitlines() if line.startswith("V")]
    assert len(issued) == 3  # scepserver's own record: one certificate per device
