"""Flask handlers of the MDM server (mounted at ``/mdm``): parse, call :class:`MDMService`, render.

Device-facing endpoints answer errors in plain text (devices log the body); the command API under
``/api/v1`` answers JSON ``{"error": reason}``; ACME under ``/acme`` answers RFC 8555 problem
documents (``application/problem+json``) and puts a fresh ``Replay-Nonce`` on every answer.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from mdm.platform.web import BeforeHook, BodyError, create_party_app, json_response, read_body, read_json
from mdm.protocol import scep
from mdm.protocol.acme import JOSE_CONTENT_TYPE, ACMEProblem

from .acme import MAX_ACME_BODY, ACMEReply
from .replies import MDMError, Reply
from .scep import PKI_CONTENT_TYPE, RA_CONTENT_TYPE
from .service import MDMService

__all__ = ["create_app", "ENROLL_CONTENT_TYPE"]

ENROLL_CONTENT_TYPE = "application/x-apple-aspen-config"


def _text(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    response = Response(reason + "\n", status=status, mimetype="text/plain")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _reply(reply: Reply) -> Response:
    response = Response(reply.body, status=reply.status)
    if reply.content_type:
        response.headers["Content-Type"] = reply.content_type
    else:
        del response.headers["Content-Type"]
    for key, value in reply.headers.items():
        response.headers[key] = value
    return response


def _base64_message(text: str) -> bytes:
    """GET PKIOperation's ``message``: base64, standard or URL-safe (micromdm's client sent the latter),
    with ``+`` possibly turned into a space by a form decoder on the way."""
    text = text.strip().replace(" ", "+")
    if len(text) > 2 * scep.MAX_MESSAGE:
        raise MDMError(413, "request body too large (limit 1 MB)")
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MDMError(400, "the PKIOperation message is not base64") from None


def _is_api() -> bool:
    return request.path.startswith("/api/")


def _is_acme() -> bool:
    return request.path.startswith("/acme/") or request.path == "/acme"


def _acme_response(mdm: MDMService, reply: ACMEReply) -> Response:
    """An ACME answer: JSON or PEM body, its headers, a fresh nonce, and no caching (RFC 8555 §7.2)."""
    body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body, separators=(",", ":"))
    response = Response(body, status=reply.status, content_type=reply.content_type)
    for key, value in reply.headers.items():
        response.headers[key] = value
    response.headers["Replay-Nonce"] = mdm.acme.new_nonce()
    response.headers["Cache-Control"] = "no-store"
    return response


def create_app(mdm: MDMService, *, before: BeforeHook | None = None) -> Flask:
    app = create_party_app("mdm", __name__, before=before, text_errors=False)

    @app.errorhandler(ACMEProblem)
    def _acme_problem(problem: ACMEProblem) -> Response:
        return _acme_response(mdm, mdm.acme.problem(problem))

    @app.errorhandler(MDMError)
    def _mdm_error(error: MDMError) -> Response:
        if _is_api():
            return json_response({"error": error.reason}, error.status, error.headers)
        return _text(error.status, error.reason, error.headers)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        code = error.code or 500
        reason = {413: "request body too large (limit 1 MB)"}.get(code, error.description or error.name)
        if _is_acme():
            detail = {413: f"request body too large (limit {MAX_ACME_BODY // 1024} KB)",
                      404: "no such ACME resource", 405: "method not allowed on this ACME resource"}.get(code, reason)
            return _acme_response(mdm, mdm.acme.problem(ACMEProblem("malformed", detail, code)))
        if _is_api():
            return json_response({"error": reason}, code)
        return _text(code, reason)

    # -- enrollment -------------------------------------------------------------------------------
    @app.route("/enroll", methods=["GET", "POST"])
    def enroll() -> Response:
        if request.method == "GET":
            header = request.headers.get("x-apple-aspen-deviceinfo", "")
            try:
                signed = base64.b64decode("".join(header.split()), validate=True)
            except (binascii.Error, ValueError):
                raise MDMError(403, "x-apple-aspen-deviceinfo is not base64") from None
        else:
            signed = read_body()
        auth = request.authorization
        credentials = None
        if auth is not None and auth.type == "basic" and auth.username is not None:
            credentials = (auth.username, auth.password or "")
        profile = mdm.enroll(signed, require_user=request.args.get("auth") == "user", credentials=credentials)
        return Response(profile.signed, status=200, content_type=ENROLL_CONTENT_TYPE)

    @app.get("/ca")
    def ca() -> Response:
        """The MDM CA in PEM, for tools that pin it."""
        return Response(mdm.ca_certificate_pem(), mimetype="application/x-pem-file")

    # -- MDM protocol ---------------------------------------------------------------------------
    @app.route("/checkin", methods=["PUT", "POST"])
    def checkin() -> Response:
        body = read_body()
        return _reply(mdm.checkin(body, request.headers.get("Mdm-Signature"), url_params=request.args))

    @app.route("/connect", methods=["PUT", "POST"])
    def connect() -> Response:
        body = read_body()
        return _reply(mdm.connect(body, request.headers.get("Mdm-Signature"), url_params=request.args))

    # -- command API ------------------------------------------------------------------------------
    # -- SCEP (RFC 8894): one URL, the operation in the query ------------------------------------------
    @app.route("/scep", methods=["GET", "POST"])
    def scep_operation() -> Response:
        operation = request.args.get("operation", "")
        if operation == "GetCACaps":
            return Response(mdm.scep.caps(), mimetype="text/plain")
        if operation == "GetCACert":
            return Response(mdm.scep.ca_certs(), headers={"Content-Type": RA_CONTENT_TYPE})
        if operation != "PKIOperation":
            return _text(400, "operation must be GetCACaps, GetCACert or PKIOperation")
        if request.method == "POST":
            body = read_body(scep.MAX_MESSAGE)
        else:
            body = _base64_message(request.args.get("message", ""))
        try:
            reply = mdm.scep.pki_operation(body)
        except scep.SCEPError as exc:  # nothing signed to answer to: no CertRep is possible
            return _text(400, f"not a SCEP pkiMessage: {exc.reason}")
        return Response(reply.der, headers={"Content-Type": PKI_CONTENT_TYPE})

    # -- ACME (RFC 8555 with device-attest-01): the directory, nonces, and one JWS POST per resource --------
    @app.get("/acme/directory")
    def acme_directory() -> Response:
        return _acme_response(mdm, ACMEReply(200, mdm.acme.directory()))

    @app.route("/acme/new-nonce", methods=["GET", "HEAD"])
    def acme_new_nonce() -> Response:
        return _acme_response(mdm, ACMEReply(200 if request.method == "HEAD" else 204, b"", "text/plain"))

    def acme_post(resource: str, object_id: str | None = None) -> Response:
        if (request.mimetype or "") != JOSE_CONTENT_TYPE:
            raise ACMEProblem("malformed", f"the Content-Type must be {JOSE_CONTENT_TYPE}", 415)
        body = read_body(MAX_ACME_BODY)
        return _acme_response(mdm, mdm.acme.post(resource, object_id, body, request.base_url))

    app.add_url_rule("/acme/new-account", "acme_new_account", lambda: acme_post("new-account"), methods=["POST"])
    app.add_url_rule("/acme/new-order", "acme_new_order", lambda: acme_post("new-order"), methods=["POST"])
    for resource in ("account", "order", "authz", "challenge", "certificate"):
        app.add_url_rule(f"/acme/{resource}/<object_id>", f"acme_{resource}",
                         lambda object_id, resource=resource: acme_post(resource, object_id), methods=["POST"])
    app.add_url_rule("/acme/order/<object_id>/finalize", "acme_finalize",
                     lambda object_id: acme_post("finalize", object_id), methods=["POST"])

    @app.post("/api/v1/scep/challenges")
    def post_scep_challenge() -> Response:
        """A one-time challenge for a tool (micromdm's scepclient, a test): valid an hour of world time."""
        try:
            return json_response(mdm.scep.challenge_request(read_json(allow_empty=True)), 201)
        except BodyError as exc:
            raise MDMError(400, exc.reason) from None
        except scep.SCEPError as exc:
            raise MDMError(400, exc.reason) from None

    @app.post("/api/v1/enrollment-profiles")
    def post_enrollment_profile() -> Response:
        """The signed profile a device installs to enroll without Setup Assistant (the controller's
        ``exportMobileConfig``); its identity binds to the first device that authenticates with it."""
        try:
            data: Any = read_json(allow_empty=True)
        except BodyError as exc:
            raise MDMError(400, exc.reason) from None
        return Response(mdm.profile_for_any_device(data), status=200, content_type=ENROLL_CONTENT_TYPE)

    @app.post("/api/v1/commands")
    def post_command() -> Response:
        try:
            data: Any = read_json()
        except BodyError as exc:
            raise MDMError(400, exc.reason) from None
        command_uuid = mdm.enqueue_request(data)
        return json_response({"command_uuid": command_uuid}, 201)

    @app.get("/api/v1/commands/<command_uuid>")
    def get_command(command_uuid: str) -> Response:
        status = mdm.command_status(command_uuid)
        if status is None:
            raise MDMError(404, f"no command {command_uuid}")
        return json_response(status)

    @app.get("/api/v1/devices")
    def get_devices() -> Response:
        return json_response({"devices": mdm.devices()})

    @app.get("/api/v1/devices/<udid>")
    def get_device(udid: str) -> Response:
        device = mdm.device(udid)
        if device is None:
            raise MDMError(404, f"no device {udid}")
        return json_response(device)

    @app.put("/api/v1/push-certificate")
    def put_push_certificate() -> Response:
        """The controller hands over the Apple-issued push certificate and its key (PEM)."""
        try:
            data: Any = read_json()
        except BodyError as exc:
            raise MDMError(400, exc.reason) from None
        return json_response(mdm.set_push_certificate_request(data))

    @app.get("/api/v1/push-certificate")
    def get_push_certificate() -> Response:
        info = mdm.push_certificate()
        if info is None:
            raise MDMError(404, f"no push certificate: pushes go out for topic {mdm.topic} without one")
        return json_response(info)

    @app.post("/api/v1/devices/<udid>/push")
    def push_device(udid: str) -> Response:
        outcome = mdm.push_now(udid)
        if outcome is None:
            raise MDMError(404, f"{udid} has no valid push token")
        return json_response({"status": outcome.status, "apns_id": outcome.apns_id, "reason": outcome.reason})

    return app
