"""The rules of Apple's Business API (``api-business.apple.com/v1``): who may call, how often, what each
endpoint answers, and device activities that change the same devices the portal and DEP see.

Every method takes already-parsed values and raises :class:`~.errors.APIError`; the HTTP layer parses
and renders, and passes ``base``: the URL the API is reached at (``https://api-business.apple.com/`` by
Host, or the world's ``…/apple/business/``), so every link a document carries can be followed.

* **Access.** ``Authorization: Bearer <token>`` from the token service (:mod:`simulator.apple.account`),
  unexpired in world time and of an API account not revoked; otherwise 401 ``NOT_AUTHORIZED``.
* **Rate limits.** Per API account, in fixed windows of world time kept in the store (so every worker
  process counts together): by default 20 GETs a minute and 10 POSTs an hour, what users of the real
  API report (Apple publishes no numbers); beyond them 429 with ``Retry-After`` (seconds to the window's
  end). :meth:`BusinessAPIService.set_rate_limits` changes them (``0``: no limit).
* **Activities** run on the world clock (:mod:`.activities`). Their changes are applied by
  :meth:`BusinessAPIService.settle`, which the portal, DEP and this API call before they read, so that
  whoever looks first after the activity's time sees the devices moved, exactly once.
* **Logs** are served at a presigned URL (``/activity-logs/<id>?…&Expires=&Signature=``, an HMAC of
  the id and expiry with a secret in the store), valid for an hour of world time, without a token,
  as Apple's blob-store links are.

With a seed, activity ids, error ids and the log secret derive from ``business:…`` labels.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.isotime import iso_from_timestamp
from mdm.protocol.randomness import Randomness

from .. import devices
from ..account import store as account_store
from ..account.service import token_digest
from ..portal import store as portal_store
from . import activities
from . import store as business_store
from .documents import (
    Query,
    api_server_id,
    api_time,
    collection,
    linkage,
    mdm_server,
    org_device,
    select_fields,
    single,
)
from .errors import APIError, entity_error, not_authorized, not_found, rate_limited

__all__ = ["BusinessAPIService", "Caller", "RateLimits", "DEFAULT_RATE_LIMITS", "ACTIVITY_RETENTION_S"]

DEFAULT_STEP_S = 2.0
ACTIVITY_RETENTION_S = 30 * 86400  # Apple: only activities from the past 30 days can be read
LOG_URL_LIFETIME_S = 3600
_NEXT_DUE = "business:next-due"


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Requests an API account may make per window (``0``: unlimited)."""

    get_per_minute: int = 20
    post_per_hour: int = 10


