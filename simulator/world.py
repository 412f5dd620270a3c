"""The composition root: builds every party on one clock, seeds a new world, serves it on one port.

Only this module (with the CLI and the pytest plugin) knows every party. Each party gets its own
store, the world's clock and, for calls to other parties, an HTTP client; nothing else is shared.
In process the client is routed straight to the world's WSGI app (no sockets, still HTTP); once the
world is served, the same URLs work over real sockets.

What the world is made of lives beside it: :mod:`simulator.mounting` (the one WSGI app and its
middlewares), :mod:`simulator.in_process` (the world's client), :mod:`simulator.authorities` (the
devices' manufacturer and the CAs), :mod:`simulator.depsim` (depsim's credentials, failure names and
schedules), :mod:`simulator.serving` (real sockets). This module builds them and is the Python API.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from mdm.controller.service import MDM_EVENT_TOPICS, Controller
from mdm.controller.store import open_controller_store
from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.isotime import isoformat
from mdm.protocol.x509 import CertificateAuthority, cert_to_pem, key_to_pem, seeded_key
from mdm.server.push import WebhookSubscription
from mdm.server.service import MDMService
from mdm.server.store import open_mdm_store

from . import exchanges
from .apple.account.assertion import APPLE_AUDIENCE
from .apple.account.faults import FAULT_RESPONSES as ACCOUNT_FAULTS
from .apple.account.service import TokenService
from .apple.activation.service import ActivationService
from .apple.apns.service import APNsService, open_apns_store
from .apple.business.faults import FAULT_RESPONSES as BUSINESS_FAULTS
from .apple.business.service import BusinessAPIService, RateLimits
from .apple.dep.service import DEPService
from .apple.portal.api_accounts import scope_of
from .apple.portal.service import PortalError, PortalService
from .apple.pushcert.service import PushCertificateService, open_pushcert_store
from .apple.store import open_apple_store
from .authorities import Manufacturer, TLSAuthority, dep_record, legacy_device_ca
from .control.service import ControlService
from .control.store import open_world_store
from .depsim import DEP_FAULT_NAMES, DEPSIM_CREDENTIALS, DepsimSchedules
from .device.acme_enroll import AttestationFailed, KeyAttestation, attest_new_key
from .device.drivers import HTTPDriver
from .device.identity import DeviceIdentity
from .device.machine import DeviceScript
from .device.screens import SCREENS
from .device.secure_enclave import FUSE_FILE, load_fuse
from .device.store import DeviceFleetService, DeviceRun, open_device_store
from .idp.service import IdentityProvider
from .idp.store import open_idp_store
from .in_process import IN_PROCESS_URL, WorldAddress, WorldClient
from .live import events_url
from .mounting import mount, party_at_root
from .serving import ServedWorld, serve_threaded
from .tls import anchor_b64

__all__ = ["World", "ServedWorld", "DEPSIM_CREDENTIALS", "IN_PROCESS_URL"]

DEFAULT_SERVER_NAME = "mdmsim"
DEFAULT_API_ACCOUNT = "mdmsim"
_BUSINESS_ACCOUNT = "business_api_account"
DEFAULT_ORGANIZATION = "Contoso Pharmaceuticals"

# Each store of a world: world.db is the world's own (simulation control, the manufacturer's records).
_OPENERS: dict[str, Callable[[Path | None], Store]] = {
    "world": open_world_store, "apple": open_apple_store, "idp": open_idp_store, "controller": open_controller_store,
    "mdm": open_mdm_store, "apns": open_apns_store, "pushcert": open_pushcert_store, "devices": open_device_store,
}


class World:
    """Apple, an MDM server, a controller and devices on one clock.

    ``World(devices=100, seed=1)`` is a fresh in-memory world; ``World(data_dir=...)`` keeps its state
    in SQLite files there and finds the same world again after a restart. Use it as a context manager
    (``with World() as world:``) or call :meth:`close`.

    ``identity``: how the enrollment profiles of the world's MDM server give devices their identity,
    ``"scep"`` (the default, as every production MDM server does: the device asks ``/mdm/scep``) or
    ``"pkcs12"`` (the identity inside the profile) or ``"acme"`` (iOS 16 and later: a Secure Enclave key
    Apple attests, certified over ACME by ``/mdm/acme/directory``; older devices get SCEP). ``scep_url``
    and ``scep_challenge`` send devices to someone else's SCEP server instead, and ``identity_ca``
    (certificates) is that server's CA, whose identities the MDM server then accepts.

    ``business_rate_limits`` sets the Business API's per-account limits (default: 20 GETs a minute, 10
    POSTs an hour, ``0`` for none); ``activity_step_s`` is how long each step of a device activity takes
    in world time (five steps; devices move after the fourth).
    """

    def __init__(
        self,
        devices: int = 100,
        seed: int | None = None,
        *,
        data_dir: str | Path | None = None,
        depsim_compat: bool = False,
        server_name: str = DEFAULT_SERVER_NAME,
        organization: str = DEFAULT_ORGANIZATION,
        start: datetime | None = None,
        frozen_clock: bool = False,
        session_lifetime_s: int = 3600,
        sync_rules: str = "2016",
        background_sync: bool = True,
        synchronous_push: bool = True,
        push_certificate: bool = True,
        controller_sleep: Callable[[float], None] = time.sleep,
        identity: Literal["scep", "pkcs12", "acme"] = "scep",
        scep_url: str | None = None,
        scep_challenge: str | None = None,
        identity_ca: Sequence[Any] = (),
        business_rate_limits: RateLimits | None = None,
        activity_step_s: float = 2.0,
    ) -> None:
        if devices < 0:
            raise ValueError("devices must be zero or more")
        self.seed = seed
        self.data_dir = Path(data_dir) if data_dir is not None else None
        if self.data_dir is not None:
            # 0700: the stores hold private keys (CAs, API accounts, identities) no other user may read.
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.depsim_compat = depsim_compat
        self._server_name = server_name
        self._organization = organization
        self._stores: dict[str, Store] = {}
        self._snapshots: dict[str, sqlite3.Connection] = {}
        self._closed = False
        self._client: httpx.Client | None = None

        control_store = self._store("world")
        self.clock = Clock(control_store, start=start, frozen=frozen_clock)
        self.control = ControlService(
            control_store, self.clock, {"dep": DEP_FAULT_NAMES, "business": BUSINESS_FAULTS, "account": ACCOUNT_FAULTS}
        )
        self._manufacturer = Manufacturer(control_store, seed)
        self._tls = TLSAuthority(self.control, seed)

        apple_store = self._store("apple")
        # The Business API's device activities change devices when their world time comes; whichever party
        # reads devices first after that applies them (``settle``), so the portal, DEP and activation agree.
        self.business_api = BusinessAPIService(apple_store, self.clock, seed=seed, activity_step_s=activity_step_s)
        if business_rate_limits is not None:
            self.business_api.set_rate_limits(business_rate_limits.get_per_minute, business_rate_limits.post_per_hour)
        self.account_service = TokenService(apple_store, self.clock, seed=seed)
        settle = self.business_api.settle
        self.portal_service = PortalService(
            apple_store, self.clock, generate_devices=self._generate_devices, seed=seed,
            describe_serial=lambda serial: dep_record(self.identity(serial)), settle=settle,
        )  # fmt: skip
        self.dep_service = DEPService(
            apple_store, self.clock, session_lifetime_s=session_lifetime_s, public_url=lambda: self.dep_url, seed=seed,
            settle=settle,
        )
        self.depsim = DepsimSchedules(self.control, self.clock, insert=self._insert_devices, release=self._release_devices)

        self.idp = IdentityProvider(self._store("idp"), self.clock, seed=seed)

        # Apple's device CA lives in Apple's store, made there from the seed; a world written before
        # kept it in its own settings, so that one is handed over once (and is the CA from then on).
        self.activation = ActivationService(
            apple_store, self.clock, dep=self.dep_service, device_ca=legacy_device_ca(self.control), seed=seed,
            settle=settle,
        )
        self.device_ca = self.activation.device_ca
        # The devices' Secure Enclave fuse: beside the device store on disk (every worker must unwrap the
        # same hardware-bound keys), in memory otherwise; never from the seed (see device.secure_enclave).
        self.fleet = DeviceFleetService(
            self._store("devices"), self.clock, apple_url=lambda: f"{self.url}/apple",
            issue_identity=self.activation.issue_device_identity, seed=seed,
            fuse=load_fuse(self.data_dir / FUSE_FILE if self.data_dir is not None else None),
        )
        self.devices = WorldDevices(self)
        self.faults = WorldFaults(self.control)
        self.pushcert = PushCertificateService(self._store("pushcert"), self.clock, seed=seed)
        self.apns = APNsService(self._store("apns"), self.clock, certificate_check=self.pushcert.is_current, seed=seed)
        self.mdm = MDMService(
            self._store("mdm"), self.clock, trust_roots=[self.device_ca.certificate], http=self.http,
            base_url=lambda: self.mdm_url, apns_url=lambda: f"{self.url}/apple/apns",
            idp_url=lambda: f"{self.url}/idp/adfs/services/trust/13/UsernameMixed",
            webhook_urls=lambda: [WebhookSubscription(f"{self.controller_url}/webhooks/mdm", MDM_EVENT_TOPICS)],
            seed=seed, synchronous=synchronous_push, organization=organization,
            # Every outbound call of a world (APNs, the controller's webhook) is in process, so threads
            # only keep it off the device's request, and more of them just contend for the GIL: two
            # instead of eight gave ~5 % more devices/s and a tenth less kernel time in fleet runs.
            outbound_workers=2,
            identity_days=730,  # outlives the one-year push certificate, so renewing it is the only fix needed
            # SCEP, as every production MDM server's enrollment profile has it (PKCS#12 on request);
            # scep_url/scep_challenge send devices to someone else's SCEP server, whose CA is identity_ca
            identity=identity, scep_url=scep_url, scep_challenge=scep_challenge, identity_cas=list(identity_ca),
            # ACME's device-attest-01 trusts Apple's Enterprise Attestation root, as step-ca does Apple's
            attestation_roots=lambda: [self.activation.attestation.root],
        )
        self.controller = Controller(
            self._store("controller"), self.clock, http=self.http,
            dep_url=lambda: self.dep_url, mdm_enroll_url=lambda: f"{self.mdm_url}/enroll",
            rules=sync_rules, background=background_sync, sleep=controller_sleep,
            mdm_api_url=lambda: f"{self.mdm_url}/api/v1", seed=seed, anchor_certs=self._tls_anchors,
        )

        self._initial_devices = devices
        self._push_certificate = push_certificate
        self.wsgi, self._party_apps = mount(self)  # before seeding: the push certificate step goes over HTTP
        if self.control.get_setting("seeded") is None:
            self._seed(devices)
        if self.data_dir is None:
            self.control.flush_traffic()  # seeding's own requests belong in the snapshot
            self._snapshots = {name: store.snapshot() for name, store in self._stores.items()}

    # -- construction ------------------------------------------------------------------------------
    def _store(self, name: str) -> Store:
        store = _OPENERS[name](self.data_dir / f"{name}.db" if self.data_dir is not None else None)
        self._stores[name] = store
        return store

    def _seed(self, devices: int, users: int = 25) -> None:
        self.portal_service.ensure_organization(name=self._organization)
        credentials = dict(DEPSIM_CREDENTIALS) if self.depsim_compat else None
        server = self.portal_service.create_server(self._server_name, credentials=credentials)
        if devices:
            self.portal_service.add_devices(self._generate_devices(devices), server_uuid=server["server_uuid"])
        self.idp.seed_users(users)
        if self._push_certificate:
            self.setup_push_certificate()
        self._business_account()
        self.control.set_setting("default_server_uuid", server["server_uuid"])
        self.control.set_setting("seeded", isoformat(self.clock.now()))

    def build_party_apps(self) -> World:
        """Build every party's routes now instead of on its first request: a server calls this at
        start so that no early request (the first of a sync storm, say) waits for it (~30 ms in all)."""
        for app in self._party_apps.values():
            app.build()
        return self

    def party_wsgi(self, party: str = "dep") -> Callable:
        """One of Apple's parties alone, at the root of whatever socket serves it (``dep``: ``/session``
        is DEP's there, as on ``mdmenrollment.apple.com``). The same app the main port mounts, so its
        state, faults and traffic counters are the world's. See :func:`simulator.mounting.party_at_root`."""
        return party_at_root(self, self._party_apps, party)

    # -- devices and certificates ------------------------------------------------------------------
    def _generate_devices(self, count: int) -> list[dict[str, Any]]:
        """Manufacture devices: their hardware identity is kept (for power-on), Apple gets the record."""
        return [dep_record(identity) for identity in self._manufacturer.make(count)]

    def identity(self, serial: str) -> DeviceIdentity:
        """The hardware identity of a serial; serials added by hand get a plausible one, made once."""
        return self._manufacturer.identity(serial)

    @property
    def tls_ca(self) -> CertificateAuthority:
        """The world's TLS CA, which issues the served world's HTTPS certificate (``--tls``).

        Made on first use and kept in the world's settings: see :class:`simulator.authorities.TLSAuthority`."""
        return self._tls.ca

    @property
    def tls_ca_pem(self) -> str:
        """PEM of what devices and clients must trust for this world's HTTPS: the world's TLS CA, or
        the top of the chain given with ``--tls-cert``."""
        return self._tls.anchor_pem

    @property
    def attestation_root_pem(self) -> str:
        """PEM of Apple's Enterprise Attestation root in this world: what an ACME server (ours, or a
        user's step-ca as ``attestationRoots``) trusts for ``device-attest-01``; also served at
        ``/apple/activation/attestation-root.pem``."""
        return self.activation.attestation.root_pem().decode()

    @property
    def serves_tls(self) -> bool:
        return self.url.startswith("https://")

    def _tls_anchors(self) -> list[str]:
        """The controller's ``anchor_certs``: the TLS trust anchor while the world serves HTTPS."""
        return [anchor_b64(self.tls_ca_pem)] if self.serves_tls else []

    def setup_push_certificate(self, apple_id: str = "admin@contoso.example") -> dict[str, Any]:
        """The seed document's first prerequisite, as an admin does it: the controller's CSR to Apple's
        Push Certificates Portal, Apple's certificate back to the controller, which hands it to the MDM
        server. Calling it again makes a *new* certificate: a new topic."""
        csr = self.controller.push_certificate_signing_request()
        issued = self.pushcert.create(apple_id, csr)
        return self.controller.upload_push_certificate(
            {"appleIdentifier": apple_id, "certificate": issued["certificate"]}
        )

    def renew_push_certificate(self, apple_id: str = "admin@contoso.example") -> dict[str, Any]:
        """Renew the certificate in use with the same Apple ID: same topic, a year more."""
        topic = self.controller.get_push_certificate()["topicIdentifier"]
        current = next(c for c in self.pushcert.list(apple_id) if c["topic"] == topic and c["status"] != "replaced")
        renewed = self.pushcert.renew(current["id"], apple_id, self.controller.push_certificate_signing_request())
        return self.controller.upload_push_certificate(
            {"appleIdentifier": apple_id, "certificate": renewed["certificate"]}
        )

    # -- URLs and credentials ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The world's base URL: real once served, ``http://mdmsim.invalid`` (in process) before."""
        return self.control.get_setting("public_url", IN_PROCESS_URL) or IN_PROCESS_URL

    @property
    def portal(self) -> PortalService:
        """Apple Business Manager in Python: add, assign, edit and release devices; the terms switch."""
        return self.portal_service

    @property
    def dep(self) -> DEPService:
        return self.dep_service

    @property
    def dep_url(self) -> str:
        return f"{self.url}/apple/dep"

    @property
    def portal_url(self) -> str:
        return f"{self.url}/apple/portal"

    @property
    def mdm_url(self) -> str:
        return f"{self.url}/mdm"

    @property
    def controller_url(self) -> str:
        return f"{self.url}/intune"

    @property
    def sim_url(self) -> str:
        return f"{self.url}/_sim"

    @property
    def default_server_uuid(self) -> str:
        value = self.control.get_setting("default_server_uuid")
        assert value is not None, "the world was not seeded"
        return value

    @property
    def dep_credentials(self) -> dict[str, str]:
        """The five OAuth keys of the default MDM server's token (as in the decrypted ``.p7m``)."""
        return self.dep_service.credentials(self.default_server_uuid)

    @property
    def business_url(self) -> str:
        """The Business API's base: ``{business_url}/v1/orgDevices`` (``https://api-business.apple.com`` by Host)."""
        return f"{self.url}/apple/business"

    @property
    def account_url(self) -> str:
        """Apple's account service: ``{account_url}/auth/oauth2/token`` (``https://account.apple.com`` by Host)."""
        return f"{self.url}/apple/account"

    @property
    def business_credentials(self) -> dict[str, str]:
        """The world's Business API account, as an admin has it after "Create API Account" and one
        download: ``client_id``, ``key_id``, ``private_key_pem`` (EC P-256, PKCS#8), the ``scope`` to ask
        for, the ``token_url`` and the API's ``api_url``, and the ``audience`` assertions must name."""
        account = self._business_account()
        return {
            **account,
            "scope": scope_of(account["client_id"]),
            "token_url": f"{self.account_url}/auth/oauth2/token",
            "audience": APPLE_AUDIENCE,
            "api_url": self.business_url,
        }

    def _business_account(self) -> dict[str, str]:
        """The world's API account, made once (at seeding, or on first use in a world seeded before the
        Business API existed); its private key, downloaded once from the portal, is kept in the world's
        settings as an admin keeps the file."""
        stored = self.control.get_setting(_BUSINESS_ACCOUNT)
        if stored is None:
            account = self.portal_service.api_accounts.create(DEFAULT_API_ACCOUNT)
            pem = self.portal_service.api_accounts.private_key(account["client_id"])
            stored = json.dumps({"client_id": account["client_id"], "key_id": account["key_id"], "private_key_pem": pem})
            self.control.set_setting(_BUSINESS_ACCOUNT, stored)
        return dict(json.loads(stored))

    def server_token_p7m(self, certificate_pem: str | bytes, server_uuid: str | None = None) -> bytes:
        """Upload a public key for the server (default: ``mdmsim``) and download its ``.p7m`` token."""
        target = server_uuid or self.default_server_uuid
        pem = certificate_pem.decode() if isinstance(certificate_pem, bytes) else certificate_pem
        self.portal_service.set_public_key(target, pem)
        return self.portal_service.server_token_p7m(target)

    @property
    def serials(self) -> list[str]:
        """Serial numbers of the devices in the organisation, in the order they were added."""
        return self.serials_of()

    def serials_of(self, server_uuid: str | None = None) -> list[str]:
        """Serials of the organisation's devices (or one MDM server's), oldest first."""
        page = self.portal_service.devices(server_uuid, limit=10_000_000, offset=0)
        return [device["serial_number"] for device in page["devices"]]

    def has_device(self, serial: str) -> bool:
        try:
            self.portal_service.device(serial)
        except PortalError:
            return False
        return True

    def info(self) -> dict[str, Any]:
        return {
            "now": isoformat(self.clock.now()),
            "url": self.url,
            "urls": {
                "dep": self.dep_url,
                "portal": self.portal_url,
                "mdm": self.mdm_url,
                "controller": self.controller_url,
                "idp": f"{self.url}/idp",
                "sim": self.sim_url,
                "acme_directory": f"{self.mdm_url}/acme/directory",
                "attestation_root": f"{self.url}/apple/activation/attestation-root.pem",
                "business": self.business_url,
                "account": self.account_url,
                # The push gateway's own listeners while served: device streams, HTTP/2 provider API.
                "apns_stream": self.control.get_setting("apns_stream_url") or None,
                "apns_provider": self.control.get_setting("apns_provider_url") or None,
                # Every device change as server-sent events, for live pages (simulator.live).
                "sim_events": events_url(self.control.get_setting("apns_stream_url"), self.control.get_setting("api_token")),
                # DEP at the root of a port of its own (--dep-port), as on mdmenrollment.apple.com.
                "dep_root": self.control.get_setting("dep_root_url") or None,
            },
            "organization": self._organization,
            "default_server_uuid": self.default_server_uuid,
            "depsim_compat": self.depsim_compat,
            "credentials": f"{self.portal_url}/api/servers/{self.default_server_uuid}/token",
        }

    # -- depsim configuration ----------------------------------------------------------------------
    def apply_depsim_config(self, config: dict[str, Any]) -> None:
        """Read depsim's config format: device insertions/deletions over world time, failure queues
        (see :meth:`simulator.depsim.DepsimSchedules.apply_config`)."""
        self.depsim.apply_config(config)

    def run_depsim_schedules(self) -> None:
        """Apply the insertion/deletion events that are due in world time (idempotent, atomic)."""
        self.depsim.run_due()

    def _insert_devices(self, count: int) -> None:
        self.portal_service.add_devices(self._generate_devices(count), server_uuid=self.default_server_uuid)

    def _release_devices(self, count: int) -> None:
        self.portal_service.release(self.serials_of(self.default_server_uuid)[:count])

    # -- simulation control ------------------------------------------------------------------------
    def traffic(self) -> dict[str, dict[str, dict[str, int]]]:
        """Request counts per party, endpoint and status code."""
        return self.control.traffic()

    def recent_traffic(self) -> list[dict[str, Any]]:
        """The last responses of the world (of every worker process of a data-dir world), oldest first."""
        return self.control.recent_traffic()

    def reset(self) -> None:
        """Back to the world as it was just after seeding (same devices, credentials and keys)."""
        if self.data_dir is None:
            for name, snapshot in self._snapshots.items():
                self._stores[name].restore(snapshot)
        else:
            for store in self._stores.values():
                store.wipe()
            self.activation.keep_device_ca()
            self.clock = Clock(self._stores["world"], start=None)
            self._seed(self._initial_devices)
        self.control.forget_unstored()

    # -- HTTP --------------------------------------------------------------------------------------
    @property
    def http(self) -> httpx.Client:
        """An HTTP client for this world: in process until served, over sockets after."""
        if self._client is None:
            address = WorldAddress(app=lambda: self.wsgi, url=lambda: self.url,
                                   token=lambda: self.control.get_setting("api_token"))
            client = WorldClient(address, base_url=IN_PROCESS_URL, timeout=30.0)
            # Every party of the world shares this client, and parties must not share a cookie jar
            # (a cookie one party sets is no business of another); it also skips cookie parsing,
            # a seventh of an in-process request.
            client.cookies.extract_cookies = _no_cookies  # type: ignore[method-assign]
            self._client = client
        return self._client

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0, *, tls: bool = False, apns_port: int | None = None,
              redis_url: str | None = None, wake_devices: bool = False,
              dep_port: int | None = None) -> Iterator[ServedWorld]:  # fmt: skip
        """Serve the world on a real port (threaded server) for as long as the block runs.

        ``tls=True`` serves HTTPS with a certificate from :attr:`tls_ca`; profiles defined meanwhile
        carry that CA as ``anchor_certs``. The push gateway serves device streams beside it
        (``served.apns_stream_url``) and, with ``apns_port`` (0: any free port), Apple's HTTP/2 provider
        API (``served.apns_url``) for an unmodified push client holding a push certificate.
        ``wake_devices=True``: the world's powered-on devices wake on their push and answer their MDM
        server by themselves, as in ``mdmsim serve`` (off by default: tests here drive agents).
        ``dep_port`` (0: any free port) serves DEP alone at the root of a second port
        (``served.dep_url``): ``/session``, ``/account``, as on mdmenrollment.apple.com."""
        with serve_threaded(self, host, port, tls=tls, apns_port=apns_port, redis_url=redis_url,
                            wake_devices=wake_devices, dep_port=dep_port) as served:
            yield served

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.controller.join(5.0)  # a background sync must not outlive its stores
        self.mdm.close()
        if self._client is not None:
            self._client.close()
        for store in self._stores.values():
            store.close()
        for snapshot in self._snapshots.values():
            snapshot.close()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WorldFaults:
    """Scripted responses and latency per endpoint, in depsim's vocabulary (``/_sim/faults`` in Python).

    ``world.faults.add({"post_devices_sync_responses": [{"count": 1, "response": "bad_request_expired_cursor"}]})``
    """

    def __init__(self, control: ControlService) -> None:
        self._control = control

    def add(self, script: dict[str, Any]) -> dict[str, Any]:
        return self._control.script_faults(script)

    def latency(self, endpoint: str, ms: int, party: str = "dep") -> dict[str, Any]:
        return self._control.script_faults({"party": party, "latency_ms": {endpoint: ms}})

    def clear(self) -> None:
        self._control.clear_faults()

    def current(self) -> dict[str, Any]:
        return self._control.faults()


