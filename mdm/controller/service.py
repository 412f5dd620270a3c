"""The controller as the outside world sees it through Graph: one front over its rule modules.

This is Intune's DEP connector. :class:`Controller` builds the rule modules over one store, one clock
and one HTTP client to Apple, and answers each Graph operation by delegating to the one that owns it:

* :mod:`.tokens`: DEP tokens (``depOnboardingSettings``), their key, upload and rendering;
* :mod:`.syncing`: syncs with their limits (one in flight, the window, the full-sync rule), whose
  pure decisions are :mod:`.sync_rules`;
* :mod:`.enrollment_profiles`: enrollment profiles defined at Apple (the Graph ↔ Apple mapping is
  :mod:`.profiles`);
* :mod:`.assignments`: profile assignments and THROTTLED retries;
* :mod:`.devices`: imported device identities; :mod:`.odata` parses and applies Graph's query options;
* :mod:`.events`: the MDM server's webhook events, and :mod:`.after_enrollment` what an enrolled
  device is sent next (its name from ``deviceNameTemplate``, then DeviceConfigured);
* :mod:`.pushcert`: the tenant's Apple MDM push certificate.

Every SQL statement is in :mod:`.store`; :mod:`.apple` makes the DEP clients and words Apple's
failures; :mod:`.http` only parses and renders.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.randomness import Randomness

from . import odata
from .after_enrollment import AfterEnrollment
from .apple import Apple
from .assignments import Assignments
from .devices import FIELDS as DEVICE_FIELDS
from .devices import Devices
from .enrollment_profiles import EnrollmentProfiles
from .errors import GraphError
from .events import MDM_EVENT_TOPICS, MdmEvents
from .pushcert import PushCertificates
from .sync_rules import SyncRules, rules_for
from .syncing import Syncing
from .tokens import Tokens

__all__ = ["Controller", "GraphError", "MDM_EVENT_TOPICS"]


class Controller:
    """Intune's DEP connector over one store, one clock and one HTTP client to Apple.

    ``background=False`` runs syncs inline in the caller's thread, so a test sees the result as soon
    as the request returns; ``sleep`` is what rate-limit waits call (inject a recorder in tests).
    ``mdm_api_url`` (e.g. "http://host/mdm/api/v1") is where an uploaded push certificate is handed
    to the MDM server; None keeps the certificate without delivering it (the controller alone).
    ``anchor_certs``: base64 DER certificates the MDM server's TLS certificate chains to; every
    profile defined at Apple carries them, so devices trust the MDM server by exactly these.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        http: httpx.Client,
        dep_url: Callable[[], str],
        mdm_enroll_url: Callable[[], str],
        rules: str = "2016",
        background: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        protocol_version: int = 9,
        page_limit: int = 1000,
        mdm_api_url: Callable[[], str] | None = None,
        seed: int | None = None,
        anchor_certs: Callable[[], list[str]] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        random = Randomness(seed)
        self.random = random
        self.rules: SyncRules = rules_for(rules)
        self.apple = Apple(store, http=http, dep_url=dep_url, sleep=sleep, protocol_version=protocol_version)
        self.push_certificates = PushCertificates(store, clock, http=http, mdm_api_url=mdm_api_url, seed=seed)
        self.assignments = Assignments(store, clock, self.apple)
        self.syncing = Syncing(
            store, clock, self.apple, self.assignments, rules=self.rules, background=background, page_limit=page_limit,
            random=random,
        )
        self.tokens = Tokens(store, clock, self.apple, self.syncing, random)
        self.profiles = EnrollmentProfiles(
            store,
            clock,
            self.apple,
            self.assignments,
            self.push_certificates,
            mdm_enroll_url=mdm_enroll_url,
            anchor_certs=anchor_certs,
            random=random,
            http=http,
            mdm_api_url=mdm_api_url,
        )
        self.devices = Devices(store, self.push_certificates)
        self.after_enrollment = AfterEnrollment(store, http=http, mdm_api_url=mdm_api_url)
        self.events = MdmEvents(store, clock, on_enrolled=self.after_enrollment.enrolled)

    @property
    def page_limit(self) -> int:
        """How many devices each page fetched from Apple asks for (tests lower it to see many pages)."""
        return self.syncing.page_limit

    @page_limit.setter
    def page_limit(self, value: int) -> None:
        self.syncing.page_limit = value

    # == tokens (depOnboardingSettings) =========================================================
    def create_setting(self, body: Any) -> dict[str, Any]:
        return self.tokens.create(body)

    def update_setting(self, token_id: str, body: Any) -> dict[str, Any]:
        """PATCH: only ``tokenName`` is the admin's to change; the rest comes from Apple."""
        return self.tokens.update(token_id, body)

    def list_settings(self) -> list[dict[str, Any]]:
        return self.tokens.list_all()

    def settings_page(self, query: odata.Query) -> odata.Page:
        """``GET depOnboardingSettings`` with its OData options (a tenant holds a handful of tokens)."""
        return odata.apply(self.tokens.list_all(), query, default_top=1000, maximum=1000)

    def get_setting(self, token_id: str) -> dict[str, Any]:
        return self.tokens.get(token_id)

    def delete_setting(self, token_id: str) -> None:
        self.tokens.delete(token_id)

    def generate_encryption_key(self, token_id: str) -> str:
        """A new RSA 2048 key and self-signed certificate; the portal envelopes the token to it."""
        return self.tokens.generate_encryption_key(token_id)

    def get_encryption_key(self, token_id: str) -> str:
        """The certificate to upload to the portal; made on first use so the admin can always download one."""
        return self.tokens.get_encryption_key(token_id)

    def upload_token(self, token_id: str, body: Any) -> None:
        """Decrypt the portal's ``.p7m``, check it with Apple (``GET /account``) and keep its credentials."""
        self.tokens.upload(token_id, body)

    # == Apple MDM push certificate (applePushNotificationCertificate) ============================
    def push_certificate_signing_request(self) -> str:
        """``downloadApplePushNotificationCertificateSigningRequest``: the CSR to take to Apple."""
        return self.push_certificates.signing_request()

    def generate_push_certificate_signing_request(self) -> str:
        """A new key and CSR, replacing one that is waiting (the certificate in use is untouched)."""
        return self.push_certificates.new_signing_request()

    def upload_push_certificate(self, body: Any) -> dict[str, Any]:
        """PATCH/POST ``applePushNotificationCertificate``: the certificate Apple issued for our CSR."""
        return self.push_certificates.upload(body)

    def get_push_certificate(self) -> dict[str, Any]:
        return self.push_certificates.get()

    # == syncs ===================================================================================
    def request_sync(self, token_id: str, *, manual: bool = True) -> None:
        """Claim the token's sync slot atomically, then run the sync (in a thread unless inline).

        Raises 409 while another sync holds the slot, 429 when a manual request comes too soon
        (``current`` rules), 400 without a token or with an expired one (recorded on the token).
        """
        self.syncing.request_sync(token_id, manual=manual)

    def wait_for_sync(self, setting_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """Poll until the token's sync is no longer running (wall-clock deadline); for tests and demos."""
        deadline = time.monotonic() + timeout_s
        while True:
            setting = self.get_setting(setting_id)
            if setting["syncStatus"] != "running":
                return setting
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the sync of {setting_id} still runs after {timeout_s} s")
            time.sleep(0.005)

    def tick(self) -> dict[str, Any]:
        """Run what is due: fail overdue syncs, start automatic syncs (``current``), retry THROTTLED.

        The world calls this as its clock moves; nothing here runs on a timer of its own, so a test
        decides exactly when "twelve hours later" happens.
        """
        started = self.syncing.tick()
        retried = self.assignments.retry_throttled()
        return {"syncsStarted": started, "assignmentsRetried": retried}

    def join(self, timeout_s: float = 10.0) -> None:
        """Wait for background syncs started by this controller (shutdown, tests)."""
        self.syncing.join(timeout_s)

    # == enrollment profiles ===================================================================
    def list_profiles(self, token_id: str) -> list[dict[str, Any]]:
        return self.profiles.list_all(token_id)

    def get_profile(self, token_id: str, profile_id: str) -> dict[str, Any]:
        return self.profiles.get(token_id, profile_id)

    def get_apple_profile(self, token_id: str, profile_id: str) -> dict[str, Any]:
        """The exact JSON sent to Apple's ``POST /profile`` for this profile, and Apple's uuid."""
        return self.profiles.get_apple_profile(token_id, profile_id)

    def profiles_page(self, token_id: str, query: odata.Query) -> odata.Page:
        return self.profiles.page(token_id, query)

    def default_profile(self, token_id: str, kind: str) -> dict[str, Any] | None:
        """``defaultIosEnrollmentProfile`` / ``defaultMacOsEnrollmentProfile`` (None: the token has none)."""
        return self.profiles.default(token_id, kind)

    def set_default_profile(self, token_id: str, profile_id: str) -> None:
        """``setDefaultProfile``: the profile a sync assigns to new serials of its platform."""
        self.profiles.set_default(token_id, profile_id)

    def export_mobile_config(self, token_id: str, profile_id: str) -> str:
        """``exportMobileConfig``: base64 of the signed ``.mobileconfig`` for profile-based enrollment."""
        return self.profiles.export_mobile_config(token_id, profile_id)

    def create_profile(self, token_id: str, body: Any) -> dict[str, Any]:
        return self.profiles.create(token_id, body)

    def update_profile(self, token_id: str, profile_id: str, body: Any) -> dict[str, Any]:
        """PATCH: Apple profiles cannot change, so a new one is defined and the profile's devices move to it."""
        return self.profiles.update(token_id, profile_id, body)

    def delete_profile(self, token_id: str, profile_id: str) -> None:
        """Apple has no call to delete a profile; devices keep it at Apple until assigned another."""
        self.profiles.delete(token_id, profile_id)

    # == assignments ===========================================================================
    def assign_profile(self, token_id: str, profile_id: str, body: Any) -> list[dict[str, Any]]:
        """``updateDeviceProfileAssignment``: every serial's result as Apple reported it."""
        return self.assignments.assign_profile(token_id, profile_id, body)

    def retry_throttled(self) -> int:
        """Assign again the serials Apple answered THROTTLED for, once their retry time has come."""
        return self.assignments.retry_throttled()

    # == imported device identities ===========================================================
    def list_devices(
        self,
        token_id: str,
        *,
        top: str | None = None,
        skiptoken: str | None = None,
        filter: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``importedAppleDeviceIdentities`` and the ``$skiptoken`` of the next, if any."""
        query = odata.parse_query(
            [(k, v) for k, v in (("$top", top), ("$skiptoken", skiptoken), ("$filter", filter)) if v is not None],
            DEVICE_FIELDS,
        )
        page = self.devices.list_page(token_id, query)
        return page.items, page.next_skiptoken

    def devices_page(self, token_id: str, query: odata.Query) -> odata.Page:
        """``GET importedAppleDeviceIdentities`` with its OData options (filtered and paged in SQL)."""
        return self.devices.list_page(token_id, query)

    def count_devices(self, token_id: str, query: odata.Query) -> int:
        return self.devices.count(token_id, query)

    def get_device(self, token_id: str, device_id: str) -> dict[str, Any]:
        return self.devices.get(token_id, device_id)

    # == MDM events ===============================================================================
    def handle_mdm_event(self, event: Any) -> None:
        """Learn enrollment state from the MDM server's NanoMDM-style webhook events (:mod:`.events`)."""
        self.events.handle(event)
