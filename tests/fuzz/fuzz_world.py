"""A world worth fuzzing, every route of every party, and hypothesis strategies for hostile requests.

The routes are read from each party's Flask ``url_map`` (through the world's dispatcher), so a route
added tomorrow is fuzzed tomorrow without anyone editing this file. The world is onboarded and one
device is enrolled first, so that a fraction of the requests carry *valid* credentials (a DEP session,
a signed ``Mdm-Signature``, real token and profile ids) and reach the parsing and rules behind the
authentication step, where the interesting crashes live.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import plistlib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import jwt
from hypothesis import strategies as st
from oauthlib.oauth1 import Client as OAuthClient
from werkzeug.test import EnvironBuilder, run_wsgi_app
from werkzeug.wrappers import Response

from mdm.protocol import cms
from simulator import World
from simulator.apple.business.service import RateLimits

GRAPH = "/intune/deviceManagement/depOnboardingSettings"
# CI examples per route (~150 routes → >10,000 requests); MDMSIM_FUZZ_EXAMPLES is the total for a long run.
TOTAL_EXAMPLES = int(os.environ.get("MDMSIM_FUZZ_EXAMPLES", "0") or 0)
MIN_REQUESTS = 10_000


@dataclass(frozen=True)
class Route:
    """One (method, rule) of one party, as mounted in the world; ``host``: reached by Apple's host name
    at ``/`` instead of by its prefix (simulator.apple.hosts), when set."""

    prefix: str
    method: str
    rule: str
    arguments: tuple[str, ...]
    host: str | None = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.host}{self.rule}" if self.host else f"{self.method} {self.prefix}{self.rule}"

    @property
    def party(self) -> str:
        return self.prefix or "/"

    @property
    def path_prefix(self) -> str:
        """What goes before the rule in the request's path: nothing when Apple's host name routes it."""
        return "" if self.host else self.prefix


def dispatcher_of(world: World) -> Any:
    """The world's path dispatcher, under its middlewares: TrafficMiddleware → AppleHostRouter →
    APITokenMiddleware → DispatcherMiddleware (simulator.mounting)."""
    app = world.wsgi
    while not hasattr(app, "mounts"):
        app = app.app
    return app


def routes(world: World) -> list[Route]:
    """Every route of every party, the control plane last (it can reset the world or move its clock)."""
    dispatcher = dispatcher_of(world)
    apps = [("", dispatcher.app), *dispatcher.mounts.items()]
    found: list[Route] = []
    for prefix, app in apps:
        for rule in _flask_app(app).url_map.iter_rules():
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                found.append(Route(prefix, method, rule.rule, tuple(sorted(rule.arguments))))
    # DEP, the Business API and its token endpoint once more as unmodified clients reach them: by Apple's
    # host name (mdmenrollment.apple.com, api-business.apple.com, account.apple.com), Apple's paths at /
    by_host = {"/apple/dep": "mdmenrollment.apple.com", "/apple/business": "api-business.apple.com",
               "/apple/account": "account.apple.com"}
    found += [Route(r.prefix, r.method, r.rule, r.arguments, host=by_host[r.prefix])
              for r in found if r.prefix in by_host]  # fmt: skip

    def order(route: Route) -> tuple[int, int, str]:
        late = route.prefix == "/_sim"
        last = late and route.rule in ("/reset", "/clock") and route.method == "POST"
        return (int(late), int(last), route.id)

    return sorted(found, key=order)


def _flask_app(app: Any) -> Any:
    """The Flask app behind a mount, built now if the world builds its parties lazily."""
    while not hasattr(app, "url_map"):
        if getattr(app, "_app", None) is None and hasattr(app, "_factory"):
            app._app = app._factory()
        app = app._app
    return app


@dataclass(repr=False)
class Known:
    """Real values of the fuzzed world, so that some requests get past "not found" and "unauthorized"."""

    def __repr__(self) -> str:  # hypothesis prints the strategy's arguments with every failure
        return "Known(<the fuzzed world>)"

    values: dict[str, list[str]] = field(default_factory=dict)
    dep_session: str = ""
    udid: str = ""
    serial: str = ""
    identity: tuple[Any, Any] | None = field(default=None, repr=False)  # the enrolled device's MDM identity
    command_uuid: str = ""
    cms_blob: bytes = field(default=b"", repr=False)
    bearer: str = ""  # a Business API access token
    client_id: str = ""  # the Business API account, and an assertion it signed
    assertion: str = field(default="", repr=False)


def build_world() -> tuple[World, Known]:
    """A world with a token, a profile, a sync, an assignment and one enrolled device (about 2 s)."""
    world = World(devices=12, seed=7, background_sync=False, business_rate_limits=RateLimits(0, 0))
    http = world.http
    setting = http.post(GRAPH, json={"tokenName": "Fuzz"}).json()["id"]
    pem = http.post(f"{GRAPH}/{setting}/generateEncryptionPublicKey").json()["value"]
    server = world.default_server_uuid
    http.post(f"/apple/portal/api/servers/{server}/public-key", content=pem).raise_for_status()
    p7m = http.get(f"/apple/portal/api/servers/{server}/token.p7m").text
    http.post(f"{GRAPH}/{setting}/uploadDepToken", json={"appleId": "a@contoso.com", "depToken": p7m}).raise_for_status()
    profile = http.post(f"{GRAPH}/{setting}/enrollmentProfiles", json={
        "@odata.type": "#microsoft.graph.depIOSEnrollmentProfile", "displayName": "Fuzz", "supervisedModeEnabled": True,
    }).json()["id"]
    http.post(f"{GRAPH}/{setting}/syncWithAppleDeviceEnrollmentProgram").raise_for_status()
    serial = world.serials[0]
    http.post(f"{GRAPH}/{setting}/enrollmentProfiles/{profile}/updateDeviceProfileAssignment",
              json={"deviceIds": [serial]}).raise_for_status()
    run = world.devices.power_on(serial)
    assert run.phase == "home", run.transcript[-3:]
    device = world.devices.get(serial)
    identity = device.mdm_identity()
    assert identity is not None
    udid = world.identity(serial).udid
    command = http.post("/mdm/api/v1/commands", json={
        "udids": [udid], "command": {"RequestType": "DeviceInformation", "Queries": ["UDID"]}})
    command_uuid = command.json()["command_uuid"]
    pushcert = world.pushcert.list("admin@contoso.example")[0]["id"]
    imported = http.get(f"{GRAPH}/{setting}/importedAppleDeviceIdentities").json()["value"][0]["id"]

    credentials = world.dep_credentials
    oauth = OAuthClient(credentials["consumer_key"], client_secret=credentials["consumer_secret"],
                        resource_owner_key=credentials["access_token"],
                        resource_owner_secret=credentials["access_secret"], realm="ADM")
    _, signed, _ = oauth.sign(f"{world.dep_url}/session")
    session = http.get("/apple/dep/session", headers={**signed, "User-Agent": "fuzz"}).json()["auth_session_token"]
    push_token = device.state.push_token or "00" * 32
    business = _business(world, world.serials[2])

    known = Known(
        values={
            "token_id": [setting], "profile_id": [profile], "server_uuid": [server], "serial": [serial, world.serials[1]],
            "udid": [udid], "command_uuid": [command_uuid], "cert_id": [pushcert],
            "device_id": [imported, serial, world.serials[2]],  # Graph's imported identities; the Business API's serials
            "token": [push_token, "ab" * 32], "name": ["fuzz-counter"], "filename": ["app.css", "../../etc/passwd"],
            "server_id": [business["server_id"], server],
            "activity_id": [business["activity_id"]], "client_id": [business["client_id"]],
        },
        dep_session=session, udid=udid, serial=serial, identity=identity, command_uuid=command_uuid,
        bearer=business["bearer"], client_id=business["client_id"], assertion=business["assertion"],
        cms_blob=cms.sign(plistlib.dumps({"UDID": udid, "SERIAL": serial}), identity[0], identity[1]),
    )
    return world, known


def _business(world: World, serial: str) -> dict[str, str]:
    """A Business API token, and a completed activity (so its id, and its log, are real)."""
    credentials = world.business_credentials
    now = int(world.clock.timestamp())
    assertion = jwt.encode({"sub": credentials["client_id"], "aud": credentials["audience"], "iat": now,
                            "exp": now + 86400, "jti": "fuzz"}, credentials["private_key_pem"], algorithm="ES256",
                           headers={"kid": credentials["key_id"]})
    token = world.http.post("/apple/account/auth/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": credentials["client_id"], "client_assertion": assertion,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "scope": "business.api"})
    bearer = token.json()["access_token"]
    server_id = world.default_server_uuid.replace("-", "")
    created = world.http.post("/apple/business/v1/orgDeviceActivities", headers={"Authorization": f"Bearer {bearer}"},
                              json={"data": {"type": "orgDeviceActivities", "attributes": {"activityType": "ASSIGN_DEVICES"},
                                             "relationships": {"mdmServer": {"data": {"type": "mdmServers", "id": server_id}},
                                                               "devices": {"data": [{"type": "orgDevices", "id": serial}]}}}})
    assert created.status_code == 201, created.text
    world.clock.advance(seconds=60)
    return {"bearer": bearer, "client_id": credentials["client_id"], "assertion": assertion,
            "server_id": server_id, "activity_id": created.json()["data"]["id"]}


# -- strategies ------------------------------------------------------------------------------------
ODD = ["..", ".", "%", "%00", "%2F", "%252F", "a/b", " ", "\u202e", "é", "ﬀ", "0" * 400, "'", '"', "<script>",
       "${jndi:x}", "\\", "null", "-1", "NaN", "1e309", "😀", "\x7f", "~", "*", "$filter"]
printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
odd_text = st.one_of(st.sampled_from(ODD), printable, unicode_text)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.text(max_size=30), st.sampled_from(["", " ", "0", "true", "X" * 2000]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=15,
)
plist_scalars = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1), st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30), st.binary(max_size=40),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)),
)
plist_keys = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=10)
plist_values = st.recursive(
    plist_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(plist_keys, inner, max_size=4),
    max_leaves=12,
)

# Field names each party reads, so shaped bodies reach past "missing field".
VOCABULARY = sorted({
    # DEP
    "cursor", "limit", "devices", "profile_uuid", "profile_name", "url", "is_supervised", "is_mdm_removable",
    "anchor_certs", "supervising_host_certs", "skip_setup_items", "language", "region", "device", "escrow_key",
    "lost_message", "configuration_web_url", "await_device_configured", "mdm_service_discovery_url",
    # portal, pushcert, sim, idp
    "server_name", "certificate", "count", "serial_numbers", "server_uuid", "order_number", "require_acceptance",
    "replacement", "replacement_date", "mdm_migration_deadline", "title", "os", "apple_seed_for_it",
    "account_driven_enrollment",
    "apple_id", "csr", "advance_seconds", "now", "party", "latency_ms", "post_devices_sync_responses", "serials",
    "upn", "password", "display_name", "mfa_required", "department", "topic", "key", "udids", "command", "priority",
    # Graph
    "tokenName", "appleId", "depToken", "displayName", "description", "supervisedModeEnabled", "deviceIds",
    "@odata.type", "appleIdentifier", "profileRemovalDisabled", "isDefault", "managementCertificates", "event",
    "type", "serialNumber", "udid", "enrollmentState", "enabledSkipKeys", "waitForDeviceConfiguredConfirmation",
    "awaitDeviceConfiguredConfirmation", "enableSharedIPad", "sharedIPadMaximumUserCount", "deviceNameTemplate",
    "configurationWebUrl", "enrollmentTimeAzureAdGroupIds", "companyPortalVppTokenId", "enableSingleAppEnrollmentMode",
    "enableAuthenticationViaCompanyPortal", "requiresUserAuthentication", "iTunesPairingMode", "siriDisabled",
    "depProfileAdminAccountPasswordRotationSetting", "adminAccountPassword", "temporarySessionTimeoutInSeconds",
    # activation
    "serial_number", "machine_info", "MachineInfo", "SerialNumber", "UDID",
    # Business API and its token endpoint
    "data", "attributes", "relationships", "activityType", "mdmServer", "activityTypeMetadata",
    "mdmMigrationDeadlineDateTime", "name", "grant_type", "client_id", "client_assertion", "client_assertion_type",
    "scope",
})
ACTIVITY_TYPES = ["ASSIGN_DEVICES", "UNASSIGN_DEVICES", "ASSIGN_DEVICES_WITH_MDM_MIGRATION_DEADLINE",
                  "UPDATE_MDM_MIGRATION_DEADLINE", "CANCEL_MDM_MIGRATION", "RELEASE_DEVICES", "NOPE", ""]
MDM_KEYS = ["MessageType", "UDID", "Topic", "Status", "CommandUUID", "PushMagic", "Token", "UnlockToken", "SerialNumber",
            "ErrorChain", "QueryResponses", "AwaitingConfiguration", "EnrollmentID", "UserID", "Command", "RequestType",
            "BuildVersion", "OSVersion", "ProductName", "IMEI", "MEID", "DeviceName", "Model", "ModelName"]
MESSAGE_TYPES = ["Authenticate", "TokenUpdate", "CheckOut", "UserAuthenticate", "GetBootstrapToken",
                 "SetBootstrapToken", "DeclarativeManagement", "Nope", ""]
STATUSES = ["Idle", "Acknowledged", "Error", "CommandFormatError", "NotNow", "Bogus", ""]
CONTENT_TYPES = ["application/json", "application/json;charset=UTF8", "application/x-apple-aspen-mdm-checkin",
                 "application/x-plist", "application/xml", "text/xml", "application/soap+xml; charset=utf-8",
                 "application/pkcs7-signature", "application/pkcs7-mime", "text/csv", "text/plain",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=zz", "multipart/form-data",
                 "application/octet-stream", "x/y; charset=bogus", ";;;", "application/json; charset=utf-16", ""]
QUERY_NAMES = ["limit", "offset", "token", "wait", "server_uuid", "$top", "$skiptoken", "$filter", "apple_id", "notice",
               "id", "rounds", "auth", "profile_uuid", "skiptoken", "token_id", "profile", "x", "", "a[b]",
               # Graph's query options, with and without their $ (beta), some of them unsupported on purpose
               "$skip", "$orderby", "$select", "$count", "$expand", "$search", "top", "filter", "orderby", "select", "device",
               # the Business API and its token endpoint
               "cursor", "fields[orgDevices]", "fields[mdmServers]", "fields[orgDeviceActivities]", "Expires", "Signature",
               "grant_type", "client_id", "client_assertion", "client_assertion_type", "scope"]
HEADER_NAMES = ["User-Agent", "Authorization", "X-ADM-Auth-Session", "X-Server-Protocol-Version", "Mdm-Signature",
                "x-apple-aspen-deviceinfo", "Accept", "apns-topic", "apns-push-type", "apns-priority",
                "apns-expiration", "apns-id", "apns-collapse-id", "Cookie", "Content-Encoding", "If-None-Match",
                "Origin", "Range", "X-Forwarded-For", "Host"]


query_names = st.sampled_from(QUERY_NAMES) | printable
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)


def _xml_entities(value: str) -> bytes:
    """A billion-laughs shaped plist: entity expansion must be refused, not computed."""
    return (b'<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY a "' + value.encode()[:40] + b'">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><plist version="1.0"><dict><key>UDID</key>'
            b'<string>&b;</string></dict></plist>')


def _soap(username: str, password: str) -> bytes:
    return (f'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing">'
            f'<s:Header><a:Action>http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue</a:Action>'
            f'<o:Security xmlns:o="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">'
            f'<o:UsernameToken><o:Username>{username}</o:Username><o:Password>{password}</o:Password>'
            f'</o:UsernameToken></o:Security></s:Header><s:Body/></s:Envelope>').encode("utf-8", "replace")


_PER_WORLD: dict[int, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any], st.SearchStrategy[str]]] = {}


def _world_strategies(known: Known) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any], st.SearchStrategy[str]]:
    """Strategies that mention the world's real values, built once (building them per draw is slow)."""
    if id(known) not in _PER_WORLD:
        every = sorted(set(sum(known.values.values(), [])))
        shaped = st.dictionaries(st.sampled_from(VOCABULARY), json_values | st.sampled_from(every), max_size=6)
        mdm_shaped = st.fixed_dictionaries(
            {"MessageType": st.sampled_from(MESSAGE_TYPES), "UDID": st.sampled_from([known.udid, "x"]) | plist_scalars},
            optional={k: plist_values | st.sampled_from(STATUSES + [known.command_uuid]) for k in MDM_KEYS
                      if k not in ("MessageType", "UDID")},
        )
        _PER_WORLD[id(known)] = (shaped, mdm_shaped, st.sampled_from(every))
    return _PER_WORLD[id(known)]


