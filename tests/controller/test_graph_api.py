"""Graph as Microsoft's SDKs and admins' scripts call it: function URLs, default profiles, every profile
property and what it becomes at Apple, OData query options, and what an enrolled device is sent next."""

from __future__ import annotations

import base64
import plistlib

import pytest
from controller_stack import FAKE_MOBILECONFIG, Stack

SETTINGS = "/deviceManagement/depOnboardingSettings"
PROFILES = SETTINGS + "/{sid}/enrollmentProfiles"
DEVICES = SETTINGS + "/{sid}/importedAppleDeviceIdentities"
IOS = "#microsoft.graph.depIOSEnrollmentProfile"
MACOS = "#microsoft.graph.depMacOSEnrollmentProfile"


def _create(stack: Stack, sid: str, **body: object) -> dict:
    reply = stack.api.post(PROFILES.format(sid=sid), json={"displayName": "P", **body})
    assert reply.status_code == 201, reply.text
    return reply.json()


def _apple(stack: Stack, profile: dict) -> dict:
    return stack.apple_client().get_profile(profile["appleProfileUuid"])


# == functions, actions, navigation properties ==================================================
def test_functions_answer_with_and_without_parentheses(onboarded) -> None:
    stack, sid = onboarded
    for path in (
        f"{SETTINGS}/{sid}/getEncryptionPublicKey",
        "/deviceManagement/applePushNotificationCertificate/downloadApplePushNotificationCertificateSigningRequest",
    ):
        bare, called = stack.api.get(path), stack.api.get(path + "()")
        assert bare.status_code == called.status_code == 200
        assert bare.json() == called.json() and bare.json()["value"].startswith("-----BEGIN")
    profile = _create(stack, sid)
    export = f"{PROFILES.format(sid=sid)}/{profile['id']}/exportMobileConfig"
    for path in (export, export + "()"):
        assert base64.b64decode(stack.api.get(path).json()["value"]) == FAKE_MOBILECONFIG
    assert {"enrollment-profile": {}} in stack.mdm_received  # the controller asked the MDM server for it
    # an action is not a function: no () form, and POST only
    assert stack.api.post(f"{SETTINGS}/{sid}/syncWithAppleDeviceEnrollmentProgram()").status_code == 404
    assert stack.api.get(f"{SETTINGS}/{sid}/syncWithAppleDeviceEnrollmentProgram").status_code == 405


def test_set_default_profile_per_platform_and_the_sync_assigns_it(stack: Stack) -> None:
    stack.portal.add_devices(
        [{"serial_number": "C02MAC000001", "model": "MacBook Air", "device_family": "Mac", "os": "OSX"}],
        server_uuid=stack.server_uuid,
    )
    sid = stack.onboard()
    default_ios = f"{SETTINGS}/{sid}/defaultIosEnrollmentProfile"
    assert stack.api.get(default_ios).status_code == 204  # OData: no related entity
    first, second = _create(stack, sid, displayName="First"), _create(stack, sid, displayName="Second")
    mac = _create(stack, sid, **{"@odata.type": MACOS, "displayName": "Macs"})

    for chosen, other in ((first, second), (second, first)):
        action = stack.api.post(f"{PROFILES.format(sid=sid)}/{chosen['id']}/setDefaultProfile")
        assert action.status_code == 204
        default = stack.api.get(default_ios)
        assert (default.json()["id"], default.json()["isDefault"]) == (chosen["id"], True)
        assert stack.api.get(f"{PROFILES.format(sid=sid)}/{other['id']}").json()["isDefault"] is False
    assert stack.api.get(f"{SETTINGS}/{sid}/defaultMacOsEnrollmentProfile").status_code == 204
    stack.api.post(f"{PROFILES.format(sid=sid)}/{mac['id']}/setDefaultProfile")
    assert stack.api.get(f"{SETTINGS}/{sid}/defaultMacOsEnrollmentProfile").json()["id"] == mac["id"]
    assert stack.api.get(default_ios).json()["id"] == second["id"]  # each platform keeps its own

    stack.sync(sid)
    by_profile = {d["serialNumber"]: d["requestedEnrollmentProfileId"] for d in stack.devices(sid)}
    assert by_profile.pop("C02MAC000001") == mac["id"]
    assert set(by_profile.values()) == {second["id"]}
    assert stack.api.post(f"{PROFILES.format(sid=sid)}/nope/setDefaultProfile").status_code == 404


