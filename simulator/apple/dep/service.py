"""The rules of Apple's DEP web service (``mdmenrollment.apple.com``): sessions, cursors, profiles.

Every method takes already-decoded JSON and raises :class:`DEPError` with Apple's status and short
error string (``INVALID_CURSOR``…); the HTTP layer only parses and renders. State lives in Apple's
store (:mod:`simulator.apple.store`), time comes from the world clock, so a seven-day cursor expiry or
a session lifetime is tested by moving the clock.

Choices where Apple documents nothing (each one visible to a client):

* Sessions last ``session_lifetime_s`` of *world* time (default one hour). Every authenticated
  response carries ``X-ADM-Auth-Session``: the same token while it is younger than
  ``refresh_after_s`` (60 s), else a freshly minted one. Old tokens stay valid until their own expiry.
  Refreshing at most once a minute keeps a fetch of 100 pages free of writes.
* The OAuth timestamp is compared with *wall* time (``time.time()``), not world time: clients sign
  with their own wall clock, so comparing with a world clock moved eight days ahead would reject
  every client. Nonces are remembered per consumer key for twice the ten-minute window.
* ``limit`` must be a JSON integer (else ``MALFORMED_REQUEST_BODY``); it is clamped to 1…1000.
* More than 1000 serials in one device-list request → 400 ``TOO_MANY_DEVICES`` (Apple asks for at
  most 1000 per request and documents no error string for more).
* A fetch cursor that already returned everything, or any sync cursor, sent to fetch →
  ``EXHAUSTED_CURSOR`` ("move to sync"). A fetch cursor sent to sync starts at the moment the fetch
  began. Sync never answers ``EXHAUSTED_CURSOR``: with nothing new it returns no devices.
* Profile assignment, removal and push are reported by sync as ``modified`` events.
* A serial that is not accessible in ``POST /devices`` comes back as
  ``{"serial_number", "model": "", "response_status": "NOT_ACCESSIBLE"}`` so that the reply still
  validates against Apple's ``Device`` schema (which requires ``model``).
* Invalid base64/DER certificates in a profile → ``ANCHOR_CERTS_INVALID`` /
  ``SUPERVISING_HOST_CERTS_INVALID``; a non-boolean flag → ``FLAGS_INVALID``; a bad support e-mail
  → ``SUPPORT_EMAIL_INVALID``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import sqlite3
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.request import parse_http_list

from cryptography import x509
from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth1.rfc5849 import signature as oauth_signature

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.isotime import iso_from_timestamp

from .. import store as apple_store
from .cursors import Cursor, CursorError, CursorKind, decode_cursor, encode_cursor
from .faults import DEVICE_FAULTS

__all__ = ["DEPError", "DEPService", "Session", "validate_profile", "DEFAULT_SESSION_LIFETIME_S"]

DEFAULT_SESSION_LIFETIME_S = 3600.0
SESSION_REFRESH_AFTER_S = 60.0
OAUTH_TIMESTAMP_WINDOW_S = 600.0
CURSOR_LIFETIME_S = 7 * 24 * 3600
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_DEVICES_PER_REQUEST = 1000
RETRY_AFTER_SECONDS = 60

_OAUTH_REQUIRED = (
    "oauth_consumer_key",
    "oauth_token",
    "oauth_signature_method",
    "oauth_signature",
    "oauth_timestamp",
    "oauth_nonce",
)


class DEPError(Exception):
    """An error Apple's service answers with ``status`` and the plain-text body ``code``."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code


def _bad(code: str) -> DEPError:
    return DEPError(400, code)


UNAUTHORIZED = "UNAUTHORIZED"


@dataclass(frozen=True, slots=True)
class Session:
    """An authenticated caller: which MDM server, and the token to hand back in ``X-ADM-Auth-Session``."""

    server_id: int
    header_token: str
    secret: bytes
    now: float


