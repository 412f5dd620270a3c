"""Apple's push gateway URLs (mounted at ``/apple/apns``) and the delivery endpoint for simulated devices.

Waiting (long poll, server-sent events) polls the store every 50 ms against a deadline; no store
transaction or lock is held while waiting, so one slow device never blocks pushes to others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from flask import Flask, Response, request, stream_with_context
from werkzeug.exceptions import HTTPException

from mdm.platform.web import BeforeHook, create_party_app, json_response, read_body

from .service import MAX_TOPIC, APNsService, valid_token

__all__ = ["create_app", "POLL_INTERVAL_S", "MAX_LONG_POLL_S", "MAX_STREAM_S"]

POLL_INTERVAL_S = 0.05
MAX_LONG_POLL_S = 30.0
DEFAULT_STREAM_S = 300.0
MAX_STREAM_S = 3600.0
KEEPALIVE_S = 15.0


def _reason(status: int, reason: str) -> Response:
    return json_response({"reason": reason}, status)


def create_app(apns: APNsService, *, before: BeforeHook | None = None) -> Flask:
    app = create_party_app("apns", __name__, before=before, max_body=64 * 1024, text_errors=False)

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
        body = read_body(64 * 1024)
        result = apns.send(token, body, dict(request.headers))
        if result.status == 200:
            return Response(b"", status=200, headers={"apns-id": result.apns_id or ""})
        response = json_response(result.body(), result.status)
        return response

    @app.post("/devices/<token>/unregister")
    def unregister(token: str) -> Response:
        if not valid_token(token):
            return _reason(400, "BadDeviceToken")
        apns.unregister(token)
        return json_response({"token": token.lower(), "unregistered": True})

    @app.post("/devices/<token>/register")
    def register(token: str) -> Response:
        """A device (re)registers its token; optional JSON ``{"topic": …}`` binds the token to the topic
        it was made for (without it, APNs learns the topic from the first accepted push)."""
        if not valid_token(token):
            return _reason(400, "BadDeviceToken")
        raw = read_body(4096)
        topic = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except (UnicodeDecodeError, ValueError, RecursionError):
                return _reason(400, "BadPayload")
            topic = body.get("topic") if isinstance(body, dict) else None
            if topic is not None and (not isinstance(topic, str) or not 0 < len(topic) <= MAX_TOPIC):
                return _reason(400, "BadTopic")
        apns.register(token, topic)
        return json_response(
            {"token": token.lower(), "unregistered": False, "topic": apns.token_topic(token)}
        )

    @app.get("/stats")
    def stats() -> Response:
        token = request.args.get("token")
        return json_response(apns.stats(token))

    @app.get("/events")
    def events() -> Response:
        token = request.args.get("token", "")
        if not valid_token(token):
            return _reason(400, "BadDeviceToken")
        stream = "text/event-stream" in request.headers.get("Accept", "")
        try:
            wait = float(request.args.get("wait", DEFAULT_STREAM_S if stream else 0))
        except ValueError:
            return _reason(400, "BadWait")
        if wait != wait or wait < 0:
            return _reason(400, "BadWait")
        if stream:
            return Response(
                stream_with_context(_sse(apns, token, min(wait, MAX_STREAM_S))),
                mimetype="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        deadline = time.monotonic() + min(wait, MAX_LONG_POLL_S)
        while True:
            notifications = apns.take(token)
            if notifications or time.monotonic() >= deadline:
                return json_response({"notifications": notifications})
            time.sleep(min(POLL_INTERVAL_S, max(deadline - time.monotonic(), 0)))

    return app


def _sse(apns: APNsService, token: str, duration: float) -> Iterator[bytes]:
    """Server-sent events: one ``data:`` line per push, comments as keep-alives, closed after
    ``duration`` seconds (EventSource clients reconnect by themselves)."""
    deadline = time.monotonic() + duration
    last_write = time.monotonic()
    yield b": connected\n\n"
    while True:
        for notification in apns.take(token):
            yield f"id: {notification['apns_id']}\ndata: {json.dumps(notification)}\n\n".encode()
            last_write = time.monotonic()
        now = time.monotonic()
        if now >= deadline:
            return
        if now - last_write >= KEEPALIVE_S:
            yield b": keepalive\n\n"
            last_write = now
        time.sleep(min(POLL_INTERVAL_S, max(deadline - now, 0)))
