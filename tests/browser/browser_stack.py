"""The served stack the browser tests drive: a world on a real port, and the admin's API shortcuts.

Normally that is a :class:`simulator.world.World` served as it is. :func:`_own_stack` mounts the
dashboard over a world with its device list pointed elsewhere, to test the page's fallback.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import WSGIRequestHandler, make_server

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "screenshots"
CHROMIUM = os.environ.get("MDMSIM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}


@dataclass
class Env:
    """A served world as the tests see it: its URL, the world object and two API clients."""

    url: str
    world: Any
    graph: httpx.Client  # …/intune/deviceManagement
    portal: httpx.Client  # …/apple/portal/api

    @property
    def dashboard(self) -> str:
        return f"{self.url}/intune"

    @property
    def portal_pages(self) -> str:
        return f"{self.url}/apple/portal"

    def onboard(self, name: str = "Contoso DEP") -> str:
        """What an admin does once per token, through the APIs: key → portal → .p7m → upload."""
        sid = self.graph.post("/depOnboardingSettings", json={"tokenName": name}).json()["id"]
        pem = self.graph.get(f"/depOnboardingSettings/{sid}/getEncryptionPublicKey").json()["value"]
        server = self.world.default_server_uuid
        assert self.portal.post(f"/servers/{server}/public-key", content=pem).status_code == 200
        p7m = self.portal.get(f"/servers/{server}/token.p7m").text
        reply = self.graph.post(
            f"/depOnboardingSettings/{sid}/uploadDepToken",
            json={"appleId": "admin@contoso.example", "depToken": p7m},
        )
        assert reply.status_code == 204, reply.text
        self.ensure_push_certificate()
        return sid

    def ensure_push_certificate(self) -> None:
        """Profiles need the tenant's MDM push certificate: CSR → Apple's push CA → upload, once."""
        status = self.graph.get("/applePushNotificationCertificate")
        if status.status_code == 404 or status.json().get("topicIdentifier"):
            return  # a controller without push certificates, or one already set up
        from simulator.apple.pushcert.service import PushCertificateService, open_pushcert_store

        issuer = getattr(self.world, "pushcert", None) or getattr(self.world, "push_certificates", None)
        if not isinstance(issuer, PushCertificateService):
            issuer = PushCertificateService(open_pushcert_store(None), self.world.clock)
        csr = self.graph.get("/applePushNotificationCertificate/downloadApplePushNotificationCertificateSigningRequest").json()[
            "value"
        ]
        issued = issuer.create("admin@contoso.example", csr)
        reply = self.graph.patch(
            "/applePushNotificationCertificate",
            json={"appleIdentifier": "admin@contoso.example", "certificate": issued["certificate"]},
        )
        assert reply.status_code == 200, reply.text

    def serials(self) -> list[str]:
        """The organisation's serial numbers, oldest first, as the portal lists them."""
        listing = self.portal.get("/devices", params={"limit": "1000"}).json()
        return [d["serial_number"] for d in listing["devices"]]

    def create_profile(self, sid: str, **settings: Any) -> dict[str, Any]:
        body = {"displayName": "Corporate iPhones", "supervisedModeEnabled": True, **settings}
        reply = self.graph.post(f"/depOnboardingSettings/{sid}/enrollmentProfiles", json=body)
        assert reply.status_code == 201, reply.text
        return reply.json()


def _own_stack(devices: int, seed: int, devices_url: str | None = None) -> Iterator[Env]:
    """The world's parties with the dashboard and portal pages mounted over them, on one port.

    The overlay serves ``/intune`` and ``/apple/portal`` from apps around the world's own controller
    and portal service; every other path (and every party-to-party call, through ``world.http``)
    reaches the world's app as it is.
    """
    from mdm.controller import http as controller_http
    from mdm.dashboard.http import create_blueprint as dashboard_blueprint
    from simulator.apple.portal import http as portal_http
    from simulator.apple.portal.pages import create_blueprint as portal_blueprint
    from simulator.world import World

    with World(devices=devices, seed=seed) as world:
        controller_app = controller_http.create_app(world.controller)
        controller_app.register_blueprint(
            dashboard_blueprint(
                lambda: world.http,
                lambda: f"{world.controller_url}/deviceManagement",
                lambda: devices_url or f"{world.sim_url}/devices",
                now=world.clock.now,
                portal_url=lambda: f"{world.portal_url}/servers",
            )
        )
        portal_app = portal_http.create_app(world.portal_service)
        portal_app.register_blueprint(portal_blueprint(world.portal_service))
        wsgi = DispatcherMiddleware(world.wsgi, {"/intune": controller_app, "/apple/portal": portal_app})
        server = make_server("127.0.0.1", 0, wsgi, threaded=True, request_handler=_QuietHandler)
        url = f"http://127.0.0.1:{server.server_port}"
        world.control.set_setting("public_url", url)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield _env(url, world)
        finally:
            server.shutdown()
            server.server_close()
            world.controller.join()


class _QuietHandler(WSGIRequestHandler):
    """No access log: a failing test's output should show the test, not every poll of the page."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _world_stack(devices: int, seed: int, devices_url: str | None = None) -> Iterator[Env]:
    from simulator.world import World

    with World(devices=devices, seed=seed) as world, world.serve() as served:
        yield _env(served.url, world)


def _env(url: str, world: Any) -> Env:
    return Env(
        url,
        world,
        httpx.Client(base_url=f"{url}/intune/deviceManagement", timeout=15.0),
        httpx.Client(base_url=f"{url}/apple/portal/api", timeout=15.0),
    )


@contextlib.contextmanager
def serve_env(devices: int, seed: int, devices_url: str | None = None) -> Iterator[Env]:
    """A served world; with ``devices_url`` the dashboard's Simulated devices page looks there instead."""
    stack = _own_stack if devices_url is not None else _world_stack
    gen = stack(devices, seed, devices_url)
    served = next(gen)
    try:
        yield served
    finally:
        served.graph.close()
        served.portal.close()
        gen.close()
