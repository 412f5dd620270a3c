"""The Push Certificates Portal over HTTP (mounted at ``/apple/portal/push-certificates``).

JSON for scripts under ``/api/…`` (errors ``{"error": "..."}``), and one page at ``/`` where a person
uploads a CSR and downloads the certificate, as on Apple's portal. Handlers only parse and render;
the rules are :class:`~simulator.apple.pushcert.service.PushCertificateService`'s.

Routes:

* ``GET /api/certificates[?apple_id=]`` — list (apple_id, topic, serial, not_after, status …)
* ``POST /api/certificates`` — ``{"apple_id", "csr": PEM}`` (or multipart ``apple_id`` + ``csr`` file)
  → 201 the record plus ``certificate`` (PEM), with a **new topic**
* ``GET /api/certificates/<id>`` — one record; ``GET /api/certificates/<id>.pem`` — download
* ``POST /api/certificates/<id>/renew`` — same body as create; same topic, new certificate
* ``POST /api/certificates/<id>/revoke``
* ``GET /api/ca.pem`` — the issuing CA
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from mdm.platform.web import BeforeHook, create_party_app, json_response, read_body

from .service import MAX_CSR_BYTES, PushCertError, PushCertificateService

__all__ = ["create_app"]

PEM_TYPE = "application/x-pem-file"
NOTICES = {
    "created": "Certificate created. Download it and upload it to your MDM server.",
    "renewed": "Certificate renewed: same topic, new expiry. Download it and upload it to your MDM server.",
    "revoked": "Certificate revoked. Devices can no longer be woken with it.",
}


def _error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def _request_fields() -> tuple[Any, Any]:
    """``(apple_id, csr)`` from a JSON body, or from a form with a ``csr`` file or text field."""
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        upload = request.files.get("csr") or request.files.get("csr_file")
        csr: Any = upload.read(MAX_CSR_BYTES + 1) if upload is not None and upload.filename else None
        if not csr:
            csr = request.form.get("csr") or request.form.get("csr_text")
        return request.form.get("apple_id"), csr
    raw = read_body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PushCertError(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise PushCertError(400, 'the request body must be a JSON object {"apple_id", "csr"}')
    return body.get("apple_id"), body.get("csr")


def _form_value(name: str) -> str | None:
    """A form field for re-filling the page, or None when the body itself was the error.

    The error page is also rendered for 413 and for truncated bodies; reading the form there again
    raised inside the error handler, which made a 500 (fuzz finding).
    """
    try:
        return request.form.get(name)
    except HTTPException:
        return None


def create_app(service: PushCertificateService, *, before: BeforeHook | None = None) -> Flask:
    app = create_party_app("pushcert", __name__, before=before, text_errors=False)

    @app.errorhandler(PushCertError)
    def _refused(error: PushCertError) -> Response:
        if request.path.startswith("/api/"):
            return _error(error.status, error.message)
        return _page(error=error.message, status=error.status)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        code = error.code or 500
        message = {413: "the upload is too large"}.get(code, error.description or error.name)
        if request.path.startswith("/api/"):
            return _error(code, message)
        return _page(error=message, status=code)

    def _page(*, error: str | None = None, status: int = 200) -> Response:
        apple_id = request.args.get("apple_id") or None
        html = render_template(
            "pushcert_page.html",
            certificates=service.list(apple_id),
            apple_id=apple_id or _form_value("apple_id") or "",
            notice=NOTICES.get(request.args.get("notice", "")),
            highlight=request.args.get("id"),
            error=error,
        )
        return Response(html, status=status, mimetype="text/html")

    # -- the page ---------------------------------------------------------------------------------
    @app.get("/")
    def page() -> Response:
        return _page()

    @app.post("/")
    def page_create() -> Response:
        apple_id, csr = _request_fields()
        record = service.create(apple_id, csr)
        return redirect(url_for("page", notice="created", id=record["id"]), 303)

    @app.post("/<cert_id>/renew")
    def page_renew(cert_id: str) -> Response:
        apple_id, csr = _request_fields()
        record = service.renew(cert_id, apple_id, csr)
        return redirect(url_for("page", notice="renewed", id=record["id"]), 303)

    @app.post("/<cert_id>/revoke")
    def page_revoke(cert_id: str) -> Response:
        service.revoke(cert_id)
        return redirect(url_for("page", notice="revoked", id=cert_id), 303)

    # -- JSON API ---------------------------------------------------------------------------------
    @app.get("/api/certificates")
    def list_certificates() -> Response:
        return json_response({"certificates": service.list(request.args.get("apple_id"))})

    @app.post("/api/certificates")
    def create_certificate() -> Response:
        apple_id, csr = _request_fields()
        return json_response(service.create(apple_id, csr), 201)

    @app.get("/api/certificates/<cert_id>.pem")
    def download(cert_id: str) -> Response:
        pem = service.pem(cert_id)
        return Response(
            pem,
            mimetype=PEM_TYPE,
            headers={"Content-Disposition": f'attachment; filename="MDM_Certificate_{cert_id[:8]}.pem"'},
        )

    @app.get("/api/certificates/<cert_id>")
    def get_certificate(cert_id: str) -> Response:
        return json_response(service.get(cert_id))

    @app.post("/api/certificates/<cert_id>/renew")
    def renew_certificate(cert_id: str) -> Response:
        apple_id, csr = _request_fields()
        return json_response(service.renew(cert_id, apple_id, csr), 201)

    @app.post("/api/certificates/<cert_id>/revoke")
    def revoke_certificate(cert_id: str) -> Response:
        return json_response(service.revoke(cert_id))

    @app.get("/api/ca.pem")
    def ca() -> Response:
        return Response(service.ca_certificate_pem(), mimetype=PEM_TYPE)

    return app
