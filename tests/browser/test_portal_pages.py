"""Apple's portal pages (Device Enrollment Program → Manage Devices, MDM Servers) in Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser_stack import Env
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_assign_serials_from_a_csv_file_to_another_server(env: Env, page: Any, tmp_path: Path) -> None:
    """Add a server, upload a CSV of three serials (and one unknown): they move; the unknown is named."""
    page.goto(f"{env.portal_pages}/servers")
    page.get_by_label("MDM server name").fill("Contoso Intune")
    page.get_by_role("button", name="Add MDM Server").click()
    expect(page.get_by_role("status")).to_contain_text("MDM server added")
    expect(page.locator('tr[data-server="Contoso Intune"]')).to_be_visible()

    moved = env.serials()[:3]
    csv_file = tmp_path / "devices.csv"
    csv_file.write_text("Serial Number\n" + "\n".join(moved) + "\nNOSUCHSERIAL1\n")
    page.get_by_role("link", name="Manage Devices").click()
    page.get_by_label("Upload CSV File").check()
    page.get_by_label("CSV file with one serial number per row").set_input_files(str(csv_file))
    page.get_by_label("Assign to Server").check()
    page.get_by_label("MDM server", exact=True).select_option(label="Contoso Intune")
    page.get_by_role("button", name="Perform Action").click()

    result = page.get_by_role("status")
    expect(result).to_contain_text("Assigned 3 devices to Contoso Intune")
    expect(result).to_contain_text("Not found in your organization: NOSUCHSERIAL1")
    for serial in moved:
        expect(page.locator(f'tr[data-serial="{serial}"] [data-server]')).to_have_text("Contoso Intune")
    servers = {s["server_name"]: s["device_count"] for s in env.portal.get("/servers").json()}
    assert servers["Contoso Intune"] == 3
    assert servers["mdmsim"] == 12 - 3


def test_manage_devices_shows_errors_inline_and_keeps_input(env: Env, page: Any) -> None:
    """A typo in a serial and a missing server are explained next to the form, not as an error page."""
    page.goto(f"{env.portal_pages}/devices")
    page.get_by_label("By Serial Number").check()
    page.get_by_label("Serial numbers, separated by commas or one per line").fill("ABC-123")
    page.get_by_role("button", name="Perform Action").click()
    expect(page.get_by_role("alert")).to_contain_text("not serial numbers")
    expect(page.get_by_label("Serial numbers, separated by commas or one per line")).to_have_value("ABC-123")

    serial = env.serials()[0]
    page.get_by_label("Serial numbers, separated by commas or one per line").fill(serial)
    page.get_by_label("Unassign").check()
    page.get_by_role("button", name="Perform Action").click()
    expect(page.get_by_role("status")).to_contain_text("Unassigned 1 device")
    expect(page.locator(f'tr[data-serial="{serial}"] [data-server]')).to_have_text("—")


def test_create_an_api_account_download_its_key_once_and_revoke_it(env: Env, page: Any) -> None:
    """Preferences → API: create an account, download the private key (offered once), revoke it."""
    page.goto(f"{env.portal_pages}/devices")
    page.get_by_role("link", name="API").click()
    page.get_by_label("Account name").fill("Jamf Pro")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("status")).to_contain_text("it can be downloaded only once")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download private key for Jamf Pro").click()
    pem = Path(download.value.path()).read_text()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    page.reload()
    expect(page.get_by_role("link", name="Download private key for Jamf Pro")).to_have_count(0)
    page.get_by_role("button", name="Revoke Jamf Pro").click()
    expect(page.get_by_role("status")).to_contain_text("API account revoked")
    accounts = {a["name"]: a["status"] for a in env.portal.get("/api-accounts").json()}
    assert accounts["Jamf Pro"] == "REVOKED"
