"""The Simulated devices page as an audience watches it: devices drawn as their screens, driven from the page.

Each device's screen is recorded as the page shows it (a MutationObserver on every screen's
``data-pane``), so the tests see what a person in the room saw, in order, not only where it ended.
``?pace=`` shortens how long each pane stays up, so a walk of forty panes takes a second.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from browser_stack import ROOT, Env, serve_env
from playwright.sync_api import expect

from simulator.device.setup_assistant import applicable_post_panes

pytestmark = pytest.mark.browser

ORG = "Contoso Pharmaceuticals"
#: Two profiles, so "the panes its profile allows" differs from device to device.
HELP_DESK = {"displayName": "Help desk iPhones", "supportDepartment": "IT Help Desk",
             "supportPhoneNumber": "+1 (555) 010-0100", "siriDisabled": True, "applePayDisabled": True,
             "diagnosticsDisabled": True, "awaitDeviceConfiguredConfirmation": True,
             "deviceNameTemplate": "Contoso-{{SERIAL}}"}  # fmt: skip
WAREHOUSE = {"displayName": "Warehouse scanners", "supportDepartment": "Logistics IT",
             "supportPhoneNumber": "+1 408 555 0199", "passCodeDisabled": True, "locationDisabled": True,
             "restoreBlocked": True, "appleIdDisabled": True, "termsAndConditionsDisabled": True,
             "touchIdDisabled": True, "zoomDisabled": True}  # fmt: skip
#: Panes whose showing depends on an earlier choice, not on the profile alone (setup_assistant.py).
CONDITIONAL = {"Android", "EnableLockdownMode"}

RECORD_SCREENS = """
() => {
  window.seen = {};
  const grid = document.getElementById("sim-grid");
  new MutationObserver((records) => {
    for (const r of records) {
      const screen = r.target;
      if (!screen.classList.contains("screen") || screen.dataset.pane === "off") continue;
      const serial = screen.closest(".device").dataset.serial;
      (window.seen[serial] = window.seen[serial] || []).push([screen.dataset.pane, screen.innerText]);
    }
  }).observe(grid, {attributes: true, subtree: true, attributeFilter: ["data-pane"]});
}
"""


def _assigned_world(env: Env) -> tuple[list[str], list[str], list[str]]:
    """Two profiles assigned to four devices each; the last four devices have none."""
    sid = env.onboard()
    profiles = [env.create_profile(sid, **HELP_DESK), env.create_profile(sid, **WAREHOUSE)]
    sync = env.graph.post(f"/depOnboardingSettings/{sid}/syncWithAppleDeviceEnrollmentProgram")
    assert sync.status_code == 204, sync.text
    assert env.world.controller.wait_for_sync(sid, 30)["syncStatus"] != "failed"
    serials = env.serials()
    groups = [serials[:4], serials[4:8]]
    for profile, group in zip(profiles, groups, strict=True):
        reply = env.graph.post(
            f"/depOnboardingSettings/{sid}/enrollmentProfiles/{profile['id']}/updateDeviceProfileAssignment",
            json={"deviceIds": group},
        )
        assert reply.status_code == 204, reply.text
    return groups[0], groups[1], serials[8:]


def _card(page: Any, serial: str) -> Any:
    return page.locator(f'.device[data-serial="{serial}"]')


def test_power_on_all_walks_each_screen_through_the_panes_its_profile_allows(env: Env, page: Any) -> None:
    help_desk, warehouse, unassigned = _assigned_world(env)
    page.goto(f"{env.dashboard}/devices?pace=25")
    _expect_live(page)
    for serial in help_desk + warehouse + unassigned:
        expect(_card(page, serial).locator(".device-state")).to_have_text("Off")
    page.evaluate(RECORD_SCREENS)

    page.get_by_role("button", name="Power on all assigned devices").click()
    for serial in help_desk + warehouse:
        expect(_card(page, serial).locator(".device-state")).to_have_text("Enrolled", timeout=60_000)
    expect(page.locator("#sim-action-result")).to_have_text("Powered on 8 devices with a profile.")
    expect(page.get_by_role("status")).to_contain_text("12 simulated devices, 8 powered on, 8 enrolled")
    seen: dict[str, list[list[str]]] = page.evaluate("window.seen")

    for serial, profile in [(s, HELP_DESK) for s in help_desk] + [(s, WAREHOUSE) for s in warehouse]:
        device = env.world.devices.get(serial)
        panes = [pane for pane, _text in seen[serial]]
        # What the screen showed is the device's walk, pane by pane: the Apple logo, then every pane
        # it showed and nothing it skipped, then the Home Screen with the managed badge.
        assert panes == ["Boot", *(p for p, outcome, *_ in device.transcript if outcome == "shown")], serial
        assert panes[-1] == "HomeScreen"
        skip = set(device.cloud_config["SkipSetup"])
        assert not skip & set(panes), serial
        for pane in set(applicable_post_panes(device)) - CONDITIONAL:
            assert (pane in panes) is (pane not in skip), (serial, pane)
        # The words of the Remote Management pane: the organisation, its department, its phone.
        (management,) = [text for pane, text in seen[serial] if pane == "RemoteManagement"]
        assert ORG in management
        assert re.search(rf"About Configuration\s+{re.escape(profile['supportDepartment'])}", management)
        assert re.search(rf"Need Help\?\s+{re.escape(profile['supportPhoneNumber'])}", management)
        expect(_card(page, serial).locator(".managed-badge")).to_have_text(f"Managed by {ORG}")
    assert {"Siri", "Payment", "Diagnostics"} <= set(env.world.devices.get(help_desk[0]).cloud_config["SkipSetup"])
    assert "AwaitingConfiguration" in [pane for pane, _ in seen[help_desk[0]]]  # held until DeviceConfigured
    for serial in unassigned:
        assert serial not in seen
        expect(_card(page, serial).locator(".device-state")).to_have_text("Off")
    _screenshot(page, "live-devices.png")


def test_power_on_one_device_then_its_timeline_lists_the_enrollment_in_order(env: Env, page: Any) -> None:
    help_desk, _warehouse, _unassigned = _assigned_world(env)
    serial = help_desk[0]
    page.goto(f"{env.dashboard}/devices?pace=25")
    _expect_live(page)
    card = _card(page, serial)
    card.get_by_role("button", name="Power on").click()
    expect(card.locator(".device-state")).to_have_text("Enrolled", timeout=30_000)

    card.get_by_role("button", name="Timeline").click()
    panel = page.get_by_role("dialog")
    expect(panel.get_by_role("heading", level=2)).to_contain_text(serial)
    expect(panel.locator("#curl-power")).to_have_text(re.compile(rf"^curl -X POST http://\S+/_sim/devices/{serial}/power-on$"))
    rows = panel.locator(".seq-row")
    expect(rows.first).to_be_visible()
    steps = rows.evaluate_all(
        "rows => rows.map(r => [r.dataset.source, r.dataset.target, r.dataset.method, r.dataset.path, "
        "r.querySelector('.seq-label em')?.textContent || '', Number(r.dataset.status)])"
    )
    assert all(200 <= step[5] < 300 for step in steps), steps
    enrollment = [(s[0], s[1], s[2], s[4]) for s in steps[:9]]
    assert enrollment == [
        ("device", "activation", "POST", "RequestProfileConfiguration"),
        ("device", "enroll", "POST", "MachineInfo → enrollment profile"),
        ("device", "scep", "GET", "GetCACert"),
        ("device", "scep", "GET", "GetCACaps"),
        ("device", "scep", "POST", "PKIOperation"),
        ("device", "checkin", "PUT", "Authenticate"),
        ("checkin", "controller", "POST", "mdm.Authenticate"),
        ("device", "checkin", "PUT", "TokenUpdate"),
        ("checkin", "controller", "POST", "mdm.TokenUpdate"),
    ]
    later = [(s[0], s[1], s[4]) for s in steps[9:]]
    # The controller names the device and releases it; each command is pushed through APNs, and the
    # device, held at Awaiting Configuration, looks for its push and answers.
    assert later.index(("controller", "mdm-api", "queue Settings")) < later.index(("mdm-api", "apns", "push"))
    assert ("controller", "mdm-api", "queue DeviceConfigured") in later
    assert ("device", "apns", "look for pushes") in later
    assert ("device", "connect", "Acknowledged → DeviceConfigured") in later
    lanes = panel.locator(".seq-head .lane").all_inner_texts()
    assert lanes == ["Device", "Activation", "MDM enroll", "SCEP", "Check-in", "Commands", "Command API", "APNs",
                     "Controller"]

    authenticate = rows.nth(5)
    authenticate.locator(".seq-msg").click()
    detail = authenticate.locator(".seq-detail")
    expect(detail).to_contain_text("XML plist")
    expect(detail.locator("pre.body").first).to_contain_text("<key>MessageType</key>")
    expect(detail.locator("pre.body").first).to_contain_text("<string>Authenticate</string>")
    enroll = rows.nth(1)
    enroll.locator(".seq-msg").click()
    expect(enroll.locator(".seq-detail")).to_contain_text("CMS SignedData by O=Apple Inc.")
    expect(enroll.locator(".seq-detail pre.body").last).to_contain_text("<key>PayloadContent</key>")
    _screenshot(page, "live-timeline.png")

    panel.get_by_role("button", name="Erase").click()
    expect(card.locator(".screen")).to_have_attribute("data-pane", "Hello", timeout=15_000)
    expect(card.locator(".device-state")).to_have_text("Setup: hello")
    assert env.world.devices.get(serial).pane == "Hello"


def test_moving_the_clock_seven_days_makes_the_next_sync_a_full_one(env: Env, page: Any) -> None:
    sid = env.onboard()
    page.goto(f"{env.dashboard}/enrollment/serials?token={sid}")
    kind = page.locator("#sync-kind")
    expect(kind).to_have_text("Next sync: full (every serial number Apple lists for this token).")
    page.get_by_role("button", name="Sync", exact=True).click()
    expect(page.locator("#sync-message")).to_contain_text("Last sync (full)", timeout=10_000)
    expect(kind).to_contain_text("Next sync: limited (only serial numbers not yet listed are added)")
    week = page.locator("#curl-week")
    expect(week).to_have_text(re.compile(r"""^curl -X POST http://\S+/_sim/clock .*'\{"advance_seconds": 604800\}'$"""))

    before = page.locator("#world-now").inner_text()
    page.get_by_role("button", name="Move 1 day").click()
    expect(page.locator("#world-now")).not_to_have_text(before)
    expect(kind).to_contain_text("Next sync: limited")
    page.get_by_role("button", name="Move 7 days").click()
    expect(kind).to_have_text("Next sync: full (every serial number Apple lists for this token).")  # polled; no reload
    page.get_by_role("button", name="Sync", exact=True).click()
    expect(page.locator("#sync-message")).to_contain_text("Last sync (full)", timeout=10_000)
    setting = env.graph.get(f"/depOnboardingSettings/{sid}").json()
    assert setting["lastSyncKind"] == "full"
    _screenshot(page, "sync-blade.png")


