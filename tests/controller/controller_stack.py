"""A real in-process stack for the controller: Apple's DEP service and portal, and the Graph API.

Everything talks HTTP through werkzeug's ``DispatcherMiddleware`` (``/apple/dep``, ``/apple/portal``,
``/intune``); the controller's client reaches Apple through ``httpx.WSGITransport``, so no socket is
needed unless a test serves the stack. Apple's DEP app is wrapped in :class:`AppleTap`, which counts
every request, can answer with scripted responses (the errors real Apple sends), can mark a request
with a per-device fault, and can hold requests at a gate while a test looks at "sync running".
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from flask import Flask, Response, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from mdm.controller import http as controller_http
from mdm.controller.depclient import DEPClient, OAuthCredentials
from mdm.controller.service import Controller
from mdm.controller.store import open_controller_store
from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from simulator.apple.dep import http as dep_http
from simulator.apple.dep.service import DEPService
from simulator.apple.portal import http as portal_http
from simulator.apple.portal.service import PortalService
from simulator.apple.pushcert import http as pushcert_http
from simulator.apple.pushcert.service import PushCertificateService, open_pushcert_store
from simulator.apple.store import open_apple_store

BASE = "http://mdmsim.invalid"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
Scripted = tuple[int, str, dict[str, str]]


@dataclass
class AppleTap:
    """WSGI middleware around Apple's DEP app: counts, scripts, faults and gates its traffic."""

    app: Callable
    counts: Counter = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)
    # "METHOD /path" → queued responses (status, body, headers) or callables run before the real app
    script: dict[str, list[Scripted | Callable[[], None]]] = field(default_factory=dict)
    device_fault: dict[str, list[str]] = field(default_factory=dict)
    gate: threading.Event | None = None
    reached_gate: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        key = f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')}"
        with self.lock:
            self.counts[key] += 1
            self.log.append(key)
            queued = self.script.get(key)
            action = queued.pop(0) if queued else None
            faults = self.device_fault.get(key)
            if faults:
                environ["mdmsim.fault"] = faults.pop(0)
        if self.gate is not None:
            self.reached_gate.set()
            assert self.gate.wait(20), "the test never opened the gate"
        if callable(action):
            action()
        elif action is not None:
            status, body, headers = action
            start_response(f"{status} SCRIPTED", [("Content-Type", "text/plain"), *headers.items()])
            return [body.encode()]
        return self.app(environ, start_response)

    def add(self, key: str, *responses: Scripted | Callable[[], None]) -> None:
        with self.lock:
            self.script.setdefault(key, []).extend(responses)

    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Stack:
    clock: Clock
    portal: PortalService
    dep: DEPService
    tap: AppleTap
    wsgi: Callable
    controller: Controller
    api: httpx.Client
    server_uuid: str
    sleeps: list[float]
    store: Store
    http: httpx.Client
    pushcert: PushCertificateService | None = None
    # What the (fake) MDM server received: push certificates (PUT /mdm/api/v1/push-certificate), and
    # {"command": …} and {"enrollment-profile": …} for the other two endpoints.
    mdm_received: list[dict[str, Any]] = field(default_factory=list)

    def make_controller(self, **kw: Any) -> Controller:
        """Another controller on the same store (a restart, or a second worker process)."""
        options: dict[str, Any] = dict(
            http=self.http,
            dep_url=lambda: f"{BASE}/apple/dep",
            mdm_enroll_url=lambda: f"{BASE}/mdm/enroll",
            background=False,
            sleep=self.sleeps.append,
            mdm_api_url=lambda: f"{BASE}/mdm/api/v1",
        )
        options.update(kw)
        return Controller(kw.pop("store", self.store), self.clock, **options)

    def upload_push_certificate(self, apple_id: str = "admin@contoso.example") -> dict[str, Any]:
        """The other prerequisite: the controller's CSR to Apple's Push Certificates Portal, the
        certificate back to the controller (once per stack; profiles cannot be created without it)."""
        current = self.api.get("/deviceManagement/applePushNotificationCertificate").json()
        if current["topicIdentifier"] is not None:
            return current
        csr = self.api.get(
            "/deviceManagement/applePushNotificationCertificate/downloadApplePushNotificationCertificateSigningRequest"
        ).json()["value"]
        issued = self.http.post(
            f"{BASE}/apple/portal/push-certificates/api/certificates", json={"apple_id": apple_id, "csr": csr}
        )
        assert issued.status_code == 201, issued.text
        reply = self.api.patch(
            "/deviceManagement/applePushNotificationCertificate",
            json={"appleIdentifier": apple_id, "certificate": issued.json()["certificate"]},
        )
        assert reply.status_code == 200, reply.text
        return reply.json()

    def onboard(self, token_name: str | None = None, *, push_certificate: bool = True) -> str:
        """What an admin does: a setting, its public key to the portal, the portal's .p7m back; and
        (unless told not to) an Apple MDM push certificate, which profiles need."""
        body = {"tokenName": token_name} if token_name else {}
        setting = self.api.post("/deviceManagement/depOnboardingSettings", json=body).json()
        sid = setting["id"]
        pem = self.api.get(f"/deviceManagement/depOnboardingSettings/{sid}/getEncryptionPublicKey").json()[
            "value"
        ]
        portal = httpx.Client(transport=httpx.WSGITransport(app=self.wsgi), base_url=f"{BASE}/apple/portal")
        assert portal.post(f"/api/servers/{self.server_uuid}/public-key", content=pem).status_code == 200
        p7m = portal.get(f"/api/servers/{self.server_uuid}/token.p7m")
        assert p7m.status_code == 200
        reply = self.api.post(
            f"/deviceManagement/depOnboardingSettings/{sid}/uploadDepToken",
            json={"appleId": "admin@contoso.example", "depToken": p7m.text},
        )
        assert reply.status_code == 204, reply.text
        if push_certificate:
            self.upload_push_certificate()
        return sid

    def sync(self, sid: str) -> httpx.Response:
        return self.api.post(
            f"/deviceManagement/depOnboardingSettings/{sid}/syncWithAppleDeviceEnrollmentProgram"
        )

    def setting(self, sid: str) -> dict[str, Any]:
        return self.api.get(f"/deviceManagement/depOnboardingSettings/{sid}").json()

    def devices(self, sid: str, **params: str) -> list[dict[str, Any]]:
        """Every imported identity, following ``@odata.nextLink``."""
        url: str | None = f"/deviceManagement/depOnboardingSettings/{sid}/importedAppleDeviceIdentities"
        items: list[dict[str, Any]] = []
        query: dict[str, str] | None = {"$top": "1000", **params}
        while url:
            page = self.api.get(url, params=query).json()
            items += page["value"]
            url, query = page.get("@odata.nextLink"), None
        return items

    def apple_client(self) -> DEPClient:
        """A DEP client with the server's own credentials, to look at what Apple stored."""
        creds = self.dep.credentials(self.server_uuid)
        keys = ("consumer_key", "consumer_secret", "access_token", "access_secret")
        return DEPClient(self.http, f"{BASE}/apple/dep", OAuthCredentials(*(creds[k] for k in keys)))


