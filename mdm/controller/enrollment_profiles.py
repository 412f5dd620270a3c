"""Enrollment profiles (Graph ``enrollmentProfiles`` of a token): each one defined at Apple, kept with its uuid.

Graph's settings become Apple's profile JSON by the pure rules of :mod:`mdm.controller.profiles`;
this module stores both and talks to Apple. Apple profiles cannot change: an edit defines a new one
and moves the profile's devices to it. Apple has no call to delete a profile either: a deleted
profile stays on its devices at Apple until another one is assigned. A token has a default profile
per platform (``defaultIosEnrollmentProfile``, ``defaultMacOsEnrollmentProfile``): what a sync assigns
to serials that have none. ``exportMobileConfig`` asks the MDM server (over HTTP, like every call to
another party) for the signed enrollment profile a device installs for profile-based enrollment.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.isotime import iso_from_timestamp
from mdm.protocol.randomness import Randomness

from . import odata
from . import profiles as profile_rules
from .apple import Apple, graph_from_apple
from .depclient import DEPError
from .errors import GraphError
from .pushcert import PushCertificates
from .rows import dep_token_row, profile_row, token_row
from .store import devices as device_table
from .store import profiles as profile_table

if TYPE_CHECKING:
    from .assignments import Assignments

__all__ = ["FIELDS", "MAX_PROFILES_PER_TOKEN", "EnrollmentProfiles", "profile_row"]

MAX_PROFILES_PER_TOKEN = 1000
MAX_MOBILECONFIG = 256 * 1024
#: Every property a profile renders: what ``$filter``, ``$orderby`` and ``$select`` may name.
_RENDERED = ("id", *profile_rules.PROPERTY_NAMES, "createdDateTime", "lastModifiedDateTime", "appleProfileUuid")
FIELDS = odata.Fields("enrollmentProfile", _RENDERED, _RENDERED, _RENDERED)


class EnrollmentProfiles:
    """The enrollment-profile rules over the controller's store.

    ``mdm_enroll_url()`` is the MDM server's enrollment URL every profile carries; ``anchor_certs()``
    the base64 DER certificates its TLS certificate chains to, so devices trust exactly these.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        apple: Apple,
        assignments: Assignments,
        push_certificates: PushCertificates,
        *,
        mdm_enroll_url: Callable[[], str],
        random: Randomness | None = None,
        anchor_certs: Callable[[], list[str]] | None = None,
        http: httpx.Client | None = None,
        mdm_api_url: Callable[[], str] | None = None,
    ) -> None:
        self.random = random or Randomness(None)
        self.store = store
        self.clock = clock
        self.apple = apple
        self.assignments = assignments
        self.push_certificates = push_certificates
        self.mdm_enroll_url = mdm_enroll_url
        self.anchor_certs = anchor_certs
        self.http = http
        self.mdm_api_url = mdm_api_url

    # == reading ==================================================================================
    def list_all(self, token_id: str) -> list[dict[str, Any]]:
        with self.store.read() as db:
            token_row(db, token_id)
            return [_render(r) for r in profile_table.for_token(db, token_id)]

    def get(self, token_id: str, profile_id: str) -> dict[str, Any]:
        with self.store.read() as db:
            return _render(profile_row(db, token_id, profile_id))

    def get_apple_profile(self, token_id: str, profile_id: str) -> dict[str, Any]:
        """The exact JSON sent to Apple's ``POST /profile`` for this profile, and Apple's uuid."""
        with self.store.read() as db:
            row = profile_row(db, token_id, profile_id)
        return {"profile_uuid": row["profile_uuid"], "profile": json.loads(row["apple_json"])}

    def page(self, token_id: str, query: odata.Query) -> odata.Page:
        """``GET …/enrollmentProfiles`` with its OData options (a token holds at most 1,000)."""
        return odata.apply(self.list_all(token_id), query, default_top=MAX_PROFILES_PER_TOKEN,
                           maximum=MAX_PROFILES_PER_TOKEN)

    def default(self, token_id: str, kind: str) -> dict[str, Any] | None:
        """The token's default profile of one platform (``defaultIosEnrollmentProfile``…), or None."""
        with self.store.read() as db:
            token_row(db, token_id)
            found = [row for row in profile_table.defaults(db, token_id) if _kind(row) == kind]
            return _render(profile_row(db, token_id, found[0]["id"])) if found else None

    def export_mobile_config(self, token_id: str, profile_id: str) -> str:
        """``exportMobileConfig``: the signed ``.mobileconfig`` (base64) a device installs to enroll without
        Setup Assistant, made by the MDM server. It carries the MDM server's payloads only: the profile's
        Setup Assistant settings mean nothing to a device that is past Setup Assistant."""
        with self.store.read() as db:
            row = profile_row(db, token_id, profile_id)
        if _kind(row) != profile_rules.IOS_TYPE:
            raise GraphError(400, "badRequest", "exportMobileConfig is for iOS/iPadOS enrollment profiles")
        if self.mdm_api_url is None or self.http is None:
            raise GraphError(503, "mdmServerUnavailable", "no MDM server is configured to make the profile")
        url = f"{self.mdm_api_url().rstrip('/')}/enrollment-profiles"
        body: dict[str, Any] = {}
        try:
            reply = self.http.post(url, json=body, timeout=10.0)
        except httpx.HTTPError as exc:
            raise GraphError(503, "mdmServerUnreachable", f"the MDM server could not be reached: {type(exc).__name__}") from None
        if reply.status_code != 200 or not reply.content or len(reply.content) > MAX_MOBILECONFIG:
            raise GraphError(  # as a refused push certificate is reported
                400, "mdmServerRejected", f"the MDM server did not make the profile ({reply.status_code}: {reply.text[:200]})"
            )
        return base64.b64encode(reply.content).decode("ascii")

    # == writing ==================================================================================
    def create(self, token_id: str, body: Any) -> dict[str, Any]:
        settings = _settings(None, body)
        with self.store.read() as db:
            token = dep_token_row(db, token_id)
            count = profile_table.count(db, token_id)
        # A device enrolled now would get a topic no certificate can push to (Intune refuses likewise).
        self.push_certificates.require()
        if count >= MAX_PROFILES_PER_TOKEN:
            raise GraphError(400, "profileLimitReached", f"a token holds at most {MAX_PROFILES_PER_TOKEN} profiles")
        apple, profile_uuid = self._define(token, settings)
        now = self.clock.timestamp()
        profile_id = self.random.uuid(f"controller:profile:{token_id}:{profile_uuid}")
        with self.store.transaction() as db:
            token_row(db, token_id)
            if settings["isDefault"]:
                _clear_default(db, token_id, settings["@odata.type"])
            profile_table.insert(
                db,
                profile_id,
                token_id,
                settings=json.dumps(settings),
                apple_json=apple,
                profile_uuid=profile_uuid,
                is_default=settings["isDefault"],
                now=now,
            )
        return self.get(token_id, profile_id)

    def update(self, token_id: str, profile_id: str, body: Any) -> dict[str, Any]:
        """PATCH: Apple profiles cannot change, so a new one is defined and the profile's devices move to it."""
        with self.store.read() as db:
            token = dep_token_row(db, token_id)
            current = profile_row(db, token_id, profile_id)
        settings = _settings(json.loads(current["settings"]), body)
        apple, profile_uuid = self._define(token, settings)
        with self.store.transaction() as db:
            profile_row(db, token_id, profile_id)
            if settings["isDefault"]:
                _clear_default(db, token_id, settings["@odata.type"])
            profile_table.update(
                db,
                profile_id,
                settings=json.dumps(settings),
                apple_json=apple,
                profile_uuid=profile_uuid,
                is_default=settings["isDefault"],
                now=self.clock.timestamp(),
            )
            serials = device_table.serials_with_profile(db, token_id, profile_id)
        if serials and profile_uuid != current["profile_uuid"]:
            try:
                self.assignments.assign(token_id, profile_id, serials)
            except GraphError:
                pass  # recorded per device; the profile itself was saved
        return self.get(token_id, profile_id)

    def delete(self, token_id: str, profile_id: str) -> None:
        """Apple has no call to delete a profile; devices keep it at Apple until assigned another."""
        with self.store.transaction() as db:
            profile_row(db, token_id, profile_id)
            device_table.forget_profile(db, token_id, profile_id)
            profile_table.delete(db, profile_id)

    def set_default(self, token_id: str, profile_id: str) -> None:
        """``setDefaultProfile``: this profile becomes its platform's default for the token (the one a
        sync assigns to new serials); the previous default stops being it. Apple's profile is unchanged."""
        with self.store.transaction() as db:
            row = profile_row(db, token_id, profile_id)
            settings = json.loads(row["settings"])
            _clear_default(db, token_id, _kind(row))
            settings["isDefault"] = True
            profile_table.set_default(db, profile_id, json.dumps(settings), self.clock.timestamp())

    def _define(self, token: sqlite3.Row, settings: dict[str, Any]) -> tuple[str, str]:
        """``POST /profile`` → (the JSON sent, Apple's profile_uuid); Apple's refusals become 400s."""
        try:
            apple = profile_rules.apple_profile(settings, self.mdm_enroll_url())
        except profile_rules.ProfileError as exc:
            raise GraphError(400, "badRequest", str(exc)) from None
        anchors = self.anchor_certs() if self.anchor_certs is not None else []
        if anchors:
            apple["anchor_certs"] = list(anchors)
        try:
            reply = self.apple.client_for(token).define_profile(apple)
        except (DEPError, httpx.HTTPError) as exc:
            raise graph_from_apple(exc, "enrollment profile") from None
        profile_uuid = reply.get("profile_uuid")
        if not isinstance(profile_uuid, str) or not profile_uuid:
            raise GraphError(400, "appleRejected", "Apple did not return a profile_uuid")
        return json.dumps(apple), profile_uuid


