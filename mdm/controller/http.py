"""Graph-style HTTP API of the controller (mounted at ``/intune``): parse, call the Controller, render.

Routes follow Microsoft Graph beta's paths under ``/deviceManagement``. Errors are always Graph's
shape ``{"error": {"code", "message"}}`` (with ``Retry-After`` on 409/429), never an HTML page.

``updateDeviceProfileAssignment`` answers 204 when Apple accepted every serial (as Graph does), and
200 ``{"value": [{"serialNumber", "status"}]}`` when any serial was not (``NOT_ACCESSIBLE``,
``FAILED``, ``THROTTLED`` with ``retryAfterDateTime``), so a refusal is reported, not hidden.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from mdm.platform.web import BeforeHook, BodyError, create_party_app, json_response, read_json

from .service import Controller, GraphError

__all__ = ["create_app"]

BASE = "/deviceManagement/depOnboardingSettings"
ODATA_SAFE = "$'"  # Graph writes $skiptoken and quoted $filter values literally in nextLink
PROFILES = BASE + "/<token_id>/enrollmentProfiles"
PUSH = "/deviceManagement/applePushNotificationCertificate"


def _error(status: int, code: str, message: str, retry_after: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return json_response({"error": {"code": code, "message": message}}, status, headers)


def _body() -> Any:
    return read_json(allow_empty=True)


def _no_content() -> Response:
    return Response(status=204)


def create_app(controller: Controller, before: BeforeHook | None = None) -> Flask:
    """The controller party's Flask app."""
    app = create_party_app("controller", __name__, before=before, text_errors=False)

    @app.errorhandler(GraphError)
    def _graph_error(error: GraphError) -> Response:
        return _error(error.status, error.code, error.message, error.retry_after)

    @app.errorhandler(BodyError)
    def _body_error(error: BodyError) -> Response:
        return _error(400, "badRequest", error.reason)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        code = (error.name or "error").title().replace(" ", "")
        return _error(error.code or 400, code[:1].lower() + code[1:], error.description or error.name)

    @app.get(PUSH)
    def get_push_certificate() -> Response:
        return json_response(controller.get_push_certificate())

    @app.route(PUSH, methods=["PATCH", "POST"])
    def upload_push_certificate() -> Response:
        return json_response(controller.upload_push_certificate(_body()))

    @app.get(PUSH + "/downloadApplePushNotificationCertificateSigningRequest")
    def download_push_csr() -> Response:
        return json_response({"value": controller.push_certificate_signing_request()})

    @app.post(PUSH + "/generateApplePushNotificationCertificateSigningRequest")
    def generate_push_csr() -> Response:
        return json_response({"value": controller.generate_push_certificate_signing_request()})

    @app.get("/deviceManagement/depOnboardingSettings")
    def list_settings() -> Response:
        return json_response({"value": controller.list_settings()})

    @app.post("/deviceManagement/depOnboardingSettings")
    def create_setting() -> Response:
        return json_response(controller.create_setting(_body()), 201)

    @app.get(BASE + "/<token_id>")
    def get_setting(token_id: str) -> Response:
        return json_response(controller.get_setting(token_id))

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

    @app.get(BASE + "/<token_id>/getEncryptionPublicKey")
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

    @app.get(PROFILES)
    def list_profiles(token_id: str) -> Response:
        return json_response({"value": controller.list_profiles(token_id)})

    @app.post(PROFILES)
    def create_profile(token_id: str) -> Response:
        return json_response(controller.create_profile(token_id, _body()), 201)

    @app.get(PROFILES + "/<profile_id>")
    def get_profile(token_id: str, profile_id: str) -> Response:
        return json_response(controller.get_profile(token_id, profile_id))

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

    @app.get(BASE + "/<token_id>/importedAppleDeviceIdentities")
    def list_devices(token_id: str) -> Response:
        items, skiptoken = controller.list_devices(
            token_id,
            top=request.args.get("$top"),
            skiptoken=request.args.get("$skiptoken"),
            filter=request.args.get("$filter"),
        )
        body: dict[str, Any] = {"value": items}
        if skiptoken is not None:
            query = {k: v for k, v in request.args.items() if k != "$skiptoken"}
            query["$skiptoken"] = skiptoken
            body["@odata.nextLink"] = f"{request.base_url}?{urlencode(query, safe=ODATA_SAFE)}"
        return json_response(body)

    @app.get(BASE + "/<token_id>/importedAppleDeviceIdentities/<device_id>")
    def get_device(token_id: str, device_id: str) -> Response:
        return json_response(controller.get_device(token_id, device_id))

    @app.post("/webhooks/mdm")
    def mdm_webhook() -> Response:
        controller.handle_mdm_event(_body())
        return _no_content()

    return app
