"""HTTP conventions every party's ``http`` layer shares: one app factory, bounded bodies, endpoint names.

This is the one module of ``mdm.protocol`` that knows Flask. It holds no rules of any party: only the
plumbing that would otherwise be copied into each of them: the request-size bound (413, never a
read of an unbounded body), endpoint names in depsim's vocabulary (``post_devices_sync``) that the
world's traffic counters and fault scripts key on, and a hook the composition root uses to inject
faults and latency without the party knowing.
"""

from __future__ import annotations

import functools
import io
import json
import re
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wsgi import get_content_length

__all__ = [
    "DEFAULT_MAX_BODY",
    "ENDPOINT_ENVIRON_KEY",
    "BodyError",
    "BeforeHook",
    "FaultTaker",
    "fault_hook",
    "create_party_app",
    "endpoint_name",
    "json_response",
    "read_body",
    "read_json",
]

DEFAULT_MAX_BODY = 1_048_576
ENDPOINT_ENVIRON_KEY = "mdmsim.endpoint"
PARTY_ENVIRON_KEY = "mdmsim.party"

# (party, endpoint) -> a response that replaces the real one (a scripted fault), or None.
BeforeHook = Callable[[str, str], Response | None]

#: ``(party, endpoint) → (scripted response's name or None, latency in ms)``: a world's fault book.
FaultTaker = Callable[[str, str], "tuple[str | None, int]"]


def fault_hook(take: FaultTaker, reply: Callable[[str], Response | None]) -> BeforeHook:
    """A party's ``before`` hook from a fault book: wait the scripted latency, then answer the
    scripted response by name (``reply`` renders it in the party's own format; ``None`` for a name the
    party does not know, which lets the request through)."""

    def before(party: str, endpoint: str) -> Response | None:
        name, latency_ms = take(party, endpoint)
        if latency_ms:
            time.sleep(latency_ms / 1000.0)  # wall-clock latency is the point of this fault
        return None if name is None else reply(name)

    return before


_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


class BodyError(ValueError):
    """The request body could not be read as what the endpoint expects."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@functools.lru_cache(maxsize=4096)
def endpoint_name(method: str, rule: str) -> str:
    """``POST /devices/sync`` → ``post_devices_sync``: depsim's names, used for traffic and faults.

    Memoised: every request asks for the name of one of a few hundred (method, rule) pairs."""
    path = _PARAM.sub(r"\1", rule).strip("/").replace("/", "_").replace("-", "_").replace(".", "_")
    # A Graph function answers as ``name`` and ``name()``: one endpoint; ``$count`` counts as ``count``.
    path = path.replace("()", "").replace("$", "")
    return f"{method.lower()}_{path}" if path else f"{method.lower()}_root"


def create_party_app(
    party: str,
    import_name: str,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    before: BeforeHook | None = None,
    text_errors: bool = True,
) -> Flask:
    """A Flask app for one party, with the conventions above installed.

    ``before`` is called with ``(party, endpoint)`` ahead of every matched request; when it returns a
    response, that response is sent instead (how ``/_sim/faults`` scripts Apple's errors).
    """
    app = Flask(import_name)
    app.config["MAX_CONTENT_LENGTH"] = max_body
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.compact = True  # type: ignore[attr-defined]

    @app.before_request
    def _name_endpoint() -> Response | None:
        rule = request.url_rule.rule if request.url_rule is not None else None
        name = endpoint_name(request.method, rule) if rule is not None else "unmatched"
        request.environ[ENDPOINT_ENVIRON_KEY] = name
        request.environ[PARTY_ENVIRON_KEY] = party
        if request.content_length is not None and request.content_length > max_body:
            raise RequestEntityTooLarge()
        if request.content_length is None and request.environ.get("wsgi.input_terminated"):
            _buffer_streamed_body(request.environ, max_body)
        if before is not None and rule is not None:
            return before(party, name)
        return None

    if text_errors:

        @app.errorhandler(HTTPException)
        def _http_error(error: HTTPException) -> Response:
            # Apple's services answer errors with short strings, never HTML pages.
            code = error.code or 500
            body = (error.name or "ERROR").upper().replace(" ", "_")
            return Response(body, status=code, mimetype="text/plain")

    return app


def _buffer_streamed_body(environ: dict[str, Any], bound: int) -> None:
    """A body without Content-Length (chunked): read it now, one byte past the bound, and hand it on
    with its length, so every parser downstream (JSON, plists, forms) sees a sized body.

    Werkzeug caps such a stream at ``MAX_CONTENT_LENGTH`` and a capped read ends quietly at the cap,
    so bound+1 bytes were silently truncated to ``bound`` and accepted (fuzz finding): 413 instead.
    """
    data = _read_upto(environ["wsgi.input"], bound + 1)
    if len(data) > bound:
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    environ.pop("HTTP_TRANSFER_ENCODING", None)  # no longer chunked: Werkzeug ignores a length beside it
    environ["wsgi.input_terminated"] = False


def read_body(limit: int | None = None) -> bytes:
    """The raw request body, refusing (413) anything over ``limit`` even without a Content-Length."""
    bound = limit if limit is not None else _current_limit()
    length = get_content_length(request.environ)  # fresh: _buffer_streamed_body may have set it
    if length is not None and length > bound:
        raise RequestEntityTooLarge()
    # Read what was announced (a sized read; ``stream.read(bound + 1)`` made Werkzeug allocate and
    # copy a bound-sized buffer, a megabyte, on every request), or up to one byte past the bound.
    data = _read_upto(request.stream, length if length is not None else bound + 1)
    if len(data) > bound:
        raise RequestEntityTooLarge()
    return data


def _read_upto(stream: Any, size: int) -> bytes:
    """Up to ``size`` bytes: a socket or dechunking stream may hand them over in pieces. Each read
    asks for at most 64 KB: a raw stream's ``read(n)`` allocates ``n`` bytes before it reads any."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        piece = stream.read(min(size - got, 65_536))
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


def _current_limit() -> int:
    from flask import current_app

    return int(current_app.config.get("MAX_CONTENT_LENGTH") or DEFAULT_MAX_BODY)


def read_json(limit: int | None = None, *, allow_empty: bool = False) -> Any:
    """Decode the body as JSON (any content type, as Apple's service is lenient); BodyError otherwise."""
    data = read_body(limit)
    if not data.strip():
        if allow_empty:
            return None
        raise BodyError("the request body is empty")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BodyError(f"the request body is not JSON: {exc}") from None


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise compactly; a pre-encoded ``bytes`` value is sent as it is (hot paths build their own)."""
    body = value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":"))
    response = Response(body, status=status, mimetype="application/json")
    for key, val in (headers or {}).items():
        response.headers[key] = val
    return response
