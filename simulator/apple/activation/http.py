"""``/apple/activation``: the cloud-configuration request, the published device CA, and Managed Device
Attestation (Apple's Enterprise Attestation CA: its root, and attestations of Secure Enclave keys)."""

from __future__ import annotations

from flask import Flask, Response

from mdm.platform.web import BeforeHook, BodyError, create_party_app, json_response, read_body, read_json

from .attestation import AttestationRefused
from .service import ActivationError, ActivationService

__all__ = ["create_app"]


def create_app(activation: ActivationService, *, before: BeforeHook | None = None) -> Flask:
    """The activation party's Flask app (the world mounts it at ``/apple/activation``)."""
    app = create_party_app("activation", __name__, max_body=16_384, before=before)

    @app.errorhandler(ActivationError)
    def _refused(error: ActivationError) -> Response:
        return Response(error.reason, status=400, mimetype="text/plain")

    @app.errorhandler(AttestationRefused)
    def _not_attested(error: AttestationRefused) -> Response:
        return Response(error.reason, status=400, mimetype="text/plain")

    @app.errorhandler(BodyError)
    def _bad_body(_: BodyError) -> Response:
        return Response("MALFORMED_REQUEST_BODY", status=400, mimetype="text/plain")

    @app.post("/profile")
    def profile() -> Response:
        return json_response(activation.request_profile_configuration(read_json()))

    @app.get("/device-ca.pem")
    def device_ca() -> Response:
        return Response(activation.device_ca_certificate_pem(), mimetype="application/x-pem-file")

    @app.get("/attestation-root.pem")
    def attestation_root() -> Response:
        """The Enterprise Attestation root: what an ACME server trusts for device-attest-01."""
        return Response(activation.attestation.root_pem(), mimetype="application/x-pem-file")

    @app.post("/attestation")
    def attestation() -> Response:
        """A device's signed request for an attestation of its new Secure Enclave key."""
        return json_response(activation.attestation.attest_request(read_body()))

    return app
