"""HTTPS as the real services serve it, and devices that trust the MDM server only by their profile's anchors.

``World.serve(tls=True)`` and ``mdmsim serve --tls`` serve every party with a certificate from the
world's TLS CA; a device verifies the MDM server's certificate against exactly the cloud
configuration's ``AnchorCertificates`` and refuses a server that does not chain to them.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from oauthlib.oauth1 import Client
from tests_support import GRAPH, onboard

from mdm.protocol.x509 import CertificateAuthority, cert_to_der, cert_to_pem, key_to_pem, new_private_key
from simulator import World
from simulator.cli import main
from simulator.device.drivers import HTTPDriver
from simulator.load.server import free_port


def time_now() -> datetime:
    """Certificates for tests, backdated a little so clock skew never makes them "not yet valid"."""
    return datetime.now(UTC) - timedelta(minutes=5)


def _context(ca_pem: str) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_pem)


def _b64(ca: CertificateAuthority) -> str:
    return base64.b64encode(cert_to_der(ca.certificate)).decode("ascii")


def _define_profile(http: httpx.Client, creds: dict[str, str], url: str, anchors: list[str], serial: str) -> None:
    """``POST /profile`` at Apple's DEP API over HTTPS, as an MDM vendor's DEP client does."""
    dep = f"{url}/apple/dep"
    oauth = Client(creds["consumer_key"], client_secret=creds["consumer_secret"],
                   resource_owner_key=creds["access_token"], resource_owner_secret=creds["access_secret"], realm="ADM")
    _, headers, _ = oauth.sign(f"{dep}/session")
    session = http.get(f"{dep}/session", headers={**headers, "User-Agent": "test/1"})
    assert session.status_code == 200, session.text
    defined = http.post(f"{dep}/profile", headers={"X-ADM-Auth-Session": session.json()["auth_session_token"]}, json={
        "profile_name": "TLS", "url": f"{url}/mdm/enroll", "is_supervised": True, "anchor_certs": anchors,
        "devices": [serial]})
    assert defined.status_code == 200 and defined.json()["devices"][serial] == "SUCCESS", defined.text


def _enrolled_serials(world: World) -> set[str]:
    body = world.http.get("/mdm/api/v1/devices").json()
    listed = body.get("devices", body) if isinstance(body, dict) else body
    return {d["serial_number"] for d in listed if d.get("enrolled")}


def test_a_device_enrolls_over_https_and_clients_need_the_world_ca() -> None:
    with World(devices=2, seed=41) as world, world.serve(tls=True) as served:
        assert served.url.startswith("https://")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{served.url}/_sim/clock")
        ctx = _context(world.tls_ca_pem)
        assert httpx.get(f"{served.url}/_sim/clock", verify=ctx).status_code == 200
        assert httpx.get(f"{served.url}/_sim/tls-ca.pem", verify=ctx).text == world.tls_ca_pem

        serial = world.serials[0]
        bundle = world.devices.identity_bundle(serial)
        assert bundle is not None and bundle["apple_ca_pem"] == world.tls_ca_pem
        with httpx.Client(verify=ctx, timeout=30) as http:
            _define_profile(http, world.dep_credentials, served.url, [_b64(world.tls_ca)], serial)
            # The driver's own client is the device's system store (Apple's roots: here the world CA);
            # requests to the MDM server carry the profile's anchors and are verified by those alone.
            run = world.fleet.power_on(serial, world.identity(serial), HTTPDriver(http, now=world.clock.now))
        assert run.phase == "home", run.transcript
        assert world.devices.describe(serial)["enrolled"] is True
        assert serial in _enrolled_serials(world)


def test_a_device_refuses_an_mdm_server_that_does_not_chain_to_its_anchors() -> None:
    other = CertificateAuthority.create("Somebody else's CA", time_now())
    with World(devices=2, seed=42) as world, world.serve(tls=True) as served:
        serial = world.serials[0]
        with httpx.Client(verify=_context(world.tls_ca_pem), timeout=30) as http:
            _define_profile(http, world.dep_credentials, served.url, [_b64(other)], serial)
            run = world.fleet.power_on(serial, world.identity(serial), HTTPDriver(http, now=world.clock.now))
        assert run.phase == "setup" and run.pane == "Enrollment"
        errors = [entry for entry in run.transcript if entry[1] == "error"]
        assert errors and errors[-1][0] == "Enrollment"
        assert "server certificate not trusted" in errors[-1][3], errors
        assert _enrolled_serials(world) == set()


def test_the_controller_puts_the_world_ca_into_profiles_while_serving_tls() -> None:
    with World(devices=2, seed=43, background_sync=False) as world:
        setting = onboard(world)
        plain = world.http.post(f"{GRAPH}/{setting}/enrollmentProfiles", json={
            "@odata.type": "#microsoft.graph.depIOSEnrollmentProfile", "displayName": "Plain"}).json()["id"]
        assert "anchor_certs" not in world.controller.get_apple_profile(setting, plain)["profile"]
        with world.serve(tls=True):
            profile = world.http.post(f"{GRAPH}/{setting}/enrollmentProfiles", json={
                "@odata.type": "#microsoft.graph.depIOSEnrollmentProfile", "displayName": "TLS",
                "supervisedModeEnabled": True})
            assert profile.status_code == 201, profile.text
            apple = world.controller.get_apple_profile(setting, profile.json()["id"])["profile"]
            assert apple["anchor_certs"] == [_b64(world.tls_ca)]
            assert world.http.post(f"{GRAPH}/{setting}/syncWithAppleDeviceEnrollmentProgram").status_code == 204
            serial = world.serials[0]
            assigned = world.http.post(
                f"{GRAPH}/{setting}/enrollmentProfiles/{profile.json()['id']}/updateDeviceProfileAssignment",
                json={"deviceIds": [serial]})
            assert assigned.status_code == 204, assigned.text
            # world.devices: Apple in process, the MDM server over real TLS checked against the anchors.
            run = world.devices.power_on(serial)
            assert run.phase == "home", run.transcript


@contextlib.contextmanager
def _serve(*args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "simulator.cli", "serve", "--port", str(port), "--devices", "2",
                             "--seed", "5", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "COLUMNS": "200"})
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (proc.stdout.read() if proc.stdout else b"").decode()[-2000:]
            try:
                httpx.get(f"{url}/_sim/clock", verify=False, timeout=1)  # noqa: S501 - waiting only
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "mdmsim serve --tls did not start"
                time.sleep(0.1)
        yield url, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def test_mdmsim_serve_tls_answers_https_verified_by_its_own_ca(tmp_path: Path) -> None:
    with _serve("--tls") as (url, proc):
        ca_pem = httpx.get(f"{url}/_sim/tls-ca.pem", verify=False).text  # noqa: S501 - how a user bootstraps
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/_sim/clock")
        info = httpx.get(f"{url}/", verify=_context(ca_pem)).json()
        assert info["url"] == url and info["urls"]["mdm"] == f"{url}/mdm"
        assert httpx.get(url.replace("127.0.0.1", "localhost") + "/_sim/clock", verify=_context(ca_pem)).status_code == 200

        # A device run in another process: the CA file is its system store, the profile's anchor its
        # only trust in the MDM server.
        with httpx.Client(base_url=url, verify=_context(ca_pem), timeout=30) as http:
            creds = http.get(info["credentials"]).json()
            serial = http.get("/apple/portal/api/devices", params={"limit": 1}).json()["devices"][0]["serial_number"]
            anchor = base64.b64encode(x509.load_pem_x509_certificate(ca_pem.encode()).public_bytes(
                serialization.Encoding.DER)).decode()
            _define_profile(http, creds, url, [anchor], serial)
            (tmp_path / "ca.pem").write_text(ca_pem)
            run = subprocess.run(
                [sys.executable, "-m", "simulator.cli", "device", "power-on", serial, "--server", url,
                 "--ca-file", str(tmp_path / "ca.pem")],
                capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
            )
            assert run.returncode == 0 and "stopped: home" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
            body = http.get("/mdm/api/v1/devices").json()
            listed = body.get("devices", body) if isinstance(body, dict) else body
            assert any(d["serial_number"] == serial and d["enrolled"] for d in listed)
        os.killpg(proc.pid, signal.SIGTERM)
        out = (proc.communicate(timeout=15)[0] or b"").decode()
        assert "/_sim/tls-ca.pem" in out


def _pair(tmp_path: Path, name: str) -> tuple[Path, Path]:
    ca = CertificateAuthority.create(f"{name} CA", time_now())
    key = new_private_key()
    cert = ca.issue(key.public_key(), subject="localhost", now=time_now(), client_auth=False, server_auth=True,
                    san_dns=["localhost"])
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert_to_pem(cert) + cert_to_pem(ca.certificate))
    key_file.write_bytes(key_to_pem(key))
    return cert_file, key_file


def test_tls_cert_and_key_are_checked_before_serving(tmp_path: Path) -> None:
    runner = CliRunner()
    cert, key = _pair(tmp_path, "a")
    _, other_key = _pair(tmp_path, "b")
    alone = runner.invoke(main, ["serve", "--tls", "--tls-cert", str(cert)])
    assert alone.exit_code == 2 and "--tls-cert and --tls-key go together" in alone.output
    mismatched = runner.invoke(main, ["serve", "--tls", "--tls-cert", str(cert), "--tls-key", str(other_key)])
    assert mismatched.exit_code == 2 and "does not match the certificate" in mismatched.output
    not_pem = runner.invoke(main, ["serve", "--tls", "--tls-cert", str(key), "--tls-key", str(key)])
    assert not_pem.exit_code == 2 and "holds no PEM certificate" in not_pem.output
    missing = runner.invoke(main, ["serve", "--tls", "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(key)])
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_mdmsim_serve_with_a_given_pair_serves_it_and_publishes_its_ca(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path, "given")
    ca_pem = cert_to_pem(x509.load_pem_x509_certificates(cert.read_bytes())[-1]).decode()
    with _serve("--tls", "--tls-cert", str(cert), "--tls-key", str(key)) as (url, _):
        local = url.replace("127.0.0.1", "localhost")
        assert httpx.get(f"{local}/_sim/tls-ca.pem", verify=_context(ca_pem)).text == ca_pem


def test_tls_certificates_follow_the_wall_clock_not_the_world_clock() -> None:
    """Clients outside the world check TLS against the real time: a world living in 2016 still serves."""
    with World(devices=0, seed=44, start=datetime(2016, 3, 1, tzinfo=UTC)) as world, world.serve(tls=True) as served:
        assert world.clock.now().year == 2016
        assert httpx.get(f"{served.url}/_sim/clock", verify=_context(world.tls_ca_pem)).status_code == 200


def test_the_load_fleets_async_driver_enforces_the_same_anchors() -> None:
    """Fleet devices (asyncio driver) trust the profile's anchors alone, exactly as single devices do."""
    from simulator.load.drivers import AsyncHTTPDriver, run_coroutine
    from simulator.load.transport import LoadClient

    other = CertificateAuthority.create("Somebody else's CA", time_now())
    with World(devices=2, seed=43) as world, world.serve(tls=True) as served:
        good, bad = world.serials[:2]
        ctx = _context(world.tls_ca_pem)
        with httpx.Client(verify=ctx, timeout=30) as http:
            _define_profile(http, world.dep_credentials, served.url, [_b64(world.tls_ca)], good)
            _define_profile(http, world.dep_credentials, served.url, [_b64(other)], bad)

        async def power_on(serial: str) -> str:
            device = world.fleet.add(world.identity(serial))
            client = LoadClient(ssl_context=ctx, timeout=30)
            driver = AsyncHTTPDriver(client, now=world.clock.now)
            try:
                await driver.run_until_home(device)
            finally:
                await driver.aclose()
                await client.aclose()
            errors = [entry[3] for entry in device.transcript if entry[1] == "error"]
            return device.pane + " | " + " ".join(errors)

        assert run_coroutine(power_on(good)).startswith("HomeScreen")
        refused = run_coroutine(power_on(bad))
        assert refused.startswith("Enrollment") and "server certificate not trusted" in refused
        assert _enrolled_serials(world) == {good}