# == profile properties ===========================================================================
def test_skip_keys_list_and_booleans_stay_one_setting(onboarded) -> None:
    stack, sid = onboarded
    profile = _create(stack, sid, enabledSkipKeys=["Siri", "Keyboard"], passCodeDisabled=True)
    assert profile["enabledSkipKeys"] == ["Siri", "Keyboard", "Passcode"]
    assert (profile["siriDisabled"], profile["passCodeDisabled"], profile["zoomDisabled"]) == (True, True, False)
    assert _apple(stack, profile)["skip_setup_items"] == ["Siri", "Keyboard", "Passcode"]
    url = f"{PROFILES.format(sid=sid)}/{profile['id']}"
    patched = stack.api.patch(url, json={"siriDisabled": False, "restoreFromAndroidDisabled": True}).json()
    assert patched["enabledSkipKeys"] == ["Keyboard", "Passcode", "Android"] and patched["siriDisabled"] is False
    replaced = stack.api.patch(url, json={"enabledSkipKeys": ["TOS"]}).json()
    assert (replaced["termsAndConditionsDisabled"], replaced["passCodeDisabled"]) == (True, False)


def test_await_and_wait_for_device_configured_are_one_setting(onboarded) -> None:
    stack, sid = onboarded
    profile = _create(stack, sid, waitForDeviceConfiguredConfirmation=True)
    assert profile["awaitDeviceConfiguredConfirmation"] is True and _apple(stack, profile)["await_device_configured"]
    url = f"{PROFILES.format(sid=sid)}/{profile['id']}"
    off = stack.api.patch(url, json={"awaitDeviceConfiguredConfirmation": False}).json()
    assert off["waitForDeviceConfiguredConfirmation"] is False and not _apple(stack, off)["await_device_configured"]
    both = stack.api.patch(url, json={"awaitDeviceConfiguredConfirmation": True, "waitForDeviceConfiguredConfirmation": False})
    assert both.status_code == 400 and "one setting" in both.json()["error"]["message"]


def test_settings_with_an_apple_counterpart_reach_apples_profile(onboarded) -> None:
    stack, sid = onboarded
    profile = _create(
        stack, sid, enableSharedIPad=True, configurationWebUrl=True, requiresUserAuthentication=False,
        sharedIPadMaximumUserCount=10, carrierActivationUrl="https://carrier.example/esim",
        enrollmentTimeAzureAdGroupIds=["0A3B6C4E-8F00-4D1A-9C55-2B7F9E1D3A10"],
    )
    apple = _apple(stack, profile)
    assert apple["is_multi_user"] is True
    assert apple["configuration_web_url"] == apple["url"] == "http://mdmsim.invalid/mdm/enroll"
    assert profile["configurationEndpointUrl"] == apple["url"]  # where devices enroll, as Intune shows it
    # stored and returned, with nothing at Apple to carry them
    assert profile["sharedIPadMaximumUserCount"] == 10 and profile["carrierActivationUrl"] == "https://carrier.example/esim"
    assert profile["enrollmentTimeAzureAdGroupIds"] == ["0a3b6c4e-8f00-4d1a-9c55-2b7f9e1d3a10"]

    mac = _create(stack, sid, **{
        "@odata.type": MACOS, "fileVaultDisabled": True, "registrationDisabled": True, "autoAdvanceSetupEnabled": True,
        "adminAccountUserName": "admin", "adminAccountPassword": "s3cret!", "zoomDisabled": True,
    })
    assert mac["@odata.type"] == MACOS and mac["adminAccountUserName"] == "admin"
    assert mac["adminAccountPassword"] is None  # accepted, never kept or shown
    assert "enableSharedIPad" not in mac and "iTunesPairingMode" not in mac
    apple = _apple(stack, mac)
    assert apple["auto_advance_setup"] is True and sorted(apple["skip_setup_items"]) == ["FileVault", "Registration", "Zoom"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"kioskMode": True}, "unknown property 'kioskMode' of depIOSEnrollmentProfile"),
        ({"@odata.type": MACOS, "enableSharedIPad": True}, "unknown property 'enableSharedIPad' of depMacOSEnrollmentProfile"),
        ({"@odata.type": "#microsoft.graph.depTvOSEnrollmentProfile"}, "@odata.type must be"),
        ({"sharedIPadMaximumUserCount": "12"}, "must be an integer"),
        ({"sharedIPadMaximumUserCount": -1}, "must be an integer"),
        ({"temporarySessionTimeoutInSeconds": True}, "must be an integer"),
        ({"enrollmentTimeAzureAdGroupIds": ["not-a-guid"]}, "GUIDs"),
        ({"enabledSkipKeys": ["Siri", "no spaces"]}, "skip keys"),
        ({"deviceNameTemplate": "{{UDID}}"}, "{{SERIAL}} and {{DEVICETYPE}}"),
        ({"enableSharedIPad": True, "supervisedModeEnabled": False}, "supervisedModeEnabled"),
        ({"enableSharedIPad": True, "requiresUserAuthentication": True}, "user affinity"),
        ({"enableSingleAppEnrollmentMode": True}, "companyPortalVppTokenId"),
        ({"companyPortalVppTokenId": "x"}, "enableAuthenticationViaCompanyPortal"),
    ],
)
def test_refusals_name_the_property(onboarded, body, words) -> None:
    stack, sid = onboarded
    reply = stack.api.post(PROFILES.format(sid=sid), json={"displayName": "x", **body})
    assert reply.status_code == 400, reply.text
    assert words in reply.json()["error"]["message"]
    assert stack.tap.counts["POST /profile"] == 0