def _session_key(token: str) -> str:
    """Sessions are stored and looked up by a SHA-256 of the token: an index lookup's timing then says
    nothing about the token itself, and the database holds no usable session token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()



def _os_sql(alias: str) -> str:
    """SQL appending ``os``/``device_family`` for protocol v2+ (``iPadOS`` only from v7); binds 2 params."""
    return (
        f'CASE WHEN ?1 >= 2 THEN \',"os":"\' || '
        f"(CASE WHEN ?1 < 7 AND {alias}.os = 'iPadOS' THEN 'iOS' ELSE {alias}.os END) || "
        f"'\",\"device_family\":\"' || {alias}.device_family || '\"' ELSE '' END"
    )


_FETCH_SQL = f"""
SELECT group_concat(j, ','), max(seq), count(*) FROM (
    SELECT d.doc || {_os_sql("d")} || '}}' AS j, d.seq AS seq
    FROM devices d WHERE d.server_id = ?2 AND d.seq > ?3 ORDER BY d.seq LIMIT ?4
)
"""

_SYNC_SQL = f"""
SELECT group_concat(j, ','), max(id), count(*) FROM (
    SELECT coalesce(e.doc, d.doc) || ',"op_type":"' || e.op_type || '","op_date":"' || e.op_date || '"'
           || {_os_sql("d")} || '}}' AS j, e.id AS id
    FROM events e JOIN devices d ON d.id = e.device_id
    WHERE e.server_id = ?2 AND e.id > ?3 ORDER BY e.id LIMIT ?4
)
"""

_MORE_DEVICES_SQL = "SELECT EXISTS (SELECT 1 FROM devices WHERE server_id = ? AND seq > ?)"
_MORE_EVENTS_SQL = "SELECT EXISTS (SELECT 1 FROM events WHERE server_id = ? AND id > ?)"

_AUTH_SQL = """
SELECT s.server_id, s.issued_at, s.expires_at,
       coalesce((SELECT require_terms FROM organization WHERE id = 1), 0),
       (SELECT value FROM meta WHERE key = 'cursor_secret')
