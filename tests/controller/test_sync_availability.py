"""One rule for "may this token sync now, and if not, when": the setting's answer is the one a request gets.

The setting shows ``syncAvailability`` (``canSync``, the refusal's ``reason`` and its
``retryAfterSeconds``) beside ``nextSyncAvailableDateTime``; a sync request made at that moment is
accepted exactly when ``canSync`` is true, and refused with that code and that ``Retry-After``
otherwise. The dashboard enables its Sync button on ``canSync`` alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controller_stack import Stack, build_stack

from mdm.dashboard.views import sync_state
from mdm.protocol.isotime import isoformat

SETTINGS = "/deviceManagement/depOnboardingSettings"
STATUS_OF_REASON = {"depTokenRequired": 400, "syncInProgress": 409, "syncTooFrequent": 429}


def _answer(stack: Stack, sid: str) -> dict[str, Any]:
    setting = stack.setting(sid)
    answer = setting["syncAvailability"]
    # The dashboard says what the controller says, whatever its own clock shows.
    assert sync_state(setting, stack.clock.now())["canSync"] is answer["canSync"]
    if answer["canSync"]:
        assert answer["reason"] is None and answer["retryAfterSeconds"] is None
        if setting["tokenType"] == "dep":
            assert setting["nextSyncAvailableDateTime"] == isoformat(stack.clock.now())
    elif answer["retryAfterSeconds"] is not None:
        wait = timedelta(seconds=answer["retryAfterSeconds"])
        assert setting["nextSyncAvailableDateTime"] == isoformat(stack.clock.now() + wait)
    return answer


def _request_matches(stack: Stack, sid: str, answer: dict[str, Any]) -> None:
    reply = stack.sync(sid)
    if answer["canSync"]:
        assert reply.status_code == 204, reply.text
        return
    assert reply.status_code == STATUS_OF_REASON[answer["reason"]], reply.text
    assert reply.json()["error"]["code"] == answer["reason"]
    expected = str(answer["retryAfterSeconds"]) if answer["retryAfterSeconds"] is not None else None
    assert reply.headers.get("Retry-After") == expected


def test_2016_rules_window_after_a_failure(stack: Stack) -> None:
    created = stack.api.post(SETTINGS, json={"tokenName": "Contoso"}).json()
    bare = _answer(stack, created["id"])
    assert bare == {"canSync": False, "reason": "depTokenRequired", "retryAfterSeconds": None}
    _request_matches(stack, created["id"], bare)

    sid = stack.onboard()
    fresh = _answer(stack, sid)
    assert fresh["canSync"]
    _request_matches(stack, sid, fresh)
    assert _answer(stack, sid)["canSync"]  # 2016: a success frees the slot at once

    stack.tap.add("POST /devices/sync", (400, "MALFORMED_REQUEST_BODY", {}))  # the limited sync that follows
    _request_matches(stack, sid, _answer(stack, sid))
    assert stack.setting(sid)["syncStatus"] == "failed"
    assert _answer(stack, sid) == {"canSync": False, "reason": "syncInProgress", "retryAfterSeconds": 600}
    stack.clock.advance(minutes=4)
    waiting = _answer(stack, sid)
    assert waiting["retryAfterSeconds"] == 360
    _request_matches(stack, sid, waiting)
    stack.clock.advance(minutes=6)
    over = _answer(stack, sid)
    assert over["canSync"]
    _request_matches(stack, sid, over)


def test_current_rules_manual_interval() -> None:
    stack = build_stack(devices=20, rules="current")
    sid = stack.onboard()
    _request_matches(stack, sid, _answer(stack, sid))
    assert _answer(stack, sid) == {"canSync": False, "reason": "syncTooFrequent", "retryAfterSeconds": 900}
    stack.clock.advance(minutes=5)
    too_soon = _answer(stack, sid)
    assert too_soon["retryAfterSeconds"] == 600
    _request_matches(stack, sid, too_soon)
    stack.clock.advance(minutes=10)
    ready = _answer(stack, sid)
    assert ready["canSync"]
    _request_matches(stack, sid, ready)


def test_dashboard_takes_the_answer_not_the_clock() -> None:
    """A dashboard whose clock is ahead of the controller's still keeps Sync disabled; one whose service
    gives no answer lets the admin press Sync, and the service's refusal is shown."""
    base = {
        "tokenType": "dep",
        "syncStatus": "failed",
        "lastSyncTriggeredDateTime": "2026-03-02T09:00:00Z",
        "nextSyncAvailableDateTime": "2026-03-02T09:10:00Z",
        "lastSyncErrorMessage": "Apple's DEP service answered 400 MALFORMED_REQUEST_BODY",
    }
    refused = {"canSync": False, "reason": "syncInProgress", "retryAfterSeconds": 120}
    during = datetime(2026, 3, 2, 9, 8, tzinfo=UTC)
    state = sync_state({**base, "syncAvailability": refused}, during)
    assert not state["canSync"]
    assert state["message"].endswith("You can sync again in 2 min 0 s.")
    later = during.replace(minute=30)
    assert not sync_state({**base, "syncAvailability": refused}, later)["canSync"]
    assert sync_state(base, later)["canSync"]
    assert not sync_state({**base, "tokenType": "none"}, later)["canSync"]
