"""An Intune admin's automation, written with Microsoft's own Graph beta SDK (``msgraph-beta-sdk``), run
unchanged against the controller but for its base URL and bearer token, over a real socket.

It tells the seed's whole story the SDK's way (function URLs with ``()``, ``@odata.type``-discriminated
models, OData query options, ``@odata.nextLink`` paging, errors as ``ODataError``), round-trips a profile
that sets every writable property of ``depIOSEnrollmentProfile``, and powers on the device it assigned.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid
from typing import Any

import httpx
import pytest
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph_beta import GraphRequestAdapter, GraphServiceClient
from msgraph_beta.generated.device_management.dep_onboarding_settings.item.enrollment_profiles.item.update_device_profile_assignment.update_device_profile_assignment_post_request_body import (  # noqa: E501
    UpdateDeviceProfileAssignmentPostRequestBody,
)
from msgraph_beta.generated.device_management.dep_onboarding_settings.item.imported_apple_device_identities.imported_apple_device_identities_request_builder import (  # noqa: E501
    ImportedAppleDeviceIdentitiesRequestBuilder,
)
from msgraph_beta.generated.device_management.dep_onboarding_settings.item.upload_dep_token.upload_dep_token_post_request_body import (  # noqa: E501
    UploadDepTokenPostRequestBody,
)
from msgraph_beta.generated.models.apple_push_notification_certificate import ApplePushNotificationCertificate
from msgraph_beta.generated.models.dep_i_o_s_enrollment_profile import DepIOSEnrollmentProfile
from msgraph_beta.generated.models.dep_onboarding_setting import DepOnboardingSetting
from msgraph_beta.generated.models.i_tunes_pairing_mode import ITunesPairingMode
from msgraph_beta.generated.models.management_certificate_with_thumbprint import ManagementCertificateWithThumbprint
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_core.tasks.page_iterator import PageIterator

from mdm.protocol import cms
from mdm.protocol import x509 as mx509
from simulator import World
from simulator.load.drivers import run_coroutine

# The generated request builders warn about their own deprecated configuration classes on every call.
pytestmark = pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning")

TOKEN = "graph-sdk-test-token"
APPLE_ID = "admin@contoso.example"


class StaticToken(AccessTokenProvider):
    """The one thing an admin changes besides the base URL: where the bearer token comes from."""

    async def get_authorization_token(self, uri: str, additional_authentication_context: Any = None) -> str:
        return TOKEN

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return AllowedHostsValidator([])


def graph_client(base_url: str) -> GraphServiceClient:
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(StaticToken()))
    adapter.base_url = base_url  # instead of https://graph.microsoft.com/beta
    return GraphServiceClient(request_adapter=adapter)


def every_writable_property(host_cert_b64: str) -> dict[str, Any]:
    """A value for each property of the SDK's ``DepIOSEnrollmentProfile`` (checked against the model)."""
    values: dict[str, Any] = {
        "display_name": "Shared iPads, front desk",
        "description": "every property the SDK knows",
        "requires_user_authentication": False,  # a Shared iPad enrolls without user affinity
        "configuration_endpoint_url": "https://example.invalid/ignored",  # the controller's to set
        "enable_authentication_via_company_portal": True,
        "require_company_portal_on_setup_assistant_enrolled_devices": True,
        "configuration_web_url": True,
        "device_name_template": "Desk-{{SERIAL}}",
        "enabled_skip_keys": ["Keyboard", "SpokenLanguage"],
        "enrollment_time_azure_ad_group_ids": [uuid.UUID("0a3b6c4e-8f00-4d1a-9c55-2b7f9e1d3a10")],
        "is_default": True,
        "is_mandatory": True,
        "profile_removal_disabled": True,
        "supervised_mode_enabled": True,
        "support_department": "Front desk IT",
        "support_phone_number": "+1 425 555 0199",
        "wait_for_device_configured_confirmation": True,
        "await_device_configured_confirmation": True,
        "carrier_activation_url": "https://carrier.example/activate",
        "company_portal_vpp_token_id": "a1b2c3d4-0000-4000-8000-000000000001",
        "enable_shared_i_pad": True,
        "enable_single_app_enrollment_mode": True,
        "force_temporary_session": False,
        "i_tunes_pairing_mode": ITunesPairingMode.RequiresCertificate,
        "management_certificates": [ManagementCertificateWithThumbprint(certificate=host_cert_b64)],
        "passcode_lock_grace_period_in_seconds": 300,
        "shared_i_pad_maximum_user_count": 12,
        "temporary_session_timeout_in_seconds": 900,
        "user_session_timeout_in_seconds": 1800,
        "userless_shared_aad_mode_enabled": False,
    }
    skips = [f.name for f in dataclasses.fields(DepIOSEnrollmentProfile) if f.name.endswith(("_disabled", "_blocked"))]
    for index, name in enumerate(sorted(n for n in skips if n not in values)):
        values[name] = index % 3 != 2  # most panes skipped, a few shown
    model_fields = {f.name for f in dataclasses.fields(DepIOSEnrollmentProfile)}
    assert model_fields - set(values) == {"backing_store", "additional_data", "id", "odata_type"}
    return values


