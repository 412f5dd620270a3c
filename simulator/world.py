"""The composition root: builds every party on one clock, seeds a new world, serves it on one port.

Only this module (with the CLI and the pytest plugin) knows every party. Each party gets its own
store, the world's clock and, for calls to other parties, an HTTP client; nothing else is shared.
In process the client is routed straight to the world's WSGI app (no sockets, still HTTP); once the
world is served, the same URLs work over real sockets.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import operator
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, fields, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes, urlencode

import httpx
from flask import Response, request
from werkzeug.http import parse_cookie
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from mdm.controller import http as controller_http
from mdm.controller.service import MDM_EVENT_TOPICS, Controller
from mdm.controller.store import open_controller_store
from mdm.dashboard import http as dashboard_http
from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.platform.web import ENDPOINT_ENVIRON_KEY, PARTY_ENVIRON_KEY, create_party_app, json_response
from mdm.protocol.isotime import isoformat
from mdm.protocol.x509 import CertificateAuthority, cert_to_pem, key_to_pem, seeded_key
from mdm.server import http as mdm_http
from mdm.server.push import WebhookSubscription
from mdm.server.service import MDMService
from mdm.server.store import open_mdm_store

from .apple.activation import http as activation_http
from .apple.activation.service import ActivationService
from .apple.apns import http as apns_http
from .apple.apns.service import APNsService, open_apns_store
from .apple.dep import http as dep_http
from .apple.dep.faults import DEVICE_FAULTS, FAULT_ENVIRON_KEY, FAULT_RESPONSES
from .apple.dep.service import DEPService
from .apple.portal import http as portal_http
from .apple.portal import pages as portal_pages
from .apple.portal.service import PortalError, PortalService
from .apple.pushcert import http as pushcert_http
from .apple.pushcert.service import PushCertificateService, open_pushcert_store
from .apple.store import open_apple_store
from .control import http as control_http
from .control.service import MIGRATIONS as CONTROL_MIGRATIONS
from .control.service import ControlService
from .device.drivers import HTTPDriver
from .device.identity import DeviceIdentity, IdentityFactory
from .device.machine import DeviceScript
from .device.store import DeviceFleetService, DeviceRun, open_device_store
from .idp import http as idp_http
from .idp.service import IdentityProvider
from .idp.store import open_idp_store
from .tls import anchor_b64, issue_server_pair, server_context, tls_now, write_pair

__all__ = ["World", "ServedWorld", "DEPSIM_CREDENTIALS", "IN_PROCESS_URL"]

IN_PROCESS_URL = "http://mdmsim.invalid"
DEFAULT_SERVER_NAME = "mdmsim"
DEFAULT_ORGANIZATION = "Contoso Pharmaceuticals"

# The well-known credentials of Apple's depsim that MicroMDM's -depsim flag and other suites hard-code.
DEPSIM_CREDENTIALS = {
    "consumer_key": "CK_48dd68d198350f51258e885ce9a5c37ab7f98543c4a697323d75682a6c10a32501cb247e3db08105db868f73f2c972bdb6ae77112aea803b9219eb52689d42e6",  # noqa: E501
    "consumer_secret": "CS_34c7b2b531a600d99a0e4edcf4a78ded79b86ef318118c2f5bcfee1b011108c32d5302df801adbe29d446eb78f02b13144e323eb9aad51c79f01e50cb45c3a68",  # noqa: E501
    "access_token": "AT_927696831c59ba510cfe4ec1a69e5267c19881257d4bca2906a99d0785b785a6f6fdeb09774954fdd5e2d0ad952e3af52c6d8d2f21c924ba0caf4a031c158b89",  # noqa: E501
    "access_secret": "AS_c31afd7a09691d83548489336e8ff1cb11b82b6bca13f793344496a556b1f4972eaff4dde6deb5ac9cf076fdfa97ec97699c34d515947b9cf9ed31c99dded6ba",  # noqa: E501
}


class World:
    """Apple, an MDM server, a controller and devices on one clock.

    ``World(devices=100, seed=1)`` is a fresh in-memory world; ``World(data_dir=...)`` keeps its state
    in SQLite files there and finds the same world again after a restart. Use it as a context manager
    (``with World() as world:``) or call :meth:`close`.
    """

    def __init__(
        self,
        devices: int = 100,
        seed: int | None = None,
        *,
        data_dir: str | Path | None = None,
        depsim_compat: bool = False,
        server_name: str = DEFAULT_SERVER_NAME,
        organization: str = DEFAULT_ORGANIZATION,
        start: datetime | None = None,
        frozen_clock: bool = False,
        session_lifetime_s: int = 3600,
        sync_rules: str = "2016",
        background_sync: bool = True,
        synchronous_push: bool = True,
        push_certificate: bool = True,
        controller_sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if devices < 0:
            raise ValueError("devices must be zero or more")
        self.seed = seed
        self.data_dir = Path(data_dir) if data_dir is not None else None
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self.depsim_compat = depsim_compat
        self._server_name = server_name
        self._organization = organization
        self._stores: dict[str, Store] = {}
        self._snapshots: dict[str, sqlite3.Connection] = {}
        self._closed = False
        self._client: httpx.Client | None = None
        self._identities = IdentityFactory(seed)
        self._tls_ca_cache: tuple[str, CertificateAuthority] | None = None

        control_store = self._store("world", CONTROL_MIGRATIONS)  # identities and recent traffic included
        self.clock = Clock(control_store, start=start, frozen=frozen_clock)
        self.control = ControlService(control_store, self.clock, {"dep": FAULT_RESPONSES.keys() | DEVICE_FAULTS.keys()})

        apple_store = self._store("apple", None)
        self.portal_service = PortalService(apple_store, self.clock, generate_devices=self._generate_devices)
        self.dep_service = DEPService(
            apple_store, self.clock, session_lifetime_s=session_lifetime_s, public_url=lambda: self.dep_url
        )

        self.idp = IdentityProvider(self._store("idp", None), self.clock, seed=seed)

        self.device_ca = self._device_ca()
        self.activation = ActivationService(None, self.clock, dep=self.dep_service, device_ca=self.device_ca)
        self.fleet = DeviceFleetService(
            self._store("devices", None), self.clock, apple_url=lambda: f"{self.url}/apple",
            issue_identity=self.activation.issue_device_identity,
        )
        self.devices = WorldDevices(self)
        self.faults = WorldFaults(self.control)
        self.pushcert = PushCertificateService(self._store("pushcert", None), self.clock, seed=seed)
        self.apns = APNsService(self._store("apns", None), self.clock, certificate_check=self.pushcert.is_current)
        self.mdm = MDMService(
            self._store("mdm", None), self.clock, trust_roots=[self.device_ca.certificate], http=self.http,
            base_url=lambda: self.mdm_url, apns_url=lambda: f"{self.url}/apple/apns",
            idp_url=lambda: f"{self.url}/idp/adfs/services/trust/13/UsernameMixed",
            webhook_urls=lambda: [WebhookSubscription(f"{self.controller_url}/webhooks/mdm", MDM_EVENT_TOPICS)],
            seed=seed, synchronous=synchronous_push, organization=organization,
            # Every outbound call of a world (APNs, the controller's webhook) is in process, so threads
            # only keep it off the device's request, and more of them just contend for the GIL: two
            # instead of eight gave ~5 % more devices/s and a tenth less kernel time in fleet runs.
            outbound_workers=2,
            identity_days=730,  # outlives the one-year push certificate, so renewing it is the only fix needed
        )
        self.controller = Controller(
            self._store("controller", None), self.clock, http=self.http,
            dep_url=lambda: self.dep_url, mdm_enroll_url=lambda: f"{self.mdm_url}/enroll",
            rules=sync_rules, background=background_sync, sleep=controller_sleep,
            mdm_api_url=lambda: f"{self.mdm_url}/api/v1", seed=seed, anchor_certs=self._tls_anchors,
        )

        self._initial_devices = devices
        self._push_certificate = push_certificate
        self.wsgi = self._build_wsgi()  # before seeding: the push certificate step goes over HTTP
        if self.control.get_setting("seeded") is None:
            self._seed(devices)
        if self.data_dir is None:
            self.control.flush_traffic()  # seeding's own requests belong in the snapshot
            self._snapshots = {name: store.snapshot() for name, store in self._stores.items()}

    # -- construction ------------------------------------------------------------------------------
    def _store(self, name: str, migrations: Iterable[str] | None) -> Store:
        path = self.data_dir / f"{name}.db" if self.data_dir is not None else None
        openers = {"apple": open_apple_store, "idp": open_idp_store, "controller": open_controller_store,
                   "mdm": open_mdm_store, "apns": open_apns_store, "pushcert": open_pushcert_store, "devices": open_device_store}
        store = openers[name](path) if name in openers else Store(path, list(migrations or []))
        self._stores[name] = store
        return store

    def _device_ca(self) -> CertificateAuthority:
        """Apple's device CA, which issues each device the identity that signs its MachineInfo.

        Kept in the world's settings so every process and every restart trusts the same CA."""
        stored = self.control.get_setting("apple_device_ca")
        if stored is not None:
            cert_pem, key_pem = json.loads(stored)
            return CertificateAuthority.from_pem(cert_pem.encode(), key_pem.encode())
        ca = CertificateAuthority.create(
            "Apple iPhone Device CA (mdmsim)", self.clock.now(), key=seeded_key(self.seed, "apple-device-ca"),
            organization="Apple Inc.",
        )
        cert_pem, key_pem = ca.to_pem()
        self.control.set_setting("apple_device_ca", json.dumps([_text(cert_pem), _text(key_pem)]))
        return ca

    @property
    def tls_ca(self) -> CertificateAuthority:
        """The world's TLS CA, which issues the served world's HTTPS certificate (``--tls``).

        Made on first use (most worlds never serve TLS) and kept in the world's settings, like Apple's
        device CA, so every worker process and every restart serves certificates from the same CA
        and devices given its certificate as an anchor keep trusting the server."""
        stored = self.control.get_setting("tls_ca")
        cached = self._tls_ca_cache
        if stored is not None and cached is not None and cached[0] == stored:
            return cached[1]
        if stored is None:
            ca = cached[1] if cached is not None else CertificateAuthority.create(
                "mdmsim TLS CA", tls_now(), key=seeded_key(self.seed, "tls-ca"), organization="mdmsim")
            cert_pem, key_pem = ca.to_pem()
            stored = json.dumps([_text(cert_pem), _text(key_pem)])
            self.control.set_setting("tls_ca", stored)
        cert_pem_s, key_pem_s = json.loads(stored)
        ca = CertificateAuthority.from_pem(cert_pem_s.encode(), key_pem_s.encode())
        self._tls_ca_cache = (stored, ca)
        return ca

    @property
    def tls_ca_pem(self) -> str:
        """PEM of what devices and clients must trust for this world's HTTPS: the world's TLS CA, or
        the top of the chain given with ``--tls-cert``."""
        return self.control.get_setting("tls_anchor_pem") or _text(cert_to_pem(self.tls_ca.certificate))

    @property
    def serves_tls(self) -> bool:
        return self.url.startswith("https://")

    def _tls_anchors(self) -> list[str]:
        """The controller's ``anchor_certs``: the TLS trust anchor while the world serves HTTPS."""
        return [anchor_b64(self.tls_ca_pem)] if self.serves_tls else []

    def _generate_devices(self, count: int) -> list[dict[str, Any]]:
        """Manufacture devices: their hardware identity is kept (for power-on), Apple gets the record."""
        identities = self._identities.many(count)
        with self.control.store.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO identities (serial, doc) VALUES (?, ?)",
                [(i.serial_number, _dumps(_IDENTITY_FIELDS(i))) for i in identities],
            )
        return [_dep_record(identity) for identity in identities]

    def identity(self, serial: str) -> DeviceIdentity:
        """The hardware identity of a serial; serials added by hand get a plausible one, made once."""
        with self.control.store.read() as db:
            row = db.execute("SELECT doc FROM identities WHERE serial = ?", (serial,)).fetchone()
        if row is not None:
            return DeviceIdentity(*json.loads(row[0]))
        seed = int.from_bytes(hashlib.sha256(f"{self.seed}:{serial}".encode()).digest()[:8], "big")
        identity = replace(IdentityFactory(seed).one(), serial_number=serial)
        with self.control.store.transaction() as db:
            db.execute("INSERT OR IGNORE INTO identities (serial, doc) VALUES (?, ?)",
                       (serial, _dumps(_IDENTITY_FIELDS(identity))))
        return identity

    def _seed(self, devices: int, users: int = 25) -> None:
        self.portal_service.ensure_organization(name=self._organization)
        credentials = dict(DEPSIM_CREDENTIALS) if self.depsim_compat else None
        server = self.portal_service.create_server(self._server_name, credentials=credentials)
        if devices:
            self.portal_service.add_devices(self._generate_devices(devices), server_uuid=server["server_uuid"])
        self.idp.seed_users(users)
        if self._push_certificate:
            self.setup_push_certificate()
        self.control.set_setting("default_server_uuid", server["server_uuid"])
        self.control.set_setting("seeded", isoformat(self.clock.now()))

    def setup_push_certificate(self, apple_id: str = "admin@contoso.example") -> dict[str, Any]:
        """The seed document's first prerequisite, as an admin does it: the controller's CSR to Apple's
        Push Certificates Portal, Apple's certificate back to the controller, which hands it to the MDM
        server. Calling it again makes a *new* certificate: a new topic."""
        csr = self.controller.push_certificate_signing_request()
        issued = self.pushcert.create(apple_id, csr)
        return self.controller.upload_push_certificate(
            {"appleIdentifier": apple_id, "certificate": issued["certificate"]}
        )

    def renew_push_certificate(self, apple_id: str = "admin@contoso.example") -> dict[str, Any]:
        """Renew the certificate in use with the same Apple ID: same topic, a year more."""
        topic = self.controller.get_push_certificate()["topicIdentifier"]
        current = next(c for c in self.pushcert.list(apple_id) if c["topic"] == topic and c["status"] != "replaced")
        renewed = self.pushcert.renew(current["id"], apple_id, self.controller.push_certificate_signing_request())
        return self.controller.upload_push_certificate(
            {"appleIdentifier": apple_id, "certificate": renewed["certificate"]}
        )

    def _build_wsgi(self) -> Callable:
        before = self._before_hook
        # Each party's app is built on its first request: a test that only talks to Apple never pays
        # for compiling the routes of the other parties.
        apps: dict[str, Any] = {
            "/apple/dep": _LazyApp(lambda: dep_http.create_app(self.dep_service, before=before)),
            "/apple/portal": _LazyApp(lambda: self._portal_app(before)),
            "/apple/apns": _LazyApp(lambda: apns_http.create_app(self.apns, before=before)),
            "/apple/portal/push-certificates": _LazyApp(lambda: pushcert_http.create_app(self.pushcert, before=before)),
            "/apple/activation": _LazyApp(lambda: activation_http.create_app(self.activation, before=before)),
            "/mdm": _LazyApp(lambda: mdm_http.create_app(self.mdm, before=before)),
            "/idp": _LazyApp(lambda: idp_http.create_app(self.idp, before=before)),
            "/intune": _LazyApp(lambda: self._controller_app(before)),
            "/_sim": _LazyApp(self._control_app),
        }
        self._party_apps = apps
        root = dep_http.create_app(self.dep_service, before=before) if self.depsim_compat else self._root_app()
        if self.depsim_compat:
            portal = self.portal_service

            @root.get("/token")
            def depsim_token() -> Response:
                return json_response(portal.server_token(self.default_server_uuid))

        return _TrafficMiddleware(_APITokenMiddleware(DispatcherMiddleware(root, apps), self.control), self.control)

    def build_party_apps(self) -> World:
        """Build every party's routes now instead of on its first request: a server calls this at
        start so that no early request (the first of a sync storm, say) waits for it (~30 ms in all)."""
        for app in self._party_apps.values():
            app.build()
        return self

    def _controller_app(self, before: Any) -> Any:
        """The controller's Graph API with the Intune-like dashboard pages beside it."""
        app = controller_http.create_app(self.controller, before=before)
        app.register_blueprint(dashboard_http.create_blueprint(
            lambda: self.http, lambda: f"{self.controller_url}/deviceManagement", lambda: f"{self.sim_url}/devices",
            now=self.clock.now, portal_url=lambda: f"{self.portal_url}/servers",
        ))
        return app

    def _control_app(self) -> Any:
        """``/_sim`` with ``GET /_sim/tls-ca.pem``: what a client must trust to reach the world over
        HTTPS (public, like any CA certificate: it is downloaded before anyone can be trusted)."""
        app = control_http.create_app(self.control, reset=self.reset, info=self.info, devices=self.devices)

        @app.get("/tls-ca.pem")
        def tls_ca_pem() -> Response:
            return Response(self.tls_ca_pem, mimetype="application/x-pem-file")

        return app

    def _portal_app(self, before: Any) -> Any:
        app = portal_http.create_app(self.portal_service, before=before)
        app.register_blueprint(portal_pages.create_blueprint(self.portal_service))
        return app

    def _root_app(self) -> Any:
        app = create_party_app("root", __name__)

        @app.get("/")
        def index() -> Response:
            return json_response(self.info())

        return app

    def _before_hook(self, party: str, endpoint: str) -> Response | None:
        """Scripted faults and latency from ``/_sim/faults``, applied before the party sees the request."""
        if party == "dep" and self._has_schedules:
            self.run_depsim_schedules()
        response, latency_ms = self.control.take_fault(party, endpoint)
        if latency_ms:
            time.sleep(latency_ms / 1000.0)  # wall-clock latency is the point of this fault
        if response is None:
            return None
        if response in DEVICE_FAULTS:
            request.environ[FAULT_ENVIRON_KEY] = response
            return None
        status, body = FAULT_RESPONSES[response]
        reply = Response(body, status=status, mimetype="text/plain")
        if status in (429, 503):
            reply.headers["Retry-After"] = "60"
        return reply

    # -- URLs and credentials ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The world's base URL: real once served, ``http://mdmsim.invalid`` (in process) before."""
        return self.control.get_setting("public_url", IN_PROCESS_URL) or IN_PROCESS_URL

    @property
    def portal(self) -> PortalService:
        """Apple Business Manager in Python: add, assign, edit and release devices; the terms switch."""
        return self.portal_service

    @property
    def dep(self) -> DEPService:
        return self.dep_service

    @property
    def dep_url(self) -> str:
        return f"{self.url}/apple/dep"

    @property
    def portal_url(self) -> str:
        return f"{self.url}/apple/portal"

    @property
    def mdm_url(self) -> str:
        return f"{self.url}/mdm"

    @property
    def controller_url(self) -> str:
        return f"{self.url}/intune"

    @property
    def sim_url(self) -> str:
        return f"{self.url}/_sim"

    @property
    def default_server_uuid(self) -> str:
        value = self.control.get_setting("default_server_uuid")
        assert value is not None, "the world was not seeded"
        return value

    @property
    def dep_credentials(self) -> dict[str, str]:
        """The five OAuth keys of the default MDM server's token (as in the decrypted ``.p7m``)."""
        return self.dep_service.credentials(self.default_server_uuid)

    def server_token_p7m(self, certificate_pem: str | bytes, server_uuid: str | None = None) -> bytes:
        """Upload a public key for the server (default: ``mdmsim``) and download its ``.p7m`` token."""
        target = server_uuid or self.default_server_uuid
        pem = certificate_pem.decode() if isinstance(certificate_pem, bytes) else certificate_pem
        self.portal_service.set_public_key(target, pem)
        return self.portal_service.server_token_p7m(target)

    @property
    def serials(self) -> list[str]:
        """Serial numbers of the devices in the organisation, in the order they were added."""
        return self.serials_of()

    def serials_of(self, server_uuid: str | None = None) -> list[str]:
        """Serials of the organisation's devices (or one MDM server's), oldest first."""
        page = self.portal_service.devices(server_uuid, limit=10_000_000, offset=0)
        return [device["serial_number"] for device in page["devices"]]

    def has_device(self, serial: str) -> bool:
        try:
            self.portal_service.device(serial)
        except PortalError:
            return False
        return True

    def info(self) -> dict[str, Any]:
        return {
            "now": isoformat(self.clock.now()),
            "url": self.url,
            "urls": {
                "dep": self.dep_url,
                "portal": self.portal_url,
                "mdm": self.mdm_url,
                "controller": self.controller_url,
                "idp": f"{self.url}/idp",
                "sim": self.sim_url,
            },
            "organization": self._organization,
            "default_server_uuid": self.default_server_uuid,
            "depsim_compat": self.depsim_compat,
            "credentials": f"{self.portal_url}/api/servers/{self.default_server_uuid}/token",
        }

    # -- depsim configuration ----------------------------------------------------------------------
    def apply_depsim_config(self, config: dict[str, Any]) -> None:
        """Read depsim's config format: device insertions/deletions over world time, failure queues.

        ``device_insertions`` / ``device_deletions`` are ``{devices_per_event, interval_in_seconds,
        max_event_count}``; without an interval an event happens once, at once. Events are applied
        lazily, whenever the DEP service is called, for every interval of *world* time that has
        passed, so moving the clock an hour ahead inserts an hour's devices.
        """
        faults = {k: v for k, v in config.items() if k.endswith("_responses")}
        schedules = {}
        for kind in ("device_insertions", "device_deletions"):
            spec = config.get(kind)
            if spec is None:
                continue
            if not isinstance(spec, dict):
                raise ValueError(f"{kind} must be an object with devices_per_event")
            per_event = spec.get("devices_per_event", 0)
            interval = spec.get("interval_in_seconds")
            max_events = spec.get("max_event_count")
            for name, value in (("devices_per_event", per_event), ("interval_in_seconds", interval),
                                ("max_event_count", max_events)):
                if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                    raise ValueError(f"{kind}.{name} must be a non-negative integer")
            if per_event > 100_000:
                raise ValueError(f"{kind}.devices_per_event must be at most 100000")
            schedules[kind] = {
                "per_event": per_event,
                "interval": interval or None,
                "max_events": max_events if max_events is not None else (None if interval else 1),
                "start": self.clock.timestamp(),
                "done": 0,
            }
        unknown = set(config) - set(faults) - {"device_insertions", "device_deletions"}
        if unknown:
            raise ValueError(f"unknown depsim config keys: {', '.join(sorted(unknown))}")
        if faults:
            self.control.script_faults({"party": "dep", **faults})
        self.control.set_setting("depsim_schedules", json.dumps(schedules))
        self.run_depsim_schedules()

    @property
    def _has_schedules(self) -> bool:
        return self.control.get_setting("depsim_schedules") is not None

    def run_depsim_schedules(self) -> None:
        """Apply the insertion/deletion events that are due in world time (idempotent, atomic)."""
        due: dict[str, int] = {}
        with self.control.store.transaction() as db:
            row = db.execute("SELECT value FROM settings WHERE key = 'depsim_schedules'").fetchone()
            if row is None:
                return
            schedules = json.loads(row[0])
            now = self.clock.timestamp()
            for kind, spec in schedules.items():
                events = 1 if spec["interval"] is None else int((now - spec["start"]) // spec["interval"])
                if spec["max_events"] is not None:
                    events = min(events, spec["max_events"])
                if events > spec["done"]:
                    due[kind] = (events - spec["done"]) * spec["per_event"]
                    spec["done"] = events
            if due:
                db.execute("UPDATE settings SET value = ? WHERE key = 'depsim_schedules'", (json.dumps(schedules),))
                self.control.store.forget("setting:depsim_schedules")
        server = self.default_server_uuid
        if due.get("device_insertions"):
            self.portal_service.add_devices(self._generate_devices(due["device_insertions"]), server_uuid=server)
        if due.get("device_deletions"):
            self.portal_service.release(self.serials_of(server)[: due["device_deletions"]])

    # -- simulation control ------------------------------------------------------------------------
    def traffic(self) -> dict[str, dict[str, dict[str, int]]]:
        """Request counts per party, endpoint and status code."""
        return self.control.traffic()

    def recent_traffic(self) -> list[dict[str, Any]]:
        return self.control.recent_traffic()

    def reset(self) -> None:
        """Back to the world as it was just after seeding (same devices, credentials and keys)."""
        if self.data_dir is None:
            for name, snapshot in self._snapshots.items():
                self._stores[name].restore(snapshot)
        else:
            for store in self._stores.values():
                store.wipe()
            self.clock = Clock(self._stores["world"], start=None)
            self._seed(self._initial_devices)
        self.control.forget_unstored()

    # -- HTTP --------------------------------------------------------------------------------------
    @property
    def http(self) -> httpx.Client:
        """An HTTP client for this world: in process until served, over sockets after."""
        if self._client is None:
            client = _WorldClient(
                self, transport=_WorldTransport(self), base_url=IN_PROCESS_URL,
                event_hooks={"request": [self._authorize]}, timeout=30.0,
            )
            # Every party of the world shares this client, and parties must not share a cookie jar
            # (a cookie one party sets is no business of another); it also skips cookie parsing,
            # a seventh of an in-process request.
            client.cookies.extract_cookies = _no_cookies  # type: ignore[method-assign]
            self._client = client
        return self._client

    def _authorize(self, request: httpx.Request) -> None:
        """Parties of this world call each other's admin APIs with the world's own token."""
        token = self.control.get_setting("api_token")
        if token and request.url.host in ("mdmsim.invalid", *self._served_hosts()) and \
                "authorization" not in request.headers:
            request.headers["Authorization"] = f"Bearer {token}"

    def _served_hosts(self) -> tuple[str, ...]:
        return (httpx.URL(self.url).host,)

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0, *, tls: bool = False) -> Iterator[ServedWorld]:
        """Serve the world on a real port (threaded server) for as long as the block runs.

        ``tls=True`` serves HTTPS with a certificate from :attr:`tls_ca`; profiles defined meanwhile
        carry that CA as ``anchor_certs``. ``ssl`` loads keys only from files, so the pair goes to a
        private temporary directory that is removed as soon as the context holds it."""
        context = None
        if tls:
            self.control.set_setting("tls_anchor_pem", "")
            cert_pem, key_pem = issue_server_pair(self.tls_ca, host, tls_now())
            cert_file, key_file = write_pair(cert_pem, key_pem)
            try:
                context = server_context(cert_file, key_file)
            finally:
                shutil.rmtree(cert_file.parent, ignore_errors=True)
        server = make_server(host, port, self.wsgi, threaded=True, request_handler=_QuietHandler,
                             ssl_context=context)
        served = ServedWorld(self, server, scheme="https" if tls else "http")
        previous = self.control.get_setting("public_url")
        self.control.set_setting("public_url", served.url)
        thread = threading.Thread(target=server.serve_forever, name="mdmsim-serve", daemon=True)
        thread.start()
        try:
            yield served
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            if not self._closed:
                self.control.set_setting("public_url", previous or IN_PROCESS_URL)

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.controller.join(5.0)  # a background sync must not outlive its stores
        self.mdm.close()
        if self._client is not None:
            self._client.close()
        for store in self._stores.values():
            store.close()
        for snapshot in self._snapshots.values():
            snapshot.close()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WorldFaults:
    """Scripted responses and latency per endpoint, in depsim's vocabulary (``/_sim/faults`` in Python).

    ``world.faults.add({"post_devices_sync_responses": [{"count": 1, "response": "bad_request_expired_cursor"}]})``
    """

    def __init__(self, control: ControlService) -> None:
        self._control = control

    def add(self, script: dict[str, Any]) -> dict[str, Any]:
        return self._control.script_faults(script)

    def latency(self, endpoint: str, ms: int, party: str = "dep") -> dict[str, Any]:
        return self._control.script_faults({"party": party, "latency_ms": {endpoint: ms}})

    def clear(self) -> None:
        self._control.clear_faults()

    def current(self) -> dict[str, Any]:
        return self._control.faults()


