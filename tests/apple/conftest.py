"""Fixtures for Apple's services: an in-memory Apple world, and the same served on a real socket.

The socket server mounts the DEP and portal apps with ``DispatcherMiddleware`` at ``/apple/dep`` and
``/apple/portal``, as the world does, so OAuth signatures cover the real mounted URL.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from dep_client import DEPClient
from flask import Flask
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server
from werkzeug.wrappers import Response as WerkzeugResponse

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from simulator.apple.dep.http import create_app as create_dep_app
from simulator.apple.dep.service import DEPService
from simulator.apple.portal.http import create_app as create_portal_app
from simulator.apple.portal.service import PortalService
from simulator.apple.store import open_apple_store

# The project's own JSON Schemas of Apple's DEP web service (fixtures/dep/README.md says where each comes from).
SCHEMAS = Path(__file__).resolve().parents[2] / "fixtures" / "dep" / "schemas"
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LIFETIME_S = 3600.0

_MODELS = (
    ("iPhone 15", "iPhone", "iOS", "BLACK"),
    ("iPad Air (5th generation)", "iPad", "iPadOS", "BLUE"),
    ("iPhone 14", "iPhone", "iOS", "MIDNIGHT"),
)


def make_generator() -> Callable[[int], list[dict[str, Any]]]:
    """A deterministic stand-in for the world's Faker-backed generator (serials D0000001…)."""
    serial = count(1)

    def generate(n: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            i = next(serial)
            model, family, os_name, color = _MODELS[i % len(_MODELS)]
            out.append(
                {
                    "serial_number": f"D{i:07d}",
                    "model": model,
                    "description": f"{model.upper()} {color} 128GB",
                    "color": color,
                    "os": os_name,
                    "device_family": family,
                    "wifi_mac_address": f"f0:18:98:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 254:02x}",
                    "bluetooth_mac_address": f"f0:18:98:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 254 | 1:02x}",
                    **({"imei": [f"35{i:013d}"]} if family == "iPhone" else {}),
                }
            )
        return out

    return generate


@dataclass
class AppleWorld:
    store: Store
    clock: Clock
    portal: PortalService
    dep: DEPService
    server: dict[str, Any]
    base_url: str = "http://localhost/apple/dep"
    faults: dict[str, str] = field(default_factory=dict)

    def dep_app(self) -> Flask:
        return create_dep_app(self.dep, before=self._hook)

    def portal_app(self) -> Flask:
        return create_portal_app(self.portal)

    def _hook(self, party: str, endpoint: str) -> None:
        """The world's fault hook, reduced to per-device faults keyed by endpoint name."""
        from flask import request

        name = self.faults.get(endpoint)
        if name is not None:
            request.environ["mdmsim.fault"] = name
        return None

    def token(self, server: dict[str, Any] | None = None) -> dict[str, str]:
        return self.dep.credentials((server or self.server)["server_uuid"])


@pytest.fixture
def apple() -> Iterator[AppleWorld]:
    store = open_apple_store(None)
    clock = Clock(store, start=START, frozen=True)
    portal = PortalService(store, clock, generate_devices=make_generator())
    portal.ensure_organization(name="Contoso Pharmaceuticals", email="it@contoso.example")
    server = portal.create_server("mdmsim")
    world = AppleWorld(store, clock, portal, DEPService(store, clock, session_lifetime_s=LIFETIME_S), server)
    yield world
    store.close()


@dataclass
class Live:
    """The Apple world served over a real socket."""

    world: AppleWorld
    root: str

    @property
    def dep_url(self) -> str:
        return self.root + "/apple/dep"

    @property
    def portal_url(self) -> str:
        return self.root + "/apple/portal"

    def client(self, server: dict[str, Any] | None = None, **kwargs: Any) -> DEPClient:
        return DEPClient(self.dep_url, self.world.token(server), **kwargs)

    def portal(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.portal_url + path, timeout=60, **kwargs)


@pytest.fixture
def live(apple: AppleWorld) -> Iterator[Live]:
    def not_found(environ: Any, start_response: Any) -> Any:
        return WerkzeugResponse("NOT_FOUND", status=404)(environ, start_response)

    app = DispatcherMiddleware(
        not_found, {"/apple/dep": apple.dep_app(), "/apple/portal": apple.portal_app()}
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    root = f"http://127.0.0.1:{server.server_port}"
    apple.dep.public_url = lambda: root + "/apple/dep"
    try:
        yield Live(apple, root)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


# -- JSON Schemas ------------------------------------------------------------------------------------


def _registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.json"):
        resources.append((path.name, Resource.from_contents(json.loads(path.read_text()))))
    assert resources, f"no JSON Schemas in {SCHEMAS}"
    return Registry().with_resources(resources)


_REGISTRY: Registry | None = None


def schema_validate(instance: Any, name: str) -> None:
    """Validate ``instance`` against ``<name>.json`` (with ``$ref``s to sibling files and formats)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _registry()
    schema = _REGISTRY.contents(f"{name}.json")
    validator = Draft202012Validator(
        schema, registry=_REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(instance)
    if name == "FetchDeviceResponse":
        allowed = set(_REGISTRY.contents("Device.json")["properties"])
        for device in instance.get("devices", []):
            assert set(device) <= allowed, set(device) - allowed


@pytest.fixture
def validate() -> Callable[[Any, str], None]:
    return schema_validate


# -- a vendor's key pair for the server token ------------------------------------------------------


@pytest.fixture
def rsa_identity(tmp_path: Path) -> Callable[[str], tuple[Path, Path]]:
    """Factory: ``rsa_identity("vendor")`` → (key.pem, cert.pem) paths."""
    return lambda name: make_rsa_identity(tmp_path, name)


def make_rsa_identity(tmp: Path, name: str) -> tuple[Path, Path]:
    """An RSA key and self-signed certificate written as PEM, as an MDM vendor uploads to the portal."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START - timedelta(days=1))
        .not_valid_after(START + timedelta(days=400))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = tmp / f"{name}.key.pem", tmp / f"{name}.cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path
