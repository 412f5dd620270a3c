"""Enrollment profiles become Apple profiles; assignments and imported identities follow Apple's answers."""

from __future__ import annotations

import base64
import hashlib

import pytest
from controller_stack import Stack

from mdm.protocol import x509 as mx509

PROFILES = "/deviceManagement/depOnboardingSettings/{sid}/enrollmentProfiles"

SKIPS = {
    "passCodeDisabled": "Passcode",
    "locationDisabled": "Location",
    "restoreBlocked": "Restore",
    "appleIdDisabled": "AppleID",
    "termsAndConditionsDisabled": "TOS",
    "touchIdDisabled": "Biometric",
    "applePayDisabled": "Payment",
    "zoomDisabled": "Zoom",
    "siriDisabled": "Siri",
    "diagnosticsDisabled": "Diagnostics",
    "screenTimeScreenDisabled": "ScreenTime",
}


def _host_cert_b64(stack: Stack) -> str:
    key = mx509.new_private_key()
    return base64.b64encode(mx509.cert_to_der(mx509.self_signed(key, "Mac host", stack.clock.now()))).decode()


def test_every_setting_reaches_the_profile_apple_stores(onboarded) -> None:
    stack, sid = onboarded
    cert = _host_cert_b64(stack)
    body = {
        "@odata.type": "#microsoft.graph.depIOSEnrollmentProfile",
        "displayName": "Corporate iPhones",
        "description": "for the sales team",
        "requiresUserAuthentication": True,
        "supervisedModeEnabled": True,
        "profileRemovalDisabled": True,
        "iTunesPairingMode": "requiresCertificate",
        "managementCertificates": [{"certificate": cert}],
        "supportDepartment": "IT Help Desk",
        "supportPhoneNumber": "+1 425 555 0100",
        "awaitDeviceConfiguredConfirmation": True,
        "isMandatory": True,
        **{name: True for name in SKIPS},
    }
    created = stack.api.post(PROFILES.format(sid=sid), json=body)
    assert created.status_code == 201, created.text
    profile = created.json()
    assert profile["@odata.type"] == "#microsoft.graph.depIOSEnrollmentProfile"
    assert all(profile[k] == v for k, v in body.items() if k not in ("@odata.type", "managementCertificates"))
    [returned] = profile["managementCertificates"]  # Graph's managementCertificateWithThumbprint
    assert returned["certificate"] == cert
    assert returned["thumbprint"] == hashlib.sha1(base64.b64decode(cert)).hexdigest().upper()

    stored = stack.apple_client().get_profile(profile["appleProfileUuid"])
    assert stored["profile_name"] == "Corporate iPhones"
    assert stored["url"] == "http://mdmsim.invalid/mdm/enroll?auth=user"
    assert stored["is_supervised"] is True
    assert stored["is_mdm_removable"] is False
    assert stored["allow_pairing"] is False
    assert stored["supervising_host_certs"] == [cert]
    assert stored["department"] == "IT Help Desk"
    assert stored["support_phone_number"] == "+1 425 555 0100"
    assert stored["await_device_configured"] is True
    assert stored["is_mandatory"] is True
    assert sorted(stored["skip_setup_items"]) == sorted(SKIPS.values())

    sent = stack.api.get(PROFILES.format(sid=sid) + f"/{profile['id']}/appleProfile").json()
    assert sent["profile_uuid"] == profile["appleProfileUuid"]
    assert {k: stored[k] for k in sent["profile"]} == sent["profile"]


def test_update_redefines_the_apple_profile(onboarded) -> None:
    stack, sid = onboarded
    profile = stack.api.post(PROFILES.format(sid=sid), json={"displayName": "A"}).json()
    patched = stack.api.patch(
        PROFILES.format(sid=sid) + f"/{profile['id']}", json={"siriDisabled": True}
    ).json()
    assert patched["appleProfileUuid"] != profile["appleProfileUuid"]
    assert stack.apple_client().get_profile(patched["appleProfileUuid"])["skip_setup_items"] == ["Siri"]
    assert stack.apple_client().get_profile(patched["appleProfileUuid"])["url"].endswith("/mdm/enroll")
    assert stack.api.delete(PROFILES.format(sid=sid) + f"/{profile['id']}").status_code == 204
    assert stack.api.get(PROFILES.format(sid=sid)).json()["value"] == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "displayName is required"),
        ({"displayName": "x", "supervisedModeEnabled": False, "profileRemovalDisabled": True}, "supervised"),
        ({"displayName": "x", "iTunesPairingMode": "requiresCertificate"}, "managementCertificates"),
        ({"displayName": "x", "iTunesPairingMode": "sometimes"}, "iTunesPairingMode"),
        (
            {"displayName": "x", "managementCertificates": [{"certificate": "bm90IGEgY2VydA=="}]},
            "not a certificate",
        ),
        ({"displayName": "x", "siriDisabled": "yes"}, "true or false"),
    ],
)
def test_invalid_settings_are_400_with_a_reason(onboarded, body, words) -> None:
    stack, sid = onboarded
    reply = stack.api.post(PROFILES.format(sid=sid), json=body)
    assert reply.status_code == 400
    assert words in reply.json()["error"]["message"]
    assert stack.tap.counts["POST /profile"] == 0