class WorldDevices:
    """The world's simulated iPhones and iPads: power them on, wake their agents, read their state.

    Devices reach Apple and the MDM server only over HTTP, through the world's client: in process
    for this world's own URLs, over the network for anything else (an external MDM named by a profile).
    """

    def __init__(self, world: World) -> None:
        self._world = world

    def _driver(self) -> HTTPDriver:
        return HTTPDriver(self._world.http, now=self._world.clock.now)

    def power_on(self, serial: str, script: DeviceScript | None = None, *, max_steps: int = 500) -> DeviceRun:
        """Power a device on and walk Setup Assistant as far as it goes (home, or waiting)."""
        identity = None if self._world.fleet.get(serial) is not None else self._world.identity(serial)
        return self._world.fleet.power_on(serial, identity, self._driver(), script, max_steps=max_steps)

    def run_agent(self, serial: str, rounds: int = 1) -> DeviceRun:
        """Let a device's MDM agent wake (push or poll) and answer its commands, ``rounds`` times."""
        return self._world.fleet.run_agent(serial, self._driver(), rounds)

    def remove_mdm_profile(self, serial: str) -> bool:
        """The user tries to remove the MDM profile (refused when enrollment is locked)."""
        return self._world.fleet.remove_mdm_profile(serial, self._driver())

    def pair_with_host(self, serial: str, cert_der: bytes | None) -> bool:
        return self._world.fleet.pair_with_host(serial, cert_der)

    def get(self, serial: str) -> Any:
        return self._world.fleet.get(serial)

    def _known(self, serial: str) -> bool:
        return self._world.fleet.get(serial) is not None or self._world.has_device(serial)

    def identity_bundle(self, serial: str) -> dict[str, Any] | None:
        """Everything a device made elsewhere (``mdmsim device power-on``) needs: identity, key, cert."""
        if not self._known(serial):
            return None
        device = self._world.fleet.get(serial)
        identity = self._world.identity(serial)
        if device is not None:
            key_pem, cert_pem = device.state.device_key_pem, device.state.device_cert_pem
        else:
            key = seeded_key(self._world.seed, f"device:{serial}")
            cert = self._world.activation.issue_device_identity(identity.udid, serial, key.public_key())
            key_pem, cert_pem = _text(key_to_pem(key)), _text(cert_to_pem(cert))
        bundle = {"identity": asdict(identity), "device_key_pem": _text(key_pem),
                  "device_certificate_pem": _text(cert_pem), "apple_url": f"{self._world.url}/apple"}
        if self._world.serves_tls:
            # The simulation's stand-in for Apple's roots in the device's system store: a device run
            # elsewhere trusts this for Apple's own services (activation, push); the MDM server it
            # trusts only by the anchors of its cloud configuration.
            bundle["apple_ca_pem"] = self._world.tls_ca_pem
        return bundle

    def power_on_json(self, serial: str) -> dict[str, Any] | None:
        if not self._known(serial):
            return None
        self.power_on(serial)
        return self.describe(serial)

    def run_agent_json(self, serial: str, rounds: int) -> dict[str, Any] | None:
        if self._world.fleet.get(serial) is None:
            return None
        self.run_agent(serial, rounds)
        return self.describe(serial)

    def describe(self, serial: str) -> dict[str, Any] | None:
        return self._world.fleet.describe(serial)

    def list(self, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        """The organisation's devices, oldest first, with where each is now (``off`` until powered on)."""
        page = self._world.portal_service.devices(None, limit=limit, offset=offset)["devices"]
        states = {s["serial_number"]: s for s in self._world.fleet.devices.summaries_for(
            [d["serial_number"] for d in page])}
        return [
            {**states.get(d["serial_number"], {"serial_number": d["serial_number"], "phase": "off", "pane": None,
                                               "enrolled": False, "last_entry": None}),
             "model": d["model"], "server_uuid": d.get("server_uuid")}
            for d in page
        ]


class _LazyApp:
    """A WSGI app built by ``factory`` on its first request (thread-safe), then reused."""

    def __init__(self, factory: Callable[[], Callable]) -> None:
        self._factory = factory
        self._app: Callable | None = None
        self._lock = threading.Lock()

    def build(self) -> Callable:
        app = self._app
        if app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
                app = self._app
        return app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        return self.build()(environ, start_response)


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without a log line per request (``/_sim/traffic`` counts them instead)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class ServedWorld:
    """A world on a real port: ``.url``, ``.world``, and every attribute of the world."""

    def __init__(self, world: World, server: BaseWSGIServer, scheme: str = "http") -> None:
        self.world = world
        self.server = server
        host, port = server.server_address[:2]
        self.url = f"{scheme}://{host}:{port}"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.world, name)


