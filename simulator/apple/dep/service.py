"""The rules of Apple's DEP web service (``mdmenrollment.apple.com``): sessions, cursors, profiles.

Every method takes already-decoded JSON and raises :class:`DEPError` with Apple's status and short
error string (``INVALID_CURSOR``…); the HTTP layer only parses and renders. State lives in Apple's
store (:mod:`simulator.apple.store`): DEP's own tables and queries in :mod:`.store`, the device
records it shares with the portal and activation in :mod:`simulator.apple.devices`. Time comes from
the world clock, so a seven-day cursor expiry or a session lifetime is tested by moving the clock.

Choices where Apple documents nothing (each one visible to a client):

* Sessions last ``session_lifetime_s`` of *world* time (default one hour). Every authenticated
  response carries ``X-ADM-Auth-Session``: the same token while it is younger than
  ``refresh_after_s`` (60 s), else a freshly minted one. Old tokens stay valid until their own expiry.
  Refreshing at most once a minute keeps a fetch of 100 pages free of writes.
* The OAuth timestamp is compared with *wall* time (``time.time()``), not world time: clients sign
  with their own wall clock, so comparing with a world clock moved eight days ahead would reject
  every client. Nonces are remembered per consumer key for twice the ten-minute window.
* Request shapes (``limit``, ``TOO_MANY_DEVICES``…) are :mod:`.requests`'s; profile checks are
  :mod:`.profiles`'s.
* A fetch cursor that already returned everything, or any sync cursor, sent to fetch →
  ``EXHAUSTED_CURSOR`` ("move to sync"). A fetch cursor sent to sync starts at the moment the fetch
  began. Sync never answers ``EXHAUSTED_CURSOR``: with nothing new it returns no devices.
* Profile assignment, removal and push are reported by sync as ``modified`` events.
* A serial that is not accessible in ``POST /devices`` comes back as
  ``{"serial_number", "model": "", "response_status": "NOT_ACCESSIBLE"}`` so that the reply still
  validates against Apple's ``Device`` schema (which requires ``model``).
* ``GET /account`` lists every endpoint by Apple's path (``/server/devices``), as Apple's replies do;
  only fetch and sync carry a ``limit`` (Apple's replies advertise none for the others).
* ``GET /device/replacementDetails`` needs protocol version 10 at Apple, which documents no answer for
  older clients: they get the same answer as version 10 ones.
* Account-driven enrollment: ``ORG_NOT_SUPPORTED`` when the portal turned the organisation's
  account-driven enrollment off (Apple does not say which organisations are not supported); the
  discovery URL is the server's own, and ``POST``/``DELETE`` answer ``{}`` (Apple documents no body).
* Beta enrollment tokens are the organisation's beta programs (made in the portal), listed under both
  ``betaEnrollmentTokens`` (Apple's page) and ``seedBuildTokens`` (the key real replies carry).

With a ``seed``, session tokens derive from the signed request that opened them (consumer key, nonce,
timestamp) or from the session they refresh, profile UUIDs from the server and the profile's number,
and the cursor secret from the seed: ``dep:…`` labels of :class:`~mdm.protocol.randomness.Randomness`.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.isotime import iso_from_timestamp
from mdm.protocol.randomness import Randomness

from .. import devices
from ..activation import store as activation_store
from ..portal import store as portal_store
from . import store as dep_store
from .cursors import Cursor, CursorError, CursorKind, decode_cursor, encode_cursor
from .errors import UNAUTHORIZED, DEPError, bad_request
from .faults import DEVICE_FAULTS
from .oauth import read_signed_request, session_key, signature_matches
from .profiles import render_profile, validate_profile
from .requests import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    device_status,
    devices_of,
    discovery_url,
    malformed,
    page_request,
    parse_protocol_version,
    serial_list,
)

__all__ = [
    "DEPError",
    "DEPService",
    "Session",
    "validate_profile",
    "parse_protocol_version",
    "DEFAULT_SESSION_LIFETIME_S",
    "ACCOUNT_URLS",
]

DEFAULT_SESSION_LIFETIME_S = 3600.0
SESSION_REFRESH_AFTER_S = 60.0
OAUTH_TIMESTAMP_WINDOW_S = 600.0
CURSOR_LIFETIME_S = 7 * 24 * 3600
RETRY_AFTER_SECONDS = 60

#: Every endpoint as ``GET /account`` lists it (Apple's ``Url``: ``uri`` is Apple's path, as Apple's own
#: replies have it, so a client finds ``/server/devices`` by that string), and the paging limit of the
#: two that page. The HTTP layer serves exactly these (a test keeps the two lists equal).
ACCOUNT_URLS: tuple[tuple[str, tuple[str, ...], tuple[int, int] | None], ...] = (
    ("/session", ("GET",), None),
    ("/account", ("GET",), None),
    ("/server/devices", ("POST",), (DEFAULT_LIMIT, MAX_LIMIT)),
    ("/devices/sync", ("POST",), (DEFAULT_LIMIT, MAX_LIMIT)),
    ("/devices", ("POST",), None),
    ("/devices/disown", ("POST",), None),
    ("/profile", ("GET", "POST"), None),
    ("/profile/devices", ("DELETE", "POST", "PUT"), None),
    ("/device/activationlock", ("POST",), None),
    ("/device/replacementDetails", ("GET",), None),
    ("/os-beta-enrollment/tokens", ("GET",), None),
    ("/account-driven-enrollment/profile", ("DELETE", "GET", "POST"), None),
)


@dataclass(frozen=True, slots=True)
class Session:
    """An authenticated caller: which MDM server, and the token to hand back in ``X-ADM-Auth-Session``."""

    server_id: int
    header_token: str
    secret: bytes
    now: float


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
        seed: int | None = None,
        settle: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        # Work another party scheduled on the world clock and that is due (the Business API's device
        # activities): done before an authenticated request reads, so a sync sees the devices they moved.
        self.settle: Callable[[], None] = settle or (lambda: None)
        self.clock = clock
        self.session_lifetime_s = float(session_lifetime_s)
        self.public_url = public_url
        self.refresh_after_s = float(refresh_after_s)
        self.timestamp_window_s = float(timestamp_window_s)
        self._wall = wall
        self.random = Randomness(seed)
        if self.random.seeded:
            with self.store.transaction() as db:
                dep_store.set_cursor_secret(db, self.random.bytes(32, "dep:cursor-secret"))

    # -- authentication ----------------------------------------------------------------------------
    def open_session(
        self, *, url: str, authorization: str | None, alternate_urls: tuple[str, ...] = ()
    ) -> str:
        """``GET /session``: check the OAuth 1.0a signature and hand out a session token.

        ``url`` is the URL as this process received it; ``alternate_urls`` (the public URL, when the
        service sits behind a proxy that rewrites the host) are also accepted as what the client signed.
        """
        signed = read_signed_request(url, authorization)
        unauthorized = DEPError(401, UNAUTHORIZED)
        if abs(self._wall() - signed.timestamp) > self.timestamp_window_s:
            raise unauthorized
        now = self.clock.timestamp()
        with self.store.read() as db:
            server = dep_store.oauth_server(db, signed.consumer_key, signed.token)
        if server is None or server["access_token_expiry"] <= now:
            raise unauthorized
        if not any(
            signature_matches(candidate, signed, server["consumer_secret"], server["access_secret"])
            for candidate in (url, *alternate_urls)
        ):
            raise unauthorized
        wall = self._wall()
        with self.store.transaction() as db:
            if not dep_store.spend_nonce(
                db, signed.consumer_key, signed.nonce, wall, wall - 2 * self.timestamp_window_s
            ):
                raise unauthorized
            # The nonce is spent even when terms block the session: a replay must not work later.
            if portal_store.terms_required(db):
                token = None
            else:
                label = f"dep:session:{signed.consumer_key}:{signed.nonce}:{signed.timestamp}"
                token = self._mint(db, server["id"], server["token_generation"], now, label)
        if token is None:
            raise DEPError(403, "T_C_NOT_SIGNED")
        return token

    def _mint(
        self, db: sqlite3.Connection, server_id: int, generation: int, now: float, label: str | None = None
    ) -> str:
        """A new session token for ``server_id``, opened with its token of ``generation``, stored by its digest only."""
        token = self.random.urlsafe(32, label or f"dep:session:{server_id}:{now!r}")
        dep_store.insert_session(db, session_key(token), server_id, now, now + self.session_lifetime_s, generation)
        return token

    def authenticate(self, token: str | None) -> Session:
        """The caller behind ``X-ADM-Auth-Session`` (one indexed query), or 401/403."""
        if not token:
            raise DEPError(401, UNAUTHORIZED)
        self.settle()
        now = self.clock.timestamp()
        key = session_key(token)
        with self.store.read() as db:
            row = dep_store.session_row(db, key)
        if row is None or row[2] <= now:
            raise DEPError(401, UNAUTHORIZED)
        server_id, issued_at, _, terms, secret, generation = row
        if terms:
            raise DEPError(403, "T_C_NOT_SIGNED")
        header = token
        if now - issued_at >= self.refresh_after_s:
            with self.store.transaction() as db:
                header = self._mint(db, server_id, generation, now, f"dep:session:{server_id}:refresh:{key}:{now!r}")
        return Session(server_id=server_id, header_token=header, secret=secret, now=now)

    # -- account -----------------------------------------------------------------------------------
    def account(self, session: Session, version: int) -> dict[str, Any]:
        """``GET /account``."""
        with self.store.read() as db:
            server = dep_store.server_identity(db, session.server_id)
            org = portal_store.organization(db)
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
            body.update(
                org_id=org["org_id"],
                org_id_hash=hashlib.sha256(org["org_id"].encode()).hexdigest(),
                org_type=org["org_type"],
                org_version=org["org_version"],
                urls=[_url(path, methods, limit) for path, methods, limit in ACCOUNT_URLS],
            )
        return body

    # -- fetch and sync ----------------------------------------------------------------------------
    def fetch_devices(self, session: Session, body: Any, version: int) -> bytes:
        """``POST /server/devices``: every device assigned to the server, in ``seq`` (assignment) order."""
        cursor_text, limit = page_request(body)
        now = int(session.now)
        if cursor_text is None:
            with self.store.read() as db:
                watermark = dep_store.latest_event_id(db)
            position, started = 0, now
        else:
            cursor = self._decode(cursor_text, session)
            if cursor.kind is CursorKind.SYNC or cursor.exhausted:
                raise bad_request("EXHAUSTED_CURSOR")
            position, watermark, started = cursor.position, cursor.watermark, cursor.issued_at
        with self.store.read() as db:
            page, position, more = dep_store.fetch_page(db, version, session.server_id, position, limit)
        cursor = Cursor(CursorKind.FETCH, session.server_id, position, watermark, started, not more)
        return _page_json(encode_cursor(cursor, session.secret), page, now, more)

    def sync_devices(self, session: Session, body: Any, version: int) -> bytes:
        """``POST /devices/sync``: the server's events after the cursor, each with op_type/op_date."""
        cursor_text, limit = page_request(body)
        if cursor_text is None:
            raise bad_request("CURSOR_REQUIRED")
        cursor = self._decode(cursor_text, session)
        now = int(session.now)
        if now - cursor.issued_at > CURSOR_LIFETIME_S:
            raise bad_request("EXPIRED_CURSOR")
        position = cursor.position if cursor.kind is CursorKind.SYNC else cursor.watermark
        with self.store.read() as db:
            page, position, more = dep_store.sync_page(db, version, session.server_id, position, limit)
        new = Cursor(CursorKind.SYNC, session.server_id, position, position, now)
        return _page_json(encode_cursor(new, session.secret), page, now, more)

    def _decode(self, text: str, session: Session) -> Cursor:
        try:
            cursor = decode_cursor(text, session.secret)
        except CursorError:
            raise bad_request("INVALID_CURSOR") from None
        if cursor.server_id != session.server_id:
            raise bad_request("INVALID_CURSOR")
        return cursor

    # -- device lists ------------------------------------------------------------------------------
    def device_details(
        self, session: Session, body: Any, version: int, fault: str | None = None
    ) -> dict[str, Any]:
        """``POST /devices``: details of each serial the server can see."""
        serials = devices_of(body)
        forced = DEVICE_FAULTS.get(fault or "")
        with self.store.read() as db:
            rows = devices.devices_by_serial(db, serials)
        out: dict[str, Any] = {}
        for serial in serials:
            row = rows.get(serial)
            visible = row is not None and row["server_id"] == session.server_id
            status = forced or ("SUCCESS" if visible else "NOT_ACCESSIBLE")
            if row is not None and (visible or forced == "SUCCESS"):
                device = json.loads(
                    row["doc"]
                    + (row["doc_v8"] if version >= 8 else "")
                    + (row["doc_v10"] if version >= 10 else "")
                    + "}"
                )
                device.update(_os_fields(row["os"], row["device_family"], version))
            else:
                device = {"serial_number": serial, "model": ""}
            device["response_status"] = device_status(status, version)
            out[serial] = device
        return {"devices": out}

    def _accessible(
        self, db: sqlite3.Connection, session: Session, serials: list[str]
    ) -> tuple[dict[str, str], list[sqlite3.Row]]:
        """Per-serial ``SUCCESS`` for the session's own devices, ``NOT_ACCESSIBLE`` for the rest; and
        the session's device rows, in request order."""
        rows = devices.devices_by_serial(db, serials)
        statuses: dict[str, str] = {}
        mine: list[sqlite3.Row] = []
        for serial in serials:
            row = rows.get(serial)
            if row is None or row["server_id"] != session.server_id:
                statuses[serial] = "NOT_ACCESSIBLE"
            else:
                statuses[serial] = "SUCCESS"
                mine.append(row)
        return statuses, mine

    def disown_devices(
        self, session: Session, body: Any, version: int, fault: str | None = None
    ) -> dict[str, Any]:
        """``POST /devices/disown``: the organisation gives the devices up for good."""
        serials = devices_of(body)
        forced = DEVICE_FAULTS.get(fault or "")
        if forced:
            return {"devices": {s: device_status(forced, version) for s in serials}}
        with self.store.transaction() as db:
            statuses, gone = self._accessible(db, session, serials)
            devices.detach(db, gone, iso_from_timestamp(session.now), release=True)
        return {"devices": statuses}

    # -- profiles ----------------------------------------------------------------------------------
    def define_profile(
        self, session: Session, body: Any, version: int, fault: str | None = None
    ) -> dict[str, Any]:
        """``POST /profile``: store a profile, optionally assigning it to ``devices`` at once."""
        profile, serials = validate_profile(body)
        with self.store.transaction() as db:
            number = dep_store.profile_count(db, session.server_id) + 1
            profile_uuid = self.random.uuid(f"dep:server:{session.server_id}:profile:{number}").replace("-", "").upper()
            profile_id = dep_store.insert_profile(db, profile_uuid, session.server_id, json.dumps(profile), session.now)
            statuses = self._assign(db, session, profile_id, profile_uuid, serials or [], fault, version)
        return {"profile_uuid": profile_uuid, "devices": statuses}

    def get_profile(self, session: Session, profile_uuid: str | None, version: int) -> dict[str, Any]:
        """``GET /profile?profile_uuid=``."""
        if not profile_uuid:
            raise bad_request("PROFILE_UUID_REQUIRED")
        with self.store.read() as db:
            body = dep_store.profile_body(db, profile_uuid, session.server_id)
        if body is None:
            raise bad_request("NOT_FOUND")
        return render_profile(json.loads(body), profile_uuid, version)

    def assign_profile(
        self, session: Session, body: Any, version: int, fault: str | None = None
    ) -> dict[str, Any]:
        """``PUT``/``POST /profile/devices``: per-serial SUCCESS / NOT_ACCESSIBLE / FAILED / THROTTLED."""
        if not isinstance(body, dict):
            malformed()
        profile_uuid = body.get("profile_uuid")
        if profile_uuid is None or profile_uuid == "":
            raise bad_request("PROFILE_UUID_REQUIRED")
        if not isinstance(profile_uuid, str):
            malformed()
        serials = serial_list(body.get("devices"))
        with self.store.transaction() as db:
            profile_id = dep_store.profile_id(db, profile_uuid, session.server_id)
            if profile_id is None:
                raise DEPError(404, "NOT_FOUND")
            statuses = self._assign(db, session, profile_id, profile_uuid, serials, fault, version)
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
            return {s: device_status(forced, version) for s in serials}
        statuses, mine = self._accessible(db, session, serials)
        devices.assign_profile(
            db,
            [row["id"] for row in mine],
            server_id=session.server_id,
            profile_id=profile_id,
            profile_uuid=profile_uuid,
            stamp=iso_from_timestamp(session.now),
        )
        return statuses

    def clear_profile(
        self, session: Session, body: Any, version: int, fault: str | None = None
    ) -> dict[str, Any]:
        """``DELETE /profile/devices``: the devices' profile status becomes ``removed``."""
        if not isinstance(body, dict):
            malformed()
        if body.get("profile_uuid") is not None and not isinstance(body["profile_uuid"], str):
            malformed()
        serials = serial_list(body.get("devices"))
        forced = DEVICE_FAULTS.get(fault or "")
        if forced:
            return {"devices": {s: device_status(forced, version) for s in serials}}
        with self.store.transaction() as db:
            statuses, mine = self._accessible(db, session, serials)
            with_profile = [row["id"] for row in mine if row["profile_id"] is not None]
            devices.remove_profile(db, with_profile, server_id=session.server_id, stamp=iso_from_timestamp(session.now))
        return {"devices": statuses}

    # -- activation lock ---------------------------------------------------------------------------
    def activation_lock(self, session: Session, body: Any) -> dict[str, Any]:
        """``POST /device/activationlock``: lock a supervised device to the organisation."""
        if not isinstance(body, dict):
            malformed()
        serial = body.get("device")
        escrow = body.get("escrow_key")
        message = body.get("lost_message")
        if not isinstance(serial, str) or not serial:
            malformed()
        if escrow is not None and (
            not isinstance(escrow, str) or not re.fullmatch(r"[0-9A-Fa-f]{64}", escrow)
        ):
            malformed()
        if message is not None and (not isinstance(message, str) or len(message) > 1000):
            malformed()
        with self.store.transaction() as db:
            row = devices.device_owner(db, serial)
            if row is None or row["server_id"] != session.server_id:
                status = "NOT_ACCESSIBLE"
            elif dep_store.lock_device(db, row["id"], escrow, message, session.now):
                status = "SUCCESS"
            else:
                status = "DEVICE_ALREADY_LOCKED"
        return {"serial_number": serial, "response_status": status}

    # -- replacements, beta programs, account-driven enrollment --------------------------------------
    def replacement_details(self, session: Session, serial: str | None) -> dict[str, str]:
        """``GET /device/replacementDetails?device=``: which device a replacement replaced, and when."""
        if not serial:
            raise bad_request("DEVICE_ID_REQUIRED")
        with self.store.read() as db:
            row = devices.replacement_of(db, serial, session.server_id)
        if row is None:
            raise DEPError(404, "DEVICE_NOT_FOUND")
        return {
            "serial_number": row["serial"],
            "original_device_serial_number": row["replaces_serial"],
            "replacement_date": row["replacement_date"],
        }

    def beta_enrollment_tokens(self, session: Session) -> dict[str, Any]:
        """``GET /os-beta-enrollment/tokens``: 403 ``APPLE_SEED_FOR_IT_TURNED_OFF`` unless the organisation allows it."""
        with self.store.read() as db:
            org = portal_store.organization(db)
            tokens = portal_store.beta_programs(db)
        if org is None or not org["apple_seed_for_it"]:
            raise DEPError(403, "APPLE_SEED_FOR_IT_TURNED_OFF")
        return {"betaEnrollmentTokens": tokens, "seedBuildTokens": tokens}

    def _require_account_driven_enrollment(self, db: sqlite3.Connection) -> None:
        org = portal_store.organization(db)
        if org is None or not org["account_driven_enrollment"]:
            raise bad_request("ORG_NOT_SUPPORTED")

    def discovery_profile(self, session: Session) -> dict[str, str]:
        """``GET /account-driven-enrollment/profile``: the server's service discovery URL, or 404 ``NOT_FOUND``."""
        with self.store.read() as db:
            self._require_account_driven_enrollment(db)
            row = dep_store.discovery_profile(db, session.server_id)
        if row is None:
            raise DEPError(404, "NOT_FOUND")
        return {"mdm_service_discovery_url": row["url"], "last_updated_timestamp": row["updated_at"]}

    def set_discovery_profile(self, session: Session, body: Any) -> dict[str, Any]:
        """``POST /account-driven-enrollment/profile``: where account-driven enrollment sends users."""
        with self.store.read() as db:
            self._require_account_driven_enrollment(db)
        url = discovery_url(body)
        with self.store.transaction() as db:
            dep_store.set_discovery_profile(db, session.server_id, url, iso_from_timestamp(session.now))
        return {}

    def delete_discovery_profile(self, session: Session) -> dict[str, Any]:
        """``DELETE /account-driven-enrollment/profile`` (200 whether or not one was set, as Apple lists no 404)."""
        with self.store.transaction() as db:
            self._require_account_driven_enrollment(db)
            dep_store.delete_discovery_profile(db, session.server_id)
        return {}

    # -- for the world and the activation service --------------------------------------------------
    def credentials(self, server_uuid: str) -> dict[str, str]:
        """The server token's contents: OAuth keys and ``access_token_expiry`` (ISO 8601, world time)."""
        with self.store.read() as db:
            row = portal_store.server_credentials(db, server_uuid)
        if row is None:
            raise KeyError(server_uuid)
        return {**row, "access_token_expiry": iso_from_timestamp(row["access_token_expiry"])}

    def mark_pushed(self, serial: str, now: datetime | None = None) -> bool:
        """The device fetched its cloud configuration: ``assigned`` → ``pushed`` (False: none assigned).

        Kept for callers of the DEP service; activation writes the same through :mod:`simulator.apple.devices`."""
        stamp = iso_from_timestamp((now or self.clock.now()).timestamp())
        with self.store.transaction() as db:
            return devices.mark_pushed(db, serial, stamp)

    def cloud_configuration_for(self, serial: str) -> dict[str, Any] | None:
        """What Apple tells a device during activation (:func:`simulator.apple.activation.store.cloud_configuration`)."""
        with self.store.read() as db:
            return activation_store.cloud_configuration(db, serial)


def _url(path: str, methods: tuple[str, ...], limit: tuple[int, int] | None) -> dict[str, Any]:
    url: dict[str, Any] = {"uri": path, "http_method": list(methods)}
    if limit is not None:
        url["limit"] = {"default": limit[0], "maximum": limit[1]}
    return url


def _os_fields(os_name: str, family: str, version: int) -> dict[str, str]:
    if version < 2:
        return {}
    if version < 7 and os_name == "iPadOS":
        os_name = "iOS"
    return {"os": os_name, "device_family": family}


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