async def seed_story(client: GraphServiceClient, world: World, http: httpx.AsyncClient) -> dict[str, Any]:
    dm = client.device_management
    # 1. the Apple MDM push certificate: our CSR to Apple's portal, Apple's certificate back
    csr = await dm.apple_push_notification_certificate.download_apple_push_notification_certificate_signing_request.get()
    issued = await http.post("/apple/portal/push-certificates/api/certificates", json={"apple_id": APPLE_ID, "csr": csr.value})
    assert issued.status_code == 201, issued.text
    push = await dm.apple_push_notification_certificate.patch(
        ApplePushNotificationCertificate(apple_identifier=APPLE_ID, certificate=issued.json()["certificate"])
    )
    assert push.topic_identifier.startswith("com.apple.mgmt.External.")

    # 2. the enrollment program token: our public key to Apple Business Manager, its .p7m back
    setting = await dm.dep_onboarding_settings.post(DepOnboardingSetting(token_name="Contoso"))
    token = dm.dep_onboarding_settings.by_dep_onboarding_setting_id(setting.id)
    key = await token.get_encryption_public_key.get()
    server = world.default_server_uuid
    assert (await http.post(f"/apple/portal/api/servers/{server}/public-key", content=key.value)).status_code == 200
    p7m = (await http.get(f"/apple/portal/api/servers/{server}/token.p7m")).text
    await token.upload_dep_token.post(UploadDepTokenPostRequestBody(apple_id=APPLE_ID, dep_token=p7m))
    onboarded = await token.get()
    assert (onboarded.token_type.value, onboarded.last_sync_error_code) == ("dep", 0)

    # 3. a profile setting every writable property
    key_pem = mx509.new_private_key()
    host = base64.b64encode(mx509.cert_to_der(mx509.self_signed(key_pem, "Front desk Mac", world.clock.now()))).decode()
    values = every_writable_property(host)
    created = await token.enrollment_profiles.post(DepIOSEnrollmentProfile(**values))
    assert isinstance(created, DepIOSEnrollmentProfile)
    return {"token": token, "setting_id": setting.id, "profile": created, "values": values, "host": host}


