"""The provider API refuses as Apple's gateway refuses: the status, the reason string, the connection's fate.

Refusals a real provider meets (no certificate, another vendor's certificate, HTTP/1.1, the sandbox
host) are sent with curl; the ones curl cannot send (two ``apns-topic`` headers, a header that is not
UTF-8, a hundred pushes at once) with ``h2`` directly. Every refusal is ``{"reason": …}`` JSON with an
``apns-id``, and stores nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import socket
import ssl
import uuid
from collections import Counter
from dataclasses import replace

import httpx
import pytest
from apns_h2_clients import PROD, SANDBOX, PushWorld, Response, client_context, mdm_body, push_magic
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hyperframe.frame import Frame, GoAwayFrame

from mdm.protocol.x509 import CertificateAuthority, cert_to_pem
from simulator.apple.apns.service import BURST_LIMIT, CLIENT_CERT_HEADER, MAX_PAYLOAD

UUID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")


def refused(response: Response, status: int, reason: str) -> None:
    """Apple's shape of a refusal: the status, JSON ``{"reason"}`` and an ``apns-id``."""
    where = (response.status, response.headers, response.body)
    assert response.status == status and response.headers["content-type"] == "application/json", where
    assert json.loads(response.body) == {"reason": reason}, where
    assert response.headers["apns-id"], where


# -- the provider's identity ---------------------------------------------------------------------------
def test_no_client_certificate_is_missing_provider_token(apns: PushWorld) -> None:
    token = apns.token()
    sent = apns.curl(token, anonymous=True)
    assert (sent.status, sent.reason) == (403, "MissingProviderToken"), sent
    assert apns.world.apns.stats(token)["accepted"] == 0


