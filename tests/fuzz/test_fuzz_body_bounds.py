"""Every party bounds its request bodies: one byte over the bound is a 413 in the party's own error format,
whether the client announced the size (Content-Length) or streamed it (chunked, no Content-Length).

The bound is read from each party's app (``MAX_CONTENT_LENGTH``) so a party that changes its bound is
tested at its new bound. A body is never read past the bound, so a client cannot make a party buffer
gigabytes (the chunked case is the one a Content-Length check alone would miss).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fuzz_world import Known, _flask_app, dispatcher_of, send

from simulator import World

SOAP = "application/soap+xml; charset=utf-8"
FORM = "application/x-www-form-urlencoded"


def _text_code(response: Any) -> None:
    assert response.mimetype == "text/plain" and response.get_data().strip().isupper()


def _graph(response: Any) -> None:
    error = json.loads(response.get_data())["error"]
    assert error["code"] and error["message"]


def _json_error(response: Any) -> None:
    assert isinstance(json.loads(response.get_data())["error"], str)


def _apns(response: Any) -> None:
    assert json.loads(response.get_data()) == {"reason": "PayloadTooLarge"}


def _plain(response: Any) -> None:
    assert response.mimetype == "text/plain" and response.get_data().strip()


def _soap_fault(response: Any) -> None:
    assert response.mimetype == "application/soap+xml" and b"Fault" in response.get_data()


def _html(response: Any) -> None:
    assert response.mimetype == "text/html"


def _business(response: Any) -> None:
    assert json.loads(response.get_data())["errors"][0]["status"] == "413"


def _oauth(response: Any) -> None:
    assert json.loads(response.get_data())["error"] == "invalid_request"


# (prefix, method, path under the prefix, content type, body filler, how the party's 413 looks)
CASES: list[tuple[str, str, str, str, bytes, Callable[[Any], None]]] = [
    ("/apple/dep", "POST", "/server/devices", "application/json", b" ", _text_code),
    ("/apple/dep", "PUT", "/profile/devices", "application/json", b" ", _text_code),
    ("/apple/portal", "POST", "/api/devices", "application/json", b" ", _json_error),
    ("/apple/portal", "POST", "/devices", FORM, b"a", _html),
    ("/apple/portal/push-certificates", "POST", "/api/certificates", "application/json", b" ", _json_error),
    ("/apple/portal/push-certificates", "POST", "/", FORM, b"a", _html),
    ("/apple/activation", "POST", "/profile", "application/json", b" ", _text_code),
    ("/apple/business", "POST", "/v1/orgDeviceActivities", "application/json", b" ", _business),
    ("/apple/account", "POST", "/auth/oauth2/token", FORM, b"a", _oauth),
    ("/apple/apns", "POST", "/3/device/" + "ab" * 32, "application/json", b" ", _apns),
    ("/mdm", "PUT", "/checkin", "application/x-apple-aspen-mdm-checkin", b" ", _plain),
    ("/mdm", "PUT", "/connect", "application/x-apple-aspen-mdm", b" ", _plain),
    ("/mdm", "POST", "/enroll", "application/pkcs7-signature", b" ", _plain),
    ("/mdm", "POST", "/api/v1/commands", "application/json", b" ", _json_error),
    ("/idp", "POST", "/adfs/services/trust/13/UsernameMixed", SOAP, b" ", _soap_fault),
    ("/idp", "POST", "/users", "application/json", b" ", _json_error),
    ("/intune", "POST", "/deviceManagement/depOnboardingSettings", "application/json", b" ", _graph),
    ("/intune", "POST", "/webhooks/mdm", "application/json", b" ", _graph),
    ("/intune", "POST", "/enrollment/tokens", FORM, b"a", _html),
    ("/_sim", "POST", "/faults", "application/json", b" ", _json_error),
]


def _bound(world: World, prefix: str) -> int:
    return int(_flask_app(dispatcher_of(world).mounts[prefix]).config["MAX_CONTENT_LENGTH"])


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize(("prefix", "method", "path", "content_type", "filler", "looks"), CASES,
                         ids=[f"{c[1]} {c[0]}{c[2]}" for c in CASES])
def test_one_byte_over_the_bound_is_413(fuzz_world: tuple[World, Known], framing: str, prefix: str, method: str,
                                         path: str, content_type: str, filler: bytes,
                                         looks: Callable[[Any], None]) -> None:
    world, known = fuzz_world
    bound = _bound(world, prefix)
    headers = [("Content-Type", content_type), ("User-Agent", "mdmsim-bounds"), ("X-ADM-Auth-Session", known.dep_session)]
    over = send(world.wsgi, known, method, prefix + path, "", headers, filler * (bound + 1), chunked=framing == "chunked")
    assert over.status_code == 413, (over.status_code, over.get_data()[:200])
    looks(over)


@pytest.mark.parametrize("prefix", ["/apple/dep", "/mdm", "/apple/apns", "/intune"])
def test_a_body_at_the_bound_is_not_refused_for_its_size(fuzz_world: tuple[World, Known], prefix: str) -> None:
    """The bound is the bound: exactly ``bound`` bytes are read and judged on their content, not refused."""
    world, known = fuzz_world
    case = next(c for c in CASES if c[0] == prefix)
    bound = _bound(world, prefix)
    headers = [("Content-Type", case[3]), ("User-Agent", "mdmsim-bounds"), ("X-ADM-Auth-Session", known.dep_session)]
    for chunked in (False, True):
        at = send(world.wsgi, known, case[1], prefix + case[2], "", headers, case[4] * bound, chunked=chunked)
        assert at.status_code not in (413, 500), (at.status_code, at.get_data()[:200])


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_acme_bounds_its_jws_bodies_at_64_kb_with_a_problem_document(fuzz_world: tuple[World, Known], chunked: bool) -> None:
    """ACME's own, smaller bound (a JWS with an attestation is ~3 KB): one byte over is a 413 problem
    document with a nonce; at the bound the body is read and judged (not a JWS: 400 malformed)."""
    from mdm.server.acme import MAX_ACME_BODY

    world, known = fuzz_world
    headers = [("Content-Type", "application/jose+json"), ("User-Agent", "mdmsim-bounds")]
    for size, status in ((MAX_ACME_BODY + 1, 413), (MAX_ACME_BODY, 400)):
        reply = send(world.wsgi, known, "POST", "/mdm/acme/new-order", "", headers, b" " * size, chunked=chunked)
        assert reply.status_code == status, (size, reply.get_data()[:200])
        assert reply.mimetype == "application/problem+json" and reply.headers["Replay-Nonce"]
        assert json.loads(reply.get_data())["type"] == "urn:ietf:params:acme:error:malformed"
