"""Apple's errors, each handled the way Apple documents (scripted in front of the real DEP service)."""

from __future__ import annotations

from controller_stack import Stack

PROFILES = "/deviceManagement/depOnboardingSettings/{sid}/enrollmentProfiles"


def _synced(stack: Stack, sid: str) -> None:
    assert stack.sync(sid).status_code == 204
    assert stack.setting(sid)["syncStatus"] == "idle"


def test_expired_cursor_on_limited_sync_starts_over_with_a_full_fetch(onboarded) -> None:
    stack, sid = onboarded
    _synced(stack, sid)
    added = stack.portal.generate(3, stack.server_uuid)["serial_numbers"]
    stack.clock.advance(minutes=11)
    stack.tap.add("POST /devices/sync", (400, '"EXPIRED_CURSOR"', {}))  # quoted, as some clients see it
    fetches = stack.tap.counts["POST /server/devices"]
    assert stack.sync(sid).status_code == 204
    setting = stack.setting(sid)
    assert (setting["syncStatus"], setting["lastSyncKind"], setting["syncedDeviceCount"]) == (
        "idle",
        "full",
        503,
    )
    assert stack.tap.counts["POST /server/devices"] == fetches + 1
    assert {d["serialNumber"] for d in stack.devices(sid)} >= set(added)


def test_invalid_cursor_also_starts_over(onboarded) -> None:
    stack, sid = onboarded
    _synced(stack, sid)
    stack.clock.advance(minutes=11)
    stack.tap.add("POST /devices/sync", (400, "INVALID_CURSOR", {}))
    stack.sync(sid)
    assert stack.setting(sid)["lastSyncKind"] == "full"


def test_401_mid_sync_renews_the_session_and_finishes(onboarded) -> None:
    stack, sid = onboarded
    stack.controller.page_limit = 100
    stack.tap.add("POST /server/devices", lambda: None, (401, "UNAUTHORIZED", {}))  # the 2nd page fails once
    sessions = stack.tap.counts["GET /session"]
    stack.sync(sid)
    setting = stack.setting(sid)
    assert (setting["syncStatus"], setting["syncedDeviceCount"]) == ("idle", 500)
    assert stack.tap.counts["GET /session"] == sessions + 1
    assert stack.tap.counts["POST /server/devices"] == 6  # 5 pages + the one retried


def test_403_forbidden_renews_the_session(onboarded) -> None:
    stack, sid = onboarded
    stack.tap.add("POST /server/devices", (403, "FORBIDDEN", {}))  # depsim after a restart
    stack.sync(sid)
    assert stack.setting(sid)["syncStatus"] == "idle"
    assert stack.tap.counts["GET /session"] == 2


def test_terms_not_signed_is_surfaced_with_what_to_do(onboarded) -> None:
    stack, sid = onboarded
    stack.portal.set_terms_required(True)  # Apple's real refusal: every call answers 403 T_C_NOT_SIGNED
    stack.sync(sid)
    setting = stack.setting(sid)
    assert setting["syncStatus"] == "failed"
    # Graph's Int32 is Apple's status; the reason travels in its own field
    assert (setting["lastSyncErrorCode"], setting["lastSyncErrorReason"]) == (403, "termsAndConditionsNotAccepted")
    assert "accept the new terms and conditions in Apple Business Manager" in setting["lastSyncErrorMessage"]
    reply = stack.api.post(PROFILES.format(sid=sid), json={"displayName": "Corporate"})
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "termsAndConditionsNotAccepted"

    stack.portal.set_terms_required(False)
    stack.clock.advance(minutes=10)
    stack.sync(sid)
    after = stack.setting(sid)
    assert (after["lastSyncErrorCode"], after["lastSyncErrorReason"]) == (0, None)


def test_429_honours_retry_after_with_the_injected_sleep(onboarded) -> None:
    stack, sid = onboarded
    stack.tap.add(
        "POST /server/devices",
        (429, "TOO_MANY_REQUESTS", {"Retry-After": "17"}),
        (503, "SERVICE_UNAVAILABLE", {}),  # no Retry-After: exponential backoff
    )
    stack.sync(sid)
    assert stack.setting(sid)["syncStatus"] == "idle"
    assert stack.sleeps == [17.0, 2.0]  # 17 s as asked, then the second attempt's backoff


def test_429_forever_gives_up_after_bounded_attempts(onboarded) -> None:
    stack, sid = onboarded
    stack.tap.add("POST /server/devices", *[(429, "TOO_MANY_REQUESTS", {})] * 10)
    stack.sync(sid)
    setting = stack.setting(sid)
    assert (setting["syncStatus"], setting["lastSyncErrorReason"], setting["lastSyncErrorCode"]) == (
        "failed", "appleRateLimited", 429
    )
    assert stack.sleeps == [1.0, 2.0, 4.0, 8.0]  # five attempts, four waits
    assert stack.tap.counts["POST /server/devices"] == 5


def test_throttled_serials_are_retried_after_apples_delay(onboarded) -> None:
    stack, sid = onboarded
    stack.sync(sid)
    profile = stack.api.post(PROFILES.format(sid=sid), json={"displayName": "Corporate"}).json()
    serials = [d["serialNumber"] for d in stack.devices(sid)][:4]
    stack.tap.device_fault["POST /profile/devices"] = ["throttled"]
    reply = stack.api.post(
        PROFILES.format(sid=sid) + f"/{profile['id']}/updateDeviceProfileAssignment",
        json={"deviceIds": serials},
    )
    assert reply.status_code == 200
    results = reply.json()["value"]
    assert {r["status"] for r in results} == {"THROTTLED"}
    assert all(r["retryAfterDateTime"] for r in results)

    assert stack.controller.tick()["assignmentsRetried"] == 0  # not yet: Apple asked us to wait
    stack.clock.advance(seconds=60)
    assert stack.controller.tick()["assignmentsRetried"] == 4
    by_serial = {d["serialNumber"]: d for d in stack.devices(sid)}
    assert all(by_serial[s]["requestedEnrollmentProfileId"] == profile["id"] for s in serials)
    assert all(by_serial[s]["profileAssignmentStatus"] == "SUCCESS" for s in serials)


def test_a_fresh_session_header_replaces_the_stored_session(onboarded) -> None:
    stack, sid = onboarded

    def stored() -> str:
        with stack.store.read() as db:
            return db.execute("SELECT session_token FROM tokens WHERE id = ?", (sid,)).fetchone()[0]

    first = stored()
    stack.clock.advance(minutes=2)  # Apple's session is older than a minute: replies carry a new one
    stack.sync(sid)
    assert stored() != first
    assert stack.tap.counts["GET /session"] == 1  # replaced from the header, never re-authenticated
