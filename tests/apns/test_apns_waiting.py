"""APNs' device side as a service: waiting for the next notification, streams, and registration rules.

Waits run on an injected monotonic clock whose ``sleep`` moves it, so a 30-second wait takes no time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from simulator.apple.apns.service import MAX_LONG_POLL_S, MAX_STREAM_S, APNsError, APNsService, open_apns_store

TOKEN = "e5" * 32
TOPIC = "com.apple.mgmt.External.11111111-2222-3333-4444-555555555555"
HEADERS = {"apns-topic": TOPIC, "apns-push-type": "mdm"}


class FakeTime:
    """``monotonic``/``sleep`` for the service; ``at`` runs a callback once the time is reached."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0
        self.events: list[tuple[float, Any]] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        for event in [e for e in self.events if e[0] <= self.now]:
            self.events.remove(event)
            event[1]()


@pytest.fixture
def timed() -> tuple[APNsService, FakeTime]:
    fake = FakeTime()
    clock = Clock(Store(None, []), start=dt.datetime(2026, 3, 1, tzinfo=dt.UTC), frozen=True)
    return APNsService(open_apns_store(None), clock, sleep=fake.sleep, monotonic=fake.monotonic), fake


def _push(apns: APNsService, magic: str) -> None:
    assert apns.send(TOKEN, f'{{"mdm": "{magic}"}}'.encode(), HEADERS).status == 200


def test_a_wait_returns_the_next_notification_as_soon_as_it_arrives(timed: Any) -> None:
    apns, fake = timed
    fake.events.append((2.0, lambda: _push(apns, "LATER")))
    [notification] = apns.wait_for_notifications(TOKEN, 10)
    assert notification["payload"] == {"mdm": "LATER"}
    assert 2.0 <= fake.now < 2.2
    assert apns.pending(TOKEN) == []


def test_a_wait_ends_empty_at_its_deadline_and_is_capped(timed: Any) -> None:
    apns, fake = timed
    assert apns.wait_for_notifications(TOKEN, 1.5) == []
    assert fake.now == pytest.approx(1.5)
    fake.now = 0.0
    assert apns.wait_for_notifications(TOKEN, 10_000) == []
    assert fake.now == pytest.approx(MAX_LONG_POLL_S)
    fake.slept = 0.0
    _push(apns, "NOW")
    assert [n["payload"]["mdm"] for n in apns.wait_for_notifications(TOKEN)] == ["NOW"]  # default: no wait
    assert fake.slept == 0.0


@pytest.mark.parametrize(
    ("token", "wait", "reason"),
    [
        ("nope", 1.0, "BadDeviceToken"),
        (TOKEN, -1.0, "BadWait"),
        (TOKEN, float("nan"), "BadWait"),
        ("x", float("nan"), "BadDeviceToken"),
    ],
)
def test_waits_are_refused_with_apples_reasons(timed: Any, token: str, wait: float, reason: str) -> None:
    apns, _ = timed
    with pytest.raises(APNsError) as refused:
        apns.wait_for_notifications(token, wait)
    assert (refused.value.status, refused.value.reason) == (400, reason)
    with pytest.raises(APNsError) as refused:
        apns.stream_duration(token, wait)
    assert refused.value.reason == reason


def test_a_stream_delivers_each_push_and_ticks_when_idle(timed: Any) -> None:
    apns, fake = timed
    assert apns.stream_duration(TOKEN) == 300.0 and apns.stream_duration(TOKEN, 1e9) == MAX_STREAM_S
    _push(apns, "FIRST")
    fake.events.append((20.0, lambda: _push(apns, "SECOND")))
    batches = [[n["payload"]["mdm"] for n in batch] for batch in apns.watch(TOKEN, 40.0, idle_s=15.0)]
    assert batches == [["FIRST"], [], ["SECOND"], []]  # idle at 15 s and 35 s; the deadline ends it quietly
    assert fake.now == pytest.approx(40.0)


def test_a_zero_length_stream_still_delivers_what_is_pending(timed: Any) -> None:
    apns, _ = timed
    _push(apns, "PENDING")
    assert [[n["payload"]["mdm"] for n in b] for b in apns.watch(TOKEN, 0.0, idle_s=15.0)] == [["PENDING"]]


def test_registration_checks_the_token_the_body_and_the_topic_in_that_order(timed: Any) -> None:
    apns, _ = timed
    for token, body, reason in [
        ("nope", b"{not json", "BadDeviceToken"),
        (TOKEN, b"{not json", "BadPayload"),
        (TOKEN, b'{"topic": ""}', "BadTopic"),
        (TOKEN, b'{"topic": 7}', "BadTopic"),
        (TOKEN, b'{"topic": "' + b"t" * 256 + b'"}', "BadTopic"),
    ]:
        with pytest.raises(APNsError) as refused:
            apns.register_device(token, body)
        assert refused.value.reason == reason, body
    assert apns.register_device(TOKEN.upper(), b'{"topic": "' + TOPIC.encode() + b'"}') == {
        "token": TOKEN, "unregistered": False, "topic": TOPIC
    }
    assert apns.register_device(TOKEN, b"[1]")["topic"] == TOPIC  # no topic given: the binding stays
    assert apns.unregister_device(TOKEN) == {"token": TOKEN, "unregistered": True}
    assert apns.send(TOKEN, b'{"mdm": "M"}', HEADERS).status == 410