def _not_found_root() -> Flask:
    return Flask("root")


#: What the fake MDM server answers ``POST /api/v1/enrollment-profiles`` with.
FAKE_MOBILECONFIG = b"0\x82 signed enrollment profile"


def _fake_mdm_server(received: list[dict[str, Any]]) -> Flask:
    """The MDM server's endpoints the controller calls: each records what the controller sent."""
    app = Flask("fake_mdm")

    @app.put("/api/v1/push-certificate")
    def push_certificate() -> Response:
        received.append(request.get_json())
        return Response("{}", 200, mimetype="application/json")

    @app.post("/api/v1/commands")
    def commands() -> Response:
        received.append({"command": request.get_json()})
        return Response('{"command_uuid": "fake"}', 201, mimetype="application/json")

    @app.post("/api/v1/enrollment-profiles")
    def enrollment_profile() -> Response:
        received.append({"enrollment-profile": request.get_json()})
        return Response(FAKE_MOBILECONFIG, 200, content_type="application/x-apple-aspen-config")

    return app


def build_stack(*, devices: int = 500, rules: str = "2016", store_path: Any = None, **kw: Any) -> Stack:
    clock = Clock(Store(None, []), start=START, frozen=True)
    apple = open_apple_store(None)
    portal = PortalService(apple, clock)
    portal.ensure_organization(name="Contoso Pharmaceuticals")
    server_uuid = portal.create_server("Contoso Intune")["server_uuid"]
    if devices:
        portal.generate(devices, server_uuid)
    dep = DEPService(apple, clock)
    tap = AppleTap(dep_http.create_app(dep))
    pushcert = PushCertificateService(open_pushcert_store(None), clock)
    received: list[dict[str, Any]] = []
    holder: dict[str, Any] = {}
    wsgi = DispatcherMiddleware(
        _not_found_root(),
        {
            "/apple/dep": tap,
            "/apple/portal": portal_http.create_app(portal),
            "/apple/portal/push-certificates": pushcert_http.create_app(pushcert),
            "/mdm": _fake_mdm_server(received),
            "/intune": lambda environ, start: holder["app"](environ, start),
        },
    )
    http = httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url=BASE)
    store = open_controller_store(store_path)
    sleeps: list[float] = []
    stack = Stack(clock, portal, dep, tap, wsgi, None, None, server_uuid, sleeps, store, http, pushcert, received)  # type: ignore[arg-type]
    stack.controller = stack.make_controller(rules=rules, **kw)
    holder["app"] = controller_http.create_app(stack.controller)
    stack.api = httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url=f"{BASE}/intune")
    return stack


