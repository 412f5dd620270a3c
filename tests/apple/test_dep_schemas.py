"""The project's own DEP JSON Schemas (fixtures/dep/schemas) are all in use, and every one of them bites.

Two DEP clients talk to our DEP service over a real socket: the independent test client
(tests/apple/dep_client.py, requests) and the controller's own client (mdm/controller/depclient.py,
httpx). Both record every request body they send and every reply they get. Then:

* every request body and every 200 reply validates against the schema :data:`ENDPOINTS` names for it;
* every schema file is named in :data:`ENDPOINTS`, or is ``$ref``-ed by one that is (``Device``, ``Url``,
  ``Limit``), so no file sits unused;
* deleting any required key (at any depth: a device inside a page, a ``Limit`` inside an account's
  ``urls``) from a real message makes validation fail, and each required key of each file is tried;
* a value of the wrong JSON type, a broken date-time, or (where a schema closes its object) an unknown
  key also fails, so schemas without required keys (``FetchDeviceRequest``) bite too.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from jsonschema import ValidationError

from mdm.controller.depclient import DEPClient as ControllerDEPClient
from mdm.controller.depclient import OAuthCredentials
from mdm.controller.profiles import apple_profile, merge_settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SCHEMAS = Path(__file__).resolve().parents[2] / "fixtures" / "dep" / "schemas"

# (method, path) → (schema of the request body or None, schema of the 200 reply or None).
# GET /session's {"auth_session_token"} has no object of its own in Apple's documentation, nor have the
# replies of POST and DELETE /account-driven-enrollment/profile (Apple documents a bare 200).
ENDPOINTS: dict[tuple[str, str], tuple[str | None, str | None]] = {
    ("GET", "/session"): (None, None),
    ("GET", "/account"): (None, "AccountDetail"),
    ("POST", "/server/devices"): ("FetchDeviceRequest", "FetchDeviceResponse"),
    ("POST", "/devices/sync"): ("SyncDeviceRequest", "FetchDeviceResponse"),
    ("POST", "/devices"): ("DeviceListRequest", "DeviceListResponse"),
    ("POST", "/devices/disown"): ("DeviceListRequest", "DeviceStatusResponse"),
    ("POST", "/profile"): ("Profile", "DefineProfileResponse"),
    ("GET", "/profile"): (None, "Profile"),
    ("POST", "/profile/devices"): ("ProfileServiceRequest", "AssignProfileResponse"),
    ("PUT", "/profile/devices"): ("ProfileServiceRequest", "AssignProfileResponse"),
    ("DELETE", "/profile/devices"): ("ClearProfileRequest", "ClearProfileResponse"),
    ("POST", "/device/activationlock"): ("ActivationLockRequest", "ActivationLockStatusResponse"),
    ("GET", "/device/replacementDetails"): (None, "GetReplacementDetailsResponse"),
    ("GET", "/os-beta-enrollment/tokens"): (None, "GetSeedBuildTokenResponse"),
    ("POST", "/account-driven-enrollment/profile"): ("AccountDrivenEnrollmentProfileRequest", None),
    ("GET", "/account-driven-enrollment/profile"): (None, "GetAccountDrivenEnrollmentProfileResponse"),
    ("DELETE", "/account-driven-enrollment/profile"): (None, None),
}

# Endpoints the controller's client has no method for; the independent client covers them.
NOT_IN_CONTROLLER_CLIENT = {
    ("POST", "/devices/disown"),
    ("PUT", "/profile/devices"),
    ("DELETE", "/profile/devices"),
    ("POST", "/device/activationlock"),
    ("GET", "/device/replacementDetails"),
    ("GET", "/os-beta-enrollment/tokens"),
    ("POST", "/account-driven-enrollment/profile"),
    ("GET", "/account-driven-enrollment/profile"),
    ("DELETE", "/account-driven-enrollment/profile"),
}

# A value of the wrong JSON type for each declared type.
WRONG_TYPE: dict[str, Any] = {
    "string": 12345,
    "integer": "12",
    "number": "1.5",
    "boolean": "true",
    "array": "not-a-list",
    "object": ["not", "an", "object"],
}


def _load_schemas() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(SCHEMAS.glob("*.json"))}


def _refs(node: Any) -> Iterator[str]:
    """Every ``$ref`` inside a schema, as a schema name (``Device.json`` → ``Device``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value.removesuffix(".json")
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


# Keywords the files may use: a misspelt one ("requried") would be ignored by every validator.
KEYWORDS = {
    "$schema", "$comment", "$ref", "title", "description", "default", "type", "enum", "format", "pattern",
    "contentEncoding", "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "properties",
    "additionalProperties", "items", "required", "dependentRequired", "allOf",
}  # fmt: skip


def _unknown_keywords(node: dict[str, Any], where: str) -> Iterator[str]:
    for key in set(node) - KEYWORDS:
        yield f"{where}: {key}"
    for name, sub in node.get("properties", {}).items():
        yield from _unknown_keywords(sub, f"{where}/properties/{name}")
    for key in ("additionalProperties", "items"):
        if isinstance(node.get(key), dict):
            yield from _unknown_keywords(node[key], f"{where}/{key}")
    for i, sub in enumerate(node.get("allOf", [])):
        yield from _unknown_keywords(sub, f"{where}/allOf/{i}")


# -- (a) every schema file is used ---------------------------------------------------------------


def test_every_schema_file_is_used_and_named_after_its_type() -> None:
    schemas = _load_schemas()
    named = {name for pair in ENDPOINTS.values() for name in pair if name is not None}
    assert named <= set(schemas), f"ENDPOINTS names schemas with no file: {sorted(named - set(schemas))}"
    used, todo = set(), list(named)
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used.add(name)
        refs = set(_refs(schemas[name]))
        assert refs <= set(schemas), f"{name}.json refers to missing {sorted(refs - set(schemas))}"
        todo.extend(refs)
    assert set(schemas) == used, f"schema files no test validates: {sorted(set(schemas) - used)}"
    for name, schema in schemas.items():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", name
        assert schema["title"] == name, f"{name}.json is titled {schema['title']!r}"
        assert "Apple: Device Management > " in schema["$comment"], f"{name}.json names no Apple page"
        assert list(_unknown_keywords(schema, name)) == []
        # every object a service answers with can lose something: each reply schema requires keys
        if name in {pair[1] for pair in ENDPOINTS.values()}:
            assert schema.get("required"), f"{name}.json requires nothing, so a reply missing a key passes"


# -- recording both clients ----------------------------------------------------------------------


@dataclass
class Exchange:
    client: str
    method: str
    path: str
    request: Any
    status: int
    response: Any


def _decode(raw: bytes | str | None) -> Any:
    if raw in (None, b"", ""):
        return None
    return json.loads(raw)


class RecordingSession(requests.Session):
    """A requests session that notes every call the independent DEP client makes."""

    def __init__(self, base_url: str, log: list[Exchange]) -> None:
        super().__init__()
        self.base_path = urlsplit(base_url).path.rstrip("/")
        self.log = log

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(method, url, *args, **kwargs)
        path = urlsplit(str(url)).path.removeprefix(self.base_path)
        body = response.json() if response.status_code == 200 else None
        self.log.append(Exchange("tests", str(method), path, _decode(kwargs.get("data")), response.status_code, body))
        return response


def _recording_httpx(base_url: str, log: list[Exchange]) -> httpx.Client:
    """An httpx client that notes every call the controller's DEP client makes."""
    base_path = urlsplit(base_url).path.rstrip("/")

    def on_response(response: httpx.Response) -> None:
        response.read()
        request = response.request
        body = response.json() if response.status_code == 200 else None
        path = request.url.path.removeprefix(base_path)
        log.append(Exchange("controller", request.method, path, _decode(request.content), response.status_code, body))

    return httpx.Client(timeout=60, event_hooks={"response": [on_response]})


def _certificate_b64(rsa_identity: Callable[[str], tuple[Path, Path]]) -> str:
    _, cert_path = rsa_identity("schema-anchor")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


@pytest.fixture
def exchanges(live: Any, rsa_identity: Callable[[str], tuple[Path, Path]]) -> list[Exchange]:
    """Every endpoint called at least once by the two clients, with enough history for sync to report
    added, modified and deleted devices."""
    log: list[Exchange] = []
    portal, server_uuid = live.world.portal, live.world.server["server_uuid"]
    ours = portal.generate(5, server_uuid=server_uuid)["serial_numbers"]

    client = live.client(protocol_version=10, http=RecordingSession(live.dep_url, log))
    client.account()
    cursor = list(client.fetch_pages(limit=2))[-1]["cursor"]
    client.device_details([ours[0], "NOSUCHSERIAL"])
    profile = {
        "profile_name": "Schema check",
        "url": "https://mdm.contoso.example/enroll",
        "configuration_web_url": "https://sso.contoso.example/enroll",
        "is_supervised": True,
        "is_mdm_removable": False,
        "await_device_configured": True,
        "department": "IT",
        "support_phone_number": "+1 408 555 1010",
        "support_email_address": "help@contoso.example",
        "org_magic": "contoso-magic",
        "language": "en",
        "region": "US",
        "skip_setup_items": ["AppleID", "Siri"],
        "anchor_certs": [_certificate_b64(rsa_identity)],
        "devices": ours[:1],
    }
    uuid = client.define_profile(profile)["profile_uuid"]
    client.get_profile(uuid)
    client.assign_profile(uuid, ours[1:3])
    client.assign_profile(uuid, ours[3:4], method="PUT")
    assert live.world.dep.mark_pushed(ours[0])
    client.remove_profile(ours[1:2], uuid)
    client.activation_lock(ours[2], escrow_key="ab" * 32, lost_message="Call IT")
    client.disown(ours[4:5])
    portal.generate(1, server_uuid=server_uuid)
    # version 8 and 10 fields: a migration deadline, a replaced device, beta programs, a discovery URL
    portal.set_migration_deadline(ours[1:2], "2026-09-30T12:00:00Z")
    replacement = portal.replace_device(ours[3])["replacement"]["serial_number"]
    portal.add_beta_program("iOS 26 Beta", "iOS")
    client.replacement_details(replacement)
    client.beta_enrollment_tokens()
    client.set_discovery_profile("https://mdm.contoso.example/.well-known/com.apple.remotemanagement")
    client.discovery_profile()
    client.delete_discovery_profile()
    client.sync_devices(cursor, limit=50)
    client.device_details([replacement, ours[1]])

    token = live.world.token()
    credentials = OAuthCredentials(token["consumer_key"], token["consumer_secret"], token["access_token"], token["access_secret"])
    with _recording_httpx(live.dep_url, log) as http:
        controller = ControllerDEPClient(http, live.dep_url, credentials, now=time.time)
        controller.account()
        page = controller.fetch_devices(limit=3)
        controller.sync_devices(page["cursor"], limit=3)
        controller.device_details(ours[:2])
        settings = merge_settings(
            None,
            {
                "displayName": "Controller profile",
                "supportDepartment": "IT",
                "supportPhoneNumber": "+1 425 555 0100",
                "profileRemovalDisabled": True,
                "awaitDeviceConfiguredConfirmation": True,
                "appleIdDisabled": True,
                "siriDisabled": True,
            },
        )
        defined = controller.define_profile(apple_profile(settings, "https://mdm.contoso.example/enroll"))
        controller.get_profile(defined["profile_uuid"])
        controller.assign_profile(defined["profile_uuid"], ours[:2])
    return log


# -- validation of what was sent and received ----------------------------------------------------


def test_every_request_and_reply_of_both_clients_matches_its_schema(
    exchanges: list[Exchange], validate: Callable[[Any, str], None]
) -> None:
    seen: dict[str, set[tuple[str, str]]] = {"tests": set(), "controller": set()}
    for exchange in exchanges:
        key = (exchange.method, exchange.path)
        assert key in ENDPOINTS, f"{exchange.client} called {key}, which ENDPOINTS does not map"
        assert exchange.status == 200, exchange
        request_schema, response_schema = ENDPOINTS[key]
        if request_schema is not None:
            validate(exchange.request, request_schema)
        else:
            assert exchange.request is None, exchange
        if response_schema is not None:
            validate(exchange.response, response_schema)
        seen[exchange.client].add(key)
    assert seen["tests"] == set(ENDPOINTS), sorted(set(ENDPOINTS) - seen["tests"])
    assert seen["controller"] == set(ENDPOINTS) - NOT_IN_CONTROLLER_CLIENT, sorted(
        set(ENDPOINTS) - NOT_IN_CONTROLLER_CLIENT - seen["controller"]
    )
    # the sync really reported every kind of change, so op_type/op_date were exercised
    synced = [e.response for e in exchanges if e.client == "tests" and e.path == "/devices/sync"]
    assert {d["op_type"] for page in synced for d in page["devices"]} == {"added", "modified", "deleted"}
    # and every key of protocol versions 8 and 10 that the test fleet can have was sent (no Macs: no Ethernet)
    sent = {key for page in synced for d in page["devices"] for key in d}
    assert {"mdm_migration_deadline", "wifi_mac_address", "bluetooth_mac_address", "imei", "is_replacement_device",
            "released_by_replacement", "profile_push_time"} <= sent, sent


# -- walking a message alongside its schema ------------------------------------------------------

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Slot:
    """A key present in a real message, with the schema (file and subschema) that describes it."""

    path: KeyPath
    file: str
    schema: dict[str, Any]


class Walker:
    """Walks a real message and its schema together, following ``$ref`` to sibling files and ``allOf``."""

    def __init__(self, schemas: dict[str, dict[str, Any]]) -> None:
        self.schemas = schemas

    def _resolve(self, schema: dict[str, Any], file: str) -> Iterator[tuple[dict[str, Any], str]]:
        """The subschema itself and, through ``$ref`` and ``allOf``, every schema it brings in."""
        yield schema, file
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target = ref.removesuffix(".json")
            yield from self._resolve(self.schemas[target], target)
        for part in schema.get("allOf", []):
            yield from self._resolve(part, file)

    def required(self, schema: dict[str, Any], file: str, instance: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, str]]:
        """(path of a required key present in ``instance``, the file that requires it)."""
        for sub, sub_file in self._resolve(schema, file):
            if isinstance(instance, dict):
                for key in sub.get("required", []):
                    if key in instance:
                        yield (*path, key), sub_file
                for trigger, needed in sub.get("dependentRequired", {}).items():
                    if trigger in instance:
                        for key in needed:
                            if key in instance:
                                yield (*path, key), sub_file
        for slot in self.children(schema, file, instance, path):
            yield from self.required(slot.schema, slot.file, _get(instance, slot.path[-1:]), slot.path)

    def children(self, schema: dict[str, Any], file: str, instance: Any, path: KeyPath) -> Iterator[Slot]:
        """Each member of ``instance`` a schema describes; of a list only its fullest item (the one with
        the most keys: an account's ``urls`` entry with a ``limit``), of a map only its first entry."""
        for sub, sub_file in self._resolve(schema, file):
            if isinstance(instance, dict):
                properties = sub.get("properties", {})
                extra = sub.get("additionalProperties")
                first_extra = True
                for key in instance:
                    if key in properties:
                        yield Slot((*path, key), sub_file, properties[key])
                    elif isinstance(extra, dict) and first_extra:
                        first_extra = False
                        yield Slot((*path, key), sub_file, extra)
            elif isinstance(instance, list) and instance and isinstance(sub.get("items"), dict):
                fullest = max(range(len(instance)), key=lambda i: len(instance[i]) if isinstance(instance[i], dict) else 0)
                yield Slot((*path, fullest), sub_file, sub["items"])

    def slots(self, schema: dict[str, Any], file: str, instance: Any, path: KeyPath = ()) -> Iterator[Slot]:
        """Every described member at any depth."""
        for slot in self.children(schema, file, instance, path):
            yield slot
            yield from self.slots(slot.schema, slot.file, _get(instance, slot.path[-1:]), slot.path)

    def declared(self, schema: dict[str, Any], file: str, key: str) -> Any:
        for sub, _ in self._resolve(schema, file):
            if key in sub:
                return sub[key]
        return None


