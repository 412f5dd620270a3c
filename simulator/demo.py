"""``mdmsim demo``: the seed document's whole story, from box to enrolled, in one process.

Every step is a real HTTP call to a party of a world served on a local port: the admin's clicks go to
Apple's portal and to the controller's Graph API, and the devices talk to Apple and the MDM server
over HTTP as real ones would. The demo only narrates; it holds no rule of its own, so what it shows is
what a user's own test would see.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .device.machine import DeviceScript
from .device.secure_enclave import HardwareKey
from .world import World

GRAPH = "/intune/deviceManagement"
TOKENS = f"{GRAPH}/depOnboardingSettings"

# The seed document's profile: supervised, locked, a department to call, and a short Setup Assistant.
SEED_PROFILE: dict[str, Any] = {
    "@odata.type": "#microsoft.graph.depIOSEnrollmentProfile",
    "displayName": "Contoso corporate iPhones and iPads",
    "description": "Supervised, locked enrollment; the help desk is one tap away",
    "supervisedModeEnabled": True,
    "profileRemovalDisabled": True,
    "iTunesPairingMode": "disallow",
    "supportDepartment": "IT Help Desk",
    "supportPhoneNumber": "+1 (555) 010-0100",
    "awaitDeviceConfiguredConfirmation": False,
    "isDefault": False,
    "passCodeDisabled": False,
    "locationDisabled": True,
    "restoreBlocked": True,
    "appleIdDisabled": True,
    "termsAndConditionsDisabled": True,
    "touchIdDisabled": False,
    "applePayDisabled": True,
    "zoomDisabled": True,
    "siriDisabled": True,
    "diagnosticsDisabled": True,
}

SETTING_LABELS = [
    ("displayName", "Name"),
    ("requiresUserAuthentication", "User Affinity"),
    ("supervisedModeEnabled", "Supervised"),
    ("profileRemovalDisabled", "Locked enrollment"),
    ("iTunesPairingMode", "Allow Pairing"),
    ("supportDepartment", "Department Name"),
    ("supportPhoneNumber", "Department Phone"),
    ("passCodeDisabled", "Passcode (hidden)"),
    ("locationDisabled", "Location Services (hidden)"),
    ("restoreBlocked", "Restore (hidden)"),
    ("appleIdDisabled", "Apple ID (hidden)"),
    ("termsAndConditionsDisabled", "Terms and Conditions (hidden)"),
    ("touchIdDisabled", "Touch ID / Face ID (hidden)"),
    ("applePayDisabled", "Apple Pay (hidden)"),
    ("zoomDisabled", "Zoom (hidden)"),
    ("siriDisabled", "Siri (hidden)"),
    ("diagnosticsDisabled", "Diagnostic Data (hidden)"),
]


class DemoError(RuntimeError):
    """A step of the story did not go as a real service would have it; the message says which."""


@dataclass
class DemoResult:
    devices: int
    enrolled: int = 0
    synced: int = 0
    profile: dict[str, Any] = field(default_factory=dict)
    panes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    #: how the devices got their identities: {"method": "scep" | "pkcs12" | "acme", "issuer": "<CA subject>"};
    #: with ACME also "hardware_bound", "attested" (every ACME identity's key is the key Apple attested)
    #: and how many devices got each kind ("acme", "scep": devices before iOS 16 have no ACME)
    identity: dict[str, Any] = field(default_factory=dict)
    #: each device's timeline, as the dashboard draws it: every exchange in order (GET /_sim/devices/<serial>/exchanges)
    exchanges: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({
            "devices": self.devices, "enrolled": self.enrolled, "synced": self.synced, "profile": self.profile,
            "panes": self.panes, "failures": self.failures, "elapsed_s": round(self.elapsed_s, 2),
            "identity": self.identity, "exchanges": self.exchanges,
        })


class Demo:
    """The narrated flow. ``quiet`` suppresses narration (``--json`` prints only the result)."""

    def __init__(self, world: World, base_url: str, console: Console, *, user_affinity: bool, quiet: bool) -> None:
        self.world = world
        self.console = console
        self.quiet = quiet
        self.user_affinity = user_affinity
        self.http = httpx.Client(base_url=base_url, timeout=60.0)
        self.step_no = 0

    # -- narration ---------------------------------------------------------------------------------
    def say(self, *objects: Any) -> None:
        if not self.quiet:
            self.console.print(*objects)

    @contextmanager
    def step(self, title: str, why: str) -> Iterator[None]:
        self.step_no += 1
        self.say(f"\n[bold blue]{self.step_no}. {title}[/bold blue]  [dim]{why}[/dim]")
        yield

    def call(self, method: str, url: str, expect: tuple[int, ...] = (200, 201, 204), **kw: Any) -> httpx.Response:
        reply = self.http.request(method, url, **kw)
        if reply.status_code not in expect:
            raise DemoError(f"{method} {url} answered {reply.status_code}: {reply.text[:300]}")
        return reply

    # -- the story ---------------------------------------------------------------------------------
    def run(self, count: int) -> DemoResult:
        started = time.perf_counter()
        result = DemoResult(devices=count)
        server = self.organisation(count)
        self.push_certificate()
        setting = self.token(server)
        profile_id, apple_profile = self.profile()
        result.profile = apple_profile
        serials = self.assign_in_portal(server, count)
        result.synced = self.sync(setting)
        self.assign_profile(setting, profile_id, serials)
        self.power_on(serials, result)
        self.device_information(serials, result)
        self.timelines(serials, result)
        self.summary(setting, serials, result)
        result.elapsed_s = time.perf_counter() - started
        return result

    def organisation(self, count: int) -> str:
        with self.step("Apple Business Manager", "the organisation, its MDM server and the devices it bought"):
            servers = self.call("GET", "/apple/portal/api/servers").json()
            server = next(s for s in servers if s["server_name"] == "mdmsim")
            order = self.call("POST", "/apple/portal/api/devices", json={"count": count, "order_number": "ORD-1001"}).json()
            self.say(f"  organisation [bold]{self.world.info().get('organization', 'Contoso')}[/bold], MDM server "
                     f"[bold]{server['server_name']}[/bold] ({server['server_uuid']})")
            self.say(f"  order ORD-1001: {len(order.get('serial_numbers', []))} iPhones and iPads, not yet assigned")
        return server["server_uuid"]

    def push_certificate(self) -> None:
        probe = self.http.get(f"{GRAPH}/applePushNotificationCertificate")
        if probe.status_code == 404 and "applePushNotificationCertificate" not in probe.text:
            return  # a controller without push-certificate support
        with self.step("Apple MDM push certificate", "prerequisite 1: the push topic every enrollment uses"):
            csr = self.call("GET", f"{GRAPH}/applePushNotificationCertificate/"
                                   "downloadApplePushNotificationCertificateSigningRequest").json()["value"]
            issued = self.call("POST", "/apple/portal/push-certificates/api/certificates",
                               json={"apple_id": "mdm-admin@contoso.com", "csr": csr}).json()
            pem = self.call("GET", f"/apple/portal/push-certificates/api/certificates/{issued['id']}.pem").text
            uploaded = self.call("PATCH", f"{GRAPH}/applePushNotificationCertificate",
                                 json={"appleIdentifier": "mdm-admin@contoso.com", "certificate": pem}).json()
            self.say(f"  the controller's CSR → Apple issued topic [bold]{uploaded.get('topicIdentifier')}[/bold], "
                     f"valid until {uploaded.get('expirationDateTime')}")

    def token(self, server: str) -> str:
        with self.step("Enrollment program token", "prerequisite 2: the controller's key, Apple's .p7m token"):
            setting = self.call("POST", TOKENS, json={"tokenName": "Contoso DEP"}).json()["id"]
            pem = self.call("POST", f"{TOKENS}/{setting}/generateEncryptionPublicKey").json()["value"]
            self.say("  the controller generated an RSA key and certificate (public key downloaded)")
            self.call("POST", f"/apple/portal/api/servers/{server}/public-key", content=pem)
            self.say("  the public key was uploaded to the MDM server in Apple Business Manager")
            p7m = self.call("GET", f"/apple/portal/api/servers/{server}/token.p7m")
            self.say(f"  Apple answered with the server token, S/MIME enveloped to that key ({len(p7m.content)} bytes)")
            self.call("POST", f"{TOKENS}/{setting}/uploadDepToken",
                      json={"appleId": "mdm-admin@contoso.com", "depToken": p7m.text})
            shown = self.call("GET", f"{TOKENS}/{setting}").json()
            self.say(f"  token uploaded to the controller; it expires {shown.get('tokenExpirationDateTime')}")
        return setting

    def profile(self) -> tuple[str, dict[str, Any]]:
        setting = self._setting_id()
        body = dict(SEED_PROFILE, requiresUserAuthentication=self.user_affinity)
        with self.step("DEP profile", "Intune's settings, which the controller turns into Apple's profile"):
            created = self.call("POST", f"{TOKENS}/{setting}/enrollmentProfiles", json=body).json()
            table = Table(show_header=True, header_style="bold")
            table.add_column("setting")
            table.add_column("value")
            for key, label in SETTING_LABELS:
                value = body.get(key)
                table.add_row(label, "Yes" if value is True else "No" if value is False else str(value))
            self.say(table)
            apple = self.call("GET", f"{TOKENS}/{setting}/enrollmentProfiles/{created['id']}/appleProfile").json()
            profile = apple.get("profile", apple)
            self.say(f"  Apple's profile {apple.get('profile_uuid', '')}: skip_setup_items = "
                     f"{', '.join(profile.get('skip_setup_items', []))}")
        return created["id"], profile

    def _setting_id(self) -> str:
        return self.call("GET", TOKENS).json()["value"][0]["id"]

    def assign_in_portal(self, server: str, count: int) -> list[str]:
        with self.step("Assign to Server", "in the portal: the order's devices go to the MDM server 'mdmsim'"):
            self.call("POST", "/apple/portal/api/assignments", json={"server_uuid": server, "order_number": "ORD-1001"})
            page = self.call("GET", "/apple/portal/api/devices", params={"server_uuid": server, "limit": count}).json()
            serials = [d["serial_number"] for d in page["devices"]]
            self.say(f"  {len(serials)} serial numbers assigned")
        return serials

    def sync(self, setting: str) -> int:
        with self.step("Sync", "the controller fetches the serials from Apple's DEP web service"):
            # Apple answers each page in a second here, so the sync is still running when the admin,
            # impatient, presses Sync again: the 2016 rule refuses that request with the time to wait.
            self.call("POST", "/_sim/faults", json={"latency_ms": {"post_server_devices": 1000}})
            self.call("POST", f"{TOKENS}/{setting}/syncWithAppleDeviceEnrollmentProgram")
            self.say("  sync requested; it runs in the background and has 10 minutes to finish")
            again = self.call("POST", f"{TOKENS}/{setting}/syncWithAppleDeviceEnrollmentProgram", expect=(409, 429))
            message = again.json().get("error", {}).get("message", "")
            wait = again.headers.get("Retry-After")
            self.say(f"  Sync pressed again: refused ({again.status_code}) {message}  [bold]Retry-After: {wait} s[/bold]")
            done = self.world.controller.wait_for_sync(setting, 60)
            self.call("DELETE", "/_sim/faults")
            if done.get("syncStatus") == "failed":
                raise DemoError(f"the sync failed: {done.get('lastSyncErrorReason')}")
            self.say(f"  {done.get('lastSyncKind')} sync: {done.get('syncedDeviceCount')} devices")
            self.say(f"  next sync allowed at {done.get('nextSyncAvailableDateTime')}; next full sync at "
                     f"{done.get('nextFullSyncAvailableDateTime')} (at most once every 7 days; syncs before "
                     "then only add serial numbers not yet listed)")
        return int(done.get("syncedDeviceCount") or 0)

    def assign_profile(self, setting: str, profile_id: str, serials: list[str]) -> None:
        with self.step("Assign the profile", "the controller asks Apple to assign it to every synced serial"):
            self.call("POST", f"{TOKENS}/{setting}/enrollmentProfiles/{profile_id}/updateDeviceProfileAssignment",
                      json={"deviceIds": serials})
            self.say(f"  {len(serials)} serials assigned; they will fetch it when they activate")

    def power_on(self, serials: list[str], result: DemoResult) -> None:
        users = self.world.idp.users() if self.user_affinity else []
        with self.step("Power on", "each device activates, shows the panes its profile allows, and enrolls"):
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=self.console, disable=self.quiet, transient=False) as progress:
                task = progress.add_task("Setup Assistant", total=len(serials))
                for index, serial in enumerate(serials):
                    script = None
                    if users:
                        user = users[index % len(users)]
                        script = DeviceScript(username=user["upn"], password=user["password"])
                    run = self.world.devices.power_on(serial, script)
                    shown = [p for p, outcome, *_ in run.transcript if outcome == "shown"]
                    skipped = [p for p, outcome, *_ in run.transcript if outcome == "skipped"]
                    result.panes[serial] = {"shown": shown, "skipped": skipped}
                    errors = [f"{serial}: {p}: {detail}" for p, outcome, _, detail in run.transcript if outcome == "error"]
                    result.failures.extend(errors)
                    progress.update(task, advance=1, description=f"{serial} → {run.pane}")
                    if not self.quiet and index < 3:
                        self.say(f"  [dim]{serial}:[/dim] " + " → ".join(shown))
            result.identity = self._identity(serials)
            if result.identity.get("method") == "acme":
                self._acme_identities(serials, result)
            if result.identity:
                self.say(f"  identities: [bold]{result.identity['method'].upper()}[/bold], issued by "
                         f"{result.identity['issuer']}")

    def _identity(self, serials: list[str]) -> dict[str, Any]:
        """How the enrolled devices got their identity, read from the first enrolled device."""
        for serial in serials:
            device = self.world.fleet.get(serial)
            enrolled = device.mdm_identity() if device is not None else None
            if enrolled is not None:
                return {"method": self.world.mdm.identity.identity_method, "issuer": enrolled[0].issuer.rfc4514_string()}
        return {}

    def _acme_identities(self, serials: list[str], result: DemoResult) -> None:
        """ACME: each identity's key must be the key Apple attested, as the device holds it and as the
        MDM server recorded it (asked over HTTP); devices before iOS 16 got SCEP, as Intune does."""
        counts = {"acme": 0, "scep": 0}
        hardware_bound = attested = True
        for serial in serials:
            device = self.world.fleet.get(serial)
            identity = device.mdm_identity() if device is not None else None
            if device is None or identity is None or device.state.enrollment is None:
                continue
            enrollment = device.state.enrollment
            if enrollment.get("identity_method") != "acme":
                counts["scep"] += 1
                continue
            counts["acme"] += 1
            cert, key = identity
            leaf = x509.load_pem_x509_certificate(enrollment["attestation_pem"][0].encode()) \
                if enrollment.get("attestation_pem") else None
            recorded = self.call("GET", f"/mdm/api/v1/devices/{device.udid}").json().get("identity") or {}
            same = (isinstance(key, HardwareKey) and leaf is not None and key.same_key(cert) and key.same_key(leaf)
                    and recorded.get("key_sha256") == key.fingerprint() and recorded.get("attested") is True)
            hardware_bound = hardware_bound and bool(enrollment.get("hardware_bound"))
            attested = attested and same
            if not same:
                result.failures.append(f"{serial}: the ACME identity's key is not the key Apple attested")
        result.identity.update({"hardware_bound": hardware_bound and counts["acme"] > 0,
                                "attested": attested and counts["acme"] > 0, **counts,
                                "attestation_root": f"{self.world.url}/apple/activation/attestation-root.pem"})
        if counts["scep"]:
            result.identity["scep_reason"] = "iOS and iPadOS before 16 have no ACME payload (Intune gives them SCEP)"
        self.say(f"  ACME for {counts['acme']} devices: each key made in the Secure Enclave, attested by Apple, and "
                 f"the identity is for that key" + (f"; SCEP for {counts['scep']} before iOS 16 (no ACME payload)"
                                                    if counts["scep"] else ""))

    def device_information(self, serials: list[str], result: DemoResult) -> None:
        with self.step("DeviceInformation", "the MDM server pushes a command; each device wakes and answers"):
            udids = {s: self.world.identity(s).udid for s in serials if (self.world.devices.describe(s) or {}).get("enrolled")}
            if not udids:
                result.failures.append("no device enrolled")
                return
            command = self.call("POST", "/mdm/api/v1/commands", json={
                "udids": list(udids.values()),
                "command": {"RequestType": "DeviceInformation",
                            "Queries": ["DeviceName", "ModelName", "OSVersion", "SerialNumber", "IsSupervised"]}}).json()
            for serial in udids:
                self.world.devices.run_agent(serial)
            status = self.call("GET", f"/mdm/api/v1/commands/{command['command_uuid']}").json()
            acknowledged = sum(1 for d in _per_device(status) if d.get("status") == "Acknowledged")
            result.enrolled = len(udids)
            self.say(f"  {acknowledged} of {len(udids)} devices answered DeviceInformation")
            if acknowledged < len(udids):
                result.failures.append(f"only {acknowledged} of {len(udids)} devices answered DeviceInformation")

    def timelines(self, serials: list[str], result: DemoResult) -> None:
        """Every device's exchanges, from the simulation's record (what the dashboard's timeline shows)."""
        keep = ("at", "source", "target", "method", "path", "status", "ms", "note")
        for serial in serials:
            reply = self.http.get(f"/_sim/devices/{serial}/exchanges")
            if reply.status_code == 200:
                result.exchanges[serial] = [{k: e[k] for k in keep} for e in reply.json()["exchanges"]]
        if serials and result.exchanges.get(serials[0]):
            first = result.exchanges[serials[0]]
            self.say(f"  [dim]{serials[0]}'s timeline ({len(first)} exchanges):[/dim] "
                     + " → ".join(f"{e['target']} {e['status']}" for e in first if e["source"] == "device")[:400])

    def summary(self, setting: str, serials: list[str], result: DemoResult) -> None:
        identities = {d["serialNumber"]: d for d in self.call(
            "GET", f"{TOKENS}/{setting}/importedAppleDeviceIdentities", params={"$top": 1000}).json()["value"]}
        table = Table(title="Devices", show_header=True, header_style="bold")
        for column in ("model", "serial", "panes shown", "enrollment state", "user"):
            table.add_column(column)
        for serial in serials:
            described = self.world.devices.describe(serial) or {}
            identity = self.world.identity(serial)
            table.add_row(identity.model_name, serial, str(len(result.panes.get(serial, {}).get("shown", []))),
                          identities.get(serial, {}).get("enrollmentState", "?"), described.get("user") or "—")
        self.say(table)
        if result.failures:
            self.say(Panel("\n".join(result.failures[:20]), title="failures", border_style="red"))


def _per_device(status: dict[str, Any]) -> list[dict[str, Any]]:
    devices = status.get("devices") or status.get("results") or []
    if isinstance(devices, dict):
        return list(devices.values())
    return list(devices)
