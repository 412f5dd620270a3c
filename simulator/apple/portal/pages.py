"""The portal's web pages: Device Enrollment Program → Manage Devices and MDM Servers, as an admin sees them.

A demo's audience expects to watch someone choose devices and press "Assign to Server", not to read
a ``curl`` line, so these pages do by hand what ``/api/…`` does for scripts, through the same
:class:`~simulator.apple.portal.service.PortalService` calls. Results and errors are shown inline
(a :class:`PortalError` message is written for a person already), never as a JSON page.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from .http import private_key_download
from .serials import serials_from_csv, serials_from_text
from .service import SERIAL_PATTERN, PortalError, PortalService

__all__ = ["create_blueprint"]

PAGE_SIZE = 100
MAX_UPLOAD = 1_048_576
NOTICES = {
    "server-added": "MDM server added. Next: upload its public key, then download its token.",
    "key-uploaded": "Public key uploaded. You can download the server token now.",
    "api-account-added": "API account created. Download its private key now: it can be downloaded only once.",
    "api-account-revoked": "API account revoked. Its access tokens no longer work.",
}


def _check(serials: list[str]) -> list[str]:
    if not serials:
        raise PortalError(400, "enter at least one serial number")
    wrong = [s for s in serials if not SERIAL_PATTERN.match(s)]
    if wrong:
        shown = ", ".join(wrong[:5]) + (" …" if len(wrong) > 5 else "")
        raise PortalError(400, f"not serial numbers (4-32 capital letters and digits): {shown}"[:400])
    return serials


def create_blueprint(portal_service: PortalService) -> Blueprint:
    """The pages, for registering on the portal's app (mounted at ``/apple/portal``)."""
    bp = Blueprint("portal_pages", __name__, template_folder="templates")
    portal = portal_service

    def server_names() -> dict[str, str]:
        return {s["server_uuid"]: s["server_name"] for s in portal.servers()}

    def render(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
        context.setdefault("notice", NOTICES.get(request.args.get("notice", "")))
        context.setdefault("organization", portal.organization())
        return render_template(template, **context), status

    @bp.errorhandler(PortalError)
    def _portal_error(error: PortalError) -> tuple[str, int]:
        return render("portal_error.html", error.status, error=error.message, nav="")

    @bp.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> tuple[str, int]:
        return render("portal_error.html", error.code or 400, error=error.description, nav="")

    @bp.get("/")
    def home() -> Response:
        return redirect(url_for(".manage_devices"))

    # -- Manage Devices ---------------------------------------------------------------------------------
    def devices_page(status: int = 200, **context: Any) -> tuple[str, int]:
        try:
            offset = max(0, int(request.args.get("offset", "0")))
        except ValueError:
            offset = 0
        listing = portal.devices(limit=PAGE_SIZE, offset=offset)
        context.setdefault("form", {})
        context.setdefault("result", None)
        context.setdefault("error", None)
        return render(
            "portal_devices.html",
            status,
            listing=listing,
            servers=portal.servers(),
            names=server_names(),
            page_size=PAGE_SIZE,
            nav="devices",
            **context,
        )

    @bp.get("/devices")
    def manage_devices() -> tuple[str, int]:
        return devices_page()

    @bp.post("/devices")
    def manage_devices_action() -> tuple[str, int]:
        form = request.form
        try:
            result = _device_action(portal, form, request.files.get("csv_file"))
        except PortalError as exc:
            return devices_page(exc.status, form=form, error=exc.message)
        return devices_page(form=form, result=result)

    # -- MDM Servers ----------------------------------------------------------------------------------
    def servers_page(status: int = 200, **context: Any) -> tuple[str, int]:
        servers = [portal.server(s["server_uuid"]) for s in portal.servers()]
        context.setdefault("form", {})
        context.setdefault("error", None)
        context.setdefault("key_error", None)
        context.setdefault("key_server", None)
        return render("portal_servers.html", status, servers=servers, nav="servers", **context)

    @bp.get("/servers")
    def mdm_servers() -> tuple[str, int]:
        return servers_page()

    @bp.post("/servers")
    def add_server() -> Response | tuple[str, int]:
        name = request.form.get("server_name", "").strip()
        try:
            if not name:
                raise PortalError(400, "enter a name for the MDM server")
            portal.create_server(name)
        except PortalError as exc:
            return servers_page(exc.status, form=request.form, error=exc.message)
        return redirect(url_for(".mdm_servers", notice="server-added"))

    @bp.post("/servers/<server_uuid>/public-key")
    def upload_public_key(server_uuid: str) -> Response | tuple[str, int]:
        upload = request.files.get("public_key")
        data = upload.read(MAX_UPLOAD) if upload is not None and upload.filename else b""
        try:
            if not data:
                raise PortalError(400, "choose the public key file (.pem) your MDM server gave you")
            portal.set_public_key(server_uuid, data)
        except PortalError as exc:
            return servers_page(exc.status, key_error=exc.message, key_server=server_uuid)
        return redirect(url_for(".mdm_servers", notice="key-uploaded"))

    @bp.get("/servers/<server_uuid>/token")
    def download_token(server_uuid: str) -> Response | tuple[str, int]:
        try:
            data = portal.server_token_p7m(server_uuid)
        except PortalError as exc:
            return servers_page(exc.status, key_error=exc.message, key_server=server_uuid)
        response = Response(data, mimetype="application/pkcs7-mime")
        filename = portal.token_filename(server_uuid)
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    # -- Preferences → API: API accounts for the Business API ------------------------------------------
    def api_page(status: int = 200, **context: Any) -> tuple[str, int]:
        context.setdefault("form", {})
        context.setdefault("error", None)
        return render("portal_api.html", status, accounts=portal.api_accounts.list(), nav="api", **context)

    @bp.get("/api-accounts")
    def api_accounts() -> tuple[str, int]:
        return api_page()

    @bp.post("/api-accounts")
    def create_api_account() -> Response | tuple[str, int]:
        try:
            portal.api_accounts.create(request.form.get("name", ""))
        except PortalError as exc:
            return api_page(exc.status, form=request.form, error=exc.message)
        return redirect(url_for(".api_accounts", notice="api-account-added"))

    @bp.get("/api-accounts/<client_id>/private-key")
    def download_private_key(client_id: str) -> Response | tuple[str, int]:
        try:
            return private_key_download(portal, client_id)
        except PortalError as exc:
            return api_page(exc.status, error=exc.message)

    @bp.post("/api-accounts/<client_id>/revoke")
    def revoke_api_account(client_id: str) -> Response | tuple[str, int]:
        try:
            portal.api_accounts.revoke(client_id)
        except PortalError as exc:
            return api_page(exc.status, error=exc.message)
        return redirect(url_for(".api_accounts", notice="api-account-revoked"))

    return bp


def _device_action(portal: PortalService, form: Any, upload: Any) -> dict[str, Any]:
    """Choose devices (serials, order or CSV), then assign them to a server or unassign them."""
    source = form.get("source", "serials")
    serials: list[str] | None = None
    order: str | None = None
    if source == "serials":
        serials = _check(serials_from_text(form.get("serial_numbers", "")))
    elif source == "order":
        order = form.get("order_number", "").strip()
        if not order:
            raise PortalError(400, "enter an order number")
    elif source == "csv":
        data = upload.read(MAX_UPLOAD + 1) if upload is not None and upload.filename else b""
        if not data:
            raise PortalError(400, "choose a CSV file with one serial number per row")
        if len(data) > MAX_UPLOAD:
            raise PortalError(400, "the CSV file is larger than 1 MB")
        serials = _check(serials_from_csv(data))
    else:
        raise PortalError(400, "choose devices by serial number, order number or CSV file")
    action = form.get("action", "assign")
    if action == "assign":
        server_uuid = form.get("server_uuid", "")
        if not server_uuid:
            raise PortalError(400, "choose the MDM server to assign the devices to")
        result = portal.assign(server_uuid, serials, order)
        return {"action": "assign", "server_name": portal.server(server_uuid)["server_name"], **result}
    if action == "unassign":
        return {"action": "unassign", **portal.unassign(serials, order)}
    raise PortalError(400, "choose Assign to Server or Unassign")