def test_without_the_live_feed_the_page_follows_the_device_list(page: Any) -> None:
    """Served without the push gateway (no ``/sim-events``), the screens follow the list, polled."""
    with serve_env(devices=3, seed=7, devices_url="") as env:
        assert env.world.info()["urls"]["sim_events"] is None
        serial = env.serials()[0]
        page.goto(f"{env.dashboard}/devices")
        expect(_card(page, serial).locator(".device-state")).to_have_text("Off")
        expect(page.locator("#sim-live")).to_have_text("Refreshed every 2 s")
        env.world.devices.power_on(serial)  # no profile: activated, unmanaged, straight to the Home Screen
        expect(_card(page, serial).locator(".screen")).to_have_attribute("data-pane", "HomeScreen")
        expect(_card(page, serial).locator(".device-state")).to_have_text("Home Screen")
        expect(page.get_by_role("status")).to_contain_text("3 simulated devices, 1 powered on, 0 enrolled")


def _screenshot(page: Any, name: str) -> None:
    """Where the test stood, at 1280×800, under ``screenshots/`` (docs/ has its own: scripts/docs_screenshots.py)."""
    (ROOT / "screenshots").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "screenshots" / name))


def _expect_live(page: Any) -> None:
    live = page.locator("#sim-live")
    expect(live).to_be_visible()
    expect(live).to_have_text("Live")
