"""An in-process stack for the push certificate's story: Apple (DEP, portal, push certificates, APNs),
the MDM server, the controller, and a device written from Apple's documentation (``mdm_world.Device``).

Every party is its own Flask app on one ``DispatcherMiddleware``; parties reach each other over HTTP
through ``httpx.WSGITransport``, as in the world. APNs checks provider certificates with the Push
Certificates Portal's ``is_current``, which is the wiring the world uses. ``conftest.py`` puts
``tests/mdm_server`` on ``sys.path`` for ``mdm_world``.
"""

from __future__ import annotations

import base64
import plistlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from flask import Flask, Response
from mdm_world import Device, issue, make_ca, pkcs7_sign
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from mdm.controller import http as controller_http
from mdm.controller.service import Controller
from mdm.controller.store import open_controller_store
from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol import cms
from mdm.server import http as mdm_http
from mdm.server.service import MDMService
from mdm.server.store import open_mdm_store
from simulator.apple.apns import http as apns_http
from simulator.apple.apns.service import APNsService, open_apns_store
from simulator.apple.dep import http as dep_http
from simulator.apple.dep.service import DEPService
from simulator.apple.portal import http as portal_http
from simulator.apple.portal.service import PortalService
from simulator.apple.pushcert import http as pushcert_http
from simulator.apple.pushcert.service import PushCertificateService, open_pushcert_store
from simulator.apple.store import open_apple_store

BASE = "http://mdmsim.invalid"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
APPLE_ID = "mdm-admin@contoso.example"
PUSH = "/deviceManagement/applePushNotificationCertificate"
SETTINGS = "/deviceManagement/depOnboardingSettings"


@dataclass
class Stack:
    clock: Clock
    portal: PortalService
    pushcert: PushCertificateService
    apns: APNsService
    mdm: MDMService
    controller: Controller
    apple_ca: tuple[x509.Certificate, Any]
    server_uuid: str
    http: httpx.Client
    client: Client  # werkzeug client on the whole stack (what the documented device speaks through)

    # -- clients per party ------------------------------------------------------------------------
    def graph(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, f"{BASE}/intune{path}", **kw)

    def apple(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """Apple's Push Certificates Portal (``/apple/portal/push-certificates``)."""
        return self.http.request(method, f"{BASE}/apple/portal/push-certificates{path}", **kw)

    def mdm_api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, f"{BASE}/mdm/api/v1{path}", **kw)

    # -- the admin's steps ------------------------------------------------------------------------
    def csr(self) -> str:
        reply = self.graph("GET", PUSH + "/downloadApplePushNotificationCertificateSigningRequest")
        assert reply.status_code == 200, reply.text
        return reply.json()["value"]

    def create_at_apple(self, csr: str, apple_id: str = APPLE_ID) -> dict[str, Any]:
        reply = self.apple("POST", "/api/certificates", json={"apple_id": apple_id, "csr": csr})
        assert reply.status_code == 201, reply.text
        return reply.json()

    def renew_at_apple(self, cert_id: str, csr: str, apple_id: str = APPLE_ID) -> httpx.Response:
        return self.apple("POST", f"/api/certificates/{cert_id}/renew", json={"apple_id": apple_id, "csr": csr})

    def upload(self, certificate_pem: str, apple_id: str = APPLE_ID) -> httpx.Response:
        return self.graph("PATCH", PUSH, json={"appleIdentifier": apple_id, "certificate": certificate_pem})

    def push_certificate(self) -> dict[str, Any]:
        return self.graph("GET", PUSH).json()

    def onboard_dep(self) -> str:
        """A DEP token in the controller (the other prerequisite), synced."""
        sid = self.graph("POST", SETTINGS, json={}).json()["id"]
        pem = self.graph("GET", f"{SETTINGS}/{sid}/getEncryptionPublicKey").json()["value"]
        portal = f"{BASE}/apple/portal/api/servers/{self.server_uuid}"
        assert self.http.post(f"{portal}/public-key", content=pem).status_code == 200
        p7m = self.http.get(f"{portal}/token.p7m").text
        reply = self.graph("POST", f"{SETTINGS}/{sid}/uploadDepToken", json={"appleId": APPLE_ID, "depToken": p7m})
        assert reply.status_code == 204, reply.text
        assert self.graph("POST", f"{SETTINGS}/{sid}/syncWithAppleDeviceEnrollmentProgram").status_code == 204
        return sid

    def create_profile(self, sid: str) -> httpx.Response:
        return self.graph(
            "POST",
            f"{SETTINGS}/{sid}/enrollmentProfiles",
            json={"displayName": "Corporate iPhones", "isDefault": True},
        )

    def imported(self, sid: str, serial: str) -> dict[str, Any]:
        page = self.graph(
            "GET", f"{SETTINGS}/{sid}/importedAppleDeviceIdentities", params={"$filter": f"serialNumber eq '{serial}'"}
        ).json()
        [device] = page["value"]
        return device

    # -- the device's steps -----------------------------------------------------------------------
    def enroll(self, serial: str, udid: str | None = None) -> tuple[Device, dict[str, Any]]:
        """DEP enrollment as Apple documents it: MachineInfo signed by the Apple device identity →
        signed profile → Authenticate and TokenUpdate with the profile's topic (a new token each time)."""
        udid = udid or f"00008110-{uuid.uuid4().hex[:16].upper()}"
        device_cert, device_key = issue(self.apple_ca, f"Apple iPhone Device {udid}", self.clock.now())
        info = {"UDID": udid, "SERIAL": serial, "PRODUCT": "iPhone15,2", "VERSION": "21E219", "OS_VERSION": "17.4"}
        signed = pkcs7_sign(plistlib.dumps(info), device_cert, device_key, detached=False)
        reply = self.client.post("/mdm/enroll", data=signed, content_type="application/pkcs7-signature")
        assert reply.status_code == 200, reply.get_data(as_text=True)
        ca = x509.load_pem_x509_certificate(self.mdm.ca_certificate_pem())
        content = cms.verify(reply.get_data(), trust_roots=[ca], now=self.clock.now()).content
        payloads = {p["PayloadType"]: p for p in plistlib.loads(content)["PayloadContent"]}
        p12 = payloads["com.apple.security.pkcs12"]
        key, cert, _ = pkcs12.load_key_and_certificates(p12["PayloadContent"], p12["Password"].encode())
        mdm_payload = payloads["com.apple.mdm"]
        device = Device(self.client, udid, cert, key, serial_number=serial)
        device.enroll(mdm_payload["Topic"])
        return device, mdm_payload

    def notifications(self, device: Device) -> list[dict[str, Any]]:
        """What APNs delivers to the device now (``GET /apple/apns/events``)."""
        reply = self.http.get(f"{BASE}/apple/apns/events", params={"token": device.token.hex(), "wait": "0"})
        return reply.json()["notifications"]

    def command(self, device: Device) -> str:
        reply = self.mdm_api(
            "POST",
            "/commands",
            json={"udids": [device.udid], "command": {"RequestType": "DeviceInformation", "Queries": ["OSVersion"]}},
        )
        assert reply.status_code == 201, reply.text
        return reply.json()["command_uuid"]

    def push_state(self, device: Device) -> dict[str, Any]:
        return self.mdm_api("GET", f"/devices/{device.udid}").json()["push"]

    def close(self) -> None:
        self.mdm.close()
        self.http.close()


