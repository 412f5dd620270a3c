"""``/idp/``: the WS-Trust 1.3 UsernameMixed endpoint and a small JSON directory API.

Messages are read and written by :mod:`mdm.protocol.wstrust` (the MDM server's client uses the same
codec); who gets a token is :class:`~simulator.idp.service.IdentityProvider`'s decision.

Fault status codes. Real ADFS (WCF) answers every SOAP fault, a wrong password included, with
HTTP 500; MSAL's WS-Trust client carries the comment "ADFS uses 5xx status code even with
client-side incorrect password error" and parses the body regardless. This project's rule is "no 500
for bad input", and the SOAP 1.2 HTTP binding (part 2, §7.5.2) maps ``env:Sender`` faults to 400, so
Sender faults are sent with 400 by default; ``create_app(..., sender_fault_status=500)`` reproduces
ADFS exactly for clients that must be tested against it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from mdm.platform.web import BeforeHook, BodyError, create_party_app, json_response, read_body, read_json
from mdm.protocol import wstrust

from .service import IdentityProvider, UserError, UserExists

__all__ = ["MAX_BODY", "USERNAME_MIXED_PATH", "create_app"]

USERNAME_MIXED_PATH = "/adfs/services/trust/13/UsernameMixed"
MAX_BODY = wstrust.MAX_XML_BYTES
SOAP_CONTENT_TYPE = wstrust.SOAP_CONTENT_TYPE
_USER_KEYS = {"upn", "password", "display_name", "mfa_required", "department"}


def create_app(idp: IdentityProvider, *, before: BeforeHook | None = None,
               sender_fault_status: int = 400) -> Flask:
    """The IdP's app; the world mounts it at ``/idp``."""
    app = create_party_app("idp", __name__, max_body=MAX_BODY, before=before, text_errors=False)
    app.wsgi_app = _case_insensitive(app.wsgi_app, USERNAME_MIXED_PATH)  # type: ignore[method-assign]

    def soap_fault(fault: wstrust.WSTrustFault, status: int | None = None,
                   relates_to: str | None = None) -> Response:
        if status is None:
            status = sender_fault_status if fault.code == "Sender" else 500
        return Response(wstrust.build_fault(fault, relates_to=relates_to), status=status,
                        content_type=SOAP_CONTENT_TYPE)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        code = error.code or 500
        if request.path == USERNAME_MIXED_PATH:
            reason = {
                405: "this endpoint accepts only POST of a SOAP 1.2 envelope",
                413: f"the message is larger than {MAX_BODY} bytes",
            }.get(code, error.description or error.name)
            return soap_fault(wstrust.invalid_request(reason), status=code)
        return json_response({"error": error.description or error.name}, code)

    @app.errorhandler(BodyError)
    def _bad_body(error: BodyError) -> Response:
        return json_response({"error": error.reason}, 400)

    @app.post(USERNAME_MIXED_PATH)
    def username_mixed() -> Response:
        if request.mimetype != "application/soap+xml":
            # WCF's wording for a SOAP 1.1 client at a SOAP 1.2 endpoint.
            return soap_fault(wstrust.invalid_request(
                f"Cannot process the message because the content type '{request.content_type or ''}' "
                f"was not the expected type '{SOAP_CONTENT_TYPE}'."), status=415)
        try:
            rst = wstrust.parse_rst(read_body(MAX_BODY))
        except wstrust.WSTrustFault as fault:
            return soap_fault(fault)
        token = idp.issue(rst.username, rst.password, rst.applies_to)
        if token is None:
            return soap_fault(wstrust.failed_authentication(), relates_to=rst.message_id)
        return Response(wstrust.build_rstr(token, relates_to=rst.message_id), content_type=SOAP_CONTENT_TYPE)

    @app.get("/users")
    def list_users() -> Response:
        raw = request.args.get("limit")
        if raw is not None and not (raw.isascii() and raw.isdigit()):
            return json_response({"error": "limit must be a non-negative integer"}, 400)
        return json_response(idp.users(int(raw) if raw is not None else None))

    @app.post("/users")
    def add_user() -> Response:
        body = read_json()
        if not isinstance(body, dict):
            return json_response({"error": 'send {"upn": ..., "password": ...}'}, 400)
        unknown = sorted(set(body) - _USER_KEYS)
        if unknown:
            return json_response({"error": f"unknown keys {unknown}; allowed: {sorted(_USER_KEYS)}"}, 400)
        missing = sorted({"upn", "password"} - set(body))
        if missing:
            return json_response({"error": f"missing {', '.join(missing)}"}, 400)
        try:
            user = idp.add_user(body["upn"], body["password"], body.get("display_name"),
                                body.get("mfa_required", False), body.get("department"))
        except UserExists as exc:
            return json_response({"error": str(exc)}, 409)
        except UserError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(user, 201)

    return app


def _case_insensitive(wsgi_app: Callable[..., Iterable[bytes]], path: str) -> Callable[..., Iterable[bytes]]:
    """ADFS runs on http.sys, where paths ignore case; clients send ``usernamemixed`` from MEX documents.

    Rewriting the path (rather than registering a second rule) keeps one endpoint name for the
    world's traffic counters and fault scripts.
    """
    folded = path.lower()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").lower() == folded:
            environ["PATH_INFO"] = path
        return wsgi_app(environ, start_response)

    return app