class WorldDevices:
    """The world's simulated iPhones and iPads: power them on, wake their agents, read their state.

    Devices reach Apple and the MDM server only over HTTP, through the world's client: in process
    for this world's own URLs, over the network for anything else (an external MDM named by a profile).
    """

    def __init__(self, world: World) -> None:
        self._world = world

    def _driver(self) -> HTTPDriver:
        return HTTPDriver(self._world.http, now=self._world.clock.now)

    def power_on(self, serial: str, script: DeviceScript | None = None, *, max_steps: int = 500) -> DeviceRun:
        """Power a device on and walk Setup Assistant as far as it goes (home, or waiting)."""
        identity = None if self._world.fleet.get(serial) is not None else self._world.identity(serial)
        return self._world.fleet.power_on(serial, identity, self._driver(), script, max_steps=max_steps)

    def run_agent(self, serial: str, rounds: int = 1) -> DeviceRun:
        """Let a device's MDM agent wake (push or poll) and answer its commands, ``rounds`` times."""
        return self._world.fleet.run_agent(serial, self._driver(), rounds)

    def remove_mdm_profile(self, serial: str) -> bool:
        """The user tries to remove the MDM profile (refused when enrollment is locked)."""
        return self._world.fleet.remove_mdm_profile(serial, self._driver())

    def pair_with_host(self, serial: str, cert_der: bytes | None) -> bool:
        return self._world.fleet.pair_with_host(serial, cert_der)

    def get(self, serial: str) -> Any:
        return self._world.fleet.get(serial)

    def attest_key(self, serial: str, token: str, *, bits: int = 384) -> KeyAttestation:
        """Have a device answer a ``device-attest-01`` challenge of ``token``: a new key in its Secure
        Enclave, attested by this world's Apple. For a user's own ACME client (certbot's ``acme``, say)
        standing in for the device's: it posts :meth:`KeyAttestation.challenge_response` and finalizes
        with a CSR the key signs. The private key stays in the device (:mod:`simulator.device.secure_enclave`).
        """
        device = self._world.fleet.get(serial)
        if device is None:
            if not self._world.has_device(serial):
                raise KeyError(f"no device {serial} in the organization")
            device = self._world.fleet.add(self._world.identity(serial))
        try:
            return self._driver().run(attest_new_key(device, token, bits))
        except AttestationFailed as exc:
            raise RuntimeError(exc.reason) from None

    def _known(self, serial: str) -> bool:
        return self._world.fleet.get(serial) is not None or self._world.has_device(serial)

    def identity_bundle(self, serial: str) -> dict[str, Any] | None:
        """Everything a device made elsewhere (``mdmsim device power-on``) needs: identity, key, cert."""
        if not self._known(serial):
            return None
        device = self._world.fleet.get(serial)
        identity = self._world.identity(serial)
        if device is not None:
            key_pem, cert_pem = device.state.device_key_pem, device.state.device_cert_pem
        else:
            key = seeded_key(self._world.seed, f"device:{serial}")
            cert = self._world.activation.issue_device_identity(identity.udid, serial, key.public_key())
            key_pem, cert_pem = _text(key_to_pem(key)), _text(cert_to_pem(cert))
        bundle = {"identity": asdict(identity), "device_key_pem": _text(key_pem),
                  "device_certificate_pem": _text(cert_pem), "apple_url": f"{self._world.url}/apple"}
        if self._world.serves_tls:
            # The simulation's stand-in for Apple's roots in the device's system store: a device run
            # elsewhere trusts this for Apple's own services (activation, push); the MDM server it
            # trusts only by the anchors of its cloud configuration.
            bundle["apple_ca_pem"] = self._world.tls_ca_pem
        return bundle

    def power_on_json(self, serial: str) -> dict[str, Any] | None:
        if not self._known(serial):
            return None
        self.power_on(serial)
        return self.describe(serial)

    def run_agent_json(self, serial: str, rounds: int) -> dict[str, Any] | None:
        if self._world.fleet.get(serial) is None:
            return None
        self.run_agent(serial, rounds)
        return self.describe(serial)

    def power_on_many_json(self, serials: list[str] | None) -> dict[str, Any]:
        """Power on each device in turn (``None``: every device Apple lists with a profile)."""
        if serials is None:
            page = self._world.portal_service.devices(None, limit=10_000_000, offset=0)["devices"]
            serials = [d["serial_number"] for d in page if d.get("profile_uuid")]
        found = [s for s in dict.fromkeys(serials) if self._known(s)]
        runs = [self.power_on(serial) for serial in found]
        powered = set(found)
        return {"devices": [{"serial_number": r.serial, "phase": r.phase, "pane": r.pane} for r in runs],
                "missing": [s for s in serials if s not in powered]}

    def erase_json(self, serial: str) -> dict[str, Any] | None:
        if self._world.fleet.get(serial) is None:
            return None
        self._world.fleet.erase(serial)
        return self.describe(serial)

    def exchanges_json(self, serial: str) -> dict[str, Any] | None:
        """The device's timeline (:func:`simulator.exchanges.timeline`)."""
        if self._world.fleet.get(serial) is None:
            return None
        return exchanges.timeline(serial, self._world.fleet.devices.exchanges(serial))

    def exchange_json(self, serial: str, exchange_id: int) -> dict[str, Any] | None:
        row = self._world.fleet.devices.exchange(serial, exchange_id)
        return exchanges.detail(row) if row is not None else None

    def screens(self) -> dict[str, Any]:
        return {"screens": SCREENS}

    def describe(self, serial: str) -> dict[str, Any] | None:
        return self._world.fleet.describe(serial)

    def list(self, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        """The organisation's devices, oldest first, with where each is now (``off`` until powered on)."""
        page = self._world.portal_service.devices(None, limit=limit, offset=offset)["devices"]
        states = {s["serial_number"]: s for s in self._world.fleet.devices.summaries_for(
            [d["serial_number"] for d in page])}
        return [
            {**states.get(d["serial_number"], {"serial_number": d["serial_number"], "phase": "off", "pane": None,
                                               "enrolled": False, "last_entry": None}),
             "model": d["model"], "family": d.get("device_family"), "color": d.get("color"),
             "server_uuid": d.get("server_uuid"), "profile_uuid": d.get("profile_uuid")}
            for d in page
        ]


def _no_cookies(response: httpx.Response) -> None:
    """The world's shared client keeps no cookies (see :attr:`World.http`)."""


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
