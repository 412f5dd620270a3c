"""The world's one WSGI app: every party's Flask app under its prefix, and what wraps them.

From the outside in: :class:`TrafficMiddleware` counts every response, :class:`AppleHostRouter` hands a
request whose ``Host`` is one of Apple's names (:data:`simulator.apple.hosts.APPLE_HOSTS`) to that party
at ``/``, the admin-token check (:class:`simulator.admin_token.APITokenMiddleware`) guards the surfaces
that rewrite the world, and werkzeug's ``DispatcherMiddleware`` hands every other request to its party
by path (the URL map of DESIGN.md). Each party's app gets :class:`FaultHook` as its ``before`` hook,
which plays the faults scripted through ``/_sim/faults`` (and depsim's schedules) before the party sees
the request. :func:`party_at_root` is one party alone at the root of a port of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from flask import Flask, Response, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from mdm.controller import http as controller_http
from mdm.dashboard import http as dashboard_http
from mdm.platform.web import ENDPOINT_ENVIRON_KEY, PARTY_ENVIRON_KEY, create_party_app, fault_hook, json_response
from mdm.server import http as mdm_http

from .admin_token import APITokenMiddleware
from .apple.account import http as account_http
from .apple.activation import http as activation_http
from .apple.apns import http as apns_http
from .apple.business import http as business_http
from .apple.dep import http as dep_http
from .apple.hosts import APPLE_HOSTS, prefix_for_host
from .apple.portal import http as portal_http
from .apple.portal import pages as portal_pages
from .apple.pushcert import http as pushcert_http
from .control import http as control_http
from .control.service import ControlService
from .depsim import DepsimSchedules, fault_reply
from .idp import http as idp_http

__all__ = [
    "mount",
    "party_at_root",
    "PARTY_PREFIXES",
    "LazyApp",
    "FaultHook",
    "TrafficMiddleware",
    "AppleHostRouter",
    "World",
]

#: The parties one port can serve alone (:func:`party_at_root`), by the name a command-line option uses.
PARTY_PREFIXES: Mapping[str, str] = {
    "dep": "/apple/dep",
    "apns": "/apple/apns",
    "activation": "/apple/activation",
    "portal": "/apple/portal",
}


class World(Protocol):
    """What mounting needs of a world (:class:`simulator.world.World` is the one), named here so that
    this module, which ``world.py`` imports, does not import ``world.py`` back."""

    account_service: Any
    activation: Any
    apns: Any
    business_api: Any
    clock: Any
    control: ControlService
    controller: Any
    controller_url: str
    default_server_uuid: str
    dep_service: Any
    depsim: DepsimSchedules
    depsim_compat: bool
    devices: Any
    idp: Any
    mdm: Any
    portal_service: Any
    portal_url: str
    pushcert: Any
    sim_url: str
    tls_ca_pem: str

    @property
    def http(self) -> Any: ...

    def info(self) -> dict[str, Any]: ...

    def reset(self) -> None: ...


class LazyApp:
    """A WSGI app built by ``factory`` on its first request (thread-safe), then reused.

    A test that only talks to Apple never pays for compiling the routes of the other parties."""

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


def mount(world: World) -> tuple[Callable, dict[str, LazyApp]]:
    """The world's WSGI app, and each party's (lazily built) app by prefix."""
    before = FaultHook(world.control, world.depsim)
    apps: dict[str, LazyApp] = {
        "/apple/dep": LazyApp(lambda: dep_http.create_app(world.dep_service, before=before)),
        "/apple/portal": LazyApp(lambda: _portal_app(world, before)),
        "/apple/apns": LazyApp(lambda: apns_http.create_app(world.apns, before=before)),
        "/apple/portal/push-certificates": LazyApp(lambda: pushcert_http.create_app(world.pushcert, before=before)),
        "/apple/activation": LazyApp(lambda: activation_http.create_app(world.activation, before=before)),
        "/apple/business": LazyApp(lambda: business_http.create_app(world.business_api, take_fault=world.control.take_fault)),
        "/apple/account": LazyApp(lambda: account_http.create_app(world.account_service, take_fault=world.control.take_fault)),
        "/mdm": LazyApp(lambda: mdm_http.create_app(world.mdm, before=before)),
        "/idp": LazyApp(lambda: idp_http.create_app(world.idp, before=before)),
        "/intune": LazyApp(lambda: _controller_app(world, before)),
        "/_sim": LazyApp(lambda: _control_app(world)),
    }
    root = _depsim_root_app(world, before) if world.depsim_compat else _root_app(world)
    token = APITokenMiddleware(DispatcherMiddleware(root, apps), lambda: world.control.get_setting("api_token"))
    return TrafficMiddleware(AppleHostRouter(token, apps), world.control), apps


def party_at_root(world: World, apps: Mapping[str, LazyApp], party: str = "dep") -> Callable:
    """One party's app alone, at the root of a port of its own (``--dep-port``: ``/session`` there is
    DEP's), its traffic counted with the world's. ``apps`` are :func:`mount`'s, so the party is the
    very app the main port serves (one set of routes, one fault hook) and nothing is built twice.

    Only Apple's parties serve alone: the vendor's are reached by path on the main port."""
    try:
        prefix = PARTY_PREFIXES[party]
    except KeyError:
        raise ValueError(f"no party {party!r} to serve alone; one of {sorted(PARTY_PREFIXES)}") from None
    return TrafficMiddleware(apps[prefix], world.control)


class AppleHostRouter:
    """Requests to Apple's host names reach that party at ``/``; every other request goes on by path.

    A client that hard-codes ``https://mdmenrollment.apple.com/`` (one hosts-file line pointing the
    name at the world) then calls ``/session`` on the main port and is answered by DEP, as Apple
    would; the same for the push gateway and activation. The path is left as sent (``SCRIPT_NAME``
    stays empty), so URLs the party builds, and the OAuth signature DEP checks, are the ones the
    client used. ``hosts`` maps a host name to a prefix of ``apps``: one line adds a service.
    """

    def __init__(
        self, app: Callable, apps: Mapping[str, Callable], hosts: Mapping[str, str] = APPLE_HOSTS
    ) -> None:
        unknown = set(hosts.values()) - set(apps)
        if unknown:
            raise ValueError(f"APPLE_HOSTS names parties the world does not mount: {sorted(unknown)}")
        self.app = app
        self.apps = apps
        self.hosts = hosts

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        prefix = prefix_for_host(environ.get("HTTP_HOST") or environ.get("SERVER_NAME"), self.hosts)
        if prefix is None:
            return self.app(environ, start_response)
        return self.apps[prefix](environ, start_response)


def _controller_app(world: World, before: FaultHook) -> Flask:
    """The controller's Graph API with the Intune-like dashboard pages beside it."""
    app = controller_http.create_app(world.controller, before=before)
    app.register_blueprint(dashboard_http.create_blueprint(
        lambda: world.http, lambda: f"{world.controller_url}/deviceManagement", lambda: f"{world.sim_url}/devices",
        now=world.clock.now, portal_url=lambda: f"{world.portal_url}/servers",
    ))
    return app


