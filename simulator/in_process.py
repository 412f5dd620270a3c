"""The world's HTTP client: parties call each other over HTTP, in process while the world is not served.

Parties "talk only over HTTP" (DESIGN rule 1), yet a test's world has no sockets: a request for the
world's own URL becomes a WSGI call of the world's app in the same thread, anything else goes over
the network (the controller pointed at an external DEP service, the MDM server at an external APNs).

There is exactly one in-process call, :func:`call_world`: it applies the admin-token rule
(:func:`simulator.admin_token.authorize`), builds the WSGI environ a server would and runs the app.
Two doors lead to it. httpx's own (:class:`WorldTransport`) serves every request shape. The
shortcut (:meth:`WorldClient.request`) serves the plain ones, only ``content``/``json``/``headers``
for the world's own address, without building httpx's request models: parties call each other on
every device exchange (the MDM server's pushes and webhooks are three calls per enrolled device),
and httpx spent ~150 µs per call on its models around a WSGI call that costs ~85 µs itself (an
in-process call: ~240 µs through httpx, ~105 µs through the shortcut). Both doors merge the
client's default headers under the caller's with :func:`merge_headers`, so what the world receives
cannot depend on the door.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx

from . import exchanges
from .admin_token import authorize

__all__ = ["IN_PROCESS_URL", "WorldAddress", "WorldClient", "WorldTransport", "merge_headers", "call_world"]

IN_PROCESS_HOST = "mdmsim.invalid"
IN_PROCESS_URL = f"http://{IN_PROCESS_HOST}"
_ZERO = timedelta(0)
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_dumps = json.JSONEncoder(separators=(",", ":")).encode

Headers = dict[str, tuple[str, str]]  # a request's final headers: lower-case name -> (name as sent, value)
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WorldAddress:
    """Where the world is for its own client: its WSGI app, its base URL and its admin token.

    Each is read on every call through a function, because each changes under the client: the app
    is built after the client (seeding already calls over HTTP), the URL changes when the world is
    served or stops, and the token is set by ``mdmsim serve``."""

    def __init__(self, app: Callable[[], WSGIApp], url: Callable[[], str], token: Callable[[], str | None]) -> None:
        self.app = app
        self.url = url
        self.token = token
        self._own: tuple[str, tuple[str, int | None]] | None = None

    def target(self, url: str) -> tuple[str, str, str, str] | None:
        """``(scheme, host, port, path?query)`` when the string ``url`` names this world; None otherwise."""
        if url.startswith("/"):
            return "http", IN_PROCESS_HOST, "80", url
        for base in (IN_PROCESS_URL, self.url()):
            if url.startswith(base) and url[len(base):len(base) + 1] in ("/", "?", ""):
                scheme, _, authority = base.partition("://")
                host, _, port = authority.partition(":")
                return scheme, host, port or _DEFAULT_PORTS.get(scheme, "80"), url[len(base):] or "/"
        return None

    def owns(self, url: httpx.URL) -> bool:
        """Whether an httpx URL is this world's: the in-process host, or the host and port it is served on."""
        return url.host == IN_PROCESS_HOST or (url.host, url.port) == self._own_address()

    def _own_address(self) -> tuple[str, int | None]:
        """The world's (host, port), parsed again only when its URL changes (serve, stop)."""
        url = self.url()
        cached = self._own
        if cached is None or cached[0] != url:
            parsed = httpx.URL(url)
            cached = self._own = (url, (parsed.host, parsed.port))
        return cached[1]


def merge_headers(defaults: httpx.Headers, given: Mapping[str, str] | None) -> Headers:
    """A request's headers: the client's defaults, each replaced by the caller's header of the same
    name (in any case), which then comes last, as httpx's own ``Client._merge_headers`` orders them.

    Both doors use it: the shortcut directly, httpx through :meth:`WorldClient._merge_headers`. A
    plain ``dict`` by lower-case name instead of :class:`httpx.Headers`, whose lookups cost ~3 µs
    each (a ``KeyError`` raised and caught inside); this is the hot path of every in-process call."""
    merged = {raw_name.decode("latin-1").lower(): (raw_name.decode("latin-1"), raw_value.decode("latin-1"))
              for raw_name, raw_value in defaults.raw}
    if given:
        for name, value in given.items():
            lowered = name.lower()
            merged.pop(lowered, None)
            merged[lowered] = (name, value)
    return merged


def _plain(headers: Any) -> bool:
    """Headers :func:`merge_headers` takes: none, or a ``dict`` of ``str`` to ``str``."""
    return headers is None or (isinstance(headers, dict)
                               and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()))


def call_world(address: WorldAddress, method: str, scheme: str, host: str, port: str, target: str,
               headers: Headers, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """THE in-process HTTP call: the world's token (unless the headers name one), the WSGI environ a
    server would build (PEP 3333: ``PATH_INFO`` percent-decoded as latin-1), the app, the whole body.

    ``target`` is the path and query as sent (percent-encoded), ``headers`` the request's final
    headers by lower-case name."""
    authorize(headers, address.token())
    path, _, query = target.partition("#")[0].partition("?")
    environ: dict[str, Any] = {
        "wsgi.version": (1, 0), "wsgi.url_scheme": scheme, "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        "wsgi.input": io.BytesIO(body),
        "REQUEST_METHOD": method, "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1") if "%" in path else path,
        "QUERY_STRING": query, "SERVER_NAME": host, "SERVER_PORT": port,
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": host if port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}",
    }  # fmt: skip
    for lowered, (_, value) in headers.items():
        key = lowered.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    frame = exchanges.current()
    if frame is not None:  # a device's exchange is being recorded: this call is part of it
        url = f"{scheme}://{environ['HTTP_HOST']}{target}"
        with exchanges.serving(frame, method, url, target, headers.values(), body) as call:
            answer = _run(address, environ)
            call.answer(answer[0], answer[1], answer[2])
        return answer
    return _run(address, environ)


