"""``mdmsim load fleet --report``: the file opens in Chromium with the network cut off and shows its plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from browser_stack import SCREENSHOTS, VIEWPORT

AXIS_TITLES = {"seconds since start", "requests per second", "devices per second", "latency (ms)",
               "memory (RSS, MB)"}  # fmt: skip


def test_a_fleet_report_opens_offline_and_draws_every_plot(browser: Any, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    run = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "load", "fleet", "--devices", "50", "--concurrency", "16",
         "--report", str(report)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1])["acknowledged"] == 50

    url = report.resolve().as_uri()
    context = browser.new_context(viewport=VIEWPORT, offline=True)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    # anything but the file itself is refused, as on a machine without a network
    context.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
    page = context.new_page()
    try:
        page.goto(url)
        page.wait_for_load_state("load")
        assert page.title().startswith("Fleet enrollment: 50 devices")
        assert page.locator("script").count() == 0  # nothing to run, so nothing that could fetch

        texts = {t.strip() for t in page.locator("svg text").all_text_contents()}
        assert AXIS_TITLES <= texts, AXIS_TITLES - texts
        assert any(t.startswith("CPU (% of") for t in texts)
        assert {"activation", "enrollment", "first_command", "total", "p50", "p95", "p99"} <= texts
        assert {"requests", "enrolled", "acknowledged", "whole machine"} <= texts  # the legends

        for section in ("throughput", "latency", "machine"):
            figure = page.locator(f"section#{section} figure svg")
            box = figure.bounding_box()
            assert box is not None and box["width"] > 600 and box["height"] > 200, (section, box)
        # every data line is drawn through several points, and is on screen (not collapsed to nothing)
        for section in ("throughput", "machine"):
            lines = page.locator(f"section#{section} svg g[id^='line2d'] path")
            drawn = [lines.nth(i) for i in range(lines.count())
                     if (lines.nth(i).get_attribute("d") or "").count("L") >= 3]
            assert len(drawn) >= 3, section
            assert all((box := line.bounding_box()) is not None and box["width"] > 50 for line in drawn)
        bars = page.locator("section#latency svg g[id^='patch'] path")
        assert bars.count() >= 12  # p50, p95 and p99 of four phases (and the axes' background)
        assert "No failures" in page.locator("section#failures").inner_text()
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "load_report_fleet.png"), full_page=True)
    finally:
        context.close()
    assert requested == [url], requested  # the page asked for nothing beyond itself