class _WorldClient(httpx.Client):
    """The world's shared client: a plain request to the world itself skips httpx's machinery.

    Why: parties call each other on every device exchange (the MDM server's pushes and webhooks are
    three calls per enrolled device), and httpx spent ~150 µs per call building, sending and reading
    models around a WSGI call that costs ~85 µs itself. A request with only ``content``/``json``/
    ``headers`` for this world's own address becomes the same WSGI environ
    :class:`httpx.WSGITransport` builds, with the client's default headers and the world's token, and
    comes back as an :class:`httpx.Response`; anything else (params, auth, files, another host) takes
    httpx's full path unchanged.
    """

    def __init__(self, world: World, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._world = world

    def request(self, method: str, url: httpx.URL | str, *, content: Any = None, data: Any = None,
                files: Any = None, json: Any = None, params: Any = None, headers: Any = None,
                cookies: Any = None, auth: Any = httpx.USE_CLIENT_DEFAULT,
                follow_redirects: Any = httpx.USE_CLIENT_DEFAULT, timeout: Any = httpx.USE_CLIENT_DEFAULT,
                extensions: Any = None) -> httpx.Response:
        own = None
        if (isinstance(url, str) and data is None and files is None and params is None and cookies is None
                and auth is httpx.USE_CLIENT_DEFAULT and extensions is None
                and (content is None or isinstance(content, bytes))
                and (headers is None or isinstance(headers, dict))):
            own = self._own_target(url)
        if own is None:
            return super().request(method, url, content=content, data=data, files=files, json=json,
                                   params=params, headers=headers, cookies=cookies, auth=auth,
                                   follow_redirects=follow_redirects, timeout=timeout, extensions=extensions)
        return self._in_process(method, url, own, content, json, headers)

    def _own_target(self, url: str) -> tuple[str, str, str, str] | None:
        """(scheme, host, port, path?query) when ``url`` names this world; None otherwise."""
        if url.startswith("/"):
            return "http", "mdmsim.invalid", "80", url
        for base in (IN_PROCESS_URL, self._world.url):
            if url.startswith(base) and url[len(base):len(base) + 1] in ("/", "?", ""):
                scheme, _, authority = base.partition("://")
                host, _, port = authority.partition(":")
                return scheme, host, port or ("443" if scheme == "https" else "80"), url[len(base):] or "/"
        return None

    def _in_process(self, method: str, url: str, own: tuple[str, str, str, str], content: bytes | None,
                    json_body: Any, headers: dict[str, str] | None) -> httpx.Response:
        scheme, host, port, target = own
        target = target.partition("#")[0]
        path, _, query = target.partition("?")
        body = content or b""
        environ: dict[str, Any] = {
            "wsgi.version": (1, 0), "wsgi.url_scheme": scheme, "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "REQUEST_METHOD": method.upper(), "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1") if "%" in path else path,
            "QUERY_STRING": query, "SERVER_NAME": host, "SERVER_PORT": port,
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": host if port in ("80", "443") else f"{host}:{port}",
        }  # fmt: skip
        given = {k.lower(): v for k, v in (headers or {}).items()}
        if json_body is not None and content is None:
            body = _dumps(json_body).encode()
            given.setdefault("content-type", "application/json")
        if body or method.upper() in ("POST", "PUT", "PATCH"):
            given.setdefault("content-length", str(len(body)))
        defaults = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.headers.raw]
        if "authorization" not in given and "authorization" not in self.headers:  # as World._authorize
            token = self._world.control.get_setting("api_token")
            if token:
                given["authorization"] = f"Bearer {token}"
        for name, value in [*defaults, *given.items()]:
            key = name.upper().replace("-", "_")
            environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
        environ["wsgi.input"] = io.BytesIO(body)
        seen: list[Any] = []

        def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen[:] = [status, response_headers]
            return lambda _data: None

        result = self._world.wsgi(environ, start_response)
        try:
            payload = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        response = _InProcessResponse(int(seen[0].split(" ", 1)[0]), headers=seen[1], content=payload)
        response._lazy_request = (method, url if not url.startswith("/") else IN_PROCESS_URL + url)
        response.elapsed = _ZERO
        return response