@st.composite
def bodies(draw: st.DrawFn, known: Known) -> tuple[bytes, str | None]:
    """A body and the Content-Type it claims (often not the one it is)."""
    shaped, mdm_shaped, _ = _world_strategies(known)
    kind = draw(st.sampled_from(["empty", "binary", "json", "shaped", "xml", "binary_plist", "mdm_xml", "mdm_binary",
                                 "truncated_plist", "entities", "cms", "broken_cms", "base64", "bad_base64", "soap",
                                 "form", "multipart", "csv", "pem", "big", "jsonapi", "oauth"]))
    body: bytes
    if kind == "empty":
        body = b""
    elif kind == "binary":
        body = draw(st.binary(max_size=300))
    elif kind == "json":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "shaped":
        body = json.dumps(draw(shaped)).encode()
    elif kind in ("xml", "binary_plist", "mdm_xml", "mdm_binary", "truncated_plist"):
        value = draw(mdm_shaped) if kind.startswith("mdm") or kind == "truncated_plist" else draw(plist_values)
        fmt = plistlib.FMT_BINARY if kind.endswith("binary") or kind == "binary_plist" else plistlib.FMT_XML
        body = plistlib.dumps(value, fmt=fmt, sort_keys=False)
        if kind == "truncated_plist":
            body = body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    elif kind == "entities":
        body = _xml_entities(draw(printable))
    elif kind == "cms":
        body = known.cms_blob
    elif kind == "broken_cms":
        blob = bytearray(known.cms_blob)
        cut = draw(st.integers(0, len(blob)))
        flip = draw(st.integers(0, len(blob) - 1))
        blob[flip] ^= draw(st.integers(1, 255))
        body = bytes(blob[:cut]) if draw(st.booleans()) else bytes(blob)
    elif kind == "base64":
        body = base64.b64encode(draw(st.sampled_from([known.cms_blob, b"", b"\x00" * 10])) + draw(st.binary(max_size=20)))
    elif kind == "bad_base64":
        body = draw(st.sampled_from([b"====", b"abc", b"a" * 5, b"!!!!", b"TWFu\x00", b"\xff\xfe"]))
    elif kind == "soap":
        body = _soap(draw(printable), draw(printable))
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]
    elif kind == "form":
        pairs = draw(st.lists(st.tuples(st.sampled_from(VOCABULARY + ["source", "action", "profile", "tokenName"]),
                                        odd_text), max_size=6))
        body = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode()
        if draw(st.booleans()):
            body += b"&%zz=%ff&=&&a"
    elif kind == "multipart":
        name = draw(st.sampled_from(["csr", "csr_file", "certificate", "depToken", "public_key", "csv_file", "x"]))
        payload = draw(st.binary(max_size=200) | st.just(known.cms_blob))
        body = (b"--zz\r\nContent-Disposition: form-data; name=\"" + name.encode() + b"\"; filename=\"f\"\r\n"
                b"Content-Type: application/octet-stream\r\n\r\n" + payload + b"\r\n--zz--\r\n")
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]
        return body, "multipart/form-data; boundary=zz"
    elif kind == "csv":
        body = "\n".join(draw(st.lists(odd_text, max_size=8))).encode("utf-8", "surrogatepass")
    elif kind == "pem":
        inner = base64.encodebytes(draw(st.binary(max_size=120))).decode()
        label = draw(st.sampled_from(["CERTIFICATE", "CERTIFICATE REQUEST", "PRIVATE KEY", "PKCS7", "X"]))
        body = f"-----BEGIN {label}-----\n{inner}-----END {label}-----\n".encode()
    elif kind == "jsonapi":  # a Business API activity, more or less well formed
        every = _world_strategies(known)[2]
        item = st.fixed_dictionaries({"type": st.sampled_from(["orgDevices", "mdmServers", ""]) | json_scalars,
                                      "id": every | json_scalars})
        document = draw(st.fixed_dictionaries({"data": st.fixed_dictionaries(
            {"type": st.sampled_from(["orgDeviceActivities", "x"]) | json_scalars},
            optional={
                "attributes": st.fixed_dictionaries({"activityType": st.sampled_from(ACTIVITY_TYPES) | json_scalars},
                                                    optional={"activityTypeMetadata": st.fixed_dictionaries(
                                                        {"mdmMigrationDeadlineDateTime": odd_text | json_scalars})}),
                "relationships": st.fixed_dictionaries({}, optional={
                    "mdmServer": st.fixed_dictionaries({"data": item}) | json_values,
                    "devices": st.fixed_dictionaries({"data": st.lists(item, max_size=4) | json_values})}),
            })}))
        body = json.dumps(document).encode()
    elif kind == "oauth":  # a token request, sometimes with the real client and assertion
        pairs = {"grant_type": draw(st.sampled_from(["client_credentials", "password", ""]) | odd_text),
                 "client_id": draw(st.sampled_from([known.client_id, "BUSINESSAPI.x"]) | odd_text),
                 "client_assertion_type": draw(st.sampled_from(
                     ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "x"])),
                 "client_assertion": draw(st.sampled_from([known.assertion, known.assertion[:-3] + "abc", "a.b.c"])
                                          | odd_text),
                 "scope": draw(st.sampled_from(["business.api", "school.api", ""]) | odd_text)}
        body = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs.items() if draw(st.integers(0, 5))).encode()
    else:  # "big": under most bounds, over the small ones (APNs 64 KB, activation 16 KB)
        body = draw(st.sampled_from([b"{" * 70_000, b"[" * 20_000 + b"]" * 20_000, b"x" * 200_000]))
    return body, draw(st.sampled_from(CONTENT_TYPES) | st.none())


