"""The portal's JSON API (``/api/…``): parse, call :class:`.service.PortalService`, render.

Errors are ``{"error": "..."}`` with 400 or 404 (405/413 from Werkzeug likewise), never an HTML page
or a 500: the portal's users are people and scripts setting up a demo, and they need a sentence.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from mdm.platform.web import BeforeHook, BodyError, create_party_app, json_response, read_body

from .serials import serials_from_csv
from .service import PortalError, PortalService

__all__ = ["create_app", "private_key_download"]


def _error(status: int, message: str) -> Response:
    return json_response({"error": message}, status=status)


def _json_object() -> dict[str, Any]:
    raw = read_body()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PortalError(400, "the request body is not JSON") from None
    if not isinstance(value, dict):
        raise PortalError(400, "the request body must be a JSON object")
    return value


def _serial_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise PortalError(400, "serial_numbers must be a list of strings")
    return value


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise PortalError(400, f"{name} must be an integer") from None
    if not low <= value <= high:
        raise PortalError(400, f"{name} must be between {low} and {high}")
    return value


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise PortalError(400, f"{key} must be a string")
    return value


def private_key_download(portal: PortalService, client_id: str) -> Response:
    """The API account's private key as the PEM file the portal downloads, once (pages and JSON API)."""
    pem = portal.api_accounts.private_key(client_id)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", portal.api_accounts.get(client_id)["name"]) or "api-account"
    response = Response(pem, mimetype="application/x-pem-file")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}_private_key.pem"'
    response.headers["Cache-Control"] = "no-store"
    return response


