"""Apple's Business API over HTTP (the root of ``api-business.apple.com``): parse, call
:class:`~simulator.apple.business.service.BusinessAPIService`, render.

Before any handler: a scripted fault (``/_sim/faults``), then the bearer token (401), then ``Accept``
(406 unless it admits ``application/json``: Apple's curl examples send none, and ``*/*`` is fine), then
the caller's rate window (429). Every error is ``{"errors": [{id, status, code, title, detail,
source?}]}`` as ``application/json``, 404 and 405 included. The activity log behind a ``downloadUrl``
(``/activity-logs/<id>``) needs no token, as a presigned blob-store URL does not.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from mdm.platform.web import FaultTaker, create_party_app, fault_hook, json_response, read_body

from .documents import (
    ACTIVITY_FIELDS,
    APPLECARE_FIELDS,
    MDM_SERVER_FIELDS,
    ORG_DEVICE_FIELDS,
    Query,
    read_query,
)
from .errors import APIError, not_acceptable, unprocessable
from .faults import FAULT_RESPONSES
from .service import BusinessAPIService, Caller

__all__ = ["create_app"]

_UNAUTHENTICATED = frozenset({"get_activity_log"})
_HTTP_ERRORS = {
    404: ("NOT_FOUND", "The specified resource doesn't exist", "The path is not a resource of this API"),
    405: ("METHOD_NOT_ALLOWED", "The request method is not valid for the resource path",
          "This resource does not allow the method"),
    413: ("ENTITY_ERROR.REQUEST_TOO_LARGE", "The request entity is too large", "The request body is too large"),
}


def create_app(service: BusinessAPIService, *, take_fault: FaultTaker | None = None) -> Flask:
    """The business party's Flask app; ``take_fault`` is the world's fault book (``/_sim/faults``)."""

    def render(error: APIError) -> Response:
        body = {"errors": [error.error(service.error_id(error))]}
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
        return json_response(body, status=error.status, headers=headers)

    def scripted(name: str) -> Response | None:
        return render(FAULT_RESPONSES[name]) if name in FAULT_RESPONSES else None

    before = fault_hook(take_fault, scripted) if take_fault is not None else None
    app = create_party_app("business", __name__, before=before, text_errors=False)

    @app.errorhandler(APIError)
    def _api_error(error: APIError) -> Response:
        return render(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        code = error.code or 400
        name, title, detail = _HTTP_ERRORS.get(code, ("BAD_REQUEST", "The request is not valid", error.name or "error"))
        return render(APIError(code, name, title, detail))

    @app.before_request
    def _gate() -> Response | None:
        if request.url_rule is None or request.endpoint in _UNAUTHENTICATED:
            return None
        # Read the body first: a refused request must not leave it unread on a kept-alive connection.
        g.raw = read_body() if request.method == "POST" else b""
        caller = service.authenticate(request.headers.get("Authorization"))
        if not _accepts_json(request.headers.get("Accept", "")):
            raise not_acceptable()
        service.count_request(caller, request.method)
        g.caller = caller
        return None

    def base() -> str:
        return request.url_root

    def query(fields: tuple[str, frozenset[str]] | None = None, *, paged: bool = False) -> Query:
        return read_query(list(request.args.items(multi=True)), fields=fields, paged=paged)

    def keep(q: Query, fields_type: str | None) -> list[tuple[str, str]]:
        """What ``links.next`` repeats of this request: its ``limit`` and ``fields``."""
        kept = [("limit", str(q.limit))] if "limit" in request.args else []
        if fields_type is not None and q.raw_fields is not None:
            kept.append((f"fields[{fields_type}]", q.raw_fields))
        return kept

    # -- orgDevices ------------------------------------------------------------------------------------
    @app.get("/v1/orgDevices")
    def get_org_devices() -> Response:
        q = query(("orgDevices", ORG_DEVICE_FIELDS), paged=True)
        return json_response(service.org_devices(base(), q, keep(q, "orgDevices")))

    @app.get("/v1/orgDevices/<device_id>")
    def get_org_device(device_id: str) -> Response:
        q = query(("orgDevices", ORG_DEVICE_FIELDS))
        return json_response(service.org_device(base(), device_id, q.fields))

    @app.get("/v1/orgDevices/<device_id>/relationships/assignedServer")
    def get_org_device_assigned_server_linkage(device_id: str) -> Response:
        query()
        return json_response(service.assigned_server_linkage(base(), device_id))

    @app.get("/v1/orgDevices/<device_id>/assignedServer")
    def get_org_device_assigned_server(device_id: str) -> Response:
        q = query(("mdmServers", MDM_SERVER_FIELDS))
        return json_response(service.assigned_server(base(), device_id, q.fields))

    @app.get("/v1/orgDevices/<device_id>/appleCareCoverage")
    def get_org_device_apple_care(device_id: str) -> Response:
        q = query(("appleCareCoverage", APPLECARE_FIELDS), paged=True)
        return json_response(service.apple_care(base(), device_id, q))

    # -- mdmServers ------------------------------------------------------------------------------------
    @app.get("/v1/mdmServers")
    def get_mdm_servers() -> Response:
        q = query(("mdmServers", MDM_SERVER_FIELDS), paged=True)
        return json_response(service.mdm_servers(base(), q, keep(q, "mdmServers")))

    @app.get("/v1/mdmServers/<server_id>")
    def get_mdm_server(server_id: str) -> Response:
        q = query(("mdmServers", MDM_SERVER_FIELDS))
        return json_response(service.mdm_server(base(), server_id, q.fields))

    @app.get("/v1/mdmServers/<server_id>/relationships/devices")
    def get_mdm_server_devices(server_id: str) -> Response:
        q = query(paged=True)
        return json_response(service.server_devices(base(), server_id, q, keep(q, None)))

    # -- orgDeviceActivities ---------------------------------------------------------------------------
    @app.post("/v1/orgDeviceActivities")
    def post_org_device_activities() -> Response:
        query()
        caller: Caller = g.caller
        return json_response(service.create_activity(base(), caller, _json_body(g.raw)), status=201)

    @app.get("/v1/orgDeviceActivities/<activity_id>")
    def get_org_device_activity(activity_id: str) -> Response:
        q = query(("orgDeviceActivities", ACTIVITY_FIELDS))
        return json_response(service.activity(base(), activity_id, q.fields))

    # -- the presigned log download --------------------------------------------------------------------
    @app.get("/activity-logs/<activity_id>", endpoint="get_activity_log")
    def get_activity_log(activity_id: str) -> Response:
        try:
            filename, data = service.activity_log(activity_id, request.args.get("Expires"), request.args.get("Signature"))
        except APIError as exc:  # a blob store's answer: a short text, not the API's JSON
            return Response(f"{exc.code}: {exc.detail}\n", status=exc.status, mimetype="text/plain")
        response = Response(data, mimetype="application/octet-stream")
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    return app


_JSON_RANGES = frozenset({"application/json", "application/*", "*/*"})


def _accepts_json(accept: str) -> bool:
    """Whether an ``Accept`` header admits ``application/json`` (no header does; parameters other than
    ``q=0`` do not matter)."""
    if not accept.strip():
        return True
    for item in accept.split(","):
        media, *params = (part.strip().lower() for part in item.split(";"))
        if media in _JSON_RANGES and not any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            return True
    return False


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise unprocessable("The request body is not valid JSON") from None