def _run(address: WorldAddress, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """The world's app on ``environ``: status, headers and the whole body."""
    seen: list[Any] = []

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen[:] = [status, response_headers, exc_info]
        return lambda _data: None

    result = address.app()(environ, start_response)
    try:
        payload = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, response_headers, exc_info = seen
    if exc_info and exc_info[0]:
        raise exc_info[1]  # as httpx.WSGITransport does: an app's own error is the caller's error
    return int(status.split(" ", 1)[0]), response_headers, payload


class WorldClient(httpx.Client):
    """The world's shared client: httpx's API, with a shortcut for plain requests to the world itself.

    A request with only ``content``/``json``/``headers`` (a ``dict``) for this world's own address
    skips httpx's request models and goes straight to :func:`call_world`, coming back as an
    :class:`httpx.Response`; anything else (params, auth, files, another host) takes httpx's full
    path unchanged, which reaches :func:`call_world` through :class:`WorldTransport`.
    """

    def __init__(self, address: WorldAddress, **kwargs: Any) -> None:
        super().__init__(transport=WorldTransport(address), **kwargs)
        self._address = address

    def _merge_headers(self, headers: Any = None) -> Any:
        """httpx's hook for a request's headers: the shortcut's merge, for the headers it takes."""
        if _plain(headers):
            return list(merge_headers(self.headers, headers).values())
        return super()._merge_headers(headers)

    def request(self, method: str, url: httpx.URL | str, *, content: Any = None, data: Any = None,
                files: Any = None, json: Any = None, params: Any = None, headers: Any = None,
                cookies: Any = None, auth: Any = httpx.USE_CLIENT_DEFAULT,
                follow_redirects: Any = httpx.USE_CLIENT_DEFAULT, timeout: Any = httpx.USE_CLIENT_DEFAULT,
                extensions: Any = None) -> httpx.Response:
        own = None
        if (isinstance(url, str) and data is None and files is None and params is None and cookies is None
                and auth is httpx.USE_CLIENT_DEFAULT and extensions is None
                and (content is None or isinstance(content, bytes))
                and _plain(headers)):
            own = self._address.target(url)
        if own is None:
            return super().request(method, url, content=content, data=data, files=files, json=json,
                                   params=params, headers=headers, cookies=cookies, auth=auth,
                                   follow_redirects=follow_redirects, timeout=timeout, extensions=extensions)
        return self._shortcut(method.upper(), url, own, content, json, headers)

    def _shortcut(self, method: str, url: str, own: tuple[str, str, str, str], content: bytes | None,
                  json_body: Any, headers: dict[str, str] | None) -> httpx.Response:
        scheme, host, port, target = own
        merged = merge_headers(self.headers, headers)
        body = content or b""
        if json_body is not None and content is None:  # as httpx encodes a request: given headers win
            body = _dumps(json_body).encode()
            if "content-type" not in merged:
                merged["content-type"] = ("Content-Type", "application/json")
        if (body or method in ("POST", "PUT", "PATCH")) and "content-length" not in merged:
            merged["content-length"] = ("Content-Length", str(len(body)))
        status, response_headers, payload = call_world(self._address, method, scheme, host, port, target, merged, body)
        response = _InProcessResponse(status, headers=response_headers, content=payload)
        response._lazy_request = (method, url if not url.startswith("/") else IN_PROCESS_URL + url)
        response.elapsed = _ZERO
        return response


class _InProcessResponse(httpx.Response):
    """A response whose :attr:`request` is built only if someone asks (it costs a URL parse)."""

    _lazy_request: tuple[str, str] = ("GET", IN_PROCESS_URL)

    @property  # type: ignore[override]
    def request(self) -> httpx.Request:
        if self._request is None:
            self._request = httpx.Request(*self._lazy_request)
        return self._request

    @request.setter
    def request(self, value: httpx.Request) -> None:
        self._request = value

    def raise_for_status(self) -> httpx.Response:
        self.request  # noqa: B018 - built now, so httpx's check finds it
        return super().raise_for_status()


class WorldTransport(httpx.BaseTransport):
    """httpx's door: requests for this world's own URL go to :func:`call_world`; anything else over the network."""

    def __init__(self, address: WorldAddress) -> None:
        self._address = address
        self._network: httpx.HTTPTransport | None = None  # made on first use: its TLS setup costs ~50 ms

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if self._address.owns(url):
            body = request.read()
            port = str(url.port) if url.port is not None else _DEFAULT_PORTS.get(url.scheme, "80")
            headers = {raw_name.decode("latin-1").lower(): (raw_name.decode("latin-1"), raw_value.decode("latin-1"))
                       for raw_name, raw_value in request.headers.raw}  # a repeated name: the last value, as in an environ
            status, response_headers, payload = call_world(self._address, request.method, url.scheme, url.host, port,
                                                           url.raw_path.decode("ascii"), headers, body)
            return httpx.Response(status, headers=response_headers, stream=httpx.ByteStream(payload))
        if self._network is None:
            self._network = httpx.HTTPTransport()
        return self._network.handle_request(request)

    def close(self) -> None:
        if self._network is not None:
            self._network.close()