@st.composite
def fuzz_request(draw: st.DrawFn, route: Route, known: Known) -> dict[str, Any]:
    """Keyword arguments for :func:`send`: one hostile (sometimes half-valid) request for ``route``."""
    method = route.method if draw(st.integers(0, 9)) else draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]))
    path = route.rule
    for name in route.arguments:
        good = known.values.get(name, [])
        value = draw(st.sampled_from(good)) if good and draw(st.integers(0, 2)) == 0 else draw(odd_text)
        encoded = quote(value, safe="") if draw(st.integers(0, 3)) else quote(value, safe="/%.")
        path = re.sub(r"<(?:[^:<>]+:)?" + re.escape(name) + ">", lambda _m, v=encoded: v or "x", path)
    pairs = draw(st.lists(st.tuples(query_names, odd_text | st.integers().map(str) | _world_strategies(known)[2]),
                          max_size=4))
    query = "&".join(f"{quote(k, safe='$')}={quote(v, safe='$')}" for k, v in pairs)
    if draw(st.integers(0, 7)) == 0:
        query += draw(st.sampled_from(["&%", "&%zz=1", "&a=%ff%fe", "&&&=", "&" + "a=1&" * 50, ";;", "&limit=1&limit=x"]))
    headers: list[tuple[str, str]] = []
    if draw(st.integers(0, 5)):
        headers.append(("User-Agent", "mdmsim-fuzz"))
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(HEADER_NAMES))
        value = draw(header_values if draw(st.booleans()) else st.sampled_from([
            known.dep_session, "Bearer x", "Basic " + base64.b64encode(b"u:p").decode(), "Basic ###",
            'OAuth realm="ADM", oauth_nonce="1"', base64.b64encode(known.cms_blob).decode(), "@@@", "",
            "text/event-stream", "10", "-1", "alert", "background"]))
        headers.append((name, value))
    if draw(st.integers(0, 2)) == 0:
        headers.append(("X-ADM-Auth-Session", known.dep_session))  # valid: reach the DEP body parsers
    if route.prefix == "/apple/business" and draw(st.integers(0, 3)):
        headers.append(("Authorization", f"Bearer {known.bearer}"))  # valid: reach the Business API's handlers
    body, content_type = draw(bodies(known))
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    sign = draw(st.integers(0, 2)) == 0  # a valid Mdm-Signature over the (hostile) body
    truncate = draw(st.integers(0, 15)) == 0  # Content-Length claims more than is sent
    chunked = not truncate and draw(st.integers(0, 15)) == 0  # no Content-Length at all
    return {"method": method, "path": route.path_prefix + path, "query": query, "headers": headers, "body": body,
            "sign": sign, "truncate": truncate, "chunked": chunked, "host": route.host}


