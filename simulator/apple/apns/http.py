"""Apple's push gateway URLs (mounted at ``/apple/apns``) and the delivery endpoint for simulated devices.

Handlers parse and render only: every rule (token and topic checks, how long a device may wait, the
wait itself) is :class:`~simulator.apple.apns.service.APNsService`'s, so another server (an HTTP/2 one)
can put the same URLs on the same service. Refusals are ``{"reason": …}`` in Apple's shape, never an
HTML page.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Flask, Response, request, stream_with_context
from werkzeug.exceptions import HTTPException

from mdm.platform.web import BeforeHook, create_party_app, json_response, read_body

from .service import MAX_LONG_POLL_S, MAX_STREAM_S, POLL_INTERVAL_S, APNsError, APNsService

__all__ = ["create_app", "POLL_INTERVAL_S", "MAX_LONG_POLL_S", "MAX_STREAM_S"]

#: A comment line on an idle event stream this often, so proxies and clients keep it open.
KEEPALIVE_S = 15.0


def _reason(status: int, reason: str) -> Response:
    return json_response({"reason": reason}, status)


def _seconds(text: str | None) -> float | None:
    """A ``wait`` query parameter: ``None`` when absent, NaN when not a number (the service refuses it)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return float("nan")


def create_app(apns: APNsService, *, before: BeforeHook | None = None) -> Flask:
    app = create_party_app("apns", __name__, before=before, max_body=64 * 1024, text_errors=False)

    @app.errorhandler(APNsError)
    def _refused(error: APNsError) -> Response:
        return _reason(error.status, error.reason)

    @app.errorhandler(405)
    def _method(_: Exception) -> Response:
        return _reason(405, "MethodNotAllowed")

    @app.errorhandler(404)
    def _path(_: Exception) -> Response:
        return _reason(404, "BadPath")

    @app.errorhandler(413)
    def _large(_: Exception) -> Response:
        return _reason(413, "PayloadTooLarge")

    @app.errorhandler(HTTPException)
    def _other(error: HTTPException) -> Response:
        # Anything else Werkzeug refuses (a body shorter than its Content-Length, say) is still
        # answered in APNs' shape, never an HTML page (fuzz finding).
        return _reason(error.code or 400, "BadRequest")

    @app.post("/3/device/<token>")
    def post_device(token: str) -> Response:
        result = apns.send(token, read_body(64 * 1024), dict(request.headers),
                           stand_in=not _over_a_socket(request.environ))  # fmt: skip
        if result.status == 200:
            return Response(b"", status=200, headers={"apns-id": result.apns_id or ""})
        return json_response(result.body(), result.status)

    @app.post("/devices/<token>/unregister")
    def unregister(token: str) -> Response:
        return json_response(apns.unregister_device(token))

    @app.post("/devices/<token>/register")
    def register(token: str) -> Response:
        return json_response(apns.register_device(token, read_body(4096)))

    @app.get("/stats")
    def stats() -> Response:
        return json_response(apns.stats(request.args.get("token")))

    @app.get("/events")
    def events() -> Response:
        token = request.args.get("token", "")
        wait = _seconds(request.args.get("wait"))
        if "text/event-stream" in request.headers.get("Accept", ""):
            duration = apns.stream_duration(token, wait)
            return Response(
                stream_with_context(_sse(apns.watch(token, duration, idle_s=KEEPALIVE_S))),
                mimetype="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return json_response({"notifications": apns.wait_for_notifications(token, wait)})

    return app


def _over_a_socket(environ: dict) -> bool:
    """Whether the request came over a real connection (gunicorn or werkzeug's server), not from an
    in-process caller (the world's own client, a test client)."""
    return "gunicorn.socket" in environ or "werkzeug.socket" in environ


def _sse(batches: Iterator[list[dict]]) -> Iterator[bytes]:
    """Server-sent events: one ``data:`` line per push, a comment for each idle spell, closed when
    the service's stream ends (EventSource clients reconnect by themselves)."""
    yield b": connected\n\n"
    for batch in batches:
        if not batch:
            yield b": keepalive\n\n"
        for notification in batch:
            yield f"id: {notification['apns_id']}\ndata: {json.dumps(notification)}\n\n".encode()