FROM sessions s WHERE s.token = ?
"""

# -- profiles ----------------------------------------------------------------------------------------

_PROFILE_FLAGS = (
    "allow_pairing",
    "is_supervised",
    "is_mandatory",
    "is_mdm_removable",
    "is_multi_user",
    "await_device_configured",
    "auto_advance_setup",
    "do_not_use_profile_from_backup",
    "is_return_to_service",
)
_PROFILE_DEFAULTS: dict[str, Any] = {
    "allow_pairing": True,
    "is_supervised": False,
    "is_mandatory": False,
    "is_mdm_removable": True,
    "is_multi_user": False,
    "await_device_configured": False,
    "auto_advance_setup": False,
    "org_magic": "",
}
_V2_PROFILE_KEYS = ("auto_advance_setup", "await_device_configured", "is_multi_user", "support_email_address")
_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}$")
_REGION = re.compile(r"^[A-Za-z]{2}$")


def _check_string(body: Mapping[str, Any], key: str, max_len: int, code: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise _bad(code)
    return value


def _check_certs(body: Mapping[str, Any], key: str, code: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _bad(code)
    for item in value:
        if not isinstance(item, str):
            raise _bad(code)
        try:
            x509.load_der_x509_certificate(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise _bad(code) from None
    return list(value)


def validate_profile(body: Any) -> tuple[dict[str, Any], list[str] | None]:
    """Check a ``POST /profile`` body the way Apple does; returns (stored profile, serials or None).

    The stored profile holds every documented key with Apple's defaults filled in, so that the
    activation service can hand it to a device as it is.
    """
    if not isinstance(body, dict):
        raise _bad("MALFORMED_REQUEST_BODY")
    name = body.get("profile_name")
    if name is None or name == "":
        raise _bad("CONFIG_NAME_REQUIRED")
    if not isinstance(name, str) or len(name) > 125 or not name.strip():
        raise _bad("CONFIG_NAME_INVALID")
    url = body.get("url")
    if url is None or url == "":
        raise _bad("CONFIG_URL_REQUIRED")
    if not isinstance(url, str) or len(url) > 2000 or not _URL.match(url):
        raise _bad("CONFIG_URL_INVALID")
    profile: dict[str, Any] = {"profile_name": name, "url": url}
    web_url = body.get("configuration_web_url")
    if web_url not in (None, ""):
        if not isinstance(web_url, str) or len(web_url) > 2000 or not _URL.match(web_url):
            raise _bad("CONFIG_URL_INVALID")
        profile["configuration_web_url"] = web_url
    for flag in _PROFILE_FLAGS:
        value = body.get(flag, _PROFILE_DEFAULTS.get(flag))
        if value is None:
            continue
        if not isinstance(value, bool):
            raise _bad("FLAGS_INVALID")
        profile[flag] = value
    if profile["is_mdm_removable"] is False and profile["is_supervised"] is not True:
        raise _bad("FLAGS_INVALID")
    for key, max_len, code in (
        ("support_phone_number", 50, "SUPPORT_PHONE_INVALID"),
        ("support_email_address", 250, "SUPPORT_EMAIL_INVALID"),
        ("department", 125, "DEPARTMENT_INVALID"),
        ("org_magic", 256, "MAGIC_INVALID"),
        ("language", 3, "LOCALE_INVALID"),
        ("region", 2, "LOCALE_INVALID"),
    ):
        value = _check_string(body, key, max_len, code)
        if value is not None:
            profile[key] = value
    email = profile.get("support_email_address")
    if email and not _EMAIL.match(email):
        raise _bad("SUPPORT_EMAIL_INVALID")
    if profile.get("language") and not _LANGUAGE.match(profile["language"]):
        raise _bad("LOCALE_INVALID")
    if profile.get("region") and not _REGION.match(profile["region"]):
        raise _bad("LOCALE_INVALID")
    profile.setdefault("org_magic", "")
    for key, code in (
        ("anchor_certs", "ANCHOR_CERTS_INVALID"),
        ("supervising_host_certs", "SUPERVISING_HOST_CERTS_INVALID"),
    ):
        certs = _check_certs(body, key, code)
        if certs is not None:
            profile[key] = certs
    skip = body.get("skip_setup_items")
    if skip is not None:
        if not isinstance(skip, list) or not all(isinstance(s, str) for s in skip):
            raise _bad("MALFORMED_REQUEST_BODY")
        profile["skip_setup_items"] = list(skip)
    serials = None
    if body.get("devices") is not None:
        serials = _serial_list(body["devices"], required=False)
    return profile, serials


def _serial_list(devices: Any, *, required: bool = True) -> list[str]:
    """Serials of a device-list request, de-duplicated in order."""
    if devices is None or devices == []:
        if required:
            raise _bad("DEVICE_ID_REQUIRED")
        return []
    if not isinstance(devices, list) or not all(isinstance(s, str) for s in devices):
        raise _bad("MALFORMED_REQUEST_BODY")
    if len(devices) > MAX_DEVICES_PER_REQUEST:
        raise _bad("TOO_MANY_DEVICES")
    return list(dict.fromkeys(devices))


def _os_fields(os_name: str, family: str, version: int) -> dict[str, str]:
    if version < 2:
        return {}
    if version < 7 and os_name == "iPadOS":
        os_name = "iOS"
    return {"os": os_name, "device_family": family}


def _device_status(status: str, version: int) -> str:
    """THROTTLED exists from protocol v9; older clients would not know it, so they see FAILED."""
    return "FAILED" if status == "THROTTLED" and version < 9 else status


# -- the service ---------------------------------------------------------------------------------------


class DEPService:
    """Apple's DEP web service for every MDM server of the world's organisation."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        session_lifetime_s: float = DEFAULT_SESSION_LIFETIME_S,
        public_url: Callable[[], str] | None = None,
        refresh_after_s: float = SESSION_REFRESH_AFTER_S,
        timestamp_window_s: float = OAUTH_TIMESTAMP_WINDOW_S,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.clock = clock
        self.session_lifetime_s = float(session_lifetime_s)
        self.public_url = public_url
        self.refresh_after_s = float(refresh_after_s)
        self.timestamp_window_s = float(timestamp_window_s)
        self._wall = wall

    # -- authentication ----------------------------------------------------------------------------
    def open_session(
        self, *, url: str, authorization: str | None, alternate_urls: tuple[str, ...] = ()
    ) -> str:
        """``GET /session``: check the OAuth 1.0a signature and hand out a session token.

        ``url`` is the URL as this process received it; ``alternate_urls`` (the public URL, when the
        service sits behind a proxy that rewrites the host) are also accepted as what the client signed.
        """
        header_params = _parse_oauth_header(authorization)
        query = urllib.parse.urlsplit(url).query
        try:
            query_params = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False)
        except ValueError:
            raise _bad("BAD_REQUEST") from None
        if any(k.startswith("oauth_") for k, _ in query_params):
            raise _bad("BAD_REQUEST")  # OAuth parameters must come from one place only
        names = [k for k, _ in header_params]
        if len(names) != len(set(names)):
            raise _bad("BAD_REQUEST")
        oauth = dict(header_params)
        if any(not oauth.get(name) for name in _OAUTH_REQUIRED):
            raise _bad("BAD_REQUEST")
        if oauth["oauth_signature_method"] != "HMAC-SHA1":
            raise _bad("BAD_REQUEST")
        if oauth.get("oauth_version", "1.0") != "1.0":
            raise _bad("BAD_REQUEST")
        stamp = oauth["oauth_timestamp"]
        if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
            raise _bad("BAD_REQUEST")
        unauthorized = DEPError(401, UNAUTHORIZED)
        if abs(self._wall() - int(stamp)) > self.timestamp_window_s:
            raise unauthorized
        now = self.clock.timestamp()
        with self.store.read() as db:
            server = db.execute(
                "SELECT id, consumer_secret, access_secret, access_token_expiry FROM servers "
                "WHERE consumer_key = ? AND access_token = ?",
                (oauth["oauth_consumer_key"], oauth["oauth_token"]),
            ).fetchone()
        if server is None or server["access_token_expiry"] <= now:
            raise unauthorized
        params = [(k, v) for k, v in header_params if k not in ("oauth_signature", "realm")] + query_params
        if not any(
            self._signature_matches(candidate, params, oauth["oauth_signature"], server)
            for candidate in (url, *alternate_urls)
        ):
            raise unauthorized
        wall = self._wall()
        with self.store.transaction() as db:
            db.execute("DELETE FROM nonces WHERE seen_at < ?", (wall - 2 * self.timestamp_window_s,))
            try:
                db.execute(
                    "INSERT INTO nonces (consumer_key, nonce, seen_at) VALUES (?, ?, ?)",
                    (oauth["oauth_consumer_key"], oauth["oauth_nonce"], wall),
                )
            except sqlite3.IntegrityError:
                raise unauthorized from None
            # The nonce is spent even when terms block the session: a replay must not work later.
            terms = db.execute("SELECT require_terms FROM organization WHERE id = 1").fetchone()
            token = None if terms is not None and terms[0] else self._mint(db, server["id"], now)
        if token is None:
            raise DEPError(403, "T_C_NOT_SIGNED")
        return token

    @staticmethod
    def _signature_matches(url: str, params: list[tuple[str, str]], signature: str, server: Any) -> bool:
        request = OAuthRequest(url, http_method="GET", body="", headers={})
        request.params = params
        request.signature = signature
        try:
            return bool(
                oauth_signature.verify_hmac_sha1(request, server["consumer_secret"], server["access_secret"])
            )
        except (ValueError, TypeError):
            return False

    def _mint(self, db: sqlite3.Connection, server_id: int, now: float) -> str:
        token = secrets.token_urlsafe(32)
        db.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
        db.execute(
            "INSERT INTO sessions (token, server_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
            (_session_key(token), server_id, now, now + self.session_lifetime_s),
        )
        return token

    def authenticate(self, token: str | None) -> Session:
        """The caller behind ``X-ADM-Auth-Session`` (one indexed query), or 401/403."""
        if not token:
            raise DEPError(401, UNAUTHORIZED)
        now = self.clock.timestamp()
        with self.store.read() as db:
            row = db.execute(_AUTH_SQL, (_session_key(token),)).fetchone()
        if row is None or row[2] <= now:
            raise DEPError(401, UNAUTHORIZED)
        if row[3]:
            raise DEPError(403, "T_C_NOT_SIGNED")
        header = token
        if now - row[1] >= self.refresh_after_s:
            with self.store.transaction() as db:
                header = self._mint(db, row[0], now)
        return Session(server_id=row[0], header_token=header, secret=bytes(row[4]), now=now)

    # -- account -----------------------------------------------------------------------------------
    def account(self, session: Session, version: int, base_url: str) -> dict[str, Any]:
        """``GET /account``."""
        with self.store.read() as db:
            server = db.execute(
                "SELECT server_name, server_uuid FROM servers WHERE id = ?", (session.server_id,)
            ).fetchone()
            org = apple_store.organization(db)
        if server is None or org is None:
            raise DEPError(401, UNAUTHORIZED)
        body: dict[str, Any] = {
            "server_name": server["server_name"],
            "server_uuid": server["server_uuid"],
            "admin_id": org["admin_id"],
            "facilitator_id": org["admin_id"],
            "org_name": org["name"],
            "org_email": org["email"],
            "org_phone": org["phone"],
            "org_address": org["address"],
        }
        if version >= 3:
            base = base_url.rstrip("/")
            body.update(
                org_id=org["org_id"],
                org_id_hash=hashlib.sha256(org["org_id"].encode()).hexdigest(),
                org_type=org["org_type"],
                org_version=org["org_version"],
                urls=[
                    {"uri": base + path, "http_method": list(methods), "limit": {"default": d, "maximum": m}}
                    for path, methods, d, m in _ACCOUNT_URLS
                ],
            )
        return body

    # -- fetch and sync ----------------------------------------------------------------------------
    def fetch_devices(self, session: Session, body: Any, version: int) -> bytes:
        """``POST /server/devices``: every device assigned to the server, in ``seq`` (assignment) order."""
        cursor_text, limit = _page_request(body)
        now = int(session.now)
        if cursor_text is None:
            with self.store.read() as db:
                watermark = int(db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])
            position, started = 0, now
        else:
            cursor = self._decode(cursor_text, session)
            if cursor.kind is CursorKind.SYNC or cursor.exhausted:
                raise _bad("EXHAUSTED_CURSOR")
            position, watermark, started = cursor.position, cursor.watermark, cursor.issued_at
        page, position, more = self._page(_FETCH_SQL, _MORE_DEVICES_SQL, version, session.server_id, position, limit)
        cursor = Cursor(CursorKind.FETCH, session.server_id, position, watermark, started, not more)
        return _page_json(encode_cursor(cursor, session.secret), page, now, bool(more))

    def sync_devices(self, session: Session, body: Any, version: int) -> bytes:
        """``POST /devices/sync``: the server's events after the cursor, each with op_type/op_date."""
        cursor_text, limit = _page_request(body)
        if cursor_text is None:
            raise _bad("CURSOR_REQUIRED")
        cursor = self._decode(cursor_text, session)
        now = int(session.now)
        if now - cursor.issued_at > CURSOR_LIFETIME_S:
            raise _bad("EXPIRED_CURSOR")
        position = cursor.position if cursor.kind is CursorKind.SYNC else cursor.watermark
        page, position, more = self._page(_SYNC_SQL, _MORE_EVENTS_SQL, version, session.server_id, position, limit)
        new = Cursor(CursorKind.SYNC, session.server_id, position, position, now)
        return _page_json(encode_cursor(new, session.secret), page, now, bool(more))

    def _page(
        self, page_sql: str, more_sql: str, version: int, server_id: int, position: int, limit: int
    ) -> tuple[str | None, int, int]:
        """One keyset page (pre-rendered JSON, new position) and whether more rows follow it."""
        with self.store.read() as db:
            page, last, count = db.execute(page_sql, (version, server_id, position, limit)).fetchone()
            if not count:
                return page, position, 0
            return page, last, db.execute(more_sql, (server_id, last)).fetchone()[0]

    def _decode(self, text: str, session: Session) -> Cursor:
        try:
            cursor = decode_cursor(text, session.secret)
        except CursorError:
            raise _bad("INVALID_CURSOR") from None
        if cursor.server_id != session.server_id:
            raise _bad("INVALID_CURSOR")
        return cursor

    # -- device lists ------------------------------------------------------------------------------
    def _devices_by_serial(self, db: sqlite3.Connection, serials: list[str]) -> dict[str, sqlite3.Row]:
        found: dict[str, sqlite3.Row] = {}
        for part in apple_store.chunked(serials):
            marks = ",".join("?" * len(part))
            for row in db.execute(
                "SELECT id, serial, server_id, doc, os, device_family, profile_id, profile_status "
                f"FROM devices WHERE serial IN ({marks})",
                tuple(part),
            ):
                found[row["serial"]] = row
        return found

    def device_details(
        self, session: Session, body: Any, version: int, fault: str | None = None
    ) -> dict[str, Any]:
        """``POST /devices``: details of each serial the server can see."""
        serials = _serial_list(body.get("devices") if isinstance(body, dict) else _malformed())
        forced = DEVICE_FAULTS.get(fault or "")
        with self.store.read() as db:
            rows = self._devices_by_serial(db, serials)
        out: dict[str, Any] = {}
        for serial in serials:
            row = rows.get(serial)
            visible = row is not None and row["server_id"] == session.server_id
            status = forced or ("SUCCESS" if visible else "NOT_ACCESSIBLE")
            if row is not None and (visible or forced == "SUCCESS"):
                device = json.loads(row["doc"] + "}")
                device.update(_os_fields(row["os"], row["device_family"], version))
            else:
                device = {"serial_number": serial, "model": ""}
            device["response_status"] = _device_status(status, version)
            out[serial] = device
        return {"devices": out}

    def disown_devices(
        self, session: Session, body: Any, version: int, fault: str | None = None
    ) -> dict[str, Any]:
        """``POST /devices/disown``: the organisation gives the devices up for good."""
        serials = _serial_list(body.get("devices") if isinstance(body, dict) else _malformed())
        forced = DEVICE_FAULTS.get(fault or "")
        if forced:
            return {"devices": {s: _device_status(forced, version) for s in serials}}
        now = iso_from_timestamp(session.now)
        statuses: dict[str, str] = {}
        with self.store.transaction() as db:
            rows = self._devices_by_serial(db, serials)
            gone = []
            for serial in serials:
                row = rows.get(serial)
                if row is None or row["server_id"] != session.server_id:
                    statuses[serial] = "NOT_ACCESSIBLE"
                    continue
                statuses[serial] = "SUCCESS"
                gone.append(row)
            if gone:
                apple_store.add_events(
                    db, [(session.server_id, r["id"], "deleted", now, r["doc"]) for r in gone]
                )
                db.executemany(
                    "UPDATE devices SET released = 1, server_id = NULL, seq = NULL, assigned_date = NULL, "
                    "assigned_by = NULL, profile_id = NULL, profile_uuid = NULL, profile_status = 'empty', "
                    "profile_assign_time = NULL, profile_push_time = NULL WHERE id = ?",
                    [(r["id"],) for r in gone],
                )
                apple_store.refresh_docs(db, [r["id"] for r in gone])
        return {"devices": statuses}

    # -- profiles ----------------------------------------------------------------------------------
    def define_profile(
        self, session: Session, body: Any, version: int, fault: str | None = None
    ) -> dict[str, Any]:
        """``POST /profile``: store a profile, optionally assigning it to ``devices`` at once."""
        profile, serials = validate_profile(body)
        profile_uuid = uuid.uuid4().hex.upper()
        with self.store.transaction() as db:
            cur = db.execute(
                "INSERT INTO profiles (profile_uuid, server_id, body, created_at) VALUES (?, ?, ?, ?)",
                (profile_uuid, session.server_id, json.dumps(profile), session.now),
            )
            statuses = self._assign(
                db, session, cur.lastrowid or 0, profile_uuid, serials or [], fault, version
            )
        return {"profile_uuid": profile_uuid, "devices": statuses}

    def get_profile(self, session: Session, profile_uuid: str | None, version: int) -> dict[str, Any]:
        """``GET /profile?profile_uuid=``."""
        if not profile_uuid:
            raise _bad("PROFILE_UUID_REQUIRED")
        with self.store.read() as db:
            row = db.execute(
                "SELECT body FROM profiles WHERE profile_uuid = ? AND server_id = ?",
                (profile_uuid, session.server_id),
            ).fetchone()
        if row is None:
            raise _bad("NOT_FOUND")
        return _render_profile(json.loads(row[0]), profile_uuid, version)

    def assign_profile(
        self, session: Session, body: Any, version: int, fault: str | None = None
    ) -> dict[str, Any]:
        """``PUT``/``POST /profile/devices``: per-serial SUCCESS / NOT_ACCESSIBLE / FAILED / THROTTLED."""
        if not isinstance(body, dict):
            raise _bad("MALFORMED_REQUEST_BODY")
        profile_uuid = body.get("profile_uuid")
        if profile_uuid is None or profile_uuid == "":
            raise _bad("PROFILE_UUID_REQUIRED")
        if not isinstance(profile_uuid, str):
            raise _bad("MALFORMED_REQUEST_BODY")
        serials = _serial_list(body.get("devices"))
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT id FROM profiles WHERE profile_uuid = ? AND server_id = ?",
                (profile_uuid, session.server_id),
            ).fetchone()
            if row is None:
                raise DEPError(404, "NOT_FOUND")
            statuses = self._assign(db, session, row[0], profile_uuid, serials, fault, version)
        reply: dict[str, Any] = {"profile_uuid": profile_uuid, "devices": statuses}
        if version >= 10 and "THROTTLED" in statuses.values():
            reply["retry_after_seconds"] = RETRY_AFTER_SECONDS
        return reply

    def _assign(
        self,
        db: sqlite3.Connection,
        session: Session,
        profile_id: int,
        profile_uuid: str,
        serials: list[str],
        fault: str | None,
        version: int,
    ) -> dict[str, str]:
        forced = DEVICE_FAULTS.get(fault or "")
        if forced:
            return {s: _device_status(forced, version) for s in serials}
        rows = self._devices_by_serial(db, serials)
        statuses: dict[str, str] = {}
        changed: list[int] = []
        for serial in serials:
            row = rows.get(serial)
            if row is None or row["server_id"] != session.server_id:
                statuses[serial] = "NOT_ACCESSIBLE"
            else:
                statuses[serial] = "SUCCESS"
                changed.append(row["id"])
        if changed:
            now = iso_from_timestamp(session.now)
            db.executemany(
                "UPDATE devices SET profile_id = ?, profile_uuid = ?, profile_status = 'assigned', "
                "profile_assign_time = ?, profile_push_time = NULL WHERE id = ?",
                [(profile_id, profile_uuid, now, i) for i in changed],
            )
            apple_store.refresh_docs(db, changed)
            apple_store.add_events(db, [(session.server_id, i, "modified", now, None) for i in changed])
        return statuses

    def clear_profile(
        self, session: Session, body: Any, version: int, fault: str | None = None
    ) -> dict[str, Any]:
        """``DELETE /profile/devices``: the devices' profile status becomes ``removed``."""
        if not isinstance(body, dict):
            raise _bad("MALFORMED_REQUEST_BODY")
        if body.get("profile_uuid") is not None and not isinstance(body["profile_uuid"], str):
            raise _bad("MALFORMED_REQUEST_BODY")
        serials = _serial_list(body.get("devices"))
        forced = DEVICE_FAULTS.get(fault or "")
        if forced:
            return {"devices": {s: _device_status(forced, version) for s in serials}}
        statuses: dict[str, str] = {}
        with self.store.transaction() as db:
            rows = self._devices_by_serial(db, serials)
            changed: list[int] = []
            for serial in serials:
                row = rows.get(serial)
                if row is None or row["server_id"] != session.server_id:
                    statuses[serial] = "NOT_ACCESSIBLE"
                    continue
                statuses[serial] = "SUCCESS"
                if row["profile_id"] is not None:
                    changed.append(row["id"])
            if changed:
                now = iso_from_timestamp(session.now)
                db.executemany(
                    "UPDATE devices SET profile_id = NULL, profile_uuid = NULL, profile_status = 'removed', "
                    "profile_push_time = NULL WHERE id = ?",
                    [(i,) for i in changed],
                )
                apple_store.refresh_docs(db, changed)
                apple_store.add_events(db, [(session.server_id, i, "modified", now, None) for i in changed])
        return {"devices": statuses}

    # -- activation lock ---------------------------------------------------------------------------
    def activation_lock(self, session: Session, body: Any) -> dict[str, Any]:
        """``POST /device/activationlock``: lock a supervised device to the organisation."""
        if not isinstance(body, dict):
            raise _bad("MALFORMED_REQUEST_BODY")
        serial = body.get("device")
        escrow = body.get("escrow_key")
        message = body.get("lost_message")
        if not isinstance(serial, str) or not serial:
            raise _bad("MALFORMED_REQUEST_BODY")
        if escrow is not None and (
            not isinstance(escrow, str) or not re.fullmatch(r"[0-9A-Fa-f]{64}", escrow)
        ):
            raise _bad("MALFORMED_REQUEST_BODY")
        if message is not None and (not isinstance(message, str) or len(message) > 1000):
            raise _bad("MALFORMED_REQUEST_BODY")
        with self.store.transaction() as db:
            row = db.execute("SELECT id, server_id FROM devices WHERE serial = ?", (serial,)).fetchone()
            if row is None or row["server_id"] != session.server_id:
                status = "NOT_ACCESSIBLE"
            else:
                try:
                    db.execute(
                        "INSERT INTO activation_locks (device_id, escrow_key, lost_message, locked_at) "
                        "VALUES (?, ?, ?, ?)",
                        (row["id"], escrow, message, session.now),
                    )
                    status = "SUCCESS"
                except sqlite3.IntegrityError:
                    status = "DEVICE_ALREADY_LOCKED"
        return {"serial_number": serial, "response_status": status}

    # -- for the world and the activation service --------------------------------------------------
    def credentials(self, server_uuid: str) -> dict[str, str]:
        """The server token's contents: OAuth keys and ``access_token_expiry`` (ISO 8601, world time)."""
        with self.store.read() as db:
            row = apple_store.server_credentials(db, server_uuid)
        if row is None:
            raise KeyError(server_uuid)
        return {**row, "access_token_expiry": iso_from_timestamp(row["access_token_expiry"])}

    def mark_pushed(self, serial: str, now: datetime | None = None) -> bool:
        """The device fetched its cloud configuration: ``assigned`` → ``pushed`` (False: none assigned)."""
        stamp = iso_from_timestamp((now or self.clock.now()).timestamp())
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT id, server_id FROM devices WHERE serial = ? AND profile_id IS NOT NULL AND server_id "
                "IS NOT NULL",
                (serial,),
            ).fetchone()
            if row is None:
                return False
            db.execute(
                "UPDATE devices SET profile_status = 'pushed', profile_push_time = ? WHERE id = ?",
                (stamp, row["id"]),
            )
            apple_store.refresh_docs(db, [row["id"]])
            apple_store.add_events(db, [(row["server_id"], row["id"], "modified", stamp, None)])
        return True

    def cloud_configuration_for(self, serial: str) -> dict[str, Any] | None:
        """What Apple tells a device during activation: its profile, server and organisation, or None."""
        with self.store.read() as db:
            row = db.execute(
                "SELECT d.profile_uuid, d.profile_status, p.body, s.server_uuid, s.server_name "
                "FROM devices d JOIN profiles p ON p.id = d.profile_id JOIN servers s ON s.id = d.server_id "
                "WHERE d.serial = ? AND d.released = 0",
                (serial,),
            ).fetchone()
            org = apple_store.organization(db)
        if row is None:
            return None
        return {
            "serial_number": serial,
            "profile_uuid": row["profile_uuid"],
            "profile_status": row["profile_status"],
            "profile": json.loads(row["body"]),
            "server_uuid": row["server_uuid"],
            "server_name": row["server_name"],
            "org_name": org["name"] if org else "",
            "org_phone": org["phone"] if org else "",
            "org_email": org["email"] if org else "",
            "org_address": org["address"] if org else "",
        }