def test_a_profile_keeps_its_type_and_reads_back_what_it_was_sent(onboarded) -> None:
    stack, sid = onboarded
    profile = _create(stack, sid)
    url = f"{PROFILES.format(sid=sid)}/{profile['id']}"
    assert stack.api.patch(url, json={"@odata.type": MACOS}).status_code == 400
    # what a script read, sent back whole (server-made properties and annotations included), is accepted
    echoed = stack.api.patch(url, json={**profile, "@odata.context": "x", "displayName@odata.type": "#String"})
    assert echoed.status_code == 200, echoed.text
    assert {k: v for k, v in echoed.json().items() if k not in ("appleProfileUuid", "lastModifiedDateTime")} == {
        k: v for k, v in profile.items() if k not in ("appleProfileUuid", "lastModifiedDateTime")
    }


# == OData query options ==========================================================================
def test_devices_take_skip_orderby_select_count_and_filter(onboarded) -> None:
    stack, sid = onboarded
    stack.sync(sid)
    url = DEVICES.format(sid=sid)
    serials = sorted(d["serialNumber"] for d in stack.devices(sid))
    page = stack.api.get(url, params={"$orderby": "serialNumber desc", "$top": "3", "$skip": "2", "$count": "true",
                                      "$select": "serialNumber,deviceFamily"}).json()
    assert page["@odata.count"] == len(serials)
    assert [d["serialNumber"] for d in page["value"]] == serials[::-1][2:5]
    assert set(page["value"][0]) == {"@odata.type", "serialNumber", "deviceFamily"}
    follow = stack.api.get(page["@odata.nextLink"]).json()  # $skip is not applied twice
    assert [d["serialNumber"] for d in follow["value"]] == serials[::-1][5:8]
    assert "$skip=" not in page["@odata.nextLink"] and "$orderby=serialNumber" in page["@odata.nextLink"]

    ipads = stack.api.get(url, params={"$filter": "deviceFamily eq 'iPad'"})
    assert ipads.status_code == 400  # not a filterable property here: said, not ignored
    prefix = serials[0][:2]
    started = stack.api.get(url, params={"$filter": f"startswith(serialNumber,'{prefix.lower()}')", "$top": "999"}).json()
    assert {d["serialNumber"] for d in started["value"]} == {s for s in serials if s.startswith(prefix)}
    others = stack.api.get(url, params={"$filter": f"serialNumber ne '{serials[0]}' and isDeleted eq false",
                                        "$top": "999"}).json()
    assert len(others["value"]) == len(serials) - 1
    count = stack.api.get(url + "/$count", params={"$filter": f"serialNumber eq '{serials[0]}'"})
    assert (count.status_code, count.text, count.headers["Content-Type"].split(";")[0]) == (200, "1", "text/plain")
    one = stack.api.get(f"{url}/{stack.devices(sid)[0]['id']}", params={"$select": "serialNumber"})
    assert set(one.json()) == {"@odata.type", "serialNumber"}


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"$expand": "x"}, "Query option '$expand' is not supported"),
        ({"$search": '"x"'}, "Query option '$search' is not supported"),
        ({"$format": "json"}, "Query option '$format' is not supported"),
        ({"$select": "serialNumber,nope"}, "Could not find a property named 'nope'"),
        ({"$orderby": "color"}, "$orderby supports"),
        ({"$orderby": "serialNumber sideways"}, "$orderby takes"),
        ({"$skip": "-1"}, "$skip"),
        ({"$count": "yes"}, "$count"),
        ({"$filter": "serialNumber gt 'A'"}, "$filter supports"),
        ({"$skiptoken": "bm9wZQ"}, "$skiptoken"),
    ],
)
def test_what_a_collection_does_not_support_is_a_400(onboarded, params, words) -> None:
    stack, sid = onboarded
    reply = stack.api.get(DEVICES.format(sid=sid), params=params)
    assert reply.status_code == 400, reply.text
    assert words in reply.json()["error"]["message"]