def create_app(portal: PortalService, before: BeforeHook | None = None) -> Flask:
    """The portal party's Flask app (JSON API only; pages may be added beside it)."""
    app = create_party_app("portal", __name__, before=before, text_errors=False)

    @app.errorhandler(PortalError)
    def _portal_error(error: PortalError) -> Response:
        return _error(error.status, error.message)

    @app.errorhandler(BodyError)
    def _body_error(error: BodyError) -> Response:
        return _error(400, error.reason)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        return _error(error.code or 500, (error.name or "error").lower())

    @app.get("/api/organization")
    def get_organization() -> Response:
        return json_response(portal.organization())

    @app.patch("/api/organization")
    def patch_organization() -> Response:
        return json_response(portal.set_organization_settings(_json_object()))

    @app.get("/api/beta-programs")
    def get_beta_programs() -> Response:
        return json_response(portal.beta_programs())

    @app.post("/api/beta-programs")
    def post_beta_programs() -> Response:
        body = _json_object()
        return json_response(portal.add_beta_program(body.get("title"), body.get("os")), status=201)

    @app.delete("/api/beta-programs/<token>")
    def delete_beta_program(token: str) -> Response:
        return json_response(portal.remove_beta_program(token))

    @app.get("/api/servers")
    def get_servers() -> Response:
        return json_response(portal.servers())

    @app.post("/api/servers")
    def post_servers() -> Response:
        body = _json_object()
        name = body.get("server_name")
        if not isinstance(name, str) or not name.strip():
            raise PortalError(400, "server_name is required")
        server = portal.create_server(name)
        return json_response(portal.server(server["server_uuid"]), status=201)

    @app.get("/api/servers/<server_uuid>")
    def get_server(server_uuid: str) -> Response:
        return json_response(portal.server(server_uuid))

    @app.post("/api/servers/<server_uuid>/public-key")
    def post_server_public_key(server_uuid: str) -> Response:
        raw = read_body()
        pem: Any = raw
        if raw.lstrip().startswith(b"{"):
            try:
                pem = json.loads(raw).get("certificate")
            except (UnicodeDecodeError, ValueError, AttributeError, RecursionError):
                raise PortalError(
                    400, 'send the PEM certificate as the body or as {"certificate": "..."}'
                ) from None
            if not isinstance(pem, str):
                raise PortalError(400, 'send the PEM certificate as the body or as {"certificate": "..."}')
        return json_response(portal.set_public_key(server_uuid, pem))

    @app.get("/api/servers/<server_uuid>/token.p7m")
    def get_server_token_p7m(server_uuid: str) -> Response:
        data = portal.server_token_p7m(server_uuid)
        response = Response(data, mimetype="application/pkcs7-mime")
        response.headers["Content-Disposition"] = (
            f'attachment; filename="{portal.token_filename(server_uuid)}"'
        )
        return response

    @app.post("/api/servers/<server_uuid>/token.p7m")
    def post_server_token_p7m(server_uuid: str) -> Response:
        """A new token (Download Token in the portal): the previous one stops working."""
        data = portal.renew_server_token_p7m(server_uuid)
        response = Response(data, mimetype="application/pkcs7-mime")
        response.headers["Content-Disposition"] = (
            f'attachment; filename="{portal.token_filename(server_uuid)}"'
        )
        return response

    @app.get("/api/servers/<server_uuid>/token")
    def get_server_token(server_uuid: str) -> Response:
        return json_response(portal.server_token(server_uuid))

    @app.post("/api/servers/<server_uuid>/token")
    def post_server_token(server_uuid: str) -> Response:
        """A new token, its JSON in clear (as depsim's ``GET /token``): the previous one stops working."""
        return json_response(portal.renew_server_token(server_uuid))

    @app.get("/api/devices")
    def get_devices() -> Response:
        return json_response(
            portal.devices(
                request.args.get("server_uuid") or None,
                limit=_int_arg("limit", 100, 1, 1000),
                offset=_int_arg("offset", 0, 0, 10_000_000),
            )
        )

    @app.post("/api/devices")
    def post_devices() -> Response:
        body = _json_object()
        server_uuid = _optional_str(body, "server_uuid")
        order_number = _optional_str(body, "order_number")
        if "count" in body:
            result = portal.generate(body["count"], server_uuid, order_number)
        elif "serial_numbers" in body:
            result = portal.add_serials(_serial_list(body["serial_numbers"]), server_uuid, order_number)
        else:
            raise PortalError(400, 'send {"count": n} or {"serial_numbers": [...]}')
        return json_response(result, status=201)

    @app.patch("/api/devices/<serial>")
    def patch_device(serial: str) -> Response:
        return json_response(portal.edit_device(serial, _json_object()))

    @app.post("/api/devices/<serial>/replace")
    def post_device_replace(serial: str) -> Response:
        body = _json_object()
        replacement = body.get("replacement")
        if replacement is not None and not isinstance(replacement, dict):
            raise PortalError(400, "replacement must be a device object (serial_number, model, ...)")
        return json_response(portal.replace_device(serial, replacement, body.get("replacement_date")), status=201)

    @app.post("/api/devices/migration-deadline")
    def post_devices_migration_deadline() -> Response:
        body = _json_object()
        serials = _serial_list(body.get("serial_numbers"))
        if not serials:
            raise PortalError(400, "serial_numbers is empty")
        if "mdm_migration_deadline" not in body:
            raise PortalError(400, "mdm_migration_deadline is required (null clears it)")
        return json_response(portal.set_migration_deadline(serials, body["mdm_migration_deadline"]))

    @app.post("/api/devices/release")
    def post_devices_release() -> Response:
        body = _json_object()
        serials = _serial_list(body.get("serial_numbers"))
        if not serials:
            raise PortalError(400, "serial_numbers is empty")
        return json_response(portal.release(serials))

    def assignment_request() -> tuple[str | None, list[str] | None, str | None, str | None]:
        if (request.mimetype or "").lower() in ("text/csv", "text/plain"):
            deadline = request.args.get("mdm_migration_deadline") or None
            return request.args.get("server_uuid") or None, serials_from_csv(read_body()), None, deadline
        body = _json_object()
        serials = body.get("serial_numbers")
        order_number = _optional_str(body, "order_number")
        server_uuid = _optional_str(body, "server_uuid") or request.args.get("server_uuid") or None
        deadline = _optional_str(body, "mdm_migration_deadline")
        if serials is None and order_number is None:
            raise PortalError(400, "name the devices: serial_numbers, order_number, or a text/csv body")
        return server_uuid, (_serial_list(serials) if serials is not None else None), order_number, deadline

    @app.post("/api/assignments")
    def post_assignments() -> Response:
        server_uuid, serials, order_number, deadline = assignment_request()
        if server_uuid is None:
            raise PortalError(400, "server_uuid is required")
        return json_response(portal.assign(server_uuid, serials, order_number, deadline))

    @app.delete("/api/assignments")
    def delete_assignments() -> Response:
        server_uuid, serials, order_number, _ = assignment_request()
        return json_response(portal.unassign(serials, order_number, server_uuid))

    # -- API accounts (Preferences → API): credentials for the Business API -------------------------------
    @app.get("/api/api-accounts")
    def get_api_accounts() -> Response:
        return json_response(portal.api_accounts.list())

    @app.post("/api/api-accounts")
    def post_api_accounts() -> Response:
        return json_response(portal.api_accounts.create(_json_object().get("name")), status=201)

    @app.get("/api/api-accounts/<client_id>")
    def get_api_account(client_id: str) -> Response:
        return json_response(portal.api_accounts.get(client_id))

    @app.get("/api/api-accounts/<client_id>/private-key")
    def get_api_account_private_key(client_id: str) -> Response:
        return private_key_download(portal, client_id)

    @app.post("/api/api-accounts/<client_id>/revoke")
    def post_api_account_revoke(client_id: str) -> Response:
        return json_response(portal.api_accounts.revoke(client_id))

    @app.post("/api/terms")
    def post_terms() -> Response:
        body = _json_object()
        required = body.get("require_acceptance")
        if not isinstance(required, bool):
            raise PortalError(400, "require_acceptance must be true or false")
        return json_response(portal.set_terms_required(required))

    return app
