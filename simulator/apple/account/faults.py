"""Scripted failures of the token endpoint (``/_sim/faults`` with ``"party": "account"``).

``{"party": "account", "post_auth_oauth2_token_responses": [{"count": 1, "response": "invalid_client"}]}``
makes the next token request fail as named, before the assertion is looked at: how a client's handling
of a refused or throttled token request is tested without breaking its credentials.
"""

from __future__ import annotations

from flask import Response

from mdm.platform.web import json_response

__all__ = ["FAULT_RESPONSES", "fault_reply"]

#: name → (status, RFC 6749 error, description). 429 and 503 carry ``Retry-After``.
FAULT_RESPONSES: dict[str, tuple[int, str, str]] = {
    "invalid_request": (400, "invalid_request", "the request is missing a parameter or is malformed"),
    "invalid_client": (400, "invalid_client", "client authentication failed"),
    "invalid_scope": (400, "invalid_scope", "the requested scope is invalid"),
    "unauthorized_client": (400, "unauthorized_client", "the client is not authorized to use this grant type"),
    # Users report both when asking for many tokens: 429 "authentication failed", and a plain 400.
    "too_many_requests": (429, "too_many_requests", "authentication failed: too many token requests"),
    "server_error": (500, "server_error", "the authorization server encountered an unexpected condition"),
    "service_unavailable": (503, "temporarily_unavailable", "the authorization server is temporarily unavailable"),
}



def fault_reply(name: str) -> Response:
    status, error, description = FAULT_RESPONSES[name]
    reply = json_response({"error": error, "error_description": description}, status=status,
                          headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
    if status in (429, 503):
        reply.headers["Retry-After"] = "60"
    return reply
