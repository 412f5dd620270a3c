"""End to end, one DEP setting at a time: profile defined through the DEP API → device powered on →
Setup Assistant shows exactly what the profile allows → enrolled in our MDM server → the setting is
visibly in force, as the MDM server (command results) and the user (transcript) see it."""

from __future__ import annotations

import base64

from device_stack import PASSWORD, USER, Stack

from mdm.protocol.x509 import CertificateAuthority, cert_to_der, new_private_key
from simulator.device.agent import COMPANY_PORTAL_STORE_ID, pair_with_host
from simulator.device.machine import DeviceScript

PRE = ["Hello", "Language", "Region", "Keyboard", "SpokenLanguage", "WiFi", "Activation"]
#: Every pane after enrollment an iPhone 14 Pro (cellular) on iOS 17.5 has, in order.
POST_17_5 = [
    "Privacy", "DeviceToDeviceMigration", "Biometric", "Passcode", "Restore", "Android", "AppleID",
    "EnableLockdownMode", "TOS", "SoftwareUpdate", "Location", "Siri", "ScreenTime", "Payment",
    "iMessageAndFaceTime", "MessagingActivationUsingPhoneNumber", "SIMSetup", "Diagnostics", "Safety",
    "Appearance", "AppStore", "Welcome",
]  # fmt: skip


def _device_info(stack: Stack, device, driver, *queries: str) -> dict:
    uuid = stack.command(device.udid, "DeviceInformation", Queries=list(queries))
    driver.run_agent(device)
    result = stack.command_result(uuid)
    assert result["status"] == "Acknowledged", result
    return result["payload"]["QueryResponses"]


def test_skip_setup_items_hide_exactly_those_panes(stack: Stack) -> None:
    device = stack.new_device()
    skip = ["Passcode", "Location", "Restore", "AppleID", "TOS", "Biometric", "Payment", "Siri",
            "Diagnostics",
            "Zoom"]  # fmt: skip
    stack.define_profile([device.serial], skip_setup_items=skip)
    assert stack.driver().run_until_home(device) == "home"

    shown = [p for p, outcome in device.panes() if outcome == "shown"]
    skipped = [p for p, outcome in device.panes() if outcome == "skipped"]
    # Zoom is deprecated in iOS 17 (no pane to skip); Android lives inside the skipped Restore pane;
    # Lockdown Mode is offered only with an Apple Account, which the skipped AppleID pane never set up.
    gone = {"Android", "EnableLockdownMode"}
    assert skipped == [p for p in POST_17_5 if p in skip]
    assert shown == PRE + ["RemoteManagement", "Enrollment"] + [
        p for p in POST_17_5 if p not in skip and p not in gone
    ] + ["HomeScreen"]
    assert device.enrolled and not device.state.passcode_set and not device.state.location_services


def test_supervised_device_reports_supervision_and_department(stack: Stack) -> None:
    device = stack.new_device()
    stack.define_profile([device.serial], is_supervised=True, department="Field Sales",
                         support_phone_number="+1 800 555 0123")  # fmt: skip
    driver = stack.driver()
    assert driver.run_until_home(device) == "home"

    remote = next(e for e in device.transcript if e[0] == "RemoteManagement")
    assert "Contoso Pharmaceuticals" in remote[3]
    assert "About Configuration: Field Sales" in remote[3] and "Need Help: +1 800 555 0123" in remote[3]
    answers = _device_info(
        stack, device, driver, "IsSupervised", "IsActivationLockEnabled", "SerialNumber", "UDID"
    )
    assert answers == {"IsSupervised": True, "IsActivationLockEnabled": False, "SerialNumber": device.serial,
                       "UDID": device.udid}  # fmt: skip
    # Apple marked the device as having fetched its profile.
    details = stack.dep_call("POST", "/devices", {"devices": [device.serial]})["devices"][device.serial]
    assert details["profile_status"] == "pushed" and details["profile_push_time"] == "2026-03-02T09:00:00Z"


def test_unsupervised_device_says_so(stack: Stack) -> None:
    device = stack.new_device()
    stack.define_profile([device.serial])
    driver = stack.driver()
    driver.run_until_home(device)
    assert _device_info(stack, device, driver, "IsSupervised")["IsSupervised"] is False


def test_locked_enrollment_cannot_be_removed(stack: Stack) -> None:
    device = stack.new_device()
    stack.define_profile([device.serial], is_supervised=True, is_mdm_removable=False)
    driver = stack.driver()
    driver.run_until_home(device)

    uuid = stack.command(device.udid, "ProfileList")
    driver.run_agent(device)
    profiles = stack.command_result(uuid)["payload"]["ProfileList"]
    mdm_profile = next(
        p for p in profiles if any(c["PayloadType"] == "com.apple.mdm" for c in p["PayloadContent"])
    )
    assert mdm_profile["PayloadRemovalDisallowed"] is True

    assert driver.remove_mdm_profile(device) is False
    assert device.enrolled
    assert device.transcript[-1][:2] == ("RemoveManagement", "error")
    assert stack.mdm.device(device.udid)["enrolled"] is True


