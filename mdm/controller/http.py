"""Graph-style HTTP API of the controller (mounted at ``/intune``): parse, call the Controller, render.

Routes follow Microsoft Graph beta's paths under ``/deviceManagement``, as Microsoft's SDKs build them:
a *function* (``getEncryptionPublicKey``, ``downloadApplePushNotificationCertificateSigningRequest``,
``exportMobileConfig``) answers with and without ``()``; an *action* is a POST. Collections take Graph's
query options (:mod:`mdm.controller.odata`) and answer ``{"@odata.count"?, "value", "@odata.nextLink"?}``;
``…/$count`` answers the number as text.

Errors are always Graph's shape, ``{"error": {"code", "message", "innerError": {"date", "request-id",
"client-request-id"}}}`` (with ``Retry-After`` on 409/429), never an HTML page. Every response carries
``request-id`` and ``client-request-id`` headers; the latter echoes the client's header (Microsoft's SDKs
send one per request), so a script can quote both when it reports a failure.

``updateDeviceProfileAssignment`` answers 204 when Apple accepted every serial (as Graph does), and
200 ``{"value": [{"serialNumber", "status"}]}`` when any serial was not (``NOT_ACCESSIBLE``,
``FAILED``, ``THROTTLED`` with ``retryAfterDateTime``), so a refusal is reported, not hidden.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from mdm.platform.web import BeforeHook, BodyError, create_party_app, json_response, read_json

from . import odata
from .devices import FIELDS as DEVICE_FIELDS
from .enrollment_profiles import FIELDS as PROFILE_FIELDS
from .profiles import IOS_TYPE, MACOS_TYPE
from .service import Controller, GraphError
from .tokens import FIELDS as SETTING_FIELDS

__all__ = ["create_app"]

SETTINGS = "/deviceManagement/depOnboardingSettings"
BASE = SETTINGS
ODATA_SAFE = "$'"  # Graph writes $skiptoken and quoted $filter values literally in nextLink
PROFILES = BASE + "/<token_id>/enrollmentProfiles"
DEVICES = BASE + "/<token_id>/importedAppleDeviceIdentities"
PUSH = "/deviceManagement/applePushNotificationCertificate"
#: A client-request-id worth echoing: what Microsoft's SDKs send (a GUID), within reason.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:{}-]{1,128}$")
_PAGING = {"$skip", "skip", "$skiptoken", "skiptoken"}


def _body() -> Any:
    return read_json(allow_empty=True)


def _no_content() -> Response:
    return Response(status=204)


def _next_link(skiptoken: str) -> str:
    """This request's URL for the next page: its options but ``$skip``, plus the page's ``$skiptoken``."""
    query = [(k, v) for k, v in request.args.items(multi=True) if k.lower() not in _PAGING]
    query.append(("$skiptoken", skiptoken))
    return f"{request.base_url}?{urlencode(query, safe=ODATA_SAFE)}"


def _collection(page: odata.Page) -> Response:
    body: dict[str, Any] = {}
    if page.count is not None:
        body["@odata.count"] = page.count
    body["value"] = page.items
    if page.next_skiptoken is not None:
        body["@odata.nextLink"] = _next_link(page.next_skiptoken)
    return json_response(body)


def _query(fields: odata.Fields) -> odata.Query:
    return odata.parse_query(request.args.items(multi=True), fields)


def _counted(fields: odata.Fields) -> odata.Query:
    """The options of a ``…/$count`` request: its ``$filter`` decides what is counted."""
    return dataclasses.replace(_query(fields), count=True)


def _entity(item: dict[str, Any], fields: odata.Fields, status: int = 200) -> Response:
    """A single entity, with ``$select`` applied (the one option an entity takes)."""
    query = odata.parse_query(request.args.items(multi=True), fields, collection=False)
    return json_response(odata.project(item, query.select), status)


def _count(number: int) -> Response:
    return Response(str(number), status=200, mimetype="text/plain")


def create_app(controller: Controller, before: BeforeHook | None = None) -> Flask:
    """The controller party's Flask app."""
    app = create_party_app("controller", __name__, before=before, text_errors=False)
    serial = itertools.count()

    def request_ids() -> tuple[str, str]:
        """(request-id, client-request-id) of the current request, made once per request."""
        ids = g.get("graph_ids")
        if ids is None:
            request_id = controller.random.uuid(f"controller:request-id:{next(serial)}")
            given = request.headers.get("client-request-id", "")
            ids = (request_id, given if _CLIENT_REQUEST_ID.match(given) else request_id)
            g.graph_ids = ids
        return ids

    def error(status: int, code: str, message: str, retry_after: int | None = None) -> Response:
        request_id, client_request_id = request_ids()
        inner = {
            "date": controller.clock.now().strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": request_id,
            "client-request-id": client_request_id,
        }
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return json_response({"error": {"code": code, "message": message, "innerError": inner}}, status, headers)

    @app.after_request
    def _ids(response: Response) -> Response:
        request_id, client_request_id = request_ids()
        response.headers["request-id"] = request_id
        response.headers["client-request-id"] = client_request_id
        return response

    @app.errorhandler(GraphError)
    def _graph_error(exc: GraphError) -> Response:
        return error(exc.status, exc.code, exc.message, exc.retry_after)

    @app.errorhandler(BodyError)
    def _body_error(exc: BodyError) -> Response:
        return error(400, "badRequest", exc.reason)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").title().replace(" ", "")
        return error(exc.code or 400, code[:1].lower() + code[1:], exc.description or exc.name)

    def function(rule: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
        """A Graph function: GET, routed as SDKs call it (``name()``) and as scripts often do (``name``)."""

        def register(view: Callable[..., Response]) -> Callable[..., Response]:
            app.add_url_rule(rule, view.__name__, view, methods=["GET"])
            app.add_url_rule(rule + "()", view.__name__ + "_call", view, methods=["GET"])
            return view

        return register

    # == Apple MDM push certificate ===============================================================
    @app.get(PUSH)
    def get_push_certificate() -> Response:
        return json_response(controller.get_push_certificate())

    @app.route(PUSH, methods=["PATCH", "POST"])
    def upload_push_certificate() -> Response:
        return json_response(controller.upload_push_certificate(_body()))

    @function(PUSH + "/downloadApplePushNotificationCertificateSigningRequest")
    def download_push_csr() -> Response:
        return json_response({"value": controller.push_certificate_signing_request()})

    @app.post(PUSH + "/generateApplePushNotificationCertificateSigningRequest")
    def generate_push_csr() -> Response:
        return json_response({"value": controller.generate_push_certificate_signing_request()})

    # == depOnboardingSettings =====================================================================
    @app.get(SETTINGS)
    def list_settings() -> Response:
        return _collection(controller.settings_page(_query(SETTING_FIELDS)))

    @app.get(SETTINGS + "/$count")
    def count_settings() -> Response:
        return _count(controller.settings_page(_counted(SETTING_FIELDS)).count or 0)

    @app.post(SETTINGS)
    def create_setting() -> Response:
        return json_response(controller.create_setting(_body()), 201)

    @app.get(BASE + "/<token_id>")
    def get_setting(token_id: str) -> Response:
        return _entity(controller.get_setting(token_id), SETTING_FIELDS)

    @app.patch(BASE + "/<token_id>")
    def update_setting(token_id: str) -> Response:
        return json_response(controller.update_setting(token_id, _body()))

    @app.delete(BASE + "/<token_id>")
    def delete_setting(token_id: str) -> Response:
        controller.delete_setting(token_id)
        return _no_content()

    @app.post(BASE + "/<token_id>/generateEncryptionPublicKey")
    def generate_key(token_id: str) -> Response:
        return json_response({"value": controller.generate_encryption_key(token_id)})

    @function(BASE + "/<token_id>/getEncryptionPublicKey")
    def get_key(token_id: str) -> Response:
        return json_response({"value": controller.get_encryption_key(token_id)})

    @app.post(BASE + "/<token_id>/uploadDepToken")
    def upload_token(token_id: str) -> Response:
        controller.upload_token(token_id, _body())
        return _no_content()

    @app.post(BASE + "/<token_id>/syncWithAppleDeviceEnrollmentProgram")
    def sync(token_id: str) -> Response:
        controller.request_sync(token_id)
        return _no_content()

    @app.get(BASE + "/<token_id>/defaultIosEnrollmentProfile")
    def default_ios_profile(token_id: str) -> Response:
        return _default_profile(token_id, IOS_TYPE)

    @app.get(BASE + "/<token_id>/defaultMacOsEnrollmentProfile")
    def default_macos_profile(token_id: str) -> Response:
        return _default_profile(token_id, MACOS_TYPE)

    def _default_profile(token_id: str, kind: str) -> Response:
        """The navigation property; 204 (OData's answer for no related entity) when the token has none."""
        profile = controller.default_profile(token_id, kind)
        if profile is None:
            odata.parse_query(request.args.items(multi=True), PROFILE_FIELDS, collection=False)
            return _no_content()
        return _entity(profile, PROFILE_FIELDS)

    # == enrollmentProfiles ========================================================================
    @app.get(PROFILES)
    def list_profiles(token_id: str) -> Response:
        return _collection(controller.profiles_page(token_id, _query(PROFILE_FIELDS)))

    @app.get(PROFILES + "/$count")
    def count_profiles(token_id: str) -> Response:
        return _count(controller.profiles_page(token_id, _counted(PROFILE_FIELDS)).count or 0)

    @app.post(PROFILES)
    def create_profile(token_id: str) -> Response:
        return json_response(controller.create_profile(token_id, _body()), 201)

    @app.get(PROFILES + "/<profile_id>")
    def get_profile(token_id: str, profile_id: str) -> Response:
        return _entity(controller.get_profile(token_id, profile_id), PROFILE_FIELDS)

    @app.patch(PROFILES + "/<profile_id>")
    def update_profile(token_id: str, profile_id: str) -> Response:
        return json_response(controller.update_profile(token_id, profile_id, _body()))

    @app.delete(PROFILES + "/<profile_id>")
    def delete_profile(token_id: str, profile_id: str) -> Response:
        controller.delete_profile(token_id, profile_id)
        return _no_content()

    @app.get(PROFILES + "/<profile_id>/appleProfile")
    def apple_profile(token_id: str, profile_id: str) -> Response:
        return json_response(controller.get_apple_profile(token_id, profile_id))

    @app.post(PROFILES + "/<profile_id>/updateDeviceProfileAssignment")
    def assign(token_id: str, profile_id: str) -> Response:
        results = controller.assign_profile(token_id, profile_id, _body())
        if all(r["status"] == "SUCCESS" for r in results):
            return _no_content()
        return json_response({"value": results})

    @app.post(PROFILES + "/<profile_id>/setDefaultProfile")
    def set_default_profile(token_id: str, profile_id: str) -> Response:
        controller.set_default_profile(token_id, profile_id)
        return _no_content()

    @function(PROFILES + "/<profile_id>/exportMobileConfig")
    def export_mobile_config(token_id: str, profile_id: str) -> Response:
        return json_response({"value": controller.export_mobile_config(token_id, profile_id)})

    # == importedAppleDeviceIdentities =============================================================
    @app.get(DEVICES)
    def list_devices(token_id: str) -> Response:
        return _collection(controller.devices_page(token_id, _query(DEVICE_FIELDS)))

    @app.get(DEVICES + "/$count")
    def count_devices(token_id: str) -> Response:
        return _count(controller.count_devices(token_id, _query(DEVICE_FIELDS)))

    @app.get(DEVICES + "/<device_id>")
    def get_device(token_id: str, device_id: str) -> Response:
        return _entity(controller.get_device(token_id, device_id), DEVICE_FIELDS)

    @app.post("/webhooks/mdm")
    def mdm_webhook() -> Response:
        controller.handle_mdm_event(_body())
        return _no_content()

    return app