class _InProcessResponse(httpx.Response):
    """A response whose :attr:`request` is built only if someone asks (it costs a URL parse)."""

    _lazy_request: tuple[str, str] = ("GET", IN_PROCESS_URL)

    @property  # type: ignore[override]
    def request(self) -> httpx.Request:
        if self._request is None:
            self._request = httpx.Request(*self._lazy_request)
        return self._request

    @request.setter
    def request(self, value: httpx.Request) -> None:
        self._request = value

    def raise_for_status(self) -> httpx.Response:
        self.request  # noqa: B018 - built now, so httpx's check finds it
        return super().raise_for_status()


class _WorldTransport(httpx.BaseTransport):
    """Requests for this world's own URL go straight to its WSGI app; anything else over the network.

    That is how parties "talk only over HTTP" without sockets in process, and how the controller can
    still be pointed at an external DEP service or the MDM server at an external APNs.
    """

    def __init__(self, world: World) -> None:
        self._world = world
        self._local: httpx.WSGITransport | None = None  # the world's app may not be built yet
        self._network: httpx.HTTPTransport | None = None  # made on first use: its TLS setup costs ~50 ms
        self._own: tuple[str, tuple[str, int | None]] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = request.url
        if target.host == "mdmsim.invalid" or (target.host, target.port) == self._own_address():
            if self._local is None:
                self._local = httpx.WSGITransport(app=self._world.wsgi)
            return self._local.handle_request(request)
        if self._network is None:
            self._network = httpx.HTTPTransport()
        return self._network.handle_request(request)

    def _own_address(self) -> tuple[str, int | None]:
        """The world's (host, port), parsed again only when its URL changes (serve, stop)."""
        url = self._world.url
        cached = self._own
        if cached is None or cached[0] != url:
            parsed = httpx.URL(url)
            cached = self._own = (url, (parsed.host, parsed.port))
        return cached[1]

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
        if self._network is not None:
            self._network.close()


