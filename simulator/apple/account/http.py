"""Apple's token endpoint over HTTP (the root of ``account.apple.com``): parse, call
:class:`~simulator.apple.account.service.TokenService`, render.

``POST /auth/oauth2/token`` and ``POST /auth/oauth2/v2/token`` (Apple documents the first and signs
assertions for the second; clients use both). Parameters come form-encoded in the body, or in the query
string as Apple's curl example sends them, never twice (RFC 6749 §3.2). The audience accepted is Apple's
(``https://account.apple.com/auth/oauth2/v2/token``) or this service's own v2 URL, for a client pointed
at the simulator's address instead of Apple's name. Every reply, refusals included, is JSON with
``Cache-Control: no-store`` (RFC 6749 §5.1).
"""

from __future__ import annotations

import urllib.parse

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from mdm.platform.web import BodyError, FaultTaker, create_party_app, fault_hook, json_response, read_body

from .assertion import APPLE_AUDIENCE
from .errors import OAuthError
from .faults import FAULT_RESPONSES, fault_reply
from .service import PARAMETERS, TokenService

__all__ = ["create_app"]

MAX_BODY = 65_536
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _reply(body: dict, status: int = 200) -> Response:
    return json_response(body, status=status, headers=_NO_STORE)


def _parameters() -> dict[str, str]:
    """The request's parameters from the query and a form body, each at most once."""
    raw = read_body(MAX_BODY)
    pairs = urllib.parse.parse_qsl(request.query_string.decode("latin-1"), keep_blank_values=True)
    if (request.mimetype or "").lower() == "application/x-www-form-urlencoded" and raw:
        try:
            pairs += urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise OAuthError("invalid_request", "the body is not form-encoded UTF-8") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in PARAMETERS and name in params:
            raise OAuthError("invalid_request", f"parameter {name} is given more than once")
        params[name] = value
    return params


def create_app(tokens: TokenService, *, take_fault: FaultTaker | None = None) -> Flask:
    """The account party's Flask app; ``take_fault`` is the world's fault book (``/_sim/faults``)."""
    def scripted(name: str) -> Response | None:
        return fault_reply(name) if name in FAULT_RESPONSES else None

    before = fault_hook(take_fault, scripted) if take_fault is not None else None
    app = create_party_app("account", __name__, max_body=MAX_BODY, before=before, text_errors=False)

    @app.errorhandler(OAuthError)
    def _oauth_error(error: OAuthError) -> Response:
        return _reply(error.body(), error.status)

    @app.errorhandler(BodyError)
    def _body_error(error: BodyError) -> Response:
        return _reply({"error": "invalid_request", "error_description": error.reason}, 400)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        code = error.code or 400
        described = {404: "no such endpoint: POST /auth/oauth2/token", 405: "the token endpoint takes POST only"}
        description = described.get(code, (error.name or "error").lower())
        return _reply({"error": "invalid_request", "error_description": description}, code)

    def token() -> Response:
        audiences = [APPLE_AUDIENCE, request.url_root.rstrip("/") + "/auth/oauth2/v2/token"]
        return _reply(tokens.grant(_parameters(), audiences))

    app.add_url_rule("/auth/oauth2/token", "post_auth_oauth2_token", token, methods=["POST"])
    app.add_url_rule("/auth/oauth2/v2/token", "post_auth_oauth2_v2_token", token, methods=["POST"])
    return app
