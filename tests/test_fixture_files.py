"""The project's own sample files in ``fixtures/`` do what fixtures/README.md says they do.

depsim-style configs load into a world and change what a DEP client sees; the portal's sample CSVs
assign exactly the serials they list, name the unknown ones and refuse the file that is not UTF-8.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.apple.dep.faults import DEVICE_FAULTS, FAULT_RESPONSES
from simulator.world import World

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIX_SERIALS = [f"C7QX0000FIX{i}" for i in range(1, 6)]


def _config(name: str) -> dict:
    return json.loads((FIXTURES / "depsim" / name).read_text())


def test_every_failure_config_names_only_failures_we_implement_and_all_of_them() -> None:
    config = _config("every-failure.json")
    names = {entry["response"] for queue in config.values() for entry in queue}
    assert names <= set(FAULT_RESPONSES) | set(DEVICE_FAULTS), names - set(FAULT_RESPONSES) - set(DEVICE_FAULTS)
    # every failure name of depsim's vocabulary is exercised by some queue of the file; mdmsim's own
    # additions (an expired cursor, a 503, a per-device throttle) are named in README, not in depsim files
    mdmsim_only = {"bad_request_expired_cursor", "service_unavailable", "throttled"}
    assert set(FAULT_RESPONSES) | set(DEVICE_FAULTS) == names | mdmsim_only
    with World(devices=0) as world:
        world.apply_depsim_config(config)  # accepted as a whole: every key is a queue we know


def test_every_failure_config_plays_its_session_queue_in_order() -> None:
    with World(devices=1, seed=2) as world:
        unscripted = world.http.get("/apple/dep/session").status_code  # no OAuth header: Apple's own answer
        world.apply_depsim_config({"get_session_responses": _config("every-failure.json")["get_session_responses"]})
        statuses = [world.http.get("/apple/dep/session").status_code for _ in range(7)]
    # the queue's order, one response each, then the unscripted answer again
    assert statuses == [401, 400, 403, 403, 429, 405, unscripted]


def test_growing_fleet_config_adds_and_removes_devices_as_world_time_passes() -> None:
    with World(devices=0) as world:
        world.apply_depsim_config(_config("growing-fleet.json"))
        assert len(world.serials) == 0
        world.clock.advance(hours=2, seconds=1)
        world.run_depsim_schedules()
        assert len(world.serials) == 500
        world.clock.advance(days=3)
        world.run_depsim_schedules()
        assert len(world.serials) == 4 * 250 - 2 * 10  # both schedules ran out


def test_flaky_sync_config_inserts_at_once_and_queues_its_failures() -> None:
    with World(devices=0) as world:
        world.apply_depsim_config(_config("flaky-sync.json"))
        assert len(world.serials) == 40
        scripted = world.http.get("/_sim/faults").json()
        assert "post_devices_sync_responses" in json.dumps(scripted)


@pytest.fixture
def portal_world():
    with World(devices=0, seed=5) as world:
        world.portal.add_serials(FIX_SERIALS)
        other = world.portal.create_server("Contoso Intune")["server_uuid"]
        yield world, other


def _post_csv(world: World, server_uuid: str, name: str):
    body = (FIXTURES / "portal" / name).read_bytes()
    return world.http.post(
        "/apple/portal/api/assignments", params={"server_uuid": server_uuid},
        content=body, headers={"Content-Type": "text/csv"},
    )


@pytest.mark.parametrize(
    ("name", "assigned", "not_found"),
    [
        ("assign-with-header.csv", FIX_SERIALS[:3], ["NOSUCHSERIAL9"]),
        ("excel-utf8-bom.csv", FIX_SERIALS[3:5], []),
        ("no-header.csv", FIX_SERIALS[:2], []),
    ],
)
def test_portal_csv_assigns_the_serials_it_lists(portal_world, name: str, assigned: list, not_found: list) -> None:
    world, other = portal_world
    reply = _post_csv(world, other, name)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"assigned": len(assigned), "unchanged": 0, "not_found": not_found}
    assert world.portal.serials(other) == assigned


def test_portal_csv_that_is_not_utf8_is_refused_and_changes_nothing(portal_world) -> None:
    world, other = portal_world
    reply = _post_csv(world, other, "not-utf8.csv")
    assert reply.status_code == 400 and "not UTF-8" in reply.json()["error"]
    assert world.portal.serials(other) == []
