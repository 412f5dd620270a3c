"""The world's client: two doors (the shortcut and httpx's transport) into one in-process call.

Whatever door a request takes, the world must receive the same request: the same headers (the
caller's over the client's defaults), the same token decision, the same path and body.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from simulator.in_process import IN_PROCESS_URL, WorldAddress, WorldClient, merge_headers

_COMPARED = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT", "CONTENT_TYPE", "CONTENT_LENGTH")


class _Echo:
    """A WSGI app that answers with what it was given."""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen = {k: v for k, v in environ.items() if k.startswith("HTTP_") or k in _COMPARED}
        seen["body"] = environ["wsgi.input"].read().decode("latin-1")
        body = json.dumps(seen).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def _client(token: str | None = None, url: str = IN_PROCESS_URL, **kwargs: Any) -> WorldClient:
    address = WorldAddress(app=lambda: _Echo(), url=lambda: url, token=lambda: token)
    return WorldClient(address, base_url=IN_PROCESS_URL, **kwargs)


def _both_doors(client: WorldClient, method: str, url: str, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the app saw through the shortcut, and through httpx's own path (``extensions`` forces it)."""
    shortcut = client.request(method, url, **kwargs)
    transport = client.request(method, url, extensions={}, **kwargs)
    assert shortcut.status_code == transport.status_code == 200
    return shortcut.json(), transport.json()


@pytest.mark.parametrize(("defaults", "given", "token", "expected"), [
    ({}, None, None, None),
    ({}, None, "t0ken", "Bearer t0ken"),  # the world's token on a call to itself
    ({}, {"Authorization": "Bearer mine"}, "t0ken", "Bearer mine"),  # the caller's wins
    ({"Authorization": "Bearer client"}, None, "t0ken", "Bearer client"),  # then the client's default
    ({"Authorization": "Bearer client"}, {"authorization": "Bearer mine"}, "t0ken", "Bearer mine"),
], ids=["no-token", "world-token", "caller-wins", "client-default-wins", "caller-over-client"])
def test_both_doors_decide_the_token_alike(defaults: dict[str, str], given: dict[str, str] | None,
                                           token: str | None, expected: str | None) -> None:
    with _client(token, headers=defaults) as client:
        shortcut, transport = _both_doors(client, "GET", "/_sim/traffic", headers=given)
    assert shortcut.get("HTTP_AUTHORIZATION") == transport.get("HTTP_AUTHORIZATION") == expected


def test_both_doors_send_the_same_request() -> None:
    with _client(headers={"X-Default": "from-client", "User-Agent": "client-agent"}) as client:
        for method, url, kwargs in [
            ("GET", "/apple/dep/devices/C02%C3%A9?x=1&y=%20", {"headers": {"x-default": "from-call"}}),
            ("POST", "/mdm/checkin", {"content": b"<plist/>", "headers": {"Content-Type": "application/x-apple-aspen-mdm"}}),
            ("PUT", f"{IN_PROCESS_URL}/intune/x", {"json": {"a": [1, "b"]}}),
            ("POST", "/_sim/reset", {}),
            ("DELETE", "/_sim/faults", {"headers": {"User-Agent": "caller-agent"}}),
        ]:
            shortcut, transport = _both_doors(client, method, url, **kwargs)
            assert shortcut == transport, (method, url)
    assert shortcut["HTTP_USER_AGENT"] == "caller-agent"


def test_a_path_reaches_the_app_as_pep_3333_says() -> None:
    """``PATH_INFO`` is percent-decoded to bytes shown as latin-1; the query stays as sent."""
    with _client() as client:
        shortcut, transport = _both_doors(client, "GET", "/apple/dep/devices/C02%C3%A9?x=%20")
    assert shortcut["PATH_INFO"] == transport["PATH_INFO"] == "/apple/dep/devices/C02\u00c3\u00a9"
    assert shortcut["QUERY_STRING"] == transport["QUERY_STRING"] == "x=%20"


def test_the_served_address_is_the_world_too() -> None:
    with _client("t0ken", url="http://127.0.0.1:8123") as client:
        shortcut, transport = _both_doors(client, "GET", "http://127.0.0.1:8123/_sim/clock")
    assert shortcut == transport
    assert shortcut["HTTP_HOST"] == "127.0.0.1:8123" and shortcut["SERVER_PORT"] == "8123"
    assert shortcut["HTTP_AUTHORIZATION"] == "Bearer t0ken"
    address = WorldAddress(app=lambda: _Echo(), url=lambda: "http://127.0.0.1:8123", token=lambda: "t0ken")
    assert address.owns(httpx.URL("http://127.0.0.1:8123/x")) and address.owns(httpx.URL("http://mdmsim.invalid/x"))
    assert not address.owns(httpx.URL("http://127.0.0.1:9000/x"))  # another server on the host: no token goes there
    assert address.target("http://127.0.0.1:81234/x") is None


@pytest.mark.parametrize("given", [
    None, {}, {"user-agent": "me"}, {"X-Default": "b", "x-other": "c"}, [("X-Default", "1"), ("x-default", "2")],
    httpx.Headers({"Accept": "text/plain"}), {"X-Bytes": b"raw"},
])
def test_merging_headers_is_httpx_own_rule(given: Any) -> None:
    """The world's client merges as a plain httpx client would: same names, same case, same order."""
    defaults = {"User-Agent": "client", "X-Default": "a", "Accept": "*/*"}
    with httpx.Client(headers=defaults, base_url=IN_PROCESS_URL) as plain, _client(headers=defaults) as world:
        expected = plain.build_request("GET", "/x", headers=given).headers.raw
        assert world.build_request("GET", "/x", headers=given).headers.raw == expected
        client_headers = world.headers
    if given is None or isinstance(given, dict) and all(isinstance(v, str) for v in given.values()):
        merged = merge_headers(client_headers, given)  # what the shortcut sends, Host aside
        assert [(n.encode(), v.encode()) for n, v in merged.values()] == [h for h in expected if h[0] != b"Host"]
