"""The push gateway's own listeners, fed hostile traffic over real sockets: never a 5xx, never a crash.

The other fuzz tests reach every Flask route through the WSGI stack; the push gateway's two listeners
are not Flask routes but asyncio protocols (:mod:`simulator.apple.apns.provider`, ``.streams``), so
they are fuzzed here, on a served world:

* the **provider listener** (HTTP/2 over TLS): random methods, paths, ``:authority``, headers (Apple's
  and others, repeated, not UTF-8, names h2 forbids), bodies (JSON, MDM-shaped, binary, over 4 KB),
  streams reset half-way, with vendor a's, vendor b's or no client certificate, on long-lived
  connections (reopened whenever the gateway hangs up, as it does after a protocol error or
  :data:`~simulator.apple.apns.provider.MAX_REFUSALS` refusals);
* the **device listener** (HTTP/1.1 event streams): random request heads (methods, targets, versions,
  headers, framing, bytes that are not HTTP at all), complete or cut short, for a device's stream and
  for the world's live device feed (``/sim-events``, with origins and tickets good and bad).

Every response must be below 500, refusals in APNs' ``{"reason": …}`` shape; the gateway may hang up on
a client but must log no error (asyncio's "Fatal error on …" is an exception escaping a protocol);
afterwards a valid push still reaches a device's stream.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fuzz_world import TOTAL_EXAMPLES, header_values, json_values, odd_text, printable
from h2.connection import ConnectionState
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apns_h2"))

from apns_h2_clients import PROD, SANDBOX, H2Client, PushWorld, mdm_body, push_world  # noqa: E402

#: Examples per listener in CI; a long run (MDMSIM_FUZZ_EXAMPLES) raises them with the rest of the fuzzer.
EXAMPLES = max(250, TOTAL_EXAMPLES // 100)
APNS_HEADERS = ["apns-id", "apns-topic", "apns-push-type", "apns-expiration", "apns-priority", "apns-collapse-id",
                "content-type", "content-length", "authorization", "x-mdmsim-client-cert", "te", "user-agent"]
LOGGERS = ("asyncio", "mdmsim.apns")
CLOSED = ConnectionState.CLOSED


@pytest.fixture(scope="module")
def served() -> Iterator[PushWorld]:
    with push_world() as apns:
        yield apns


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.ERROR)
    return caplog


def gateway_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Errors the gateway's thread logged during the test (an exception escaping a protocol)."""
    return [r.getMessage() for r in caplog.get_records("call") if r.levelno >= logging.ERROR and r.name.startswith(LOGGERS)]


def _still_delivers(apns: PushWorld, label: str) -> None:
    """A well-formed push, on a new connection, reaches a device's stream."""
    token = apns.token()
    with apns.stream(token) as device, apns.h2() as client:
        assert client.push(token, mdm_body(label)).status == 200
        assert device.next_push()["payload"] == {"mdm": label}