DEFAULT_RATE_LIMITS = RateLimits()


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated API account: its client ID and the scope its token carries."""

    client_id: str
    scope: str

    @property
    def school(self) -> bool:
        return self.scope == "school.api"


class BusinessAPIService:
    """The Business API over Apple's one store."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        seed: int | None = None,
        activity_step_s: float = DEFAULT_STEP_S,
    ) -> None:
        self.store = store
        self.clock = clock
        self.random = Randomness(seed)
        self.activity_step_s = float(activity_step_s)
        if self.random.seeded:
            with self.store.transaction() as db:
                business_store.set_meta(db, "log_secret", self.random.bytes(32, "business:log-secret"))

    # -- access ---------------------------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> Caller:
        """The API account behind a bearer token, or 401."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 4096:
            raise not_authorized("Provide an access token: Authorization: Bearer <access_token>.")
        with self.store.read() as db:
            row = account_store.access_token(db, token_digest(token))
        if row is None or row["revoked_at"] is not None:
            raise not_authorized("The access token is not valid. Request a new one from the token endpoint.")
        if row["expires_at"] <= self.clock.timestamp():
            raise not_authorized("The access token has expired. Request a new one from the token endpoint.")
        return Caller(client_id=row["client_id"], scope=row["scope"])

    def rate_limits(self) -> RateLimits:
        with self.store.read() as db:
            get = business_store.meta(db, "get_per_minute")
            post = business_store.meta(db, "post_per_hour")
        return RateLimits(
            int(get) if get is not None else DEFAULT_RATE_LIMITS.get_per_minute,
            int(post) if post is not None else DEFAULT_RATE_LIMITS.post_per_hour,
        )

    def set_rate_limits(self, get_per_minute: int | None = None, post_per_hour: int | None = None) -> RateLimits:
        """Change the limits for every process of the world (``None`` keeps one, ``0`` lifts it)."""
        with self.store.transaction() as db:
            for key, value in (("get_per_minute", get_per_minute), ("post_per_hour", post_per_hour)):
                if value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
                    raise ValueError(f"{key} must be an integer from 0 (no limit) to 1,000,000")
                business_store.set_meta(db, key, value)
        return self.rate_limits()

    def count_request(self, caller: Caller, method: str) -> None:
        """Count the request in the caller's window, or 429 with ``Retry-After`` when it is used up."""
        limits = self.rate_limits()
        kind, limit, window = ("POST", limits.post_per_hour, 3600) if method == "POST" else ("GET", limits.get_per_minute, 60)
        if limit <= 0:
            return
        now = self.clock.timestamp()
        start = math.floor(now / window) * window
        with self.store.transaction() as db:
            allowed = business_store.take_request(db, caller.client_id, kind, start, limit)
        if not allowed:
            raise rate_limited(max(1, math.ceil(start + window - now)), kind)

    def error_id(self, error: APIError) -> str:
        """A UUID for one error instance (Apple gives each one, for support requests)."""
        return self.random.uuid(f"business:error:{error.code}:{error.detail}:{self.clock.timestamp()!r}")

    # -- orgDevices -------------------------------------------------------------------------------------
    def _org_id(self, db: Any) -> str:
        org = portal_store.organization(db)
        return str(org["org_id"]) if org is not None else ""

    def org_devices(self, base: str, query: Query, keep: list[tuple[str, str]]) -> dict[str, Any]:
        """``GET /v1/orgDevices``: the organisation's devices, oldest first, ``limit`` a page."""
        self.settle()
        with self.store.read() as db:
            rows = business_store.org_device_page(db, query.cursor or 0, query.limit)
            org_id = self._org_id(db)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        data = [org_device(row, base, org_id, query.fields) for row in rows]
        return collection(data, f"{base}v1/orgDevices", query.limit, rows[-1]["id"] if more else None,
                          self._ms(), keep)  # fmt: skip

    def _device_row(self, db: Any, serial: str) -> Any:
        row = business_store.org_device(db, serial)
        if row is None:
            raise not_found("orgDevices", serial)
        return row

    def org_device(self, base: str, serial: str, fields: frozenset[str] | None) -> dict[str, Any]:
        """``GET /v1/orgDevices/{id}``: one device by serial, released ones too."""
        self.settle()
        with self.store.read() as db:
            row = self._device_row(db, serial)
            org_id = self._org_id(db)
        document = org_device(row, base, org_id, fields)
        return single(document, document["links"]["self"])

    def _assigned(self, db: Any, serial: str) -> Any:
        row = self._device_row(db, serial)
        if row["server_id"] is None:
            return None
        return business_store.server_by_id(db, row["server_id"])

    def assigned_server_linkage(self, base: str, serial: str) -> dict[str, Any]:
        """``GET /v1/orgDevices/{id}/relationships/assignedServer``: ``data`` null while unassigned."""
        self.settle()
        with self.store.read() as db:
            server = self._assigned(db, serial)
        url = f"{base}v1/orgDevices/{_quote(serial)}"
        data = linkage("mdmServers", api_server_id(server["server_uuid"])) if server is not None else None
        return single(data, f"{url}/relationships/assignedServer", related=f"{url}/assignedServer")

    def assigned_server(self, base: str, serial: str, fields: frozenset[str] | None) -> dict[str, Any]:
        """``GET /v1/orgDevices/{id}/assignedServer``: the server itself (``data`` null while unassigned)."""
        self.settle()
        with self.store.read() as db:
            server = self._assigned(db, serial)
        data = mdm_server(server, base, fields) if server is not None else None
        return single(data, f"{base}v1/orgDevices/{_quote(serial)}/assignedServer")

    def apple_care(self, base: str, serial: str, query: Query) -> dict[str, Any]:
        """``GET /v1/orgDevices/{id}/appleCareCoverage``: the one-year Limited Warranty from the day the
        device joined the organisation (``ACTIVE`` while it runs); mdmsim sells no AppleCare+."""
        with self.store.read() as db:
            row = self._device_row(db, serial)
        start = _parse_time(row["added_at"] or row["assigned_date"]) or 0.0
        end = start + 365 * 86400
        attributes = {
            "status": "ACTIVE" if self.clock.timestamp() < end else "INACTIVE",
            "paymentType": "NONE",
            "description": "Limited Warranty",
            "agreementNumber": None,
            "startDateTime": api_time(start),
            "endDateTime": api_time(end),
            "isRenewable": False,
            "isCanceled": False,
            "contractCancelDateTime": None,
        }
        coverage = {"type": "appleCareCoverage", "id": serial, "attributes": select_fields(attributes, query.fields)}
        return collection([coverage], f"{base}v1/orgDevices/{_quote(serial)}/appleCareCoverage", query.limit, None, 0)

    # -- mdmServers -------------------------------------------------------------------------------------
    def mdm_servers(self, base: str, query: Query, keep: list[tuple[str, str]]) -> dict[str, Any]:
        """``GET /v1/mdmServers``: the organisation's device management services, oldest first."""
        self.settle()
        with self.store.read() as db:
            rows = business_store.server_rows(db, query.cursor or 0, query.limit)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        data = [mdm_server(row, base, query.fields) for row in rows]
        return collection(data, f"{base}v1/mdmServers", query.limit, rows[-1]["id"] if more else None, self._ms(), keep)

    def _server(self, db: Any, server_id: str) -> Any:
        row = business_store.server_by_api_id(db, server_id) if len(server_id) <= 64 else None
        if row is None:
            raise not_found("mdmServers", server_id)
        return row

    def mdm_server(self, base: str, server_id: str, fields: frozenset[str] | None) -> dict[str, Any]:
        """``GET /v1/mdmServers/{id}``."""
        self.settle()
        with self.store.read() as db:
            row = self._server(db, server_id)
        document = mdm_server(row, base, fields)
        return single(document, document["links"]["self"])

    def server_devices(self, base: str, server_id: str, query: Query, keep: list[tuple[str, str]]) -> dict[str, Any]:
        """``GET /v1/mdmServers/{id}/relationships/devices``: the serials assigned to it, in DEP's order."""
        self.settle()
        with self.store.read() as db:
            server = self._server(db, server_id)
            rows = business_store.server_device_page(db, server["id"], query.cursor or 0, query.limit)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        url = f"{base}v1/mdmServers/{api_server_id(server['server_uuid'])}"
        return collection(
            [linkage("orgDevices", row["serial"]) for row in rows], f"{url}/relationships/devices", query.limit,
            rows[-1]["seq"] if more else None, self._ms(), keep, related=f"{url}/devices",
        )

    # -- orgDeviceActivities ----------------------------------------------------------------------------
    def create_activity(self, base: str, caller: Caller, body: Any) -> dict[str, Any]:
        """``POST /v1/orgDeviceActivities``: accepted (201) and ``IN_PROGRESS``, or a 409/422."""
        self.settle()
        now = self.clock.timestamp()
        request = activities.parse_request(body, school=caller.school, now=now)
        step = self.activity_step_s
        times = (now, now + activities.APPLY_AFTER_STEPS * step, now + len(activities.STEPS) * step)
        with self.store.transaction() as db:
            server_row_id = None
            if request.server is not None:
                server = business_store.server_by_api_id(db, request.server) if len(request.server) <= 64 else None
                if server is None:
                    raise entity_error(
                        "ENTITY_ERROR.RELATIONSHIP.INVALID", f"There is no mdmServers with id '{request.server[:64]}'",
                        "/data/relationships/mdmServer/data/id",
                    )
                server_row_id = server["id"]
            known = devices.devices_by_serial(db, list(request.serials), active_only=True)
            unknown = [s for s in request.serials if s not in known]
            if unknown:
                shown = ", ".join(s[:32] for s in unknown[:5]) + (" …" if len(unknown) > 5 else "")
                raise entity_error(
                    "ENTITY_ERROR.RELATIONSHIP.INVALID",
                    f"These devices are not in the organization: {shown}",
                    f"/data/relationships/devices/data/{list(request.serials).index(unknown[0])}/id",
                )
            activity_id = self.random.uuid(f"business:activity:{business_store.activity_count(db)}")
            business_store.insert_activity(
                db, activity_id, caller.client_id, request.activity_type, server_row_id, request.deadline,
                request.serials, times,
            )
            self.store.forget(_NEXT_DUE)
            row = business_store.activity(db, activity_id)
        document = self._activity_document(base, row, None)
        return single(document, f"{base}v1/orgDeviceActivities")

    def activity(self, base: str, activity_id: str, fields: frozenset[str] | None) -> dict[str, Any]:
        """``GET /v1/orgDeviceActivities/{id}`` (activities of the past 30 days)."""
        self.settle()
        with self.store.read() as db:
            row = business_store.activity(db, activity_id) if len(activity_id) <= 64 else None
        if row is None or self.clock.timestamp() - row["created_at"] > ACTIVITY_RETENTION_S:
            raise not_found("orgDeviceActivities", activity_id)
        document = self._activity_document(base, row, fields)
        return single(document, document["links"]["self"])

    def _activity_document(self, base: str, row: Any, fields: frozenset[str] | None) -> dict[str, Any]:
        now = self.clock.timestamp()
        step = activities.progress(row["created_at"], self.activity_step_s, now)
        attributes: dict[str, Any] = {"createdDateTime": api_time(row["created_at"])}
        if step is not None or row["applied_at"] is None:
            attributes.update(status="IN_PROGRESS", subStatus=step or activities.STEPS[-1])
        else:
            attributes.update(
                status="COMPLETED",
                subStatus=activities.completed_substatus(row["succeeded"], row["failed"]),
                completedDateTime=api_time(row["completes_at"]),
                downloadUrl=self._log_url(base, row, now),
            )
        ordered = {k: attributes[k] for k in ("status", "subStatus", "createdDateTime", "completedDateTime", "downloadUrl")
                   if k in attributes}  # fmt: skip
        url = f"{base}v1/orgDeviceActivities/{row['activity_id']}"
        return {"type": "orgDeviceActivities", "id": row["activity_id"], "attributes": select_fields(ordered, fields),
                "links": {"self": url}}  # fmt: skip

    # -- the log ------------------------------------------------------------------------------------------
    def _secret(self) -> bytes:
        with self.store.read() as db:
            return bytes(business_store.meta(db, "log_secret"))

    def _signature(self, activity_id: str, expires: int) -> str:
        mac = hmac.new(self._secret(), f"{activity_id}:{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def _log_url(self, base: str, row: Any, now: float) -> str:
        expires = int(now) + LOG_URL_LIFETIME_S
        filename = activities.log_filename(row["completes_at"], school=row["client_id"].startswith("SCHOOLAPI."))
        query = urllib.parse.urlencode([
            ("response-content-disposition", f'attachment;filename="{filename}"'),
            ("response-content-type", "application/octet-stream"),
            ("Expires", str(expires)),
            ("Signature", self._signature(row["activity_id"], expires)),
        ])
        return f"{base}activity-logs/{row['activity_id']}?{query}"

    def activity_log(self, activity_id: str, expires: str | None, signature: str | None) -> tuple[str, bytes]:
        """The CSV behind a ``downloadUrl``: ``(filename, bytes)``, or 403/404 as a blob store answers."""
        well_formed = bool(expires) and expires.isascii() and expires.isdigit() and len(expires) <= 12  # type: ignore[union-attr]
        if not well_formed or not signature or len(signature) > 100:
            raise APIError(403, "AccessDenied", "Access denied", "The URL is not signed")
        # Bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
        if not hmac.compare_digest(self._signature(activity_id[:64], int(expires)).encode(), signature.encode()):
            raise APIError(403, "SignatureDoesNotMatch", "Access denied", "The signature does not match")
        if int(expires) <= self.clock.timestamp():
            raise APIError(403, "AccessDenied", "Access denied", "Request has expired")
        self.settle()
        with self.store.read() as db:
            row = business_store.activity(db, activity_id)
            rows = business_store.activity_devices(db, row["id"]) if row is not None else []
        if row is None or row["applied_at"] is None:
            raise APIError(404, "NoSuchKey", "Not found", "The specified key does not exist")
        school = row["client_id"].startswith("SCHOOLAPI.")
        completed = iso_from_timestamp(row["completes_at"]) or ""
        return activities.log_filename(row["completes_at"], school), activities.csv_log(row, rows, completed)

    # -- applying due activities --------------------------------------------------------------------------
    def settle(self) -> None:
        """Apply every activity whose time has come (world time), once, in submission order."""
        due = self.store.cached(_NEXT_DUE, self._read_next_due)
        now = self.clock.timestamp()
        if due is None or due > now:
            return
        with self.store.transaction() as db:
            for row in business_store.due_activities(db, now):
                self._apply(db, row)
            self.store.forget(_NEXT_DUE)

    def _read_next_due(self) -> float | None:
        with self.store.read() as db:
            return business_store.next_due(db)

    def _apply(self, db: Any, activity: Any) -> None:
        serials = [row["serial"] for row in business_store.activity_devices(db, activity["id"])]
        rows = devices.devices_by_serial(db, serials, active_only=True)
        migrating = business_store.migrating(db, [row["id"] for row in rows.values()])
        plan = activities.decide(activity["activity_type"], activity["server_id"], serials, rows, migrating)
        stamp = iso_from_timestamp(activity["due_at"]) or ""
        if plan.move or plan.migrate:
            admin = (portal_store.organization(db) or {}).get("admin_id") or ""
            devices.move_to_server(db, plan.move, activity["server_id"], stamp, admin)
            devices.move_to_server(db, plan.migrate, activity["server_id"], stamp, admin, activity["deadline"])
        devices.detach(db, plan.unassign, stamp, release=False)
        devices.detach(db, plan.release, stamp, release=True)
        # The deadline DEP reports from protocol version 8 on: one column, whoever sets it.
        devices.set_migration_deadline(db, plan.update, activity["deadline"], stamp)
        devices.set_migration_deadline(db, plan.cancel, None, stamp)
        business_store.record_outcomes(db, activity["id"], plan.outcomes, activity["due_at"])

    def _ms(self) -> int:
        return int(self.clock.timestamp() * 1000)


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
