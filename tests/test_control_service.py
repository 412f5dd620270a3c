"""The simulation control service: the rules of moving the clock, and traffic kept for every process."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mdm.platform.clock import Clock, ClockError
from simulator import World
from simulator.control.service import MAX_ADVANCE_SECONDS, ControlService
from simulator.control.store import RECENT_KEPT, open_world_store

START = datetime(2026, 1, 1, tzinfo=UTC)


def _control(path=None) -> ControlService:
    store = open_world_store(path)
    return ControlService(store, Clock(store, start=START, frozen=True), {"dep": {"forbidden"}})


def test_the_clock_moves_ahead_by_a_number_of_seconds_up_to_a_hundred_years() -> None:
    control = _control()
    assert control.advance_clock(3600) == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert control.advance_clock(0.5) == datetime(2026, 1, 1, 1, 0, 0, 500000, tzinfo=UTC)
    for wrong in ("3600", None, True, [1], {"s": 1}):
        with pytest.raises(ClockError, match="must be a number of seconds"):
            control.advance_clock(wrong)
    for out_of_range in (-1, -0.001, MAX_ADVANCE_SECONDS + 1, float("inf"), float("nan")):
        with pytest.raises(ClockError, match="between 0 and 100 years; the clock never runs backwards"):
            control.advance_clock(out_of_range)
    assert control.clock.now() == datetime(2026, 1, 1, 1, 0, 0, 500000, tzinfo=UTC)  # nothing refused moved it
    before = control.clock.timestamp()
    control.advance_clock(MAX_ADVANCE_SECONDS)  # exactly a hundred years (of 365 days) is allowed
    assert control.clock.timestamp() - before == MAX_ADVANCE_SECONDS


def test_the_clock_jumps_forward_but_never_back() -> None:
    control = _control()
    assert control.set_clock(datetime(2027, 1, 1, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
    with pytest.raises(ClockError, match="never runs backwards"):
        control.set_clock(datetime(2026, 6, 1, tzinfo=UTC))
    assert control.clock.now() == datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory", "data-dir"])
def test_recent_traffic_keeps_the_last_responses_oldest_first(on_disk: bool, tmp_path) -> None:
    control = _control(tmp_path / "world.db" if on_disk else None)
    total = 3 * RECENT_KEPT + 25
    for i in range(total):
        control.record("dep", "GET", f"/apple/dep/{i}", "get_account", 401, 1.234567)
    recent = control.recent_traffic()
    assert [r["path"] for r in recent] == [f"/apple/dep/{i}" for i in range(total - RECENT_KEPT, total)]
    assert recent[-1] == {"at": "2026-01-01T00:00:00Z", "party": "dep", "method": "GET", "path": f"/apple/dep/{total - 1}",
                          "endpoint": "get_account", "status": 401, "ms": 1.23}
    with control.store.read() as db:  # what is stored stays bounded too (trimmed every 64th response)
        assert db.execute("SELECT COUNT(*) FROM recent_traffic").fetchone()[0] < RECENT_KEPT + 64
    assert control.traffic() == {"dep": {"get_account": {"401": total}}}
    control.clear_traffic()
    assert control.recent_traffic() == [] and control.traffic() == {}


def test_a_data_dir_keeps_recent_traffic_where_every_process_reads_it(tmp_path) -> None:
    """Each gunicorn worker opens the data directory itself: what one answered, the other shows."""
    first, second = _control(tmp_path / "world.db"), _control(tmp_path / "world.db")
    first.record("dep", "GET", "/apple/dep/account", "get_account", 401, 1.0)
    second.record("mdm", "PUT", "/mdm/checkin", "checkin", 200, 2.0)
    assert [r["path"] for r in first.recent_traffic()] == ["/apple/dep/account", "/mdm/checkin"]
    assert second.recent_traffic() == first.recent_traffic()


def test_two_worlds_on_one_data_dir_see_the_same_recent_traffic(tmp_path) -> None:
    with World(devices=2, seed=4, data_dir=tmp_path) as first, World(data_dir=tmp_path) as second:
        first.http.get("/apple/dep/account")
        second.http.get("/apple/dep/devices/ABC")
        seen_by_first = first.http.get("/_sim/traffic/recent").json()
        assert [r["path"] for r in seen_by_first[-2:]] == ["/apple/dep/account", "/apple/dep/devices/ABC"]
        assert second.recent_traffic() == seen_by_first