_ACCOUNT_URLS: tuple[tuple[str, tuple[str, ...], int, int], ...] = (
    ("/session", ("GET",), 1, 1),
    ("/account", ("GET",), 1, 1),
    ("/server/devices", ("POST",), DEFAULT_LIMIT, MAX_LIMIT),
    ("/devices/sync", ("POST",), DEFAULT_LIMIT, MAX_LIMIT),
    ("/devices", ("POST",), MAX_DEVICES_PER_REQUEST, MAX_DEVICES_PER_REQUEST),
    ("/devices/disown", ("POST",), MAX_DEVICES_PER_REQUEST, MAX_DEVICES_PER_REQUEST),
    ("/profile", ("GET", "POST"), 1, 1),
    ("/profile/devices", ("POST", "PUT", "DELETE"), MAX_DEVICES_PER_REQUEST, MAX_DEVICES_PER_REQUEST),
    ("/device/activationlock", ("POST",), 1, 1),
)


def _malformed() -> Any:
    raise _bad("MALFORMED_REQUEST_BODY")


def _page_request(body: Any) -> tuple[str | None, int]:
    """``(cursor or None, limit)`` from a fetch/sync body (an empty body is an empty request)."""
    if body is None:
        return None, DEFAULT_LIMIT
    if not isinstance(body, dict):
        raise _bad("MALFORMED_REQUEST_BODY")
    cursor = body.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise _bad("MALFORMED_REQUEST_BODY")
    limit = body.get("limit", DEFAULT_LIMIT)
    if limit is None:
        limit = DEFAULT_LIMIT
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise _bad("MALFORMED_REQUEST_BODY")
    return (cursor or None), max(1, min(limit, MAX_LIMIT))