def test_the_plain_http_stand_in_header_proves_nothing_on_the_tls_listener(apns: PushWorld) -> None:
    """``X-Mdmsim-Client-Cert`` carries a certificate over the in-process HTTP/1.1 path; a certificate
    is public, so on the provider listener only the TLS handshake (which proves the key) names the
    provider: without a client certificate the header is ignored."""
    token = apns.token()
    der = x509.load_pem_x509_certificate(apns.a.cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    stand_in = [(CLIENT_CERT_HEADER.lower(), base64.b64encode(der).decode())]
    with apns.h2(anonymous=True) as client:
        refused(client.push(token, headers=stand_in), 403, "MissingProviderToken")
    with apns.h2(apns.b) as client:  # nor does it turn another vendor into vendor a
        refused(client.push(token, headers=stand_in), 400, "DeviceTokenNotForTopic")
    assert apns.world.apns.pending(token) == []


def test_another_vendors_certificate_is_refused_for_the_token_and_for_the_topic(apns: PushWorld) -> None:
    """Vendor b holds a current push certificate from the same portal, for its own topic: a token made
    for vendor a's topic is not its to push to, and it may not name vendor a's topic either."""
    token = apns.token(apns.a)
    not_for_topic = apns.curl(token, vendor=apns.b)
    assert (not_for_topic.status, not_for_topic.reason) == (400, "DeviceTokenNotForTopic"), not_for_topic
    disallowed = apns.curl(token, "-H", f"apns-topic: {apns.a.topic}", vendor=apns.b)
    assert (disallowed.status, disallowed.reason) == (400, "TopicDisallowed"), disallowed
    assert apns.world.apns.pending(token) == []
    assert apns.curl(token, vendor=apns.a).status == 200  # the token's own vendor still reaches it


def test_a_certificate_from_another_ca_fails_the_tls_handshake(apns: PushWorld) -> None:
    """Same key, same subject UID, but not issued by the push CA: no HTTP/2 connection at all (the
    server never sends its SETTINGS), so no request is ever read."""
    now = dt.datetime.now(dt.UTC)
    rogue_ca = CertificateAuthority.create("Apple Push Services (not really)", now)
    rogue = apns.directory / "rogue.crt"
    key = x509.load_pem_x509_certificate(apns.a.cert.read_bytes()).public_key()
    rogue.write_bytes(cert_to_pem(rogue_ca.issue(key, subject="APSP:rogue", uid=apns.a.topic, now=now)))
    vendor = replace(apns.a, cert=rogue)
    token = apns.token()
    sent = apns.curl(token, vendor=vendor)
    assert sent.returncode != 0 and sent.status is None, sent
    with socket.create_connection(("127.0.0.1", apns.port), timeout=5) as raw:
        try:
            tls = client_context(apns.ca, rogue, apns.a.key).wrap_socket(raw, server_hostname=PROD)
            received = tls.recv(100)  # TLS 1.3: the server checks the client certificate after "Finished"
        except (ssl.SSLError, ConnectionError):
            received = b""
    assert received == b""
    assert apns.world.apns.stats(token)["accepted"] == 0


def test_http1_is_refused_with_goaway(apns: PushWorld) -> None:
    """An HTTP/2-only server answers an HTTP/1.1 request with GOAWAY (PROTOCOL_ERROR) and hangs up."""
    token = apns.token()
    sent = apns.curl(token, http="--http1.1")
    assert sent.returncode != 0 and sent.status is None, sent
    context = client_context(apns.ca, apns.a.cert, apns.a.key)
    context.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", apns.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=PROD) as tls:  # fmt: skip
        assert tls.selected_alpn_protocol() is None  # the gateway offers h2 only
        tls.sendall(f"POST /3/device/{token} HTTP/1.1\r\nHost: {PROD}\r\nContent-Length: 2\r\n\r\n{{}}".encode())
        received = b""
        while chunk := tls.recv(65536):
            received += chunk
    frames = []
    while received:
        frame, length = Frame.parse_frame_header(memoryview(received[:9]))
        frame.parse_body(memoryview(received[9 : 9 + length]))
        frames.append(frame)
        received = received[9 + length :]
    goaway = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert len(goaway) == 1 and goaway[0].error_code == 1  # PROTOCOL_ERROR; then the connection closed
    assert apns.world.apns.stats(token)["accepted"] == 0


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_a_revoked_or_expired_certificate_is_forbidden(own_apns: PushWorld, how: str) -> None:
    """The certificate still chains to the push CA (the handshake succeeds), but Apple no longer
    honours it: 403 Forbidden, decided on the world clock (a year ahead: past its 365 days)."""
    apns = own_apns
    token = apns.token()
    assert apns.curl(token).status == 200
    if how == "revoked":
        apns.world.pushcert.revoke(apns.a.cert_id)
    else:
        apns.world.clock.advance(days=366)
    sent = apns.curl(token)
    assert (sent.status, sent.reason) == (403, "Forbidden"), sent


def test_the_sandbox_host_refuses_a_production_certificate(apns: PushWorld) -> None:
    """The Push Certificates Portal issues production certificates only; the development gateway's name
    (which the server certificate also carries) answers BadCertificateEnvironment."""
    sent = apns.curl(apns.token(), host=SANDBOX)
    assert (sent.status, sent.reason) == (403, "BadCertificateEnvironment"), sent


def test_an_unregistered_token_is_gone_with_a_timestamp(apns: PushWorld) -> None:
    token = apns.token()
    before = apns.world.clock.timestamp()
    apns.world.apns.unregister(token)
    after = apns.world.clock.timestamp()
    with apns.h2() as client:
        response = client.push(token)
    assert response.status == 410 and response.json["reason"] == "Unregistered", response
    assert int(before * 1000) <= response.json["timestamp"] <= int(after * 1000) + 1


# -- the request ---------------------------------------------------------------------------------------
def _cases(token: str, topic_b: str) -> list[tuple[dict, int, str | None]]:
    """``(request, status, reason)``: keyword arguments of :meth:`H2Client.start` and Apple's answer."""
    path = f"/3/device/{token}"

    def body_of(size: int) -> bytes:
        filler = size - len(mdm_body(""))
        return mdm_body("M" * filler)

    return [
        ({"headers": [("apns-expiration", "tomorrow")]}, 400, "BadExpirationDate"),
        ({"headers": [("apns-expiration", "-1")]}, 400, "BadExpirationDate"),
        ({"headers": [("apns-collapse-id", "c" * 65)]}, 400, "BadCollapseId"),
        ({"headers": [("apns-collapse-id", "c" * 64)]}, 200, None),
        ({"headers": [("apns-id", "not-a-uuid")]}, 400, "BadMessageId"),
        ({"headers": [("apns-priority", "7")]}, 400, "BadPriority"),
        ({"headers": [("apns-push-type", "telepathy")]}, 400, "InvalidPushType"),
        ({"headers": [("apns-topic", topic_b)]}, 400, "TopicDisallowed"),
        ({"headers": [("apns-topic", b"com.apple.mgmt.\xff")]}, 400, "TopicDisallowed"),  # not UTF-8
        ({"headers": [("apns-topic", "x"), ("apns-topic", "x")]}, 400, "DuplicateHeaders"),
        ({"body": body_of(MAX_PAYLOAD + 1)}, 413, "PayloadTooLarge"),
        ({"body": body_of(MAX_PAYLOAD)}, 200, None),
        ({"body": b""}, 400, "PayloadEmpty"),
        ({"method": "GET", "body": b""}, 405, "MethodNotAllowed"),
        ({"path": "/3/devices/" + token}, 404, "BadPath"),
        ({"path": "/2/device/" + token}, 404, "BadPath"),
        ({"path": "/3/device/"}, 400, "MissingDeviceToken"),
        ({"path": "/3/device/" + token[:-2]}, 400, "BadDeviceToken"),
        ({"path": path}, 200, None),
    ]


def test_each_malformed_request_gets_apples_reason_on_one_connection(apns: PushWorld) -> None:
    token = apns.token()
    with apns.h2() as client:
        for request, status, reason in _cases(token, apns.b.topic):
            body = request.get("body", mdm_body(push_magic("table")))
            stream_id = client.start(request.get("path", f"/3/device/{token}"), body, request.get("headers", ()),
                                     method=request.get("method", "POST"))  # fmt: skip
            response = client.response(stream_id)
            if reason is None:
                assert (response.status, response.body) == (200, b""), (request, response)
            else:
                refused(response, status, reason)
        assert client.terminated is None  # refusals answer the stream; the connection stays
    assert apns.world.apns.stats(token)["accepted"] == 3


def test_head_is_refused_without_a_body(apns: PushWorld) -> None:
    """A HEAD's answer carries no body (h2 clients treat one as a protocol error and drop the connection)."""
    with apns.h2() as client:
        response = client.response(client.start(f"/3/device/{apns.token()}", method="HEAD"))
        assert (response.status, response.body, response.headers["content-type"]) == (405, b"", "application/json")
        assert client.push(apns.token()).status == 200  # the connection is still good


def test_apns_id_is_echoed_when_sent_and_generated_otherwise(apns: PushWorld) -> None:
    token = apns.token()
    mine = str(uuid.uuid4())  # lower case, as aioapns and most clients send it
    with apns.stream(token) as device, apns.h2() as client:
        echoed = client.push(token, headers=[("apns-id", mine)])
        assert (echoed.status, echoed.headers["apns-id"]) == (200, mine)
        assert device.next_push()["apns_id"] == mine
        generated = client.push(token)
        assert generated.status == 200 and UUID.match(generated.headers["apns-id"]), generated
        assert device.next_push()["apns_id"] == generated.headers["apns-id"]
        refusal = client.push(token, headers=[("apns-id", mine), ("apns-priority", "2")])
        assert (refusal.status, refusal.headers["apns-id"]) == (400, mine)


def test_apns_topic_may_be_left_out_or_named(apns: PushWorld) -> None:
    """A push certificate has one topic: without ``apns-topic`` the push goes to it; naming it works too."""
    token = apns.token()
    with apns.h2() as client:
        assert client.push(token).status == 200
        assert client.push(token, headers=[("apns-topic", apns.a.topic), ("apns-push-type", "mdm")]).status == 200


def test_a_burst_at_one_token_gets_too_many_requests(apns: PushWorld) -> None:
    """BURST_LIMIT + 1 pushes at once to one token (concurrent streams of one connection): one is
    refused 429 TooManyRequests; another token is not affected."""
    token, other = apns.token(), apns.token()
    with apns.h2() as client:
        streams = [client.start(f"/3/device/{token}", mdm_body(f"M{i}")) for i in range(BURST_LIMIT + 1)]
        responses = [client.response(s) for s in streams]
        assert Counter(r.status for r in responses) == {200: BURST_LIMIT, 429: 1}
        refused(next(r for r in responses if r.status == 429), 429, "TooManyRequests")
        assert client.push(other).status == 200


def test_the_stand_in_header_proves_nothing_over_a_socket_on_the_plain_http_path(apns: PushWorld) -> None:
    """The same header on the plain-HTTP path, over a real connection (by path, and by Apple's host
    name on the main port): refused as a push without a certificate. It speaks only for callers in
    the world's own process (our MDM server), which tests/apns covers."""
    der = x509.load_pem_x509_certificate(apns.a.cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    headers = {CLIENT_CERT_HEADER: base64.b64encode(der).decode(), "apns-push-type": "mdm"}
    token = apns.token()
    by_path = httpx.post(f"{apns.served.url}/apple/apns/3/device/{token}", content=mdm_body("m"), headers=headers)
    by_host = httpx.post(f"{apns.served.url}/3/device/{token}", content=mdm_body("m"),
                         headers={**headers, "Host": "api.push.apple.com"})  # fmt: skip
    for reply in (by_path, by_host):
        assert (reply.status_code, reply.json()) == (403, {"reason": "MissingProviderToken"})