# -- the provider listener ------------------------------------------------------------------------------
@st.composite
def provider_requests(draw: st.DrawFn, apns: PushWorld, tokens: dict[str, str]) -> dict[str, Any]:
    """A push as a provider sends it (a third of the draws, with Apple's headers in valid forms), or a
    hostile request."""
    if draw(st.integers(0, 2)) == 0:
        good = {"apns-topic": apns.a.topic, "apns-push-type": "mdm", "apns-priority": draw(st.sampled_from("1 5 10".split())),
                "apns-id": str(draw(st.uuids())), "apns-expiration": draw(st.sampled_from(["0", "4102444800"])),
                "apns-collapse-id": draw(st.text(max_size=20)), "content-type": "application/json"}
        names = draw(st.lists(st.sampled_from(sorted(good)), unique=True, max_size=len(good)))
        return {"identity": "a", "authority": draw(st.sampled_from([PROD, "localhost"])), "method": "POST",
                "path": f"/3/device/{tokens[draw(st.sampled_from(['a', 'a', 'a', 'b', 'gone']))]}",
                "headers": [(n, good[n]) for n in names], "body": mdm_body(draw(st.text(min_size=1, max_size=60))),
                "ending": "end"}
    token = draw(st.sampled_from([tokens["a"], tokens["b"], tokens["a"].upper(), tokens["gone"]]))
    method = draw(st.sampled_from(["POST"] * 8 + ["GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "PRI"])
                  | printable.filter(bool))  # fmt: skip
    path = draw(st.sampled_from([f"/3/device/{token}"] * 6 + ["/3/device/", "/", "*", "/3/device", f"/3/device/{token}/x",
                                 f"/3/device/{token}?a=1", f"//3/device/{token}", f"/3/device/{token[:10]}",
                                 "/" + "a" * 3000, "/events?token=" + token])
                | odd_text.map(lambda t: "/3/device/" + quote(t, safe="/%?")))  # fmt: skip
    headers: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from(APNS_HEADERS) | printable.map(str.lower).filter(bool))
        value = draw(header_values | st.sampled_from([
            apns.a.topic, apns.b.topic, "mdm", "alert", "0", "10", "5", "1", "-1", "9" * 30, "", " ", "c" * 65,
            "0a1b2c3d-1111-2222-3333-444455556666", "application/json", "trailers",
        ]) | st.binary(max_size=20))  # fmt: skip
        headers.append((name, value))
    if draw(st.integers(0, 4)) == 0 and headers:
        headers.append(headers[0])  # a repeated header
    kind = draw(st.sampled_from(["mdm", "mdm", "json", "binary", "empty", "big", "limit"]))
    body = {
        "mdm": lambda: mdm_body(draw(st.text(max_size=40))),
        "json": lambda: json.dumps(draw(json_values)).encode(),
        "binary": lambda: draw(st.binary(max_size=300)),
        "empty": lambda: b"",
        "big": lambda: b"{" + b"x" * draw(st.integers(4097, 20_000)),
        "limit": lambda: mdm_body("M" * draw(st.integers(4080, 4100))),
    }[kind]()
    return {
        "identity": draw(st.sampled_from(["a", "a", "a", "b", "none"])),
        "authority": draw(st.sampled_from([PROD, PROD, SANDBOX, "localhost", "api.development.push.apple.com", ""])
                          | printable),  # fmt: skip
        "method": method, "path": path, "headers": headers, "body": body,
        "ending": draw(st.sampled_from(["end"] * 8 + ["reset", "open"])),
    }


class Providers:
    """One long-lived connection per identity, reopened when the gateway hangs up."""

    def __init__(self, apns: PushWorld) -> None:
        self.apns = apns
        self.connections: dict[str, H2Client] = {}
        self.reopened = 0

    def get(self, identity: str) -> H2Client:
        client = self.connections.get(identity)
        if client is None or client.closed or client.terminated is not None or client.conn.state_machine.state == CLOSED:
            if client is not None:
                client.close()
                self.reopened += 1
            vendor = None if identity == "none" else self.apns.vendors[identity]
            client = H2Client(self.apns.port, self.apns.ca, vendor.cert if vendor else None, vendor.key if vendor else None,
                              validate=False)  # fmt: skip
            self.connections[identity] = client
        return client

    def close(self) -> None:
        for client in self.connections.values():
            client.close()


def _send(client: H2Client, request: dict[str, Any]) -> int | None:
    """Send one drawn request; the status of its response, or ``None`` when it gets none (reset, left
    open, or the gateway hung up on the connection for a protocol error)."""
    client.authority = f"{request['authority']}:{client.port}" if request["authority"] else ""
    ending = request["ending"]
    try:
        stream_id = client.start(request["path"], request["body"], request["headers"], method=request["method"],
                                 end=ending == "end")  # fmt: skip
        if ending == "reset":
            client.conn.reset_stream(stream_id)
            client.flush()
            return None
        if ending == "open":
            return None
        response = client.response(stream_id)
    except ConnectionError:
        return None  # GOAWAY (PROTOCOL_ERROR, or MAX_REFUSALS) or a reset: never an answer, never a 5xx
    except BaseException:
        client.close()  # hypothesis replays the example: on a new connection, as it first ran
        raise
    if response.status >= 400 and request["method"] != "HEAD":
        assert response.headers["content-type"] == "application/json", response
        assert isinstance(json.loads(response.body)["reason"], str), response
    return response.status


def test_provider_listener_never_answers_5xx(served: PushWorld, logged: pytest.LogCaptureFixture) -> None:
    apns = served
    tokens = {"a": apns.token(apns.a), "b": apns.token(apns.b), "gone": apns.token(apns.a)}
    apns.world.apns.unregister(tokens["gone"])
    providers = Providers(apns)
    tally: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(request=provider_requests(apns, tokens))
    def fuzz(request: dict[str, Any]) -> None:
        status = _send(providers.get(request["identity"]), request)
        tally["none" if status is None else f"{status // 100}xx"] += 1
        assert status is None or status < 500, (request, status)

    try:
        fuzz()
    finally:
        providers.close()
    print(json.dumps({"provider": dict(tally), "reopened": providers.reopened}))
    assert tally["2xx"] and tally["4xx"]  # the draws reach both the rules and past them
    _still_delivers(apns, "after-provider-fuzz")
    assert gateway_errors(logged) == []


# -- the device listener --------------------------------------------------------------------------------
@st.composite
def device_requests(draw: st.DrawFn, token: str) -> bytes:
    """Bytes of one request head (and maybe a body): a device's (a third of the draws), or not."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.binary(max_size=300))
    if choice <= 3:
        target = draw(st.sampled_from([f"/events?token={token}", f"/apple/apns/events?token={token.upper()}",
                                       "/sim-events", "/sim-events/?ticket=x", "/sim-events?ticket=&ticket=a"]))
        extra = draw(st.lists(st.sampled_from(["Accept: text/event-stream", "Connection: keep-alive", "Last-Event-ID: 1",
                                               "Cache-Control: no-cache", "User-Agent: device", "Origin: null",
                                               "Origin: http://127.0.0.1", "Origin: http://evil.example"]),
                              unique=True))  # fmt: skip
        version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
        return "\r\n".join([f"GET {target} {version}", "Host: localhost", *extra, "", ""]).encode()
    method = draw(st.sampled_from(["GET"] * 6 + ["POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PRI", "get", "G ET"])
                  | printable)  # fmt: skip
    target = draw(st.sampled_from([f"/events?token={token}"] * 4 + [
        f"/apple/apns/events?token={token}", f"/events/?token={token}", "/events", "/events?token=zz",
        f"/events?token={token}&token=x",
        f"/events?token={token.upper()}", "/", "*", f"http://localhost/events?token={token}", "/" + "a" * 9000,
        f"/events?token={token}#x", "/events?token=%zz", "/events?%00", "", "/sim-events", "/sim-events?%00",
        "/sim-events?ticket=" + "a" * 5000, "/SIM-EVENTS", "/sim-events#x",
    ]) | odd_text.map(lambda t: "/events?token=" + quote(t, safe="%&="))
       | odd_text.map(lambda t: "/sim-events?ticket=" + quote(t, safe="%&=")))  # fmt: skip
    version = draw(st.sampled_from(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "HTTP/1.1 x", "", "http/1.1"]))
    headers = [("Host", "localhost")] if draw(st.integers(0, 5)) else []
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(["Accept", "Connection", "Upgrade", "Content-Length", "Transfer-Encoding", "Expect",
                                     "Last-Event-ID", "Host", "Cookie", "Origin"]) | printable)  # fmt: skip
        value = draw(header_values | st.sampled_from(["text/event-stream", "close", "upgrade", "websocket", "h2c", "5", "-1",
                                                      "chunked", "gzip", "gzip, chunked", "100-continue", "9" * 40,
                                                      "http://[::1", "http://127.0.0.1:99999", "file://"]))
        headers.append((name, value))
    newline = draw(st.sampled_from(["\r\n"] * 4 + ["\n"]))
    head = f"{method} {target} {version}{newline}" + "".join(f"{n}: {v}{newline}" for n, v in headers) + newline
    data = head.encode("latin-1", "replace") + draw(st.binary(max_size=40))
    if draw(st.integers(0, 7)) == 0:
        data = data[: draw(st.integers(0, len(data)))]  # cut short
    return data


def _exchange(address: tuple[str, int], data: bytes, half_close: bool) -> bytes:
    """Send ``data``; read what comes back until the gateway closes, or just the head of an open stream."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)  # the gateway reads EOF after the request: it must end the exchange
        received = b""
        while b"\r\n\r\n" not in received or (not half_close and received.startswith(b"HTTP/1.1 4")):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received


def test_device_listener_never_answers_5xx(served: PushWorld, logged: pytest.LogCaptureFixture) -> None:
    apns = served
    token = apns.token()
    host, port = apns.served.apns_stream_url.removeprefix("http://").rsplit(":", 1)
    tally: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(data=device_requests(token), half_close=st.booleans())
    def fuzz(data: bytes, half_close: bool) -> None:
        if not half_close and not data.endswith((b"\r\n\r\n", b"\n\n")):
            half_close = True  # an unfinished head waits for more, as any HTTP server does: end it
        received = _exchange((host, int(port)), data, half_close)
        if not received:
            tally["closed"] += 1
            return
        status_line, _, rest = received.partition(b"\r\n")
        version, status, *_ = status_line.split(b" ", 2) + [b""]
        assert version == b"HTTP/1.1" and status.isdigit(), received[:300]
        tally[f"{int(status) // 100}xx"] += 1
        assert int(status) < 500, (data[:300], received[:300])
        if int(status) >= 400:
            body = rest.partition(b"\r\n\r\n")[2]
            assert isinstance(json.loads(body)["reason"], str), received[:300]
        else:
            assert b"content-type: text/event-stream" in rest.lower(), received[:300]

    try:
        fuzz()
    finally:
        print(json.dumps({"device": dict(tally)}))
    assert tally["2xx"] and tally["4xx"]
    _still_delivers(apns, "after-device-fuzz")
    assert gateway_errors(logged) == []
