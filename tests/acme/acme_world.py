"""Helpers of the ACME tests: a world whose profiles carry ACME, a ClientIdentifier from a real enrollment,
and a small JWS client written from RFC 8555 with ``mdm.protocol.acme`` (certbot's is the judge elsewhere)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mdm.protocol import acme, mobileconfig
from simulator import World
from simulator.device.enrollment import machine_info

GRAPH = "/intune/deviceManagement/depOnboardingSettings"


def acme_world(devices: int = 6, seed: int = 41, **kw: Any) -> World:
    """A world with ``identity="acme"``, its DEP profile assigned to every serial (nothing powered on)."""
    world = World(devices=devices, seed=seed, background_sync=False, identity="acme", **kw)
    http = world.http
    setting = http.post(GRAPH, json={"tokenName": "Contoso"}).json()["id"]
    pem = http.post(f"{GRAPH}/{setting}/generateEncryptionPublicKey").json()["value"]
    server = world.default_server_uuid
    http.post(f"/apple/portal/api/servers/{server}/public-key", content=pem).raise_for_status()
    p7m = http.get(f"/apple/portal/api/servers/{server}/token.p7m").text
    http.post(f"{GRAPH}/{setting}/uploadDepToken", json={"appleId": "a@contoso.com", "depToken": p7m}).raise_for_status()
    profile = http.post(f"{GRAPH}/{setting}/enrollmentProfiles", json={
        "@odata.type": "#microsoft.graph.depIOSEnrollmentProfile", "displayName": "Corporate iPhones"}).json()["id"]
    http.post(f"{GRAPH}/{setting}/syncWithAppleDeviceEnrollmentProgram").raise_for_status()
    world.controller.wait_for_sync(setting, 30)
    http.post(f"{GRAPH}/{setting}/enrollmentProfiles/{profile}/updateDeviceProfileAssignment",
              json={"deviceIds": world.serials}).raise_for_status()
    return world


def major(world: World, serial: str) -> int:
    return int(world.identity(serial).os_version.split(".")[0])


def acme_serials(world: World) -> list[str]:
    """The world's devices that can run an ACME payload (iOS 16 and later)."""
    return [s for s in world.serials if major(world, s) >= 16]


def enrollment_profile(world: World, serial: str) -> bytes:
    """The signed profile ``POST /mdm/enroll`` answers ``serial``'s MachineInfo with (as its device sends it)."""
    device = world.devices.get(serial) or world.fleet.add(world.identity(serial))
    signed = device.sign_with_device_identity(machine_info(device).to_plist())
    reply = world.http.post(f"{world.mdm_url}/enroll", content=signed,
                            headers={"Content-Type": "application/pkcs7-signature"})
    assert reply.status_code == 200, reply.text
    return reply.content


def enroll_for_payload(world: World, serial: str) -> mobileconfig.ACMEPayload:
    """The enrollment profile's ACME payload (with a fresh, one-time ClientIdentifier)."""
    payload = mobileconfig.parse(enrollment_profile(world, serial)).profile.payload_of(mobileconfig.ACMEPayload)
    assert payload is not None
    return payload


def csr_for(key: Any, cn: str, usages: list[x509.ObjectIdentifier] | None = None) -> x509.CertificateSigningRequest:
    """A CSR signed by ``key`` (a software key, or a Secure Enclave handle), asking for ``usages``."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if hasattr(key, "sign_csr"):
        return key.sign_csr(builder)  # type: ignore[no-any-return]
    return builder.sign(key, hashes.SHA256())


class JWSClient:
    """RFC 8555 by hand over a world's HTTP client: every answer is returned, not judged."""

    def __init__(self, http: httpx.Client, directory_url: str, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.http = http
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        self.directory = http.get(directory_url).json()
        self.kid: str | None = None
        self.nonce: str | None = None

    def fresh_nonce(self) -> str:
        reply = self.http.head(self.directory["newNonce"])
        assert reply.status_code == 200
        return reply.headers["Replay-Nonce"]

    def post(self, url: str, payload: Any, *, nonce: str | None = None, kid: str | None = None,
             jwk: bool = False) -> httpx.Response:
        body = b"" if payload is None else json.dumps(payload).encode()
        use = nonce or self.nonce or self.fresh_nonce()
        self.nonce = None
        signed = acme.sign_jws(body, self.key, nonce=use, url=url, kid=None if jwk else (kid or self.kid))
        reply = self.http.post(url, content=signed, headers={"Content-Type": acme.JOSE_CONTENT_TYPE})
        self.nonce = reply.headers.get("Replay-Nonce")
        return reply

    def account(self) -> httpx.Response:
        reply = self.post(self.directory["newAccount"], {"termsOfServiceAgreed": True}, jwk=True)
        self.kid = reply.headers.get("Location")
        return reply

    def order(self, value: str, kind: str = acme.PERMANENT_IDENTIFIER) -> httpx.Response:
        return self.post(self.directory["newOrder"], {"identifiers": [{"type": kind, "value": value}]})

    def challenge_of(self, order: httpx.Response) -> dict[str, Any]:
        authz = self.post(order.json()["authorizations"][0], None).json()
        return next(c for c in authz["challenges"] if c["type"] == acme.DEVICE_ATTEST_01)  # type: ignore[no-any-return]

    def finalize(self, order: httpx.Response, csr: x509.CertificateSigningRequest) -> httpx.Response:
        der = csr.public_bytes(serialization.Encoding.DER)
        return self.post(order.json()["finalize"], {"csr": acme.b64url(der)})


def problem(reply: httpx.Response) -> tuple[int, str, dict[str, Any]]:
    """``(status, error kind, document)`` of a problem answer."""
    assert reply.headers["Content-Type"].startswith(acme.PROBLEM_CONTENT_TYPE), (reply.status_code, reply.text[:300])
    document = reply.json()
    return reply.status_code, document["type"].removeprefix(acme.ERROR_PREFIX), document