def _get(instance: Any, path: KeyPath) -> Any:
    for step in path:
        instance = instance[step]
    return instance


def _without(instance: Any, path: KeyPath) -> Any:
    out = copy.deepcopy(instance)
    del _get(out, path[:-1])[path[-1]]
    return out


def _replaced(instance: Any, path: KeyPath, value: Any) -> Any:
    out = copy.deepcopy(instance)
    _get(out, path[:-1])[path[-1]] = value
    return out


def _messages(exchanges: list[Exchange]) -> Iterator[tuple[str, str, Any]]:
    """(schema name, where it came from, message) for every recorded request body and reply."""
    for exchange in exchanges:
        request_schema, response_schema = ENDPOINTS[(exchange.method, exchange.path)]
        where = f"{exchange.client} {exchange.method} {exchange.path}"
        if request_schema is not None:
            yield request_schema, where + " request", exchange.request
        if response_schema is not None:
            yield response_schema, where + " reply", exchange.response


def _fails(validate: Callable[[Any, str], None], instance: Any, name: str) -> bool:
    try:
        validate(instance, name)
    except (ValidationError, AssertionError):
        return True
    return False


def _mutations(walker: Walker, slot: Slot) -> Iterator[tuple[str, Any]]:
    """Values the member's schema must refuse: another JSON type, a value outside its enum, a non-date."""
    declared = walker.declared(slot.schema, slot.file, "type")
    if isinstance(declared, str):
        yield f"as {type(WRONG_TYPE[declared]).__name__} instead of {declared}", WRONG_TYPE[declared]
    elif walker.declared(slot.schema, slot.file, "enum") is not None:
        yield "outside its enum", "NOT_A_DOCUMENTED_VALUE"
    if walker.declared(slot.schema, slot.file, "format") == "date-time":
        yield "as a date that is not RFC 3339", "1 March 2026"


