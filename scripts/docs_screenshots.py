#!/usr/bin/env python3
"""Screenshots of the dashboard's pages at 1280×800, from a real run, for ``docs/``.

Runs ``mdmsim demo``'s story up to the assignment of the profile (a world served on a local port,
every step an HTTP call), then opens each page in the system's Chromium (Playwright, as the browser
tests do), powers the devices on from the Simulated devices page and photographs them mid-walk.
Writes ``docs/screenshots/*.png`` and ``docs/dashboard.png`` (the README's picture).

    python scripts/docs_screenshots.py [--devices 10] [--seed 3]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402
from rich.console import Console  # noqa: E402

from simulator.demo import Demo, DemoResult  # noqa: E402
from simulator.world import World  # noqa: E402

CHROMIUM = os.environ.get("MDMSIM_CHROMIUM", "/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 800}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    out = ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    console = Console(quiet=True)
    with World(devices=0, seed=args.seed, push_certificate=False) as world, world.serve() as served:
        story = Demo(world, served.url, console, user_affinity=False, quiet=True)
        server = story.organisation(args.devices)
        story.push_certificate()
        setting = story.token(server)
        profile_id, _apple = story.profile()
        serials = story.assign_in_portal(server, args.devices)
        story.sync(setting)
        story.assign_profile(setting, profile_id, serials)
        base = f"{served.url}/intune"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport=VIEWPORT)

            def shot(name: str) -> None:
                page.screenshot(path=str(out / f"{name}.png"))
                print(out / f"{name}.png")

            for name, path in [("overview", "/"), ("push-certificate", "/enrollment/push-certificate"),
                               ("tokens", "/enrollment/tokens"), ("token", f"/enrollment/tokens/{setting}"),
                               ("profiles", f"/enrollment/profiles?token={setting}"),
                               ("profile", f"/enrollment/profiles/{profile_id}?token={setting}"),
                               ("profile-form", f"/enrollment/profiles/new?token={setting}"),
                               ("sync-blade", f"/enrollment/serials?token={setting}")]:  # fmt: skip
                page.goto(base + path)
                page.wait_for_load_state("networkidle")
                shot(name)

            page.goto(f"{base}/devices?pace=450")
            expect(page.locator("#sim-live")).to_have_text("Live")
            shot("simulated-devices-off")
            page.get_by_role("button", name="Power on all assigned devices").click()
            first = page.locator(f'.device[data-serial="{serials[0]}"] .screen')
            expect(first).to_have_attribute("data-pane", "Privacy", timeout=60_000)  # mid-walk: a row of panes
            shot("simulated-devices")
            page.screenshot(path=str(ROOT / "docs" / "dashboard.png"))
            expect(page.locator(".device-state").first).to_have_text("Enrolled", timeout=120_000)
            story.device_information(serials[:1], DemoResult(devices=1))  # a command pushed, the device answers
            page.locator(f'.device[data-serial="{serials[0]}"]').get_by_role("button", name="Timeline").click()
            rows = page.get_by_role("dialog").locator(".seq-row")
            expect(rows.nth(11)).to_be_visible()
            rows.nth(5).locator(".seq-msg").click()
            expect(rows.nth(5).locator(".seq-detail pre.body").first).to_contain_text("Authenticate")
            shot("device-timeline")
            browser.close()


if __name__ == "__main__":
    main()
