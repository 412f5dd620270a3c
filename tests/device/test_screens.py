"""What a device's screen says on a pane, and a device as a live page follows it (numbered transcript entries)."""

from __future__ import annotations

from datetime import UTC, datetime

from simulator.device.machine import TRANSCRIPT_LIMIT, Device, DeviceState
from simulator.device.screens import LIVE_ENTRIES, fields_of, live_view, render

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
IDENTITY = {"serial_number": "F17ABCDEFGHJ", "udid": "0000-1", "model_name": "iPhone 15 Pro", "device_family": "iPhone",
            "biometric": "FaceID", "product_name": "iPhone16,1", "os": "iOS", "os_version": "18.1", "color": "Black"}


def device(**config: object) -> Device:
    state = DeviceState(identity=dict(IDENTITY), device_key_pem="", device_cert_pem="", apple_url="http://x/apple")
    state.cloud_config = {"OrganizationName": "Contoso", "OrganizationDepartment": "IT Help Desk",
                          "OrganizationSupportPhone": "+1 555 0100", "IsSupervised": True, **config}
    return Device(state)


def test_the_remote_management_pane_names_the_organisation_its_department_and_phone() -> None:
    screen = render("RemoteManagement", fields_of(device().state))
    assert screen["title"] == "Remote Management"
    assert screen["body"] == "Contoso will automatically configure your iPhone."
    assert screen["rows"] == [["About Configuration", "IT Help Desk"], ["Need Help?", "+1 555 0100"]]
    assert screen["button"] == "Enroll This iPhone"
    assert render("Biometric", fields_of(device().state))["title"] == "Face ID"
    assert render("NoSuchPane", {})["title"] == "NoSuchPane"


def test_entries_keep_their_numbers_when_the_oldest_go_and_an_erase_starts_the_view_afresh() -> None:
    phone = device()
    for n in range(TRANSCRIPT_LIMIT + 50):
        phone.record("Passcode", "shown", NOW, f"entry {n}")
    view = live_view(phone.state)
    assert view["recorded"] == TRANSCRIPT_LIMIT + 50
    assert len(view["entries"]) == LIVE_ENTRIES
    assert view["entries"][-1][0] == TRANSCRIPT_LIMIT + 49 and view["entries"][-1][4] == f"entry {TRANSCRIPT_LIMIT + 49}"
    assert [e[0] for e in view["entries"]] == list(range(TRANSCRIPT_LIMIT + 50 - LIVE_ENTRIES, TRANSCRIPT_LIMIT + 50))

    phone.record("EraseDevice", "info", NOW, "erased")
    phone.record("Hello", "shown", NOW)
    view = live_view(phone.state)
    assert [e[1] for e in view["entries"]] == ["EraseDevice", "Hello"]
    assert view["entries"][0][0] == TRANSCRIPT_LIMIT + 50
    assert (view["fields"]["org"], view["supervised"], view["family"]) == ("Contoso", True, "iPhone")
