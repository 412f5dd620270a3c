"""Helpers for the Business API tests: worlds, the independent client, schema checks, a DEP sync helper.
(A module of its own, not ``conftest``: test folders are on one ``sys.path``, and ``conftest`` is taken.)

Every response a test's client receives is validated against the project's JSON Schemas in
``fixtures/business/schemas`` (the client names which schema each reply must match), so a field
renamed or mistyped in the simulator fails the test that saw it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from axm_client import AxMClient
from jsonschema import Draft202012Validator
from oauthlib.oauth1 import Client as OAuthClient
from referencing import Registry, Resource

from simulator.apple.business.service import RateLimits
from simulator.world import World

SCHEMAS = Path(__file__).resolve().parents[2] / "fixtures" / "business" / "schemas"
NO_LIMITS = RateLimits(get_per_minute=0, post_per_hour=0)
_REGISTRY: Registry | None = None


def _registry() -> Registry:
    global _REGISTRY
    if _REGISTRY is None:
        resources = [(p.name, Resource.from_contents(json.loads(p.read_text()))) for p in SCHEMAS.glob("*.json")]
        assert resources, f"no JSON Schemas in {SCHEMAS}"
        _REGISTRY = Registry().with_resources(resources)
    return _REGISTRY


def schema_validate(instance: Any, name: str) -> None:
    """Validate against ``fixtures/business/schemas/<name>.json`` (formats checked too)."""
    registry = _registry()
    validator = Draft202012Validator(
        registry.contents(f"{name}.json"), registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(instance)


def check_response(kind: str, response: httpx.Response) -> None:
    """What a client's ``on_response`` calls: every JSON reply validated against the schema of its kind."""
    if kind == "log":
        return
    if kind == "token":
        kind = "TokenResponse" if response.status_code == 200 else "TokenErrorResponse"
    assert response.headers["content-type"].startswith("application/json"), (kind, response.headers)
    schema_validate(response.json(), kind)


def make_world(devices: int = 20, **options: Any) -> World:
    options.setdefault("business_rate_limits", NO_LIMITS)
    return World(devices=devices, seed=options.pop("seed", 11), background_sync=False, push_certificate=False,
                 **options)


def client_for(world: World, http: httpx.Client | None = None, **overrides: Any) -> AxMClient:
    """The independent client with the world's API account, in process unless ``http`` is given."""
    c = world.business_credentials
    args: dict[str, Any] = {
        "token_url": c["token_url"], "api_url": c["api_url"], "client_id": c["client_id"], "key_id": c["key_id"],
        "private_key_pem": c["private_key_pem"], "http": http or world.http, "now": world.clock.timestamp,
        "on_response": check_response,
    }
    args.update(overrides)
    return AxMClient(**args)


class DEPSync:
    """Just enough of a DEP client (OAuth 1.0a session, fetch, sync) to see what one MDM server hears."""

    def __init__(self, http: httpx.Client, dep_url: str, keys: dict[str, str], protocol_version: int = 7) -> None:
        self.http = http
        self.dep_url = dep_url.rstrip("/")
        self.keys = keys
        self.protocol_version = str(protocol_version)
        self.cursor: str | None = None
        self.session = self._session()

    def _session(self) -> str:
        oauth = OAuthClient(self.keys["consumer_key"], client_secret=self.keys["consumer_secret"],
                            resource_owner_key=self.keys["access_token"],
                            resource_owner_secret=self.keys["access_secret"], realm="ADM")
        _, headers, _ = oauth.sign(f"{self.dep_url}/session")
        response = self.http.get(f"{self.dep_url}/session", headers={**headers, "User-Agent": "business-tests"})
        assert response.status_code == 200, response.text
        return str(response.json()["auth_session_token"])

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(f"{self.dep_url}{path}", json=body, headers={
            "X-ADM-Auth-Session": self.session, "User-Agent": "business-tests",
            "X-Server-Protocol-Version": self.protocol_version})
        assert response.status_code == 200, response.text
        self.session = response.headers.get("X-ADM-Auth-Session", self.session)
        return dict(response.json())

    def fetch_all(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        body: dict[str, Any] = {"limit": 1000}
        while True:
            page = self._post("/server/devices", body)
            found += page["devices"]
            self.cursor = page["cursor"]
            if not page["more_to_follow"]:
                return found
            body = {"limit": 1000, "cursor": self.cursor}

    def sync(self) -> list[dict[str, Any]]:
        page = self._post("/devices/sync", {"cursor": self.cursor, "limit": 1000})
        self.cursor = page["cursor"]
        return list(page["devices"])


def advance(world_http: httpx.Client, sim_url: str, seconds: float) -> None:
    """Move the world clock over HTTP, as an external test harness does (``POST /_sim/clock``)."""
    response = world_http.post(f"{sim_url}/clock", json={"advance_seconds": seconds})
    assert response.status_code == 200, response.text
