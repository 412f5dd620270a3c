"""What a load report counts and draws: throughput over time, failures by reason, each command's report."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator import World
from simulator.cli import main
from simulator.load.checkin import run_checkins
from simulator.load.fleet import FleetOptions, run_fleet
from simulator.load.report import bin_width, checkin_run, fleet_run, rates, render_html, storm_run, write_report
from simulator.load.sampler import MachineSampler
from simulator.load.server import free_port
from simulator.load.stats import Timeline
from simulator.load.storm import run_storm


def _svg_texts(page: str, section: str) -> set[str]:
    """The text elements of the SVG in ``<section id=section>`` (matplotlib keeps text as text)."""
    body = page.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]
    return {t.strip() for t in re.findall(r"<text[^>]*>([^<]*)</text>", body)}


def test_a_timeline_counts_by_tenth_of_a_second_and_a_plot_draws_rates() -> None:
    timeline = Timeline("done", t0=100.0)
    timeline.add("done", at=100.05)
    timeline.add("done", at=100.31, n=2)
    timeline.add("done", at=102.99)
    timeline.add("done", at=99.0)  # before t0 (a clock read just before the run): the first slot
    assert list(timeline.counts["done"])[:4] == [2, 0, 0, 2] and len(timeline.counts["done"]) == 30
    assert timeline.total("done") == 5
    (series,) = timeline.series("things per second")
    xs, ys = rates(series, 1.0, t0=99.0)  # one-second bins, drawn a second after the report's t0
    assert xs == [1.5, 2.5, 3.5] and ys == pytest.approx([4.0, 0.0, 1.0])
    assert bin_width(3.0, 0.1) == 0.1 and bin_width(60, 0.1) == 2 and bin_width(3600, 0.1) == 120


def test_a_fleet_that_cannot_reach_its_mdm_reports_why_every_device_failed(tmp_path: Path) -> None:
    with World(devices=6, seed=29) as world, world.serve() as served, MachineSampler(0.05) as machine:
        dead = f"http://127.0.0.1:{free_port()}/mdm/enroll"  # nobody listens there
        report = run_fleet(served.url, FleetOptions(devices=6, concurrency=3, mdm_url=dead))
    assert report.failed == 6
    (reason,) = report.failure_reasons  # one reason for six devices: no serial or URL in it
    assert reason.startswith("not enrolled (stopped on ") and "cannot connect" in reason, reason
    assert report.failure_reasons[reason] == 6
    devices = {s.name: s for s in report.throughput if s.axis == "devices per second"}
    assert sum(devices["failed"].counts) == 6 and sum(devices["acknowledged"].counts) == 0
    requests = {s.name: s for s in report.throughput if s.axis == "requests per second"}
    assert sum(requests["requests"].counts) == report.requests

    size = write_report(tmp_path / "r.html", fleet_run(report, machine, "mdmsim load fleet"))
    page = (tmp_path / "r.html").read_text()
    assert size == len(page.encode())
    assert f"device: {reason}" in page and "No failures" not in page
    texts = _svg_texts(page, "failures")
    assert "failures" in texts and "6" in texts  # the axis, and the bar's count
    assert "failed" in _svg_texts(page, "throughput")  # the failed devices' line is drawn


def test_a_storm_report_draws_answers_by_outcome() -> None:
    with World(devices=5, seed=31) as world, world.serve() as served, MachineSampler(0.05) as machine:
        report = run_storm(served.url, requests=24, concurrency=8, apple_latency_ms=300)
    assert report.started == 1 and report.refused == 23
    page = render_html(storm_run(report, machine, "mdmsim load storm"))
    assert {"answers per second", "started (204)", "refused (409/429)"} <= _svg_texts(page, "throughput")
    assert {"started (1)", "refused (23)", "all (24)"} <= _svg_texts(page, "latency")
    assert "204:1 409/429:23" in page


def test_a_checkin_report_shows_the_enrollment_before_the_window() -> None:
    with World(devices=6, seed=37) as world, world.serve() as served, MachineSampler(0.05) as machine:
        report = run_checkins(served.url, devices=6, seconds=0.6, concurrency=3, on_phase=machine.mark)
    assert report.enrollment is not None and report.enrollment.acknowledged == 6
    assert report.round_ms["p50"] > 0
    page = render_html(checkin_run(report, machine, "mdmsim load checkin"))
    assert {"enrollment requests", "check-in requests", "agent rounds", "rounds per second"} <= _svg_texts(
        page, "throughput")
    assert {"enrollment: total", "agent round (check-in window)"} <= _svg_texts(page, "latency")
    labels = {label for _, label in machine.marks}
    assert {"powering on", "steady check-ins", "bare-endpoint floor"} <= labels


def test_report_without_matplotlib_says_what_to_install_before_running(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    result = CliRunner().invoke(main, ["load", "fleet", "--devices", "1", "--target", "http://127.0.0.1:9",
                                       "--report", "r.html"])
    assert result.exit_code == 2
    assert "pip install 'mdmsim[load]'" in result.output and "Traceback" not in result.output
