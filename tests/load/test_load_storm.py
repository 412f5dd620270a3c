"""A sync storm against two gunicorn workers sharing SQLite: exactly one sync starts."""

from __future__ import annotations

from simulator.load.server import served_world
from simulator.load.storm import run_storm


def test_a_storm_on_two_workers_starts_one_sync_and_refuses_the_rest_with_retry_after() -> None:
    with served_world(devices=50, seed=41, data_dir="tmp", workers=2) as url:
        report = run_storm(url, requests=100, concurrency=16, apple_latency_ms=1500)
    assert report.started == 1, report.problems
    assert report.refused == 99 and report.other == {}
    assert report.retry_after_ok
    low, high = report.retry_after_range
    assert 1 <= low <= high <= 600  # the 2016 rules' ten-minute window, counted from the one sync
    assert report.sync_finished and report.apple_within_rules
    assert report.apple_fetch_calls == 1  # Apple saw one sync's fetch, not a hundred
