"""ACME in a world, as devices live it: iOS 16+ devices enroll with a Secure Enclave key Apple attested and
check in signing with it; iOS 15 devices get SCEP; a consumed nonce is retried; a world on disk keeps the
keys usable by another process and unreadable by anyone."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from acme_world import acme_serials, acme_world, enroll_for_payload, enrollment_profile, major
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mdm.protocol import acme, mobileconfig
from mdm.protocol.acme import read_device_attestation, verify_chain
from simulator import World
from simulator.device.acme_enroll import obtain_identity
from simulator.device.drivers import HTTPDriver
from simulator.device.enrollment import install_enrollment_profile
from simulator.device.machine import Request, Response
from simulator.device.secure_enclave import FUSE_FILE, HardwareKey
from simulator.device.setup_assistant import acme_key


def _acknowledged(world: World, serial: str) -> str:
    udid = world.identity(serial).udid
    sent = world.http.post("/mdm/api/v1/commands", json={
        "udids": [udid], "command": {"RequestType": "DeviceInformation", "Queries": ["SerialNumber"]}}).json()
    world.devices.run_agent(serial)
    status = world.http.get(f"/mdm/api/v1/commands/{sent['command_uuid']}").json()
    return str(status["devices"][0]["status"] if isinstance(status.get("devices"), list)
               else next(iter(status["devices"].values()))["status"])


def test_devices_enroll_over_acme_with_the_key_apple_attested_and_sign_their_check_ins_with_it() -> None:
    with acme_world(devices=8, seed=44) as world:
        root = x509.load_pem_x509_certificate(world.attestation_root_pem.encode())
        assert world.http.get("/apple/activation/attestation-root.pem").text == world.attestation_root_pem
        assert world.info()["urls"]["acme_directory"] == f"{world.mdm_url}/acme/directory"
        modern = acme_serials(world)
        assert len(modern) >= 3
        for serial in modern:
            run = world.devices.power_on(serial)
            assert run.phase == "home", run.transcript[-3:]
            device = world.devices.get(serial)
            enrollment = device.state.enrollment
            assert enrollment["identity_method"] == "acme" and enrollment["hardware_bound"] and enrollment["attested"]
            cert, key = device.mdm_identity()
            assert isinstance(key, HardwareKey) and key.same_key(cert)
            assert cert.issuer == world.mdm.ca_certificate().subject
            chain = [x509.load_pem_x509_certificate(p.encode()) for p in enrollment["attestation_pem"]]
            assert verify_chain(chain, [root], world.clock.now()) == root
            attested = read_device_attestation(chain[0])
            assert key.same_key(chain[0])  # the identity's key is the key Apple attested
            ident = world.identity(serial)
            assert (attested.serial_number, attested.udid, attested.os_version) == (
                serial, ident.udid, ident.os_version)
            assert len(attested.freshness_code or b"") == 32
            assert "identity from ACME (hardware-bound, attested)" in " ".join(e[3] for e in run.transcript)
            assert _acknowledged(world, serial) == "Acknowledged"  # Mdm-Signature made in the Secure Enclave
        traffic = world.traffic()["mdm"]
        assert traffic["post_acme_order_object_id_finalize"]["200"] == len(modern)
        assert world.traffic()["activation"]["post_attestation"]["200"] == len(modern)


def test_a_device_before_ios_16_gets_scep_and_would_refuse_an_acme_payload() -> None:
    with acme_world(devices=12, seed=45) as world:
        old = next(s for s in world.serials if major(world, s) < 16)
        run = world.devices.power_on(old)
        assert run.phase == "home", run.transcript[-3:]
        assert any("identity from SCEP" in e[3] for e in run.transcript)
        # the profile an iOS 16 device gets, handed to the iOS 15 one, is refused as iOS would
        modern = acme_serials(world)[0]
        body = enrollment_profile(world, modern)
        assert mobileconfig.parse(body).profile.payload_of(mobileconfig.ACMEPayload) is not None
        device = world.devices.get(old)
        try:
            install_enrollment_profile(device, body, world.clock.now)
        except ValueError as refused:
            assert "needs iOS 16" in str(refused)
        else:
            raise AssertionError("an iOS 15 device installed an ACME payload")


class _NonceThief(HTTPDriver):
    """Sends the device's first newOrder twice: the copy uses up its nonce, so the original meets badNonce."""

    stolen = False

    def send(self, request: Request) -> Response:
        if not self.stolen and request.method == "POST" and request.url.endswith("/acme/new-order"):
            self.stolen = True
            super().send(request)
        return super().send(request)


def test_a_device_retries_a_bad_nonce_with_the_nonce_the_refusal_carries() -> None:
    with acme_world(devices=6, seed=46) as world:
        serial = acme_serials(world)[0]
        driver = _NonceThief(world.http, now=world.clock.now)
        run = world.fleet.power_on(serial, world.identity(serial), driver)
        assert driver.stolen and run.phase == "home", run.transcript[-3:]
        new_order = world.traffic()["mdm"]["post_acme_new_order"]
        assert new_order == {"201": 2, "400": 1}  # the copy, the refused original (badNonce), the retry


def test_a_world_on_disk_keeps_hardware_bound_keys_usable_by_the_next_process_and_wrapped(tmp_path: Path) -> None:
    with acme_world(devices=6, seed=47, data_dir=tmp_path) as world:
        serial = acme_serials(world)[0]
        assert world.devices.power_on(serial).phase == "home"
        key = world.devices.get(serial).mdm_identity()[1]
        scalar = world.devices.get(serial).secure_enclave._unwrap(key.item).private_numbers().private_value
    fuse = tmp_path / FUSE_FILE
    assert fuse.stat().st_mode & 0o777 == 0o600 and len(fuse.read_bytes()) == 32
    raw = scalar.to_bytes(48, "big")
    stored = (tmp_path / "devices.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("devices.db-*"))
    for secret in (raw, raw.hex().encode(), str(scalar).encode(), acme.b64url(raw).encode()):
        assert secret not in stored
    with World(data_dir=tmp_path) as again:  # another World over the same files: what a second worker is
        assert _acknowledged(again, serial) == "Acknowledged"


def test_a_payload_without_attest_gets_a_software_key_and_our_server_wants_an_attestation() -> None:
    """A user's profile may ask for an RSA key without attestation: the device makes it in software and
    answers with an empty attestation statement, which this server (like step-ca) does not accept."""
    with acme_world(devices=6, seed=55) as world:
        serial = acme_serials(world)[0]
        device = world.devices.get(serial) or world.fleet.add(world.identity(serial))
        payload = dataclasses.replace(enroll_for_payload(world, serial), key_type="RSA", key_size=2048,
                                      hardware_bound=False, attest=False)
        made: list[Any] = []

        def make_key(kind: str, bits: int, bound: bool) -> Any:
            made.append(acme_key(device, kind, bits, bound, "test"))
            return made[-1]

        flow = obtain_identity(payload, now=world.clock.now, account_key=ec.generate_private_key(ec.SECP256R1()),
                               make_key=make_key, attest=lambda *a: pytest.fail("nothing to attest"),
                               default_cn=device.udid)
        result = HTTPDriver(world.http, now=world.clock.now).run(flow)
        assert isinstance(made[0], rsa.RSAPrivateKey) and made[0].key_size == 2048
        assert result.status == "failed" and "badAttestationStatement" in result.reason and "x5c" in result.reason
        assert "post_attestation" not in world.traffic().get("activation", {})  # Apple was not asked
