"""The DEP web service over HTTP: parse, call :class:`~simulator.apple.dep.service.DEPService`, render.

Routes sit at the app root, as on ``mdmenrollment.apple.com``: the world mounts the app at
``/apple/dep``, answers for Apple's host name with it at ``/``, and can serve it alone on a port of its
own. Error bodies are Apple's short plain-text strings, and every authenticated reply carries
``X-ADM-Auth-Session``. The raw body
is read before authentication so a keep-alive connection never carries an unread body forward, but
it is decoded only after, so an unauthenticated client learns nothing from ``MALFORMED_REQUEST_BODY``.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, request

from mdm.platform.web import BeforeHook, BodyError, create_party_app, json_response, read_body

from .faults import FAULT_ENVIRON_KEY
from .service import DEPError, DEPService, Session, parse_protocol_version

__all__ = ["create_app"]

SESSION_HEADER = "X-ADM-Auth-Session"


def _text(status: int, code: str) -> Response:
    return Response(code, status=status, mimetype="text/plain")


def _decode(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DEPError(400, "MALFORMED_REQUEST_BODY") from None


def create_app(dep: DEPService, before: BeforeHook | None = None) -> Flask:
    """The DEP party's Flask app."""
    app = create_party_app("dep", __name__, before=before)

    @app.before_request
    def _require_user_agent() -> Response | None:
        if not request.headers.get("User-Agent", "").strip():
            return _text(400, "USER_AGENT_MISSING")
        return None

    @app.errorhandler(DEPError)
    def _dep_error(error: DEPError) -> Response:
        return _text(error.status, error.code)

    @app.errorhandler(BodyError)
    def _body_error(_: BodyError) -> Response:
        return _text(400, "MALFORMED_REQUEST_BODY")

    def version() -> int:
        return parse_protocol_version(request.headers.get("X-Server-Protocol-Version"))

    def session() -> Session:
        return dep.authenticate(request.headers.get(SESSION_HEADER))

    def reply(s: Session, value: Any) -> Response:
        return json_response(value, headers={SESSION_HEADER: s.header_token})

    def fault() -> str | None:
        name = request.environ.get(FAULT_ENVIRON_KEY)
        return name if isinstance(name, str) else None

    def authed_body() -> tuple[Session, Any]:
        raw = read_body()
        s = session()
        return s, _decode(raw)

    @app.get("/session")
    def get_session() -> Response:
        alternates: tuple[str, ...] = ()
        if dep.public_url is not None:
            query = request.query_string.decode("latin-1")
            alternates = (dep.public_url().rstrip("/") + "/session" + ("?" + query if query else ""),)
        token = dep.open_session(
            url=request.url, authorization=request.headers.get("Authorization"), alternate_urls=alternates
        )
        return json_response({"auth_session_token": token}, headers={SESSION_HEADER: token})

    @app.get("/account")
    def get_account() -> Response:
        s = session()
        return reply(s, dep.account(s, version()))

    @app.post("/server/devices")
    def post_server_devices() -> Response:
        s, body = authed_body()
        return reply(s, dep.fetch_devices(s, body, version()))

    @app.post("/devices/sync")
    def post_devices_sync() -> Response:
        s, body = authed_body()
        return reply(s, dep.sync_devices(s, body, version()))

    @app.post("/devices")
    def post_devices() -> Response:
        s, body = authed_body()
        return reply(s, dep.device_details(s, body, version(), fault()))

    @app.post("/devices/disown")
    def post_devices_disown() -> Response:
        s, body = authed_body()
        return reply(s, dep.disown_devices(s, body, version(), fault()))

    @app.post("/profile")
    def post_profile() -> Response:
        s, body = authed_body()
        return reply(s, dep.define_profile(s, body, version(), fault()))

    @app.get("/profile")
    def get_profile() -> Response:
        s = session()
        return reply(s, dep.get_profile(s, request.args.get("profile_uuid"), version()))

    @app.route("/profile/devices", methods=["PUT", "POST"])
    def assign_profile() -> Response:
        s, body = authed_body()
        return reply(s, dep.assign_profile(s, body, version(), fault()))

    @app.delete("/profile/devices")
    def delete_profile_devices() -> Response:
        s, body = authed_body()
        return reply(s, dep.clear_profile(s, body, version(), fault()))

    @app.post("/device/activationlock")
    def post_device_activationlock() -> Response:
        s, body = authed_body()
        return reply(s, dep.activation_lock(s, body))

    @app.get("/device/replacementDetails")
    def get_device_replacement_details() -> Response:
        s = session()
        return reply(s, dep.replacement_details(s, request.args.get("device")))

    @app.get("/os-beta-enrollment/tokens")
    def get_os_beta_enrollment_tokens() -> Response:
        s = session()
        return reply(s, dep.beta_enrollment_tokens(s))

    @app.get("/account-driven-enrollment/profile")
    def get_account_driven_enrollment_profile() -> Response:
        s = session()
        return reply(s, dep.discovery_profile(s))

    @app.post("/account-driven-enrollment/profile")
    def post_account_driven_enrollment_profile() -> Response:
        s, body = authed_body()
        return reply(s, dep.set_discovery_profile(s, body))

    @app.delete("/account-driven-enrollment/profile")
    def delete_account_driven_enrollment_profile() -> Response:
        read_body()  # a body sent anyway is read (and ignored), never left on the connection
        s = session()
        return reply(s, dep.delete_discovery_profile(s))

    return app
