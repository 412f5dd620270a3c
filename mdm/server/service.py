"""The MDM server: one front over its parts, so callers (the world, tests, the HTTP handlers) see
one object with the methods they have always called.

=====================  ==========================================================================
part                   rules
=====================  ==========================================================================
:mod:`.identity`       MDM CA bootstrap, push certificate and topic, DEP enrollment (MachineInfo →
                       signed profile with a device identity), Mdm-Signature and identity ownership
:mod:`.scep`           SCEP (RFC 8894) at ``/mdm/scep``: identities for profiles with a SCEP payload
:mod:`.acme`           ACME (RFC 8555, device-attest-01) at ``/mdm/acme``: identities for attested keys
:mod:`.checkin`        the check-in protocol: one method per MessageType, dispatched by a table
:mod:`.commands`       the command queue, command reports, the command API and its views
:mod:`.outbound`       APNs pushes and webhook events, after commit (transport in :mod:`.push`)
=====================  ==========================================================================

Every public method takes and returns plain values (bytes, dicts); :mod:`mdm.server.http` only parses
HTTP and renders. Errors are :class:`MDMError` with the HTTP status and a plain-text reason. The rules
that keep a device's request safe:

* everything that can fail (signature, plist, ownership of the identity) is checked *before* the
  store transaction opens, so a refused request changes nothing;
* network I/O (IdP, APNs, webhooks) happens outside transactions: the IdP before, pushes and webhook
  events after commit, on :class:`~mdm.server.push.Dispatcher` threads;
* check-in auth failures are 403, never 401 (a 401 tells a real device it was unenrolled; FACTS §3).

Every random value the server makes (CA and identity keys, identity serials, the topic, profile
passwords and PayloadUUIDs, server-made CommandUUIDs, webhook event ids) comes from one
:class:`~mdm.protocol.randomness.Randomness` built from ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import httpx
from cryptography import x509

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.commands import Command
from mdm.protocol.machineinfo import MachineInfo
from mdm.protocol.randomness import Randomness
from mdm.protocol.x509 import CertificateAuthority, PrivateKey

from .acme import ACMEService
from .checkin import CheckinService
from .commands import CommandService
from .enrollment import EnrollmentProfile
from .identity import PUSH_CERT_HEADER, IdentityService, parse_push_certificate_request
from .outbound import Outbound
from .push import PushOutcome, WebhookSubscription
from .replies import CHECKIN_TYPE, MAX_BODY, PLIST_TYPE, MDMError, Reply, enrollment_id_of
from .scep import SCEPService

__all__ = [
    "MDMService",
    "MDMError",
    "Reply",
    "enrollment_id_of",
    "MAX_BODY",
    "CHECKIN_TYPE",
    "PLIST_TYPE",
    "PUSH_CERT_HEADER",
]


class MDMService:
    """One MDM server. Construction is cheap: the CA and topic are made on first use, in the store.

    The methods below forward to the part that owns the rule: one call, no per-request objects.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        trust_roots: Sequence[x509.Certificate],
        http: httpx.Client,
        base_url: Callable[[], str],
        apns_url: Callable[[], str],
        idp_url: Callable[[], str | None] = lambda: None,
        webhook_urls: Callable[[], Iterable[str | WebhookSubscription]] = lambda: (),
        seed: int | None = None,
        synchronous: bool = False,
        outbound_workers: int = 8,
        identity_key: Literal["ec", "rsa"] = "ec",
        identity_days: int = 365,
        inflight_lease_s: float = 600.0,
        organization: str = "mdmsim",
        identity: Literal["scep", "pkcs12", "acme"] = "pkcs12",
        scep_url: str | None = None,
        scep_challenge: str | None = None,
        identity_cas: Sequence[x509.Certificate] = (),
        attestation_roots: Callable[[], Sequence[x509.Certificate]] = lambda: (),
    ) -> None:
        self.store = store
        self.clock = clock
        self.http = http
        self.seed = seed
        self.random = Randomness(seed)
        self.identity = IdentityService(
            store,
            clock,
            self.random,
            trust_roots=trust_roots,
            http=http,
            base_url=base_url,
            idp_url=idp_url,
            identity_key=identity_key,
            identity_days=identity_days,
            organization=organization,
            identity_method=identity,
            scep_url=scep_url,
            scep_challenge=scep_challenge,
            identity_cas=identity_cas,
        )
        # Our own SCEP service (RFC 8894 at /mdm/scep): issues from the MDM CA through an RSA RA.
        self.scep = SCEPService(
            store,
            clock,
            ca=self.identity.certificate_authority,
            ra=self.identity.scep_ra,  # type: ignore[arg-type]
            on_issued=self.identity.record_scep_identity,
            identity_days=identity_days,
            seed=seed,
        )
        self.identity.new_scep_challenge = self.scep.new_challenge
        # Our ACME service (RFC 8555 with device-attest-01 at /mdm/acme/directory): issues from the MDM CA
        # for Secure Enclave keys Apple attested; ``attestation_roots`` are the roots it trusts for that.
        self.acme = ACMEService(
            store,
            clock,
            ca=self.identity.certificate_authority,
            attestation_roots=attestation_roots,
            base_url=base_url,
            on_issued=self.identity.record_acme_identity,
            identity_days=identity_days,
            seed=seed,
        )
        self.identity.new_acme_client_identifier = self.acme.new_client_identifier
        self.outbound = Outbound(
            store,
            clock,
            self.random,
            self.identity,
            http=http,
            apns_url=apns_url,
            webhook_urls=webhook_urls,
            synchronous=synchronous,
            workers=outbound_workers,
        )
        self.checkins = CheckinService(store, clock, self.identity, self.outbound)
        self.commands = CommandService(
            store, clock, self.random, self.identity, self.outbound, inflight_lease_s=inflight_lease_s
        )

    @property
    def webhook_urls(self) -> Callable[[], Iterable[str | WebhookSubscription]]:
        """Where webhook events go (read on every event, so a test may swap it on a running server)."""
        return self.outbound.webhook_urls

    @webhook_urls.setter
    def webhook_urls(self, value: Callable[[], Iterable[str | WebhookSubscription]]) -> None:
        self.outbound.webhook_urls = value

    # == identity ====================================================================================
    def certificate_authority(self) -> CertificateAuthority:
        return self.identity.certificate_authority()

    def ca_certificate(self) -> x509.Certificate:
        return self.identity.ca_certificate()

    def ca_certificate_pem(self) -> bytes:
        return self.identity.ca_certificate_pem()

    @property
    def topic(self) -> str:
        return self.identity.topic

    def set_push_certificate(self, cert_pem: bytes | str, key_pem: bytes | str) -> str:
        return self.identity.set_push_certificate(cert_pem, key_pem)

    def set_push_certificate_request(self, data: Any) -> dict[str, Any] | None:
        """``PUT /api/v1/push-certificate``: the JSON body's shape, adoption, then what is now in use."""
        self.identity.set_push_certificate(*parse_push_certificate_request(data))
        return self.identity.push_certificate()

    def push_certificate(self) -> dict[str, Any] | None:
        return self.identity.push_certificate()

    def push_headers(self) -> dict[str, str]:
        return self.identity.push_headers()

    def issue_identity(self, udid: str, *, days: float | None = None) -> tuple[x509.Certificate, PrivateKey]:
        return self.identity.issue_identity(udid, days=days)

    def verify_machine_info(self, signed: bytes) -> MachineInfo:
        return self.identity.verify_machine_info(signed)

    def enroll(
        self,
        signed_machine_info: bytes,
        *,
        require_user: bool = False,
        credentials: tuple[str, str] | None = None,
    ) -> EnrollmentProfile:
        return self.identity.enroll(signed_machine_info, require_user=require_user, credentials=credentials)

    # == the device protocol =========================================================================
    def profile_for_any_device(self, data: Any = None) -> bytes:
        """``POST /api/v1/enrollment-profiles`` (``{}``): the signed profile for profile-based enrollment."""
        if data not in (None, {}):
            raise MDMError(400, "send {}: the profile is the same for every device until one enrolls with it")
        return self.identity.profile_for_any_device()

    def checkin(self, body: bytes, signature: str | None, *, url_params: Mapping[str, str] | None = None) -> Reply:
        return self.checkins.checkin(body, signature, url_params=url_params)

    def connect(self, body: bytes, signature: str | None, *, url_params: Mapping[str, str] | None = None) -> Reply:
        return self.commands.connect(body, signature, url_params=url_params)

    # == commands ====================================================================================
    def enqueue(
        self,
        targets: Sequence[str],
        command: Mapping[str, Any] | Command,
        *,
        priority: int = 0,
        push: bool = True,
    ) -> str:
        return self.commands.enqueue(targets, command, priority=priority, push=push)

    def enqueue_request(self, data: Any) -> str:
        return self.commands.enqueue_request(data)

    def command_status(self, command_uuid: str) -> dict[str, Any] | None:
        return self.commands.command_status(command_uuid)

    def devices(self) -> list[dict[str, Any]]:
        return self.commands.devices()

    def device(self, udid: str) -> dict[str, Any] | None:
        """One device as the command API shows it, with how its ACME identity was attested, if it has one."""
        found = self.commands.device(udid)
        if found is not None:
            acme_identity = self.acme.identity_of(udid)
            if acme_identity is not None:
                found["identity"] = acme_identity
        return found

    def bootstrap_token(self, enrollment_id: str) -> bytes | None:
        return self.commands.bootstrap_token(enrollment_id)

    # == outbound ====================================================================================
    def push(self, targets: Sequence[str]) -> None:
        self.outbound.push(targets)

    def push_now(self, target: str) -> PushOutcome | None:
        return self.outbound.push_now(target)

    def wait_for_outbound(self, timeout: float = 10.0) -> bool:
        """Block (bounded) until queued pushes and webhook posts are done: for tests and drivers."""
        return self.outbound.wait(timeout)

    def close(self) -> None:
        self.outbound.close()
