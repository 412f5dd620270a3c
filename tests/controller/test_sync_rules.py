"""The 2016 sync rules end to end: full, limited, 7-day full, 10-minute window, restart, and current rules."""

from __future__ import annotations

from datetime import timedelta

from controller_stack import Stack, build_stack

from mdm.protocol.isotime import isoformat

SETTINGS = "/deviceManagement/depOnboardingSettings"


def test_full_then_limited_adds_only_new_then_full_after_seven_days_refreshes(onboarded) -> None:
    stack, sid = onboarded
    assert stack.sync(sid).status_code == 204
    first = stack.setting(sid)
    assert (first["lastSyncKind"], first["syncedDeviceCount"], first["syncStatus"]) == ("full", 500, "idle")
    assert first["lastSuccessfulSyncDateTime"] == isoformat(stack.clock.now())
    known = {d["serialNumber"]: d for d in stack.devices(sid)}
    assert len(known) == 500

    edited = sorted(known)[:5]
    for serial in edited:
        stack.portal.edit_device(serial, {"description": f"renamed {serial}"})
    added = stack.portal.generate(10, stack.server_uuid)["serial_numbers"]

    stack.clock.advance(minutes=11)
    assert stack.sync(sid).status_code == 204
    limited = stack.setting(sid)
    assert limited["lastSyncKind"] == "limited"
    assert limited["syncedDeviceCount"] == 510
    after = {d["serialNumber"]: d for d in stack.devices(sid)}
    assert set(after) - set(known) == set(added)
    assert [after[s]["description"] for s in edited] == [known[s]["description"] for s in edited]
    assert stack.tap.counts["POST /devices/sync"] >= 1

    stack.clock.advance(days=7)
    assert stack.sync(sid).status_code == 204
    full = stack.setting(sid)
    assert full["lastSyncKind"] == "full"
    refreshed = {d["serialNumber"]: d for d in stack.devices(sid)}
    assert [refreshed[s]["description"] for s in edited] == [f"renamed {s}" for s in edited]
    assert full["nextFullSyncAvailableDateTime"] == isoformat(stack.clock.now() + timedelta(days=7))


def test_full_sync_marks_serials_gone_from_the_server_deleted(onboarded) -> None:
    stack, sid = onboarded
    stack.sync(sid)
    gone = sorted(d["serialNumber"] for d in stack.devices(sid))[:3]
    stack.portal.unassign(gone, server_uuid=stack.server_uuid)
    stack.clock.advance(days=7, minutes=1)
    stack.sync(sid)
    devices = {d["serialNumber"]: d for d in stack.devices(sid)}
    assert all(devices[s]["isDeleted"] for s in gone)
    assert sum(d["isDeleted"] for d in devices.values()) == 3
    assert stack.setting(sid)["syncedDeviceCount"] == 497
    only = stack.devices(sid, **{"$filter": "isDeleted eq true"})
    assert sorted(d["serialNumber"] for d in only) == gone


def test_paged_fetch_reports_progress(stack: Stack) -> None:
    stack.controller.page_limit = 100
    sid = stack.onboard()
    stack.sync(sid)
    assert stack.setting(sid)["syncProgress"] == {"pages": 5, "devices": 500}
    assert stack.tap.counts["POST /server/devices"] == 5


def test_failed_sync_blocks_until_its_ten_minutes_are_over(onboarded) -> None:
    stack, sid = onboarded
    stack.tap.add("POST /server/devices", (400, "MALFORMED_REQUEST_BODY", {}))
    assert stack.sync(sid).status_code == 204  # accepted; the failure shows on the setting
    failed = stack.setting(sid)
    assert (failed["syncStatus"], failed["lastSyncErrorReason"], failed["lastSyncErrorCode"]) == (
        "failed", "appleServiceError", 400
    )
    stack.clock.advance(minutes=4)
    refused = stack.sync(sid)
    assert refused.status_code == 409
    assert refused.headers["Retry-After"] == "360"
    assert refused.json()["error"]["code"] == "syncInProgress"
    stack.clock.advance(minutes=6)
    assert stack.sync(sid).status_code == 204
    assert stack.setting(sid)["lastSyncKind"] == "full"


def test_sync_running_past_its_window_is_marked_failed(onboarded) -> None:
    stack, sid = onboarded
    stack.tap.add("POST /server/devices", lambda: stack.clock.advance(minutes=11))
    assert stack.sync(sid).status_code == 204
    setting = stack.setting(sid)
    assert (setting["syncStatus"], setting["lastSyncErrorReason"], setting["lastSyncErrorCode"]) == (
        "failed", "syncTimedOut", 408
    )
    assert setting["lastSuccessfulSyncDateTime"] is None
    assert stack.sync(sid).status_code == 204  # the window is over: a new request is accepted


def test_restarted_controller_fails_a_sync_whose_window_passed(onboarded) -> None:
    import threading

    stack, sid = onboarded
    background = stack.make_controller(background=True)
    stack.tap.gate = threading.Event()
    background.request_sync(sid)  # its thread now waits at Apple's door
    assert stack.tap.reached_gate.wait(10)
    assert stack.setting(sid)["syncStatus"] == "running"

    restarted = stack.make_controller()  # a new process on the same store
    stack.clock.advance(minutes=10, seconds=1)
    after = restarted.get_setting(sid)
    assert (after["syncStatus"], after["lastSyncErrorReason"]) == ("failed", "syncTimedOut")

    stack.tap.gate.set()  # the old sync wakes up: it no longer owns the claim and writes nothing
    background.join()
    assert restarted.get_setting(sid)["lastSuccessfulSyncDateTime"] is None
    stack.tap.gate = None
    restarted.request_sync(sid)
    assert restarted.get_setting(sid)["lastSyncKind"] == "full"


def test_expired_token_stops_syncing_with_a_clear_error(onboarded) -> None:
    stack, sid = onboarded
    stack.clock.advance(days=366)
    reply = stack.sync(sid)
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "depTokenExpired"
    setting = stack.setting(sid)
    assert (setting["lastSyncErrorReason"], setting["lastSyncErrorCode"]) == ("depTokenExpired", 401)
    assert "upload" in setting["lastSyncErrorMessage"] and "expired" in setting["lastSyncErrorMessage"]
    assert stack.tap.counts["POST /server/devices"] == 0


def test_current_rules_rate_limit_auto_delta_and_full_after_failed_delta() -> None:
    stack = build_stack(devices=50, rules="current")
    sid = stack.onboard()
    assert stack.sync(sid).status_code == 204
    assert stack.setting(sid)["lastSyncKind"] == "full"

    stack.clock.advance(minutes=5)
    too_soon = stack.sync(sid)
    assert too_soon.status_code == 429
    assert too_soon.headers["Retry-After"] == "600"

    serial = stack.devices(sid)[0]["serialNumber"]
    stack.portal.edit_device(serial, {"description": "edited"})
    stack.clock.advance(hours=12)
    assert stack.controller.tick()["syncsStarted"] == [sid]
    delta = stack.setting(sid)
    assert delta["lastSyncKind"] == "delta"
    assert stack.devices(sid, **{"$filter": f"serialNumber eq '{serial}'"})[0]["description"] == "edited"

    stack.clock.advance(hours=12)
    stack.tap.add("POST /devices/sync", (400, "MALFORMED_REQUEST_BODY", {}))
    stack.controller.tick()
    assert stack.setting(sid)["syncStatus"] == "failed"
    stack.clock.advance(minutes=15)
    assert stack.sync(sid).status_code == 204
    assert stack.setting(sid)["lastSyncKind"] == "full"
