"""The Intune-style dashboard, clicked through in Chromium as an admin would."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from browser_stack import ROOT, Env, serve_env
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_token_onboarding_through_both_sites(env: Env, page: Any, tmp_path: Path) -> None:
    """Create a token, carry its key to the portal and the portal's .p7m back: the expiry shows."""
    page.goto(f"{env.dashboard}/enrollment/tokens")
    page.get_by_label("Token name").fill("Contoso DEP")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_role("heading", name="Contoso DEP", level=1)).to_be_visible()
    expect(page.locator("#token-expiry")).to_have_text("—")

    with page.expect_download() as key_download:
        page.get_by_role("link", name="Download your public key").click()
    key_file = tmp_path / "MDM_public_key.pem"
    key_download.value.save_as(key_file)
    assert key_file.read_text().startswith("-----BEGIN CERTIFICATE-----")

    page.goto(f"{env.portal_pages}/servers")
    row = page.locator("tr", has_text="mdmsim")
    row.get_by_label("Public key file for mdmsim").set_input_files(str(key_file))
    row.get_by_role("button", name="Upload public key for mdmsim").click()
    expect(page.get_by_role("status")).to_contain_text("Public key uploaded")
    with page.expect_download() as token_download:
        page.get_by_role("link", name="Download token for mdmsim").click()
    assert token_download.value.suggested_filename.endswith("_smime.p7m")
    token_file = tmp_path / token_download.value.suggested_filename
    token_download.value.save_as(token_file)

    page.goto(f"{env.dashboard}/enrollment/tokens")
    page.get_by_role("link", name="Contoso DEP").click()
    page.get_by_label("Apple ID").fill("admin@contoso.example")
    page.get_by_label("Apple token (.p7m)").set_input_files(str(token_file))
    page.get_by_role("button", name="Upload token").click()
    expect(page.get_by_role("status").first).to_contain_text("Token uploaded")
    expect(page.locator("#token-expiry")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$"))
    expect(page.locator("#token-status")).to_have_text("Active")


def test_profile_form_shows_the_api_message_and_keeps_input(env: Env, page: Any) -> None:
    """Locked enrollment without supervision: refused with the API's reason; fixed, the profile is made."""
    sid = env.onboard()
    page.goto(f"{env.dashboard}/enrollment/profiles/new?token={sid}")
    page.get_by_label("Name", exact=True).fill("Warehouse scanners")
    page.get_by_label("Description").fill("Shared iPads at the loading docks")
    page.get_by_role("group", name="User affinity").get_by_text("Enroll without User Affinity").click()
    page.get_by_role("group", name="Supervised").get_by_text("No").click()
    page.get_by_role("group", name="Locked enrollment").get_by_text("Yes").click()
    page.get_by_label("Department name").fill("Logistics IT")
    page.get_by_label("Department phone").fill("+1 408 555 0199")
    for pane in ("Siri", "Apple Pay", "Diagnostics Data"):
        page.get_by_role("group", name=pane, exact=True).get_by_text("Hide").click()
    page.get_by_role("button", name="Create profile").click()

    error = page.get_by_role("alert")
    expect(error).to_contain_text("The profile was not created")
    expect(error).to_contain_text("requires supervisedModeEnabled")
    expect(page.get_by_label("Name", exact=True)).to_have_value("Warehouse scanners")
    expect(page.get_by_label("Department name")).to_have_value("Logistics IT")
    expect(page.get_by_role("group", name="Locked enrollment").get_by_label("Yes")).to_be_checked()
    expect(page.get_by_role("group", name="Siri", exact=True).get_by_label("Hide")).to_be_checked()
    page.screenshot(path=str(_screenshot_dir() / "test_profile_form_validation_message.png"), full_page=True)

    page.get_by_role("group", name="Supervised").get_by_text("Yes").click()
    page.get_by_role("button", name="Create profile").click()
    expect(page.get_by_role("status")).to_contain_text("Profile created")
    expect(page.get_by_role("link", name="Warehouse scanners")).to_be_visible()

    (profile,) = env.graph.get(f"/depOnboardingSettings/{sid}/enrollmentProfiles").json()["value"]
    assert profile["profileRemovalDisabled"] and profile["supervisedModeEnabled"]
    assert profile["siriDisabled"] and profile["applePayDisabled"] and profile["diagnosticsDisabled"]
    assert not profile["passCodeDisabled"]
    assert profile["supportDepartment"] == "Logistics IT"


def test_sync_then_assign_a_profile_to_selected_serials(env: Env, page: Any) -> None:
    """Sync lists Apple's devices; the checked serials get the chosen profile (also the README picture)."""
    sid = env.onboard()
    env.create_profile(sid, displayName="Corporate iPhones")
    page.goto(f"{env.dashboard}/enrollment/serials?token={sid}")
    expect(page.locator("#no-devices")).to_be_visible()
    page.get_by_role("button", name="Sync", exact=True).click()
    expect(page.get_by_role("status").first).to_contain_text("Sync requested")
    expect(page.locator("#sync-message")).to_contain_text("12 devices", timeout=10_000)
    page.goto(f"{env.dashboard}/enrollment/serials?token={sid}")
    serials = env.serials()
    expect(page.locator("tbody tr")).to_have_count(len(serials))

    for serial in serials[:3]:
        page.get_by_label(f"Select {serial}").check()
    page.get_by_label("Profile").select_option(label="Corporate iPhones")
    page.get_by_role("button", name="Assign profile to selected devices").click()
    expect(page.locator("#assign-results")).to_contain_text("Profile assigned to 3 of 3 devices")

    def profile_cell(serial: str) -> Any:
        return page.locator("tr", has_text=serial).locator("[data-profile]")

    for serial in serials[:3]:
        expect(profile_cell(serial)).to_have_text("Corporate iPhones")
    expect(profile_cell(serials[3])).to_have_text("—")
    # docs/ is refreshed only on request, so a test run never dirties the checkout.
    target = ROOT / "docs" / "screenshots" if os.environ.get("MDMSIM_UPDATE_DOCS") else _screenshot_dir()
    target.mkdir(exist_ok=True)
    page.screenshot(path=str(target / "profile-assigned.png"))


def test_sync_button_waits_out_the_window_after_a_failed_sync(env: Env, page: Any) -> None:
    """Apple refuses (new terms): Sync stays disabled with the time left, and comes back when it is over."""
    sid = env.onboard()
    env.world.portal_service.set_terms_required(True)
    page.goto(f"{env.dashboard}/enrollment/serials?token={sid}")
    button = page.get_by_role("button", name="Sync", exact=True)
    expect(button).to_be_enabled()
    button.click()

    expect(button).to_be_disabled()
    message = page.locator("#sync-message")
    expect(message).to_contain_text("accept the new terms")
    expect(message).to_contain_text(re.compile(r"You can sync again in \d+ min \d+ s"))
    expect(page.get_by_role("progressbar", name="Time until you can sync again")).to_be_visible()
    page.screenshot(path=str(_screenshot_dir() / "test_sync_button_disabled_with_time_left.png"))

    env.world.portal_service.set_terms_required(False)
    window = env.graph.get(f"/depOnboardingSettings/{sid}").json()
    assert window["syncStatus"] == "failed"
    env.world.clock.advance(minutes=16)
    expect(button).to_be_enabled()  # the page polls every second; no reload
    expect(page.get_by_role("progressbar", name="Time until you can sync again")).to_be_hidden()


def test_simulated_devices_page_without_a_simulation_says_so(page: Any) -> None:
    """Served without a device list (an MDM product's own demo), the page explains instead of failing."""
    with serve_env(devices=1, seed=7, devices_url="http://127.0.0.1:9/_sim/devices") as env:
        page.goto(f"{env.dashboard}/devices")
        expect(page.get_by_role("status")).to_contain_text("No simulated devices here")
        expect(page.locator("#sim-grid")).to_be_hidden()
        expect(page.get_by_role("button", name="Power on all assigned devices")).to_have_count(0)


def test_devices_enroll_after_power_on(env: Env, page: Any) -> None:
    """Power on two assigned devices: the Simulated devices page shows them walk through to enrolled."""
    sid = env.onboard()
    profile = env.create_profile(sid, displayName="Zero touch")
    sync = env.graph.post(f"/depOnboardingSettings/{sid}/syncWithAppleDeviceEnrollmentProgram")
    assert sync.status_code == 204, sync.text
    page.goto(f"{env.dashboard}/enrollment/serials?token={sid}")
    expect(page.locator("#sync-message")).to_contain_text("12 devices", timeout=10_000)
    chosen = env.serials()[:2]
    reply = env.graph.post(
        f"/depOnboardingSettings/{sid}/enrollmentProfiles/{profile['id']}/updateDeviceProfileAssignment",
        json={"deviceIds": chosen},
    )
    assert reply.status_code == 204, reply.text

    page.goto(f"{env.dashboard}/devices?pace=20")
    expect(page.locator("#sim-live")).to_have_text("Live")
    for serial in chosen:
        env.world.devices.power_on(serial)  # from Python: the page follows without a reload
    for serial in chosen:
        card = page.locator(f'.device[data-serial="{serial}"]')
        expect(card.locator(".device-state")).to_have_text("Enrolled", timeout=15_000)
        expect(card.locator(".screen")).to_have_attribute("data-pane", "HomeScreen")
    expect(page.get_by_role("status")).to_contain_text("2 enrolled")

    page.goto(f"{env.dashboard}/enrollment/serials?token={sid}")
    for serial in chosen:
        expect(page.locator("tr", has_text=serial)).to_contain_text("enrolled")
    page.goto(f"{env.dashboard}/devices")
    expect(page.get_by_role("status")).to_contain_text("2 enrolled")
    for serial in chosen:  # a page opened later shows where each device is, without replaying its walk
        expect(page.locator(f'.device[data-serial="{serial}"] .screen')).to_have_attribute("data-pane", "HomeScreen")


def _screenshot_dir() -> Path:
    path = ROOT / "screenshots"
    path.mkdir(exist_ok=True)
    return path