def test_apples_profile_validation_error_is_a_400(onboarded) -> None:
    stack, sid = onboarded
    stack.tap.add("POST /profile", (400, "CONFIG_URL_INVALID", {}))
    reply = stack.api.post(PROFILES.format(sid=sid), json={"displayName": "x"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert (error["code"], error["message"]) == ("appleRejected", "Apple rejected the enrollment profile: CONFIG_URL_INVALID")


def test_default_profile_is_assigned_to_new_serials_after_a_sync(onboarded) -> None:
    stack, sid = onboarded
    profile = stack.api.post(
        PROFILES.format(sid=sid),
        json={"displayName": "Default", "isDefault": True, "supervisedModeEnabled": True},
    ).json()
    stack.sync(sid)
    devices = stack.devices(sid)
    assert {d["requestedEnrollmentProfileId"] for d in devices} == {profile["id"]}
    assert all(d["isSupervised"] and d["requestedEnrollmentProfileAssignmentDateTime"] for d in devices)
    assert stack.tap.counts["POST /profile/devices"] == 1
    details = stack.apple_client().device_details([devices[0]["serialNumber"]])["devices"]
    assert details[devices[0]["serialNumber"]]["profile_uuid"] == profile["appleProfileUuid"]

    other = stack.api.post(
        PROFILES.format(sid=sid), json={"displayName": "New default", "isDefault": True}
    ).json()
    assert stack.api.get(PROFILES.format(sid=sid) + f"/{profile['id']}").json()["isDefault"] is False
    new = stack.portal.generate(2, stack.server_uuid)["serial_numbers"]
    stack.clock.advance(minutes=11)
    stack.sync(sid)
    by_serial = {d["serialNumber"]: d["requestedEnrollmentProfileId"] for d in stack.devices(sid)}
    assert [by_serial[s] for s in new] == [other["id"]] * 2
    assert list(by_serial.values()).count(profile["id"]) == 500


def test_assignment_reports_not_accessible_and_chunks_by_thousand() -> None:
    from controller_stack import build_stack

    stack = build_stack(devices=1500)
    sid = stack.onboard()
    stack.sync(sid)
    profile = stack.api.post(PROFILES.format(sid=sid), json={"displayName": "P"}).json()
    url = PROFILES.format(sid=sid) + f"/{profile['id']}/updateDeviceProfileAssignment"
    serials = [d["serialNumber"] for d in stack.devices(sid)]
    assert stack.api.post(url, json={"deviceIds": serials}).status_code == 204
    assert stack.tap.counts["POST /profile/devices"] == 2

    reply = stack.api.post(url, json={"deviceIds": [serials[0], "NOTOURS00001"]})
    assert reply.status_code == 200
    assert reply.json()["value"] == [
        {"serialNumber": serials[0], "status": "SUCCESS"},
        {"serialNumber": "NOTOURS00001", "status": "NOT_ACCESSIBLE"},
    ]
    assert stack.api.post(url, json={"deviceIds": []}).status_code == 400


def test_imported_identities_page_and_filter(onboarded) -> None:
    stack, sid = onboarded
    stack.sync(sid)
    url = f"/deviceManagement/depOnboardingSettings/{sid}/importedAppleDeviceIdentities"
    first = stack.api.get(url).json()
    assert len(first["value"]) == 100
    assert "$skiptoken=" in first["@odata.nextLink"]
    second = stack.api.get(first["@odata.nextLink"]).json()
    assert {d["id"] for d in first["value"]}.isdisjoint(d["id"] for d in second["value"])
    everything = stack.devices(sid)
    assert len(everything) == 500 and len({d["serialNumber"] for d in everything}) == 500
    device = everything[42]
    assert device["discoverySource"] == "deviceEnrollmentProgram"
    assert device["platform"] == "ios"
    assert device["enrollmentState"] == "notContacted"
    assert device["description"]
    assert device["createdDateTime"] == "2026-03-02T09:00:00Z"

    only = stack.api.get(url, params={"$filter": f"serialNumber eq '{device['serialNumber']}'"}).json()
    assert only == {"value": [device]}
    assert stack.api.get(f"{url}/{device['id']}").json() == device
    assert len(stack.api.get(url, params={"$top": "5000"}).json()["value"]) == 500  # capped at 1000
    for bad in ({"$top": "0"}, {"$skiptoken": "???"}, {"$filter": "model gt 'x'"}):
        reply = stack.api.get(url, params=bad)
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "badRequest"