def _page_json(cursor: str, page: str | None, now: int, more: bool) -> bytes:
    return b"".join(
        (
            b'{"cursor":"',
            cursor.encode("ascii"),
            b'","devices":[',
            page.encode("utf-8") if page else b"",
            b'],"fetched_until":"',
            iso_from_timestamp(now).encode("ascii"),
            b'","more_to_follow":',
            b"true}" if more else b"false}",
        )
    )


def _render_profile(profile: dict[str, Any], profile_uuid: str, version: int) -> dict[str, Any]:
    out = {k: v for k, v in profile.items() if version >= 2 or k not in _V2_PROFILE_KEYS}
    out["profile_uuid"] = profile_uuid
    return out


def _parse_oauth_header(header: str | None) -> list[tuple[str, str]]:
    """``Authorization: OAuth k="v", …`` as a list (duplicates kept, so the caller can refuse them)."""
    if not header or not header[:6].lower() == "oauth ":
        raise _bad("BAD_REQUEST")
    params: list[tuple[str, str]] = []
    for item in parse_http_list(header[6:]):
        key, sep, value = item.partition("=")
        if not sep:
            raise _bad("BAD_REQUEST")
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        params.append((urllib.parse.unquote(key), urllib.parse.unquote(value)))
    return params


def parse_protocol_version(value: str | None) -> int:
    """``X-Server-Protocol-Version`` as an int; missing or unreadable means version 1."""
    if not value:
        return 1
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 3:
        return 1
    return max(1, int(value))
