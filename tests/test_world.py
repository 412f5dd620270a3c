"""The composition root: one clock, simulation control, isolation, reset and persistence."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from simulator import World
from simulator.world import DEPSIM_CREDENTIALS


@pytest.fixture
def world():
    with World(devices=20, seed=7) as w:
        yield w


def test_clock_endpoint_moves_forward_only(world: World) -> None:
    before = world.http.get("/_sim/clock").json()["now"]
    moved = world.http.post("/_sim/clock", json={"advance_seconds": 86400 * 8})
    assert moved.status_code == 200
    assert moved.json()["now"] > before
    back = world.http.post("/_sim/clock", json={"now": "2000-01-01T00:00:00Z"})
    assert back.status_code == 400
    assert "backwards" in back.json()["error"]
    assert world.http.post("/_sim/clock", json={"advance_seconds": "soon"}).status_code == 400
    assert world.http.post("/_sim/clock", content=b"{not json").status_code == 400


def test_traffic_counts_requests_per_party_endpoint_and_status(world: World) -> None:
    world.http.get("/apple/dep/account")  # no session: 401 from Apple
    world.http.get("/apple/dep/account")
    counts = world.http.get("/_sim/traffic").json()
    assert counts["dep"]["get_account"]["401"] == 2


@pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory", "data-dir"])
def test_traffic_counts_stay_exact_across_reads_resets_and_clears(on_disk: bool, tmp_path) -> None:
    """In memory, counts gather in the process and reach the store on read; on disk, every response
    writes. Either way a reader sees every response so far, and a reset or a clear forgets them."""
    with World(devices=2, seed=8, data_dir=tmp_path if on_disk else None) as world:
        for expected in (1, 2, 3):  # reading flushes; counting goes on after each read
            world.http.get("/apple/dep/account")
            assert world.traffic()["dep"]["get_account"]["401"] == expected
        world.http.get("/apple/dep/account")
        world.reset()  # the world as seeded: requests after the snapshot are forgotten, unread ones too
        assert "get_account" not in world.traffic().get("dep", {})
        world.http.get("/apple/dep/account")
        assert world.http.delete("/_sim/traffic").status_code in (200, 204)
        assert "get_account" not in world.traffic().get("dep", {})
        world.http.get("/apple/dep/account")
        assert world.traffic()["dep"]["get_account"] == {"401": 1}


def test_the_worlds_client_answers_in_process_calls_like_httpx_would(world: World) -> None:
    """Plain calls to the world take a shortcut around httpx's models; what a caller sees is the same
    as on httpx's own path (``params`` forces that one): status, headers, body, request, errors."""
    fast = world.http.get("/apple/dep/account")
    slow = world.http.get("/apple/dep/account", params={})
    assert fast.status_code == slow.status_code == 401
    assert fast.content == slow.content and fast.headers["content-type"] == slow.headers["content-type"]
    assert fast.request.url == "http://mdmsim.invalid/apple/dep/account" == slow.request.url
    assert world.traffic()["dep"]["get_account"] == {"401": 2}  # both went through the world's middleware
    missing = world.http.get("http://mdmsim.invalid/_sim/no%20such?x=1")
    assert missing.status_code == 404 and missing.url.path == "/_sim/no such"
    with pytest.raises(httpx.HTTPStatusError, match="404"):
        missing.raise_for_status()
    before = world.clock.now()
    moved = world.http.post("/_sim/clock", json={"advance_seconds": 3600})  # a JSON body arrives intact
    assert moved.status_code == 200 and (world.clock.now() - before).total_seconds() >= 3600
    # the world's own token goes with every in-process call to a protected surface, unless one is given
    world.control.set_setting("api_token", "t0ken")
    assert world.http.get("/_sim/traffic").status_code == 200
    assert world.http.get("/_sim/traffic", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_faults_script_depsim_responses_then_clear(world: World) -> None:
    script = {"get_session_responses": [{"count": 2, "response": "forbidden_t_c_not_signed"}]}
    assert world.http.post("/_sim/faults", json=script).status_code == 200
    for _ in range(2):
        reply = world.http.get("/apple/dep/session", headers={"User-Agent": "t"})
        assert (reply.status_code, reply.text) == (403, "T_C_NOT_SIGNED")
    assert world.http.get("/apple/dep/session", headers={"User-Agent": "t"}).status_code != 403
    bad = world.http.post("/_sim/faults", json={"get_session_responses": [{"response": "nonsense"}]})
    assert bad.status_code == 400 and "nonsense" in bad.json()["error"]
    world.http.post("/_sim/faults", json={"get_account_responses": [{"count": 5, "response": "unauthorized"}]})
    assert world.http.delete("/_sim/faults").status_code == 204
    assert world.http.get("/_sim/faults").json() == {}


def test_too_many_requests_fault_carries_retry_after(world: World) -> None:
    world.http.post("/_sim/faults", json={"get_session_responses": [{"count": 1, "response": "too_many_requests"}]})
    reply = world.http.get("/apple/dep/session", headers={"User-Agent": "t"})
    assert reply.status_code == 429 and reply.text == "TOO_MANY_REQUESTS"
    assert int(reply.headers["Retry-After"]) > 0


def test_two_worlds_share_nothing() -> None:
    # one seed and one start replay a world; wall time passing between the two must not tell them apart
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    with World(devices=3, seed=1, start=start, frozen_clock=True) as a, \
            World(devices=5, seed=1, start=start, frozen_clock=True) as b:  # fmt: skip
        assert len(a.serials) == 3 and len(b.serials) == 5
        a.clock.advance(days=30)
        assert (a.clock.now() - b.clock.now()).days >= 29
        # one seed, the same credentials (a seed replays a world) but no state in common
        assert a.dep_credentials == b.dep_credentials
        a.portal.release(a.serials[:1])
        assert len(a.serials) == 2 and len(b.serials) == 5
    with World(devices=1) as c, World(devices=1) as d:
        assert c.dep_credentials["consumer_key"] != d.dep_credentials["consumer_key"]


def test_reset_restores_the_seeded_world(world: World) -> None:
    serials = list(world.serials)
    world.http.post("/apple/portal/api/devices", json={"count": 5})
    world.http.post("/_sim/faults", json={"get_account_responses": [{"count": 1, "response": "forbidden"}]})
    assert len(world.serials) == 25
    assert world.http.post("/_sim/reset").status_code == 200
    assert world.serials == serials
    assert world.http.get("/_sim/faults").json() == {}


def test_depsim_compat_serves_dep_at_root_with_well_known_credentials() -> None:
    with World(devices=2, depsim_compat=True) as world:
        token = world.http.get("/token").json()
        assert token["consumer_key"] == DEPSIM_CREDENTIALS["consumer_key"]
        assert world.http.get("/account").status_code == 401  # the DEP API answers at the root too


def test_depsim_config_inserts_devices_as_world_time_passes() -> None:
    with World(devices=0) as world:
        world.apply_depsim_config({
            "device_insertions": {"devices_per_event": 5, "interval_in_seconds": 3600, "max_event_count": 3},
            "get_account_responses": [{"count": 1, "response": "forbidden"}],
        })
        assert len(world.serials) == 0
        world.clock.advance(hours=2)
        world.http.get("/apple/dep/account")  # any DEP call applies what is due
        assert len(world.serials) == 10
        world.clock.advance(days=1)
        world.run_depsim_schedules()
        assert len(world.serials) == 15  # max_event_count


def test_data_dir_world_survives_a_restart(tmp_path) -> None:
    with World(devices=12, seed=3, data_dir=tmp_path) as first:
        serials = first.serials
        credentials = first.dep_credentials
        first.clock.advance(days=3)
        moved = first.clock.now()
    with World(devices=999, data_dir=tmp_path) as second:  # an existing world is not seeded again
        assert second.serials == serials
        assert second.dep_credentials == credentials
        assert second.clock.now() >= moved


def test_served_world_answers_over_real_sockets(world: World) -> None:
    import httpx

    with world.serve() as served:
        assert served.url.startswith("http://127.0.0.1:")
        assert served.dep_url == f"{served.url}/apple/dep"
        assert httpx.get(f"{served.url}/_sim/clock").status_code == 200
    assert world.url == "http://mdmsim.invalid"


def test_sim_devices_lists_the_organisation_with_live_state(world: World) -> None:
    first = world.serials[0]
    world.devices.power_on(first)
    listed = {d["serial_number"]: d for d in world.http.get("/_sim/devices").json()["devices"]}
    assert set(listed) == set(world.serials)
    assert listed[first]["phase"] == "home" and listed[first]["model"]
    assert all(d["phase"] == "off" for s, d in listed.items() if s != first)
    assert world.http.get("/_sim/devices?limit=0").status_code == 400
    assert world.http.get("/_sim/devices/NOPE/identity").status_code == 404