def build_stack(*, devices: int = 3) -> Stack:
    clock = Clock(Store(None, []), start=START, frozen=True)
    apple = open_apple_store(None)
    portal = PortalService(apple, clock)
    portal.ensure_organization(name="Contoso Pharmaceuticals")
    server_uuid = portal.create_server("Contoso Intune")["server_uuid"]
    if devices:
        portal.generate(devices, server_uuid)
    dep = DEPService(apple, clock)
    pushcert = PushCertificateService(open_pushcert_store(None), clock)
    apns = APNsService(open_apns_store(None), clock, certificate_check=pushcert.is_current)
    apple_ca = make_ca("Test Apple iPhone Device CA", START)
    holder: dict[str, Any] = {}

    def wsgi(environ: Any, start_response: Any) -> Any:
        return holder["app"](environ, start_response)

    http = httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url=BASE)
    mdm = MDMService(
        open_mdm_store(None),
        clock,
        trust_roots=[apple_ca[0]],
        http=http,
        base_url=lambda: f"{BASE}/mdm",
        apns_url=lambda: f"{BASE}/apple/apns",
        webhook_urls=lambda: [f"{BASE}/intune/webhooks/mdm"],
        synchronous=True,
        identity_days=730,  # device identities outlive the push certificate: only the push expires
    )
    controller = Controller(
        open_controller_store(None),
        clock,
        http=http,
        dep_url=lambda: f"{BASE}/apple/dep",
        mdm_enroll_url=lambda: f"{BASE}/mdm/enroll",
        mdm_api_url=lambda: f"{BASE}/mdm/api/v1",
        background=False,
        sleep=lambda _: None,
    )
    holder["app"] = DispatcherMiddleware(
        Flask("root"),
        {
            "/apple/dep": dep_http.create_app(dep),
            "/apple/portal": portal_http.create_app(portal),
            "/apple/portal/push-certificates": pushcert_http.create_app(pushcert),
            "/apple/apns": apns_http.create_app(apns),
            "/mdm": mdm_http.create_app(mdm),
            "/intune": controller_http.create_app(controller),
        },
    )
    client = Client(holder["app"], Response)
    return Stack(clock, portal, pushcert, apns, mdm, controller, apple_ca, server_uuid, http, client)


def der_b64(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import serialization

    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