async def story(base_url: str, world: World) -> None:
    client = graph_client(f"{base_url}/intune")
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        seeded = await seed_story(client, world, http)
    token, created, values = seeded["token"], seeded["profile"], seeded["values"]
    profile = token.enrollment_profiles.by_enrollment_profile_id(created.id)

    # every property comes back as it was sent (configurationEndpointUrl: where devices really enroll)
    read = await profile.get()
    for name, value in values.items():
        got = getattr(read, name)
        if name == "management_certificates":
            assert [c.certificate for c in got] == [seeded["host"]] and len(got[0].thumbprint) == 40
        elif name == "configuration_endpoint_url":
            assert got == f"{world.mdm_url}/enroll"
        elif name == "enabled_skip_keys":
            assert set(value) <= set(got)  # plus the key of every ...Disabled pane set true
        else:
            assert got == value, name
    # a script round-trips what it read: PATCH the very object back
    patched = await profile.patch(read)
    assert patched.apple_id_disabled == read.apple_id_disabled and patched.enabled_skip_keys == read.enabled_skip_keys
    assert patched.additional_data["appleProfileUuid"] != read.additional_data["appleProfileUuid"]  # redefined at Apple

    # the default profile, and the sync that lists Apple's devices
    await profile.set_default_profile.post()
    default = await token.default_ios_enrollment_profile.get()
    assert default.id == created.id and default.is_default is True
    await token.sync_with_apple_device_enrollment_program.post()
    synced = await token.get()
    assert synced.last_successful_sync_date_time is not None and synced.synced_device_count == len(world.serials)

    # imported identities, the OData way: count, order, select, filter, and nextLink pages
    query = ImportedAppleDeviceIdentitiesRequestBuilder.ImportedAppleDeviceIdentitiesRequestBuilderGetQueryParameters(
        top=2, count=True, orderby=["serialNumber desc"], select=["serialNumber", "enrollmentState"],
        filter="isDeleted eq false",
    )
    first = await token.imported_apple_device_identities.get(RequestConfiguration(query_parameters=query))
    assert first.odata_count == len(world.serials) and len(first.value) == 2 and first.odata_next_link
    assert first.value[0].platform is None  # not selected
    listed: list[str] = []

    def collect(item: Any) -> bool:
        listed.append(item.serial_number)
        return True

    pages = PageIterator(first, client.request_adapter)
    await pages.iterate(collect)
    assert listed == sorted(world.serials, reverse=True)

    # the assignment, and the device that powers on with it (the controller names it, then releases it)
    ipad = next(s for s in world.serials if world.identity(s).device_family == "iPad")
    await profile.update_device_profile_assignment.post(UpdateDeviceProfileAssignmentPostRequestBody(device_ids=[ipad]))
    run = await asyncio.to_thread(world.devices.power_on, ipad)
    assert run.phase == "home" and run.state.device_name == f"Desk-{ipad}"
    assert run.state.cloud_config["IsMultiUser"] is True and run.state.cloud_config["AwaitDeviceConfigured"] is True
    enrolled = await token.imported_apple_device_identities.get(RequestConfiguration(
        query_parameters=ImportedAppleDeviceIdentitiesRequestBuilder.ImportedAppleDeviceIdentitiesRequestBuilderGetQueryParameters(
            filter=f"serialNumber eq '{ipad}'")))
    [device] = enrolled.value
    assert device.enrollment_state.value == "enrolled" and device.requested_enrollment_profile_id == created.id

    # the exported profile: a signed mobileconfig from the MDM server
    exported = await profile.export_mobile_config.get()
    assert cms.verify(base64.b64decode(exported.value), trust_roots=[world.mdm.ca_certificate()]).content

    # failures reach the script through the library's error type, with what Graph's carry
    config = RequestConfiguration()
    config.headers.add("client-request-id", "script-run-42")
    read.additional_data["kioskMode"] = True  # not a property of depIOSEnrollmentProfile
    with pytest.raises(ODataError) as bad:
        await profile.patch(read, config)
    error = bad.value.error
    assert (bad.value.response_status_code, error.code) == (400, "badRequest") and "kioskMode" in error.message
    assert error.inner_error.client_request_id == "script-run-42" and error.inner_error.request_id
    assert error.inner_error.date is not None
    with pytest.raises(ODataError) as missing:
        await client.device_management.dep_onboarding_settings.by_dep_onboarding_setting_id("nope").get()
    assert (missing.value.response_status_code, missing.value.error.code) == (404, "notFound")


def test_an_admin_script_on_microsofts_graph_sdk_runs_the_whole_story() -> None:
    with World(devices=6, seed=3, push_certificate=False, background_sync=False) as world:
        world.control.set_setting("api_token", TOKEN)  # the controller answers only with the token now
        with world.serve() as served:
            assert httpx.get(f"{served.url}/intune/deviceManagement/depOnboardingSettings").status_code == 401
            # Not asyncio.run: a browser test's Playwright session may hold this thread's loop running.
            run_coroutine(story(served.url, world))
