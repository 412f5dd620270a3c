"""Every route of every party, fed hostile requests: never a 5xx, and errors in each service's own format.

Hypothesis draws bodies (random bytes, JSON, XML and binary plists with wrong types, truncated plists,
entity bombs, CMS blobs valid and broken, base64 good and bad, SOAP, forms, multipart, CSV, PEM, large
bodies), wrong content types, missing and repeated headers, broken query strings, odd path parameters,
wrong methods, truncated bodies and bodies without a Content-Length. A third of the requests carry
real credentials (a DEP session, an enrolled device's ``Mdm-Signature``, real ids) so they reach the
code behind authentication. ``derandomize=True`` keeps CI deterministic; ``MDMSIM_FUZZ_EXAMPLES``
raises the total for a long run (``python tests/fuzz/run_fuzz.py`` prints the figures as JSON).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pytest
from fuzz_world import MIN_REQUESTS, TOTAL_EXAMPLES, Known, Route, fuzz_request, routes, send
from hypothesis import HealthCheck, given, settings

from simulator import World

_ROUTES = routes(World(devices=0, push_certificate=False))  # the url_maps only: no seeding cost
VARIANTS = 3  # each drawn request is sent as drawn, with its body framing flipped, and with its headers repeated
PER_ROUTE = math.ceil((TOTAL_EXAMPLES or MIN_REQUESTS * 1.05) / (VARIANTS * len(_ROUTES)))
_RUN = {"routes": 0}


def variants(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The drawn request, the same body framed the other way (no Content-Length / exact one), and the same
    with every header sent twice and no User-Agent: three requests per example, for the price of one draw."""
    plain = not (request["truncate"] or request["chunked"])
    reframed = {**request, "truncate": False, "chunked": plain}
    repeated = {**request, "headers": [h for h in request["headers"] if h[0] != "User-Agent"] * 2}
    return [request, reframed, repeated]


def _check_error_format(route: Route, path: str, response: Any) -> None:
    """A refusal looks like the real service's: what a client of that service parses."""
    if response.status_code < 400:
        return
    body = response.get_data()
    where = f"{response.status_code} {path}: {body[:200]!r}"
    if route.prefix == "/apple/dep":  # by path or by Apple's host name
        # Apple's DEP service: a short plain-text code (MALFORMED_REQUEST_BODY, UNAUTHORIZED, …)
        assert response.mimetype == "text/plain", where
        assert body.strip() and len(body) <= 80 and body.upper() == body and b" " not in body.strip(), where
    elif route.prefix == "/intune" and path.startswith("/intune/deviceManagement"):
        error = json.loads(body)["error"]  # Graph: {"error": {"code", "message", "innerError"}}
        assert isinstance(error["code"], str) and isinstance(error["message"], str), where
        inner = error["innerError"]
        assert inner["request-id"] == response.headers["request-id"] and isinstance(inner["date"], str), where
    elif route.prefix == "/apple/business" and path.startswith(route.path_prefix + "/activity-logs/"):
        assert response.mimetype == "text/plain" and body.strip(), where  # the presigned log URL: a blob store's text
    elif route.prefix == "/apple/business":  # by path or by Apple's host name
        errors = json.loads(body)["errors"]  # the Business API: {"errors": [{id, status, code, title, detail}]}
        assert errors and all(isinstance(e[k], str) for e in errors for k in ("id", "status", "code", "title", "detail"))
        assert errors[0]["status"] == str(response.status_code), where
    elif route.prefix == "/apple/account":
        error = json.loads(body)  # OAuth 2: {"error", "error_description"}
        assert isinstance(error["error"], str) and isinstance(error["error_description"], str), where
    elif route.prefix == "/apple/apns":
        assert isinstance(json.loads(body)["reason"], str), where  # APNs: {"reason": ...}
    elif route.prefix == "/mdm" and path.startswith("/mdm/acme/"):
        document = json.loads(body)  # ACME: an RFC 8555 problem document, and a nonce to retry with
        assert response.mimetype == "application/problem+json" and response.headers.get("Replay-Nonce"), where
        assert document["type"].startswith("urn:ietf:params:acme:error:") and document["status"] == response.status_code, where
    elif route.prefix == "/mdm" and not path.startswith("/mdm/api/"):
        assert response.mimetype == "text/plain" and body.strip(), where  # devices log a plain-text reason
    elif route.prefix == "/mdm":
        assert isinstance(json.loads(body)["error"], str), where


@pytest.mark.parametrize("route", _ROUTES, ids=[r.id for r in _ROUTES])
def test_route_never_answers_5xx(route: Route, fuzz_world: tuple[World, Known], fuzz_tally: Counter[str]) -> None:
    world, known = fuzz_world
    _RUN["routes"] += 1

    @settings(max_examples=PER_ROUTE, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(request=fuzz_request(route, known))
    def fuzz(request: dict[str, Any]) -> None:
        for sent in variants(request):
            response = send(world.wsgi, known, **sent)
            fuzz_tally["requests"] += 1
            fuzz_tally[f"{response.status_code // 100}xx"] += 1
            if sent["path"].startswith("/_sim/faults"):
                world.faults.clear()  # a fuzzed latency or error script must not slow or skew the next routes
            assert response.status_code < 500, (sent, response.status_code, response.get_data()[:500])
            if sent["method"] == route.method:
                _check_error_format(route, sent["path"], response)

    fuzz()


def test_fuzz_total(fuzz_tally: Counter[str]) -> None:
    """Runs last in this module: the whole run sent at least 10,000 requests and no 5xx came back."""
    if _RUN["routes"] < len(_ROUTES):
        pytest.skip("only part of the routes were fuzzed in this session")
    print(json.dumps({"routes": len(_ROUTES), **fuzz_tally}))
    assert fuzz_tally["requests"] >= min(MIN_REQUESTS, PER_ROUTE * len(_ROUTES))
    assert fuzz_tally["5xx"] == 0