def _settings(current: dict[str, Any] | None, body: Any) -> dict[str, Any]:
    try:
        return profile_rules.merge_settings(current, body)
    except profile_rules.ProfileError as exc:
        raise GraphError(400, "badRequest", str(exc)) from None


def _kind(row: sqlite3.Row) -> str:
    """A stored profile's ``@odata.type`` (profiles stored before macOS ones existed are iOS)."""
    return str(json.loads(row["settings"]).get("@odata.type") or profile_rules.IOS_TYPE)


def _clear_default(db: sqlite3.Connection, token_id: str, kind: str) -> None:
    """The token's default profile of this platform (if any) stops being it: a new one is about to be."""
    for row in profile_table.defaults(db, token_id):
        if _kind(row) != kind:
            continue
        settings = json.loads(row["settings"])
        settings["isDefault"] = False
        profile_table.unset_default(db, row["id"], json.dumps(settings))


def _render(row: sqlite3.Row) -> dict[str, Any]:
    settings = profile_rules.normalize(json.loads(row["settings"]))
    apple = json.loads(row["apple_json"])
    # Where devices enroll: the MDM server's URL the profile was defined with, as Intune shows its own.
    settings["configurationEndpointUrl"] = apple.get("url")
    return {
        "@odata.type": settings.pop("@odata.type"),
        "id": row["id"],
        **settings,
        "createdDateTime": iso_from_timestamp(row["created_at"]),
        "lastModifiedDateTime": iso_from_timestamp(row["modified_at"]),
        "appleProfileUuid": row["profile_uuid"],
    }