# -- (b) the schemas bite -------------------------------------------------------------------------


def test_deleting_any_required_key_from_a_real_message_fails_validation(
    exchanges: list[Exchange], validate: Callable[[Any, str], None]
) -> None:
    schemas = _load_schemas()
    walker = Walker(schemas)
    tried: set[tuple[str, str]] = set()
    lenient: list[str] = []
    for name, where, message in _messages(exchanges):
        for path, file in walker.required(schemas[name], name, message):
            tried.add((file, str(path[-1])))
            try:
                validate(_without(message, path), name)
            except ValidationError:
                continue
            lenient.append(f"{where}: {name} still validates without {'/'.join(map(str, path))}")
    assert not lenient, "\n".join(lenient)
    # every required key of every file was deleted from some real message at least once
    expected = {
        (name, key)
        for name, schema in schemas.items()
        for key in [*schema.get("required", []), *(k for v in schema.get("dependentRequired", {}).values() for k in v)]
    }
    expected |= {("DeviceListResponse", "response_status")}  # required through allOf on each entry
    assert expected - tried == set(), f"required keys never tried: {sorted(expected - tried)}"


def test_wrong_types_bad_dates_and_unknown_keys_fail_validation(
    exchanges: list[Exchange], validate: Callable[[Any, str], None]
) -> None:
    schemas = _load_schemas()
    walker = Walker(schemas)
    lenient: list[str] = []
    bitten: set[str] = set()
    for name, where, message in _messages(exchanges):
        for slot in walker.slots(schemas[name], name, message):
            for label, value in _mutations(walker, slot):
                bitten.add(name)
                if not _fails(validate, _replaced(message, slot.path, value), name):
                    lenient.append(f"{where}: {name} accepts {'/'.join(map(str, slot.path))} {label}")
        if schemas[name].get("additionalProperties") is False:
            if not _fails(validate, {**message, "x_unknown_key": 1}, name):
                lenient.append(f"{where}: {name} accepts an unknown key")
        if name == "FetchDeviceResponse" and message["devices"]:
            devices = [{**message["devices"][0], "x_unknown_key": 1}]
            if not _fails(validate, {**message, "devices": devices}, name):
                lenient.append(f"{where}: a fetched device may carry a key Device.json does not list")
    assert not lenient, "\n".join(lenient)
    assert bitten == {n for pair in ENDPOINTS.values() for n in pair if n is not None}
