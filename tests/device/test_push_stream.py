"""The device's push stream parser: the gateway's bytes in, notifications out, however they are cut."""

from __future__ import annotations

import json

import pytest

from simulator.device.push_stream import (
    MAX_LINE,
    EventStreamParser,
    PushStream,
    ServerSentEvent,
    reachable_stream_url,
    stream_address,
)

TOKEN = "ab" * 32
HEAD = (b"HTTP/1.1 200 \r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n")  # fmt: skip


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def push_event(apns_id: str, magic: str) -> bytes:
    note = {"apns_id": apns_id, "token": TOKEN, "payload": {"mdm": magic}}
    return f"id: {apns_id}\nevent: push\ndata: {json.dumps(note)}\n\n".encode()


def test_the_request_asks_for_the_tokens_event_stream() -> None:
    stream = PushStream("http://127.0.0.1:40123", TOKEN)
    request = stream.request_bytes()
    assert request.startswith(f"GET /events?token={TOKEN} HTTP/1.1\r\n".encode())
    assert b"host: 127.0.0.1:40123\r\n" in request.lower() and b"accept: text/event-stream\r\n" in request.lower()
    # a world's in-process convenience path works too: the stream URL may carry a path
    assert stream_address("https://mdmsim.test/apple/apns/", TOKEN).target == f"/apple/apns/events?token={TOKEN}"
    assert stream_address("https://mdmsim.test/apple/apns/", TOKEN).host_header == "mdmsim.test"
    with pytest.raises(ValueError):
        stream_address("ftp://mdmsim.test", TOKEN)


def test_pushes_come_out_whole_even_when_the_bytes_arrive_one_at_a_time() -> None:
    stream = PushStream("http://127.0.0.1:1", TOKEN)
    stream.request_bytes()
    wire = HEAD + chunk(b": connected\n\n") + chunk(push_event("A-1", "magic-1")) + chunk(b": keepalive\n\n")
    wire += chunk(push_event("A-2", "magic-2")[:40]) + chunk(push_event("A-2", "magic-2")[40:])
    got = []
    connected_after = None
    for i in range(len(wire)):
        got += stream.feed(wire[i : i + 1])
        if stream.connected and connected_after is None:
            connected_after = i
    assert connected_after == len(HEAD) - 1  # subscribed as soon as the head is in, before any event
    assert [(n["apns_id"], n["payload"]["mdm"]) for n in got] == [("A-1", "magic-1"), ("A-2", "magic-2")]
    assert not stream.closed


def test_the_event_stream_rules_line_ends_comments_multiline_data_and_ids() -> None:
    parser = EventStreamParser()
    events = parser.feed(b": hello\r\nevent: push\r\nid: 7\r\ndata: {\"a\":\r\ndata:1}\r\n\r\n")
    events += parser.feed(b"data: plain\r")  # a CR alone ends a line; the LF may come in the next read
    events += parser.feed(b"\n\ndata:  two spaces\n\nretry: 10\nid\n\n")
    assert events == [ServerSentEvent("push", '{"a":\n1}', "7"), ServerSentEvent("message", "plain", "7"),
                      ServerSentEvent("message", " two spaces", "7")]  # fmt: skip
    assert parser.last_event_id == ""  # an empty id field resets it


def test_a_refused_stream_says_why_and_a_dropped_one_says_it_closed() -> None:
    refused = PushStream("http://127.0.0.1:1", "not-a-token")
    refused.request_bytes()
    body = b'{"reason": "BadDeviceToken"}'
    assert refused.feed(b"HTTP/1.1 400 \r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                        b"connection: close\r\n\r\n%s" % (len(body), body)) == []  # fmt: skip
    assert refused.closed and not refused.connected
    assert refused.error == 'the push gateway refused the stream: HTTP 400: {"reason": "BadDeviceToken"}'

    dropped = PushStream("http://127.0.0.1:1", TOKEN)
    dropped.request_bytes()
    dropped.feed(HEAD + chunk(b": connected\n\n"))
    assert dropped.connected
    assert dropped.feed(b"") == []  # the server went away mid-stream
    assert dropped.closed and dropped.error == "the push gateway closed the stream"
    assert dropped.feed(push_event("late", "x")) == []  # nothing after the end


def test_a_line_without_end_is_bounded() -> None:
    stream = PushStream("http://127.0.0.1:1", TOKEN)
    stream.request_bytes()
    stream.feed(HEAD)
    stream.feed(chunk(b"data: " + b"x" * 60_000))
    assert not stream.closed
    stream.feed(chunk(b"x" * 10_000))
    assert stream.closed and f"longer than {MAX_LINE} bytes" in (stream.error or "")


def test_only_push_events_with_json_objects_are_notifications() -> None:
    stream = PushStream("http://127.0.0.1:1", TOKEN)
    stream.request_bytes()
    wire = HEAD + chunk(b"event: other\ndata: {}\n\n" + b"data: not json\n\n" + b"data: [1]\n\n")
    wire += chunk(b'data: {"apns_id": "from-the-wsgi-stream", "payload": {"mdm": "m"}}\n\n')
    assert [n["apns_id"] for n in stream.feed(wire)] == ["from-the-wsgi-stream"]


def test_a_loopback_stream_url_is_reached_through_the_host_the_world_was_reached_by() -> None:
    # a Locust worker on another machine reached the world at 10.0.0.5: the listener is on that host too
    assert reachable_stream_url("http://127.0.0.1:40123", "http://10.0.0.5:8080") == "http://10.0.0.5:40123"
    assert reachable_stream_url("http://0.0.0.0:40123", "http://[fd00::5]:8080") == "http://[fd00::5]:40123"
    # on the same machine, or when the world advertised a real host, the URL stays as it is
    assert reachable_stream_url("http://127.0.0.1:40123", "http://localhost:8080") == "http://127.0.0.1:40123"
    assert reachable_stream_url("http://push.example:1", "http://10.0.0.5:8080") == "http://push.example:1"