def test_options_without_dollar_repeats_and_entity_options(onboarded) -> None:
    stack, sid = onboarded
    stack.sync(sid)
    url = DEVICES.format(sid=sid)
    assert len(stack.api.get(url, params={"top": "2"}).json()["value"]) == 2  # beta: the $ is optional
    repeated = stack.api.get(url + "?$top=1&$top=2")
    assert repeated.status_code == 400 and "more than once" in repeated.json()["error"]["message"]
    entity = stack.api.get(f"{SETTINGS}/{sid}", params={"$top": "1"})
    assert entity.status_code == 400 and "collections only" in entity.json()["error"]["message"]
    assert set(stack.api.get(f"{SETTINGS}/{sid}", params={"$select": "tokenName"}).json()) == {"@odata.type", "tokenName"}


def test_settings_and_profiles_take_the_same_options(onboarded) -> None:
    stack, sid = onboarded
    for name in ("Charlie", "alpha", "Bravo"):
        _create(stack, sid, displayName=name)
    url = PROFILES.format(sid=sid)
    ordered = stack.api.get(url, params={"$orderby": "displayName", "$select": "displayName", "$count": "true"}).json()
    assert [p["displayName"] for p in ordered["value"]] == ["Bravo", "Charlie", "alpha"] and ordered["@odata.count"] == 3
    paged = stack.api.get(url, params={"$top": "2", "$orderby": "displayName desc"}).json()
    rest = stack.api.get(paged["@odata.nextLink"]).json()
    assert [p["displayName"] for p in paged["value"] + rest["value"]] == ["alpha", "Charlie", "Bravo"]
    assert "@odata.nextLink" not in rest
    found = stack.api.get(url, params={"$filter": "displayName eq 'Bravo' and isDefault eq false"}).json()["value"]
    assert [p["displayName"] for p in found] == ["Bravo"]
    assert stack.api.get(url + "/$count").text == "3"
    settings = stack.api.get(SETTINGS, params={"$filter": f"id eq '{sid}'", "$select": "id,lastSyncErrorCode"}).json()
    assert settings["value"] == [{"@odata.type": "#microsoft.graph.depOnboardingSetting", "id": sid, "lastSyncErrorCode": 0}]


# == after enrollment ===============================================================================
def _token_update(stack: Stack, serial: str, udid: str, *, awaiting: bool) -> None:
    """The MDM server's webhook events for an Authenticate and a TokenUpdate of this device."""
    raw = plistlib.dumps({"MessageType": "TokenUpdate", "UDID": udid, "AwaitingConfiguration": awaiting})
    authenticate = plistlib.dumps({"MessageType": "Authenticate", "UDID": udid, "SerialNumber": serial})
    for topic, payload in (("mdm.Authenticate", authenticate), ("mdm.TokenUpdate", raw)):
        event = {"topic": topic, "event_id": "e", "created_at": "2026-03-02T09:00:00Z",
                 "checkin_event": {"udid": udid, "raw_payload": base64.b64encode(payload).decode()}}
        assert stack.api.post("/webhooks/mdm", json=event).status_code == 204


def test_an_enrolled_device_is_named_then_released_once(onboarded) -> None:
    stack, sid = onboarded
    stack.sync(sid)
    profile = _create(stack, sid, waitForDeviceConfiguredConfirmation=True, deviceNameTemplate="{{DEVICETYPE}} {{SERIAL}}")
    device = stack.devices(sid)[0]
    stack.api.post(f"{PROFILES.format(sid=sid)}/{profile['id']}/updateDeviceProfileAssignment",
                   json={"deviceIds": [device["serialNumber"]]})
    udid = "00008110-000A11CE0000001E"
    _token_update(stack, device["serialNumber"], udid, awaiting=True)
    sent = [r["command"] for r in stack.mdm_received if "command" in r]
    assert sent == [
        {"udids": [udid], "command": {"RequestType": "Settings", "Settings": [
            {"Item": "DeviceName", "DeviceName": f"{device['deviceFamily']} {device['serialNumber']}"}]}},
        {"udids": [udid], "command": {"RequestType": "DeviceConfigured"}},
    ]
    _token_update(stack, device["serialNumber"], udid, awaiting=False)  # a later token refresh: nothing more
    assert len([r for r in stack.mdm_received if "command" in r]) == 2