class _APITokenMiddleware:
    """When the world is served beyond the default loopback address, admin surfaces need the token.

    The simulation control, the MDM command API and the controller (its Graph API *and* its dashboard
    pages) can rewrite the world, so once another machine can reach them they require the token
    printed at start: ``Authorization: Bearer <token>``. A browser cannot send that header, so the
    dashboard accepts ``/intune/…?api_token=<token>`` once: it sets an HttpOnly, SameSite=Strict
    cookie scoped to ``/intune`` and redirects to the same page without the token in its address.
    Devices and Apple's device-facing endpoints stay open, as the real ones are. Compared in constant time.
    """

    PROTECTED = ("/_sim", "/mdm/api/", "/intune")
    GRAPH = ("/intune/deviceManagement", "/intune/webhooks")  # API callers: the header, never the cookie
    COOKIE = "mdmsim_api_token"

    def __init__(self, app: Callable, control: ControlService) -> None:
        self.app = app
        self.control = control

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(self.PROTECTED) and path != "/_sim/tls-ca.pem":  # a CA certificate is public
            token = self.control.get_setting("api_token")
            if token and not self._allowed(environ, path, token):
                given = _query_value(environ, "api_token")
                if given is not None and _same(given, token) and self._is_page(path):
                    return self._enter_dashboard(environ, path, token, start_response)
                body = b'{"error":"this endpoint needs Authorization: Bearer <the token mdmsim serve printed>"}'
                environ[PARTY_ENVIRON_KEY] = "auth"
                start_response("401 UNAUTHORIZED", [("Content-Type", "application/json"),
                                                     ("Content-Length", str(len(body))),
                                                     ("WWW-Authenticate", 'Bearer realm="mdmsim"')])
                return [body]
        return self.app(environ, start_response)

    def _is_page(self, path: str) -> bool:
        return (path == "/intune" or path.startswith("/intune/")) and not path.startswith(self.GRAPH)

    def _allowed(self, environ: dict, path: str, token: str) -> bool:
        if _same(environ.get("HTTP_AUTHORIZATION", ""), f"Bearer {token}"):
            return True
        if self._is_page(path):
            cookie = parse_cookie(environ.get("HTTP_COOKIE", "")).get(self.COOKIE, "")
            return _same(cookie, token)
        return False

    def _enter_dashboard(self, environ: dict, path: str, token: str, start_response: Callable) -> Iterable[bytes]:
        kept = [(k, v) for k, v in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True) if k != "api_token"]
        location = path + ("?" + urlencode(kept) if kept else "")
        cookie = f"{self.COOKIE}={token}; Path=/intune; HttpOnly; SameSite=Strict"
        if environ.get("wsgi.url_scheme") == "https":
            cookie += "; Secure"
        environ[PARTY_ENVIRON_KEY] = "auth"
        start_response("303 SEE OTHER", [("Location", location), ("Set-Cookie", cookie),
                                         ("Cache-Control", "no-store"), ("Content-Length", "0")])
        return [b""]


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of secrets (the length may leak; the content does not)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


