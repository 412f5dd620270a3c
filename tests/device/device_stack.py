"""A stack of real parties for the device tests: Apple (portal, DEP, activation, APNs), the IdP and the
MDM server, each built from its own factory and mounted as ``mdmsim serve`` mounts them.

The tests drive it the way a vendor and a user would: the DEP profile is defined through the DEP web
service (OAuth session, ``POST /profile``), commands go through the MDM command API, devices are
powered on through a driver. Nothing here reaches into a party's store.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from flask import Flask, Response
from oauthlib.oauth1 import Client as OAuthClient
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.server import http as mdm_http
from mdm.server.service import MDMService
from mdm.server.store import open_mdm_store
from simulator.apple.activation import http as activation_http
from simulator.apple.activation.service import ActivationService
from simulator.apple.apns import http as apns_http
from simulator.apple.apns.service import APNsService, open_apns_store
from simulator.apple.dep import http as dep_http
from simulator.apple.dep.service import DEPService
from simulator.apple.portal import http as portal_http
from simulator.apple.portal.service import PortalService
from simulator.apple.store import open_apple_store
from simulator.device.drivers import WSGIDriver
from simulator.device.identity import DeviceIdentity, IdentityFactory
from simulator.device.machine import Device, DeviceScript, device_key_for
from simulator.idp import http as idp_http
from simulator.idp.service import IdentityProvider
from simulator.idp.store import open_idp_store

IN_PROCESS = "http://mdmsim.test"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ORGANIZATION = "Contoso Pharmaceuticals"
PASSWORD = "Corr3ct-Horse!"
USER = "megan.bowen@contoso.com"


@dataclass
class Stack:
    """Every party of the world on one clock, reachable in process and (``serve()``) over sockets."""

    clock: Clock
    portal: PortalService
    dep: DEPService
    activation: ActivationService
    apns: APNsService
    idp: IdentityProvider
    mdm: MDMService
    wsgi: Any
    http: httpx.Client
    server_uuid: str
    identities: IdentityFactory
    urls: dict[str, str] = field(default_factory=lambda: {"base": IN_PROCESS})
    apps: dict[str, Any] = field(default_factory=dict)
    _session: str | None = None

    # -- URLs ------------------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return self.urls["base"]

    @property
    def apple_url(self) -> str:
        return f"{self.base}/apple"

    @property
    def mdm_url(self) -> str:
        return f"{self.base}/mdm"

    # -- the vendor's side: DEP API and command API ------------------------------------------------------
    def dep_call(self, method: str, path: str, body: Any = None) -> Any:
        """One DEP web service call, authenticating (OAuth 1.0a) the first time."""
        if self._session is None:
            token = self.dep.credentials(self.server_uuid)
            oauth = OAuthClient(
                token["consumer_key"],
                client_secret=token["consumer_secret"],
                resource_owner_key=token["access_token"],
                resource_owner_secret=token["access_secret"],
                realm="ADM",
            )
            url = f"{IN_PROCESS}/apple/dep/session"
            _, headers, _ = oauth.sign(url, http_method="GET")
            r = self.http.get(url, headers={**headers, "User-Agent": "tests/1.0"})
            assert r.status_code == 200, r.text
            self._session = r.json()["auth_session_token"]
        r = self.http.request(
            method,
            f"{IN_PROCESS}/apple/dep{path}",
            content=json.dumps(body).encode() if body is not None else None,
            headers={
                "X-ADM-Auth-Session": self._session,
                "User-Agent": "tests/1.0",
                "X-Server-Protocol-Version": "7",
                "Content-Type": "application/json;charset=UTF8",
            },
        )
        assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def define_profile(self, serials: list[str], **settings: Any) -> str:
        """``POST /profile`` with ``devices``: what Intune does when an admin assigns a profile."""
        body = {
            "profile_name": settings.pop("profile_name", "Corporate iPhones"),
            "url": settings.pop("url", f"{self.mdm_url}/enroll"),
            "department": "IT Mobility",
            "support_phone_number": "+1 425 555 0100",
            **settings,
            "devices": serials,
        }
        reply = self.dep_call("POST", "/profile", body)
        assert all(v == "SUCCESS" for v in reply["devices"].values()), reply
        return reply["profile_uuid"]

    def command(self, udid: str, request_type: str, **params: Any) -> str:
        r = self.http.post(
            f"{IN_PROCESS}/mdm/api/v1/commands",
            json={"udids": [udid], "command": {"RequestType": request_type, **params}},
        )
        assert r.status_code == 201, r.text
        return r.json()["command_uuid"]

    def command_result(self, command_uuid: str) -> dict[str, Any]:
        """The latest report of the (single) device a command went to."""
        r = self.http.get(f"{IN_PROCESS}/mdm/api/v1/commands/{command_uuid}")
        assert r.status_code == 200, r.text
        result = r.json()["devices"][0]["result"]
        assert result is not None, "the device never answered"
        return result

    # -- devices --------------------------------------------------------------------------------------
    def new_device(
        self,
        model: str = "iPhone 14 Pro",
        os_version: str = "17.5",
        script: DeviceScript | None = None,
        *,
        assign: bool = True,
        seed: int | None = None,
    ) -> Device:
        """A new device in the organisation (assigned to our MDM server), with its Apple identity;
        ``seed`` makes its key and tokens reproducible."""
        identity: DeviceIdentity = self.identities.one(model, os_version=os_version, cellular=True)
        record = {
            "serial_number": identity.serial_number,
            "model": identity.model_name,
            "description": identity.description,
            "color": identity.color,
            "os": identity.os,
            "device_family": identity.device_family,
        }
        self.portal.add_devices([record], server_uuid=self.server_uuid if assign else None)
        key = device_key_for(identity.serial_number, seed)
        cert = self.activation.issue_device_identity(identity.udid, identity.serial_number, key.public_key())
        return Device.create(
            identity, device_key=key, device_cert=cert, apple_url=self.apple_url, script=script, seed=seed
        )

    def driver(self) -> WSGIDriver:
        return WSGIDriver(self.wsgi, now=self.clock.now)

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """The same stack on a real port (werkzeug's threaded server); URLs follow it while served."""
        server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        previous = self.urls["base"]
        self.urls["base"] = url
        try:
            yield url
        finally:
            self.urls["base"] = previous
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def _root() -> Flask:
    app = Flask("root")

    @app.get("/")
    def index() -> Response:
        return Response("mdmsim device tests", mimetype="text/plain")

    return app


def build_stack() -> Stack:
    clock = Clock(Store(None, []), start=START, frozen=True)
    urls = {"base": IN_PROCESS}
    apple_store = open_apple_store(None)
    portal = PortalService(apple_store, clock)
    portal.ensure_organization(ORGANIZATION, phone="+1 425 555 0199", email="it@contoso.com",
                               address="1 Microsoft Way, Redmond, WA")  # fmt: skip
    server = portal.create_server("Intune")
    dep = DEPService(apple_store, clock, public_url=lambda: f"{urls['base']}/apple/dep")
    activation = ActivationService(apple_store, clock, dep=dep)
    apns = APNsService(open_apns_store(None), clock)
    idp = IdentityProvider(open_idp_store(None), clock, seed=7)
    idp.add_user(USER, PASSWORD, "Megan Bowen")
    apps: dict[str, Any] = {"/": _root()}  # filled below: the MDM server needs the app for its own client
    wsgi = DispatcherMiddleware(_root(), apps)
    # The server's own outbound HTTP (APNs, IdP) stays in process even while devices use sockets.
    outbound = httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url=IN_PROCESS)
    mdm = MDMService(
        open_mdm_store(None),
        clock,
        trust_roots=[activation.device_ca_certificate()],
        http=outbound,
        base_url=lambda: f"{urls['base']}/mdm",
        apns_url=lambda: f"{IN_PROCESS}/apple/apns",
        idp_url=lambda: f"{IN_PROCESS}/idp/adfs/services/trust/13/UsernameMixed",
        seed=3,
        synchronous=True,
        organization=ORGANIZATION,
    )
    apps.update(
        {
            "/apple/dep": dep_http.create_app(dep),
            "/apple/portal": portal_http.create_app(portal),
            "/apple/activation": activation_http.create_app(activation),
            "/apple/apns": apns_http.create_app(apns),
            "/idp": idp_http.create_app(idp),
            "/mdm": mdm_http.create_app(mdm),
        }
    )
    stack = Stack(clock, portal, dep, activation, apns, idp, mdm, wsgi, outbound, server["server_uuid"],
                  IdentityFactory(11))  # fmt: skip
    stack.urls = urls
    stack.apps = apps
    return stack
