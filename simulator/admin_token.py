"""The world's admin token: who must show it, how a request shows it, and how the world's own calls carry it.

When the world is served beyond the default loopback address (``mdmsim serve --host …``) the
surfaces that can rewrite the world (the simulation control, the MDM command API and the
controller: its Graph API *and* its dashboard pages) require the token printed at start,
``Authorization: Bearer <token>``. Both halves of that rule live here, so they cannot drift apart:
:class:`APITokenMiddleware` checks requests as they arrive, :func:`authorize` decides what the
world's own client sends (its parties call each other's admin APIs, in process, with the token).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl, urlencode

from werkzeug.http import parse_cookie

from mdm.platform.web import PARTY_ENVIRON_KEY

__all__ = ["APITokenMiddleware", "authorize", "stream_ticket", "ticket_matches", "PROTECTED", "COOKIE"]

#: Admin surfaces: the simulation's controls, the MDM command API, the controller, and Apple's portals
#: (Business Manager's API accounts hand out private keys; the portal renews DEP tokens).
PROTECTED = ("/_sim", "/mdm/api/", "/intune", "/apple/portal")
PUBLIC = ("/_sim/tls-ca.pem",)  # a CA certificate is public: it is downloaded before anyone can be trusted
GRAPH = ("/intune/deviceManagement", "/intune/webhooks")  # API callers: the header, never the cookie
COOKIE = "mdmsim_api_token"


def authorize(headers: dict[str, tuple[str, str]], token: str | None) -> None:
    """Give a request of the world to itself the world's token, unless it already names one.

    ``headers`` are the request's final headers by lower-case name, the client's defaults already
    merged under the caller's (:func:`simulator.in_process.merge_headers`), so an ``Authorization``
    given with the request wins, then one set on the client, then the world's token. Both ways a
    world calls itself in process (the shortcut and httpx's transport) come through here."""
    if token and "authorization" not in headers:
        headers["authorization"] = ("Authorization", f"Bearer {token}")


class APITokenMiddleware:
    """Requires the token on the protected surfaces once the world has one (it has none on loopback).

    A browser cannot send the header, so the dashboard accepts ``/intune/…?api_token=<token>`` once:
    it sets an HttpOnly, SameSite=Strict cookie scoped to ``/intune`` (or ``/apple/portal`` for
    Business Manager's pages) and redirects to the same page
    without the token in its address. Devices and Apple's device-facing endpoints stay open, as the
    real ones are. Compared in constant time.
    """

    def __init__(self, app: Callable, token: Callable[[], str | None]) -> None:
        self.app = app
        self.token = token

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(PROTECTED) and path not in PUBLIC:
            token = self.token()
            if token and not _allowed(environ, path, token):
                given = _query_value(environ, "api_token")
                if given is not None and _same(given, token) and _is_page(path):
                    return _enter_dashboard(environ, path, token, start_response)
                body = b'{"error":"this endpoint needs Authorization: Bearer <the token mdmsim serve printed>"}'
                environ[PARTY_ENVIRON_KEY] = "auth"
                start_response("401 UNAUTHORIZED", [("Content-Type", "application/json"),
                                                     ("Content-Length", str(len(body))),
                                                     ("WWW-Authenticate", 'Bearer realm="mdmsim"')])
                return [body]
        return self.app(environ, start_response)


#: Pages a browser opens (entered once with ``?api_token=``, then by cookie), by the cookie's path.
PAGES = ("/intune", "/apple/portal")


def _page_root(path: str) -> str | None:
    """The page area ``path`` is in (the cookie's path), or ``None`` for an API or anything else."""
    if path.startswith(GRAPH) or "/api/" in path:
        return None
    return next((root for root in PAGES if path == root or path.startswith(root + "/")), None)


def _is_page(path: str) -> bool:
    return _page_root(path) is not None


def _allowed(environ: dict, path: str, token: str) -> bool:
    """Whether a request shows the token: the header anywhere, or the dashboard's cookie on a page."""
    if _same(environ.get("HTTP_AUTHORIZATION", ""), f"Bearer {token}"):
        return True
    if _is_page(path):
        cookie = parse_cookie(environ.get("HTTP_COOKIE", "")).get(COOKIE, "")
        return _same(cookie, token)
    return False


def _enter_dashboard(environ: dict, path: str, token: str, start_response: Callable) -> Iterable[bytes]:
    kept = [(k, v) for k, v in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True) if k != "api_token"]
    location = path + ("?" + urlencode(kept) if kept else "")
    cookie = f"{COOKIE}={token}; Path={_page_root(path)}; HttpOnly; SameSite=Strict"
    if environ.get("wsgi.url_scheme") == "https":
        cookie += "; Secure"
    environ[PARTY_ENVIRON_KEY] = "auth"
    start_response("303 SEE OTHER", [("Location", location), ("Set-Cookie", cookie),
                                     ("Cache-Control", "no-store"), ("Content-Length", "0")])
    return [b""]


def stream_ticket(token: str) -> str:
    """What a browser shows to read the live device feed (``/sim-events?ticket=…``) once the world has a
    token: a page cannot send ``Authorization`` on an ``EventSource``, and the token itself must not
    appear in a URL. Derived from the token, so only someone who may read ``/_sim/`` (where the feed's
    URL is advertised) learns it, and a new token makes a new ticket."""
    return hmac.new(token.encode("utf-8", "surrogateescape"), b"mdmsim live feed", "sha256").hexdigest()[:32]


def ticket_matches(given: str, token: str | None) -> bool:
    """Whether ``given`` opens the live feed: anything does while the world has no token."""
    return not token or _same(given, stream_ticket(token))


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of secrets (the length may leak; the content does not)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


def _query_value(environ: dict, name: str) -> str | None:
    for key, value in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True):
        if key == name:
            return value
    return None