def test_removable_enrollment_checks_out(stack: Stack) -> None:
    device = stack.new_device()
    stack.define_profile([device.serial])
    driver = stack.driver()
    driver.run_until_home(device)
    assert driver.remove_mdm_profile(device) is True
    assert not device.enrolled
    assert stack.mdm.device(device.udid)["enrolled"] is False  # the server saw CheckOut


def test_pairing_follows_allow_pairing_and_supervising_hosts(stack: Stack) -> None:
    ca = CertificateAuthority.create("Configurator", stack.clock.now())
    host = ca.issue(new_private_key().public_key(), subject="Trusted Mac", now=stack.clock.now())
    stranger = ca.issue(new_private_key().public_key(), subject="Stranger Mac", now=stack.clock.now())
    driver = stack.driver()

    blocked = stack.new_device()
    stack.define_profile([blocked.serial], is_supervised=True, allow_pairing=False)
    driver.run_until_home(blocked)
    assert pair_with_host(blocked, cert_to_der(host), stack.clock.now) is False

    pinned = stack.new_device()
    stack.define_profile([pinned.serial], is_supervised=True,
                         supervising_host_certs=[base64.b64encode(cert_to_der(host)).decode()])  # fmt: skip
    driver.run_until_home(pinned)
    assert pair_with_host(pinned, cert_to_der(stranger), stack.clock.now) is False
    assert pair_with_host(pinned, None, stack.clock.now) is False
    assert pair_with_host(pinned, cert_to_der(host), stack.clock.now) is True


def test_company_portal_needs_user_affinity(stack: Stack) -> None:
    driver = stack.driver()
    anonymous = stack.new_device()
    stack.define_profile([anonymous.serial])
    driver.run_until_home(anonymous)
    uuid = stack.command(anonymous.udid, "InstallApplication", iTunesStoreID=COMPANY_PORTAL_STORE_ID,
                         Options={"PurchaseMethod": 1})  # fmt: skip
    driver.run_agent(anonymous)
    result = stack.command_result(uuid)
    assert result["status"] == "Error"
    assert "user affinity" in result["error_chain"][0]["USEnglishDescription"]

    with_user = stack.new_device(script=DeviceScript(username=USER, password=PASSWORD))
    stack.define_profile([with_user.serial], url=f"{stack.mdm_url}/enroll?auth=user")
    assert driver.run_until_home(with_user) == "home"
    assert ("Authentication", "shown") in with_user.panes()
    uuid = stack.command(with_user.udid, "InstallApplication", iTunesStoreID=COMPANY_PORTAL_STORE_ID,
                         Options={"PurchaseMethod": 1})  # fmt: skip
    driver.run_agent(with_user)
    assert stack.command_result(uuid)["status"] == "Acknowledged"
    assert stack.mdm.device(with_user.udid)["user"] == USER


def test_await_device_configured_holds_setup_until_released(stack: Stack) -> None:
    device = stack.new_device()
    stack.define_profile([device.serial], is_supervised=True, await_device_configured=True)
    driver = stack.driver()
    assert driver.run_until_home(device) == "awaiting_configuration"
    assert device.pane == "AwaitingConfiguration"
    assert not any(p == "Privacy" for p, _ in device.panes())  # nothing after the hold yet
    assert stack.mdm.device(device.udid)["awaiting_configuration"] is True
    assert _device_info(stack, device, driver, "AwaitingConfiguration") == {"AwaitingConfiguration": True}
    assert driver.run_until_home(device) == "awaiting_configuration"  # still held: nothing to do

    uuid = stack.command(device.udid, "DeviceConfigured")
    driver.run_agent(device)
    assert stack.command_result(uuid)["status"] == "Acknowledged"
    assert device.phase == "home"
    panes = [p for p, _ in device.panes()]
    assert panes.index("AwaitingConfiguration") < panes.index("Privacy") < panes.index("HomeScreen")
    assert _device_info(stack, device, driver, "AwaitingConfiguration") == {"AwaitingConfiguration": False}


def test_unassigned_device_activates_unmanaged(stack: Stack) -> None:
    device = stack.new_device(assign=False)
    assert stack.driver().run_until_home(device) == "home"
    panes = [p for p, _ in device.panes()]
    assert "RemoteManagement" not in panes and "Enrollment" not in panes
    assert panes[-1] == "HomeScreen" and not device.enrolled
    assert all(outcome == "shown" for _, outcome in device.panes())