def _query_value(environ: dict, name: str) -> str | None:
    for key, value in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True):
        if key == name:
            return value
    return None


class _TrafficMiddleware:
    """Counts every response per party, endpoint and status (``GET /_sim/traffic``)."""

    def __init__(self, app: Callable, control: ControlService) -> None:
        self.app = app
        self.control = control

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")

        def recording_start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            party = environ.get(PARTY_ENVIRON_KEY, "root")
            endpoint = environ.get(ENDPOINT_ENVIRON_KEY, "unmatched")
            if party != "sim":  # the control plane does not count itself
                self.control.record(
                    party, method, path, endpoint, int(status.split(" ", 1)[0]),
                    (time.perf_counter() - started) * 1000.0,
                )
            return start_response(status, headers, exc_info)

        return self.app(environ, recording_start_response)


# Identities are stored as JSON arrays in field order: 100,000 of them must be written in well under a second.
_IDENTITY_FIELDS = operator.attrgetter(*(f.name for f in fields(DeviceIdentity)))
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_ZERO = timedelta(0)


def _no_cookies(response: httpx.Response) -> None:
    """The world's shared client keeps no cookies (see :attr:`World.http`)."""


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _dep_record(identity: Any) -> dict[str, Any]:
    """What Apple Business Manager knows of a device: its DEP record, from the device's identity."""
    return {
        "serial_number": identity.serial_number,
        "model": identity.model_name,
        "description": identity.description,
        "color": identity.color,
        "os": identity.os,
        "device_family": identity.device_family,
        "product_name": identity.product_name,
    }