def send(app: Any, known: Known, method: str, path: str, query: str, headers: list[tuple[str, str]],
         body: bytes, sign: bool = False, truncate: bool = False, chunked: bool = False, host: str | None = None) -> Any:
    """Send one request through the world's WSGI stack and return the (fully read) response."""
    if path.startswith("/apple/apns/events"):
        # A long poll or event stream waits up to minutes by design: ask for no wait at all.
        query = "&".join(p for p in query.split("&") if not p.startswith("wait=")) + "&wait=0"
    if sign and known.identity is not None:
        signature = base64.b64encode(cms.sign(body, known.identity[0], known.identity[1], detached=True)).decode()
        headers = [*headers, ("Mdm-Signature", signature)]
    if host is not None:  # Apple's host name, as a hosts-file line makes a client send it
        headers = [h for h in headers if h[0].lower() != "host"] + [("Host", host)]
    builder = EnvironBuilder(path=path, method=method, query_string=query, headers=headers, data=body)
    try:
        environ = builder.get_environ()
    finally:
        builder.close()
    if truncate:
        environ["CONTENT_LENGTH"] = str(len(body) + 1 + len(body) // 2)
    elif chunked:
        environ.pop("CONTENT_LENGTH", None)
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = True
    app_iter, status, response_headers = run_wsgi_app(app, environ, buffered=True)
    try:
        data = b"".join(app_iter)
    finally:
        getattr(app_iter, "close", lambda: None)()
    return Response(data, status=status, headers=response_headers)