def _control_app(world: World) -> Flask:
    """``/_sim`` with ``GET /_sim/tls-ca.pem``: what a client must trust to reach the world over
    HTTPS (public, like any CA certificate: it is downloaded before anyone can be trusted)."""
    app = control_http.create_app(world.control, reset=world.reset, info=world.info, devices=world.devices)

    @app.get("/tls-ca.pem")
    def tls_ca_pem() -> Response:
        return Response(world.tls_ca_pem, mimetype="application/x-pem-file")

    return app


def _portal_app(world: World, before: FaultHook) -> Flask:
    app = portal_http.create_app(world.portal_service, before=before)
    app.register_blueprint(portal_pages.create_blueprint(world.portal_service))
    return app


def _root_app(world: World) -> Flask:
    app = create_party_app("root", __name__)

    @app.get("/")
    def index() -> Response:
        # Open to anyone: without the live feed's URL, whose ticket is derived from the API token and
        # gives every device's live state (``/_sim/`` shows it to those who hold the token).
        info = world.info()
        info["urls"] = {k: v for k, v in info.get("urls", {}).items() if k != "sim_events"}
        return json_response(info)

    return app


def _depsim_root_app(world: World, before: FaultHook) -> Flask:
    """``--depsim-compat``: the DEP API at ``/`` as depsim serves it, and depsim's ``GET /token``."""
    app = dep_http.create_app(world.dep_service, before=before)

    @app.get("/token")
    def depsim_token() -> Response:
        return json_response(world.portal_service.server_token(world.default_server_uuid))

    return app


class FaultHook:
    """Scripted faults and latency from ``/_sim/faults``, applied before the party sees the request."""

    def __init__(self, control: ControlService, schedules: DepsimSchedules) -> None:
        self._schedules = schedules
        self._scripted = fault_hook(control.take_fault, lambda name: fault_reply(name, request.environ))

    def __call__(self, party: str, endpoint: str) -> Response | None:
        if party == "dep" and self._schedules.active:
            self._schedules.run_due()
        return self._scripted(party, endpoint)


class TrafficMiddleware:
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
