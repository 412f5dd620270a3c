"""Apple's errors, scripted through ``/_sim/faults``, and what the controller does with each.

These run the real controller against the real DEP service in one world; the faults are injected
exactly as a user's test would inject them, in depsim's vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests_support import GRAPH, onboard

from simulator import World

SYNC = "syncWithAppleDeviceEnrollmentProgram"


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def world(waits: list[float]) -> Iterator[World]:
    with World(devices=30, seed=4, background_sync=False, controller_sleep=waits.append) as w:
        yield w


def sync(world: World, setting: str) -> dict:
    reply = world.http.post(f"{GRAPH}/{setting}/{SYNC}")
    assert reply.status_code == 204, reply.text
    return world.http.get(f"{GRAPH}/{setting}").json()


def script(world: World, endpoint: str, response: str, count: int = 1) -> None:
    reply = world.http.post("/_sim/faults", json={f"{endpoint}_responses": [{"count": count, "response": response}]})
    assert reply.status_code == 200, reply.text


def dep_calls(world: World, endpoint: str, status: str = "200") -> int:
    return world.traffic().get("dep", {}).get(endpoint, {}).get(status, 0)


def test_expired_cursor_starts_over_with_a_full_fetch(world: World) -> None:
    setting = onboard(world)
    assert sync(world, setting)["syncedDeviceCount"] == 30
    world.portal.generate(3, server_uuid=world.default_server_uuid)
    world.clock.advance(minutes=11)
    fetches = dep_calls(world, "post_server_devices")
    script(world, "post_devices_sync", "bad_request_expired_cursor")
    after = sync(world, setting)
    assert after["syncStatus"] != "failed", after
    assert dep_calls(world, "post_devices_sync", "400") == 1
    assert dep_calls(world, "post_server_devices") > fetches  # started over with a fetch
    assert after["syncedDeviceCount"] == 33


def test_401_mid_sync_renews_the_session_and_finishes(world: World) -> None:
    setting = onboard(world)
    sessions = dep_calls(world, "get_session")
    script(world, "post_server_devices", "unauthorized")
    after = sync(world, setting)
    assert after["syncStatus"] != "failed" and after["syncedDeviceCount"] == 30
    assert dep_calls(world, "get_session") == sessions + 1


def test_terms_not_signed_fails_the_sync_with_what_to_do(world: World) -> None:
    setting = onboard(world)
    script(world, "post_server_devices", "forbidden_t_c_not_signed")
    after = sync(world, setting)
    assert after["syncStatus"] == "failed"
    assert (after["lastSyncErrorCode"], after["lastSyncErrorReason"]) == (403, "termsAndConditionsNotAccepted")
    assert "Apple Business Manager" in after.get("lastSyncErrorMessage", "")


def test_429_is_honoured_with_retry_after(world: World, waits: list[float]) -> None:
    setting = onboard(world)
    script(world, "post_server_devices", "too_many_requests")
    after = sync(world, setting)
    assert after["syncStatus"] != "failed" and after["syncedDeviceCount"] == 30
    assert waits and waits[0] == 60  # the Retry-After the scripted 429 carried
    assert dep_calls(world, "post_server_devices", "429") == 1


def test_throttled_serials_are_reported_and_retried_later(world: World) -> None:
    setting = onboard(world)
    sync(world, setting)
    profile = world.http.post(f"{GRAPH}/{setting}/enrollmentProfiles", json={"displayName": "P"}).json()["id"]
    serials = world.serials[:3]
    script(world, "post_profile_devices", "throttled")
    reply = world.http.post(f"{GRAPH}/{setting}/enrollmentProfiles/{profile}/updateDeviceProfileAssignment",
                            json={"deviceIds": serials})
    assert reply.status_code == 200, reply.text
    assert {r["status"] for r in reply.json()["value"]} == {"THROTTLED"}
    world.clock.advance(minutes=5)
    assert world.controller.tick()["assignmentsRetried"] == 3
    dep = world.http.get(f"/apple/portal/api/devices?server_uuid={world.default_server_uuid}").json()["devices"]
    assert {d["serial_number"] for d in dep if d["profile_status"] == "assigned"} == set(serials)
