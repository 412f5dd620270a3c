"""The MDM server's rules: DEP enrollment, check-in, the command queue, pushes, the command API.

Every public method takes and returns plain values (bytes, dicts); :mod:`mdm.server.http` only parses
HTTP and renders. Errors are :class:`MDMError` with the HTTP status and a plain-text reason. The rules
that keep a device's request safe:

* everything that can fail (signature, plist, ownership of the identity) is checked *before* the
  store transaction opens, so a refused request changes nothing;
* network I/O (IdP, APNs, webhooks) happens outside transactions: the IdP before, pushes and webhook
  events after commit, on :class:`~mdm.server.push.Dispatcher` threads;
* check-in auth failures are 403, never 401 (a 401 tells a real device it was unenrolled; FACTS §3).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from cryptography import x509

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol import cms
from mdm.protocol.checkin import (
    Authenticate,
    CheckinMessage,
    CheckOut,
    DeclarativeManagement,
    GetBootstrapToken,
    SetBootstrapToken,
    TokenUpdate,
    UserAuthenticate,
    parse_checkin,
)
from mdm.protocol.commands import Command, CommandError, CommandResult, parse_result, validate_command
from mdm.protocol.isotime import iso_from_timestamp, isoformat
from mdm.protocol.machineinfo import MachineInfo, parse_machine_info
from mdm.protocol.plist import PlistError, dumps, loads
from mdm.protocol.webhook import acknowledge_event, checkin_event
from mdm.protocol.x509 import (
    CertificateAuthority,
    PrivateKey,
    cert_from_pem,
    cert_to_der,
    cert_to_pem,
    fingerprint_sha256,
    key_from_pem,
    key_to_pem,
    push_topic,
)

from . import store as q
from .enrollment import (
    EnrollmentProfile,
    build_enrollment_profile,
    identity_owner,
    new_identity_key,
    new_topic,
    seeded_key,
)
from .idp import IdPUnavailable, check_credentials
from .push import Dispatcher, PushOutcome, WebhookSubscription, post_webhook, send_push, webhook_targets
from .signature import fast_verify, fast_verify_embedded

__all__ = ["MDMService", "MDMError", "Reply", "enrollment_id_of"]

MAX_BODY = 1_048_576
CHECKIN_TYPE = "application/x-apple-aspen-mdm-checkin"
PLIST_TYPE = "application/xml"
#: The simulation's stand-in for the TLS client certificate on pushes (base64 DER of the push cert).
PUSH_CERT_HEADER = "X-Mdmsim-Client-Cert"


class MDMError(Exception):
    """A request the server refuses: HTTP ``status`` and a short plain-text ``reason``."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Reply:
    """A device-facing answer: status, body and its content type (empty body: ``content_type`` None)."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def enrollment_id_of(device_id: str, user_id: str | None) -> str:
    """NanoMDM's ids: the device channel is the device id, a user channel ``<device id>:<user id>``."""
    return f"{device_id}:{user_id}" if user_id else device_id


def _user_id(msg: CheckinMessage | CommandResult) -> str | None:
    return msg.user_id or msg.enrollment_user_id


def _json_safe(value: Any) -> Any:
    """Plist values as JSON: data as base64, dates as ISO 8601."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, _dt.datetime):
        return isoformat(value if value.tzinfo else value.replace(tzinfo=_dt.UTC))
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value



class MDMService:
    """One MDM server. Construction is cheap: the CA and topic are made on first use, in the store."""

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
    ) -> None:
        self.store = store
        self.clock = clock
        self.trust_roots = list(trust_roots)
        self.http = http
        self.base_url = base_url
        self.apns_url = apns_url
        self.idp_url = idp_url
        self.webhook_urls = webhook_urls
        self.seed = seed
        self.identity_key = identity_key
        self.identity_days = identity_days
        self.inflight_lease_s = inflight_lease_s
        self.organization = organization
        self.outbound = Dispatcher(synchronous=synchronous, workers=outbound_workers)
        # Parsed-CA cache keyed by the stored PEM: the store stays the truth (a world reset or another
        # process may replace it), but the hot path does not re-parse a key on every check-in.
        self._ca_cache: tuple[bytes, CertificateAuthority] | None = None
        self._lock = threading.Lock()
        self._issued_by_ca: dict[tuple[bytes, x509.Certificate], bool] = {}
        self._parsed_signers: dict[bytes, tuple[x509.Certificate, int, bytes, bytes]] = {}
        self._push_header_cache: tuple[bytes, str] | None = None

    # == identity of the server ======================================================================
    def certificate_authority(self) -> CertificateAuthority:
        """The MDM CA that issues device identities (created and stored on first use)."""
        return self.store.cached("mdm-ca", self._load_certificate_authority)

    def _load_certificate_authority(self) -> CertificateAuthority:
        with self.store.read() as db:
            cert_pem = q.get_setting(db, "ca_cert")
        if cert_pem is None:
            ca = CertificateAuthority.create(
                "mdmsim MDM CA",
                self.clock.now(),
                key=seeded_key(self.seed, "mdm-ca"),
                days=3650,
                organization=self.organization,
            )
            cert_pem_new, key_pem_new = ca.to_pem()
            with self.store.transaction() as db:
                if q.get_setting(db, "ca_cert") is None:
                    q.set_setting(db, "ca_cert", cert_pem_new)
                    q.set_setting(db, "ca_key", key_pem_new)
                cert_pem = q.get_setting(db, "ca_cert")
        cert_pem = bytes(cert_pem)
        cached = self._ca_cache
        if cached is not None and cached[0] == cert_pem:
            return cached[1]
        with self.store.read() as db:
            key_pem = bytes(q.get_setting(db, "ca_key"))
        ca = CertificateAuthority(cert_from_pem(cert_pem), key_from_pem(key_pem))
        self._ca_cache = (cert_pem, ca)
        return ca

    def ca_certificate(self) -> x509.Certificate:
        return self.certificate_authority().certificate

    def ca_certificate_pem(self) -> bytes:
        return cert_to_pem(self.ca_certificate())

    @property
    def topic(self) -> str:
        """The push topic (``com.apple.mgmt.…``): generated once, or the UID of a push certificate."""
        return self.store.cached("topic", self._load_topic)

    def _load_topic(self) -> str:
        with self.store.read() as db:
            topic = q.get_setting(db, "topic")
        if topic is None:
            with self.store.transaction() as db:
                topic = q.insert_setting_if_absent(db, "topic", new_topic(self.seed))
        return str(topic)

    def set_push_certificate(self, cert_pem: bytes | str, key_pem: bytes | str) -> str:
        """Adopt an Apple-issued push certificate: its subject UID becomes the topic. Returns the topic.

        From then on enrollment profiles carry that topic and every push presents the certificate to
        APNs (:meth:`push_headers`). A certificate with another UID than the last one changes the topic:
        devices enrolled under the old topic keep their old token, which APNs refuses for the new topic,
        so they stay unreachable by push until they enroll again.
        """
        try:
            cert = cert_from_pem(cert_pem)
        except ValueError:
            raise MDMError(400, "certificate is not a PEM X.509 certificate") from None
        try:
            key = key_from_pem(key_pem)
        except (ValueError, TypeError):
            raise MDMError(400, "key is not an unencrypted PEM private key") from None
        if cert.public_key().public_numbers() != key.public_key().public_numbers():
            raise MDMError(400, "push certificate and key do not match")
        topic = push_topic(cert)
        if topic is None:
            raise MDMError(400, "push certificate has no com.apple.mgmt.* UID in its subject")
        with self.store.transaction() as db:
            q.set_setting(db, "topic", topic)
            q.set_setting(db, "push_cert", cert_to_pem(cert))
            q.set_setting(db, "push_key", key_to_pem(key))
            self.store.forget("topic")
            self.store.forget("push-headers")
        return topic

    def push_certificate(self) -> dict[str, Any] | None:
        """What the server pushes with: topic, serial and validity (None: no certificate yet)."""
        with self.store.read() as db:
            pem = q.get_setting(db, "push_cert")
        if pem is None:
            return None
        cert = cert_from_pem(bytes(pem))
        return {
            "topic": self.topic,
            "serial": format(cert.serial_number, "x"),
            "not_before": isoformat(cert.not_valid_before_utc),
            "not_after": isoformat(cert.not_valid_after_utc),
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
        }

    def push_headers(self) -> dict[str, str]:
        """How this server proves to APNs who it is: the push certificate, if one was set.

        Real APNs takes the certificate from the TLS handshake; over plain HTTP the simulation carries
        it as ``X-Mdmsim-Client-Cert: <base64 DER>`` (see :mod:`simulator.apple.apns.service`).
        Without a certificate no header is sent, and an APNs that checks certificates refuses the push.
        """
        return dict(self.store.cached("push-headers", self._load_push_headers))

    def _load_push_headers(self) -> dict[str, str]:
        with self.store.read() as db:
            pem = q.get_setting(db, "push_cert")
        if pem is None:
            return {}
        pem = bytes(pem)
        cached = self._push_header_cache
        if cached is None or cached[0] != pem:
            der = cert_to_der(cert_from_pem(pem))
            cached = (pem, base64.b64encode(der).decode())
            self._push_header_cache = cached
        return {PUSH_CERT_HEADER: cached[1]}

    def issue_identity(self, udid: str, *, days: float | None = None) -> tuple[x509.Certificate, PrivateKey]:
        """A device identity (CN = UDID) issued by the MDM CA and recorded as belonging to ``udid``."""
        ca = self.certificate_authority()
        key = new_identity_key(self.identity_key, self.seed, udid)
        now = self.clock.now()
        cert = ca.issue(
            key.public_key(), subject=udid, now=now, days=days if days is not None else self.identity_days
        )
        with self.store.transaction() as db:
            self._record_identity(db, cert, udid, now.timestamp())
        return cert, key

    def _record_identity(self, db: sqlite3.Connection, cert: x509.Certificate, udid: str, now: float) -> None:
        self.store.forget(_owner_key(cert))
        db.execute(
            "INSERT OR REPLACE INTO identities (serial, udid, fingerprint, not_after, issued_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                format(cert.serial_number, "x"),
                udid,
                fingerprint_sha256(cert),
                cert.not_valid_after_utc.timestamp(),
                now,
            ),
        )

    # == DEP enrollment ==============================================================================
    def verify_machine_info(self, signed: bytes) -> MachineInfo:
        """The MachineInfo inside a CMS signature that chains to Apple's device CA; 403 otherwise."""
        if not signed:
            raise MDMError(
                403, "missing MachineInfo: POST the CMS-signed plist (application/pkcs7-signature)"
            )
        if signed[:1] != b"\x30":
            raise MDMError(403, "MachineInfo is not signed: expected a CMS SignedData (DER)")
        now = self.clock.now()
        fast = fast_verify_embedded(signed, self.trust_roots, now)
        if fast is not None:
            content = fast[1]
        else:
            try:
                content = cms.verify(signed, trust_roots=self.trust_roots, now=now).content
            except cms.CMSError as exc:
                raise MDMError(403, f"MachineInfo signature not accepted: {exc.reason}") from None
        try:
            return parse_machine_info(content)
        except PlistError as exc:
            raise MDMError(403, f"MachineInfo not accepted: {exc.reason}") from None

    def enroll(
        self,
        signed_machine_info: bytes,
        *,
        require_user: bool = False,
        credentials: tuple[str, str] | None = None,
    ) -> EnrollmentProfile:
        """MachineInfo → signed enrollment profile with a fresh identity for that UDID.

        With ``require_user`` (user affinity), ``credentials`` are checked against the IdP first: none
        → 401 with a Basic challenge (this is Setup Assistant's web auth, not a check-in), wrong → 403.
        """
        info = self.verify_machine_info(signed_machine_info)
        upn: str | None = None
        if require_user:
            if credentials is None:
                raise MDMError(401, "user credentials required", {"WWW-Authenticate": 'Basic realm="mdmsim"'})
            url = self.idp_url()
            if not url:
                raise MDMError(503, "user authentication is required but no identity provider is configured")
            try:
                result = check_credentials(self.http, url, credentials[0], credentials[1], self.clock.now())
            except IdPUnavailable as exc:
                raise MDMError(503, str(exc)) from None
            if not result.ok:
                raise MDMError(403, "invalid user credentials")
            upn = result.upn or credentials[0]
        ca = self.certificate_authority()
        topic = self.topic
        key = new_identity_key(self.identity_key, self.seed, info.udid)
        now = self.clock.now()
        cert = ca.issue(key.public_key(), subject=info.udid, now=now, days=self.identity_days)
        signed = build_enrollment_profile(
            ca=ca,
            identity=cert,
            identity_key=key,
            topic=topic,
            base_url=self.base_url(),
            organization=self.organization,
        )
        ts = now.timestamp()
        with self.store.transaction() as db:
            self._record_identity(db, cert, info.udid, ts)
            db.execute(
                """
                INSERT INTO devices (udid, serial_number, product, version, os_version, imei, meid, language,
                                     user_upn, enrolled_at, profile_count)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
                ON CONFLICT (udid) DO UPDATE SET
                    serial_number = excluded.serial_number, product = excluded.product,
                    version = excluded.version, os_version = excluded.os_version, imei = excluded.imei,
                    meid = excluded.meid, language = excluded.language, user_upn = excluded.user_upn,
                    enrolled_at = excluded.enrolled_at, profile_count = profile_count + 1
                """,
                (
                    info.udid,
                    info.serial,
                    info.product,
                    info.version,
                    info.os_version,
                    info.imei,
                    info.meid,
                    info.language,
                    upn,
                    ts,
                ),
            )
        return EnrollmentProfile(signed=signed, udid=info.udid, certificate=cert, user=upn)

    # == message authenticity ========================================================================
    def _verify_signature(
        self, body: bytes, header: str | None, now: _dt.datetime | None = None
    ) -> x509.Certificate:
        """The identity that signed ``body`` (Mdm-Signature), chaining to our CA and valid now; 403 else."""
        if not header:
            raise MDMError(403, "missing Mdm-Signature header (the profile sets SignMessage)")
        try:
            der = base64.b64decode("".join(header.split()), validate=True)
        except (binascii.Error, ValueError):
            raise MDMError(403, "Mdm-Signature is not base64") from None
        ca = self.ca_certificate()
        now = now if now is not None else self.clock.now()
        signer = fast_verify(der, body, ca, now, self._issued_by_ca, self._parsed_signers)
        if signer is not None:
            return signer
        try:
            verified = cms.verify(der, content=body, trust_roots=[ca], now=now)
        except cms.CMSError as exc:
            raise MDMError(403, f"Mdm-Signature not accepted: {exc.reason}") from None
        return verified.signer

    def _check_owner(self, signer: x509.Certificate, device_id: str) -> None:
        """The signing identity must have been issued for this device: no device speaks for another."""
        def load() -> str | None:
            with self.store.read() as db:
                row = db.execute(
                    "SELECT udid FROM identities WHERE serial = ?", (format(signer.serial_number, "x"),)
                ).fetchone()
            return row[0] if row is not None else None

        # Memoised in memory (every check-in asks; an identity's owner is written once, at issue).
        owner = self.store.cached(_owner_key(signer), load) or identity_owner(signer)
        if owner != device_id:
            raise MDMError(403, f"identity certificate belongs to {owner!r}, not to {device_id!r}"[:300])

    # == check-in ====================================================================================
    def checkin(
        self, body: bytes, signature: str | None, *, url_params: Mapping[str, str] | None = None
    ) -> Reply:
        """One check-in message (CheckInURL). Returns the reply; raises :class:`MDMError`."""
        instant = self.clock.now()  # one clock read serves the signature check and the store
        signer = self._verify_signature(body, signature, instant)
        try:
            msg = parse_checkin(body, max_size=MAX_BODY)
        except PlistError as exc:
            raise MDMError(400, f"bad check-in message: {exc.reason}") from None
        self._check_owner(signer, msg.device_id)
        user_id = _user_id(msg)
        eid = enrollment_id_of(msg.device_id, user_id)
        kind = "User" if user_id else "Device"
        now = instant.timestamp()
        reply = Reply()
        with self.store.transaction() as db:
            if isinstance(msg, Authenticate):
                q.upsert_authenticate(
                    db,
                    enrollment_id=eid,
                    device_id=msg.device_id,
                    user_id=user_id,
                    kind=kind,
                    serial_number=msg.serial_number,
                    topic=msg.topic,
                    raw=body,
                    now=now,
                )
            elif isinstance(msg, TokenUpdate):
                q.upsert_token_update(
                    db,
                    enrollment_id=eid,
                    device_id=msg.device_id,
                    user_id=user_id,
                    kind=kind,
                    topic=msg.topic,
                    token_hex=msg.token_hex,
                    push_magic=msg.push_magic,
                    unlock_token=msg.unlock_token,
                    awaiting_configuration=bool(msg.awaiting_configuration),
                    user_short_name=msg.user_short_name,
                    user_long_name=msg.user_long_name,
                    raw=body,
                    now=now,
                )
            elif isinstance(msg, CheckOut):
                self._require_enrollment(db, eid)
                q.check_out(db, eid, msg.device_id, device_channel=user_id is None, now=now)
            elif isinstance(msg, UserAuthenticate):
                # NanoMDM's default: 410 declines the user channel for this user.
                reply = Reply(status=410)
            elif isinstance(msg, SetBootstrapToken):
                self._require_enrollment(db, eid)
                db.execute(
                    "UPDATE enrollments SET bootstrap_token = ?, last_seen = ? WHERE id = ?",
                    (msg.bootstrap_token, now, eid),
                )
            elif isinstance(msg, GetBootstrapToken):
                row = self._require_enrollment(db, eid)
                token = row["bootstrap_token"]
                q.touch(db, eid, now)
                reply = Reply(
                    body=dumps({"BootstrapToken": bytes(token)} if token else {}), content_type=PLIST_TYPE
                )
            elif isinstance(msg, DeclarativeManagement):
                self._require_enrollment(db, eid)
                q.touch(db, eid, now)
                reply = self._declarative(msg)
            else:
                raise MDMError(400, f"{msg.message_type} is not supported by this server")
        self._after_commit_checkin(msg, body, url_params)
        return reply

    @staticmethod
    def _require_enrollment(db: sqlite3.Connection, eid: str) -> sqlite3.Row:
        row = q.get_enrollment(db, eid)
        if row is None:
            raise MDMError(403, f"unknown enrollment {eid!r}: send Authenticate first"[:300])
        return row

    def _declarative(self, msg: DeclarativeManagement) -> Reply:
        """An empty declaration set: a device syncs and finds nothing to apply."""
        token = "mdmsim-empty-0"
        if msg.endpoint == "tokens":
            body: Any = {"SyncTokens": {"DeclarationsToken": token, "Timestamp": isoformat(self.clock.now())}}
        elif msg.endpoint == "declaration-items":
            body = {
                "Declarations": {"Activations": [], "Assets": [], "Configurations": [], "Management": []},
                "DeclarationsToken": token,
            }
        elif msg.endpoint == "status":
            return Reply()
        else:
            raise MDMError(404, f"no declaration {msg.endpoint}"[:200])
        return Reply(body=json.dumps(body).encode(), content_type="application/json")

    # == commands ====================================================================================
    def connect(
        self, body: bytes, signature: str | None, *, url_params: Mapping[str, str] | None = None
    ) -> Reply:
        """A device's report on ServerURL; answers with its next command (or an empty body)."""
        instant = self.clock.now()
        signer = self._verify_signature(body, signature, instant)
        try:
            result = parse_result(body, max_size=MAX_BODY)
        except PlistError as exc:
            raise MDMError(400, f"bad command report: {exc.reason}") from None
        self._check_owner(signer, result.device_id)
        eid = enrollment_id_of(result.device_id, _user_id(result))
        now = instant.timestamp()
        request_type = None
        with self.store.transaction() as db:
            if not q.touch(db, eid, now):
                raise MDMError(403, f"unknown enrollment {eid!r}: send Authenticate first"[:300])
            if result.status != "Idle" and result.command_uuid:
                request_type = q.command_request_type(db, result.command_uuid)
                chain = json.dumps([e.to_dict() for e in result.error_chain]) if result.error_chain else None
                q.record_result(
                    db,
                    enrollment_id=eid,
                    command_uuid=result.command_uuid,
                    status=result.status,
                    error_chain=chain,
                    raw=body,
                    now=now,
                )
            row = q.claim_next_command(
                db,
                eid,
                skip_not_now=result.status == "NotNow",
                now=now,
                lease_before=now - self.inflight_lease_s,
            )
        self._after_commit_connect(result, body, url_params, request_type)
        if row is None:
            return Reply()
        return Reply(body=bytes(row["plist"]), content_type=PLIST_TYPE)

    def enqueue(
        self,
        targets: Sequence[str],
        command: Mapping[str, Any] | Command,
        *,
        priority: int = 0,
        push: bool = True,
    ) -> str:
        """Queue one command for several enrollments (UDIDs or ``udid:userid``) and push them.

        Unknown targets refuse the whole request (400): a half-queued command is harder to reason about.
        """
        if isinstance(command, Command):
            cmd = command
        else:
            try:
                cmd = validate_command(command, strict=True)
            except CommandError as exc:
                raise MDMError(400, exc.reason) from None
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise MDMError(400, "priority must be an integer")
        targets = list(dict.fromkeys(targets))
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise MDMError(400, "udids must be a non-empty array of strings")
        try:
            plist = cmd.to_plist()
        except PlistError as exc:
            raise MDMError(400, exc.reason) from None
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            marks = ",".join("?" * len(targets))
            known = {r[0] for r in db.execute(f"SELECT id FROM enrollments WHERE id IN ({marks})", targets)}
            missing = [t for t in targets if t not in known]
            if missing:
                raise MDMError(400, f"unknown device: {', '.join(missing[:5])}"[:300])
            try:
                db.execute(
                    "INSERT INTO commands (uuid, request_type, plist, priority, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (cmd.command_uuid, cmd.request_type, plist, priority, now),
                )
            except sqlite3.IntegrityError:
                raise MDMError(400, f"CommandUUID {cmd.command_uuid} already used") from None
            db.executemany(
                "INSERT INTO queue (enrollment_id, command_uuid, priority) VALUES (?, ?, ?)",
                [(t, cmd.command_uuid, priority) for t in targets],
            )
        if push:
            self.push(targets)
        return cmd.command_uuid

    # == push ========================================================================================
    def push(self, targets: Sequence[str]) -> None:
        """Wake enrollments over APNs (after commit, off the request thread unless synchronous)."""
        with self.store.read() as db:
            marks = ",".join("?" * len(targets))
            rows = db.execute(
                f"SELECT id, token_hex, push_magic FROM enrollments WHERE id IN ({marks}) "
                "AND state = 'enrolled' AND token_hex IS NOT NULL AND push_invalid = 0",
                list(targets),
            ).fetchall()
        topic = self.topic
        url = self.apns_url()
        for row in rows:
            self.outbound.submit(self._push_one, url, topic, row["id"], row["token_hex"], row["push_magic"])

    def push_now(self, target: str) -> PushOutcome | None:
        """Push one enrollment on the calling thread and return what APNs said (None: not push-able)."""
        with self.store.read() as db:
            row = db.execute(
                "SELECT token_hex, push_magic FROM enrollments WHERE id = ? AND state = 'enrolled' "
                "AND token_hex IS NOT NULL AND push_invalid = 0",
                (target,),
            ).fetchone()
        if row is None:
            return None
        return self._push_one(self.apns_url(), self.topic, target, row["token_hex"], row["push_magic"])

    def _push_one(self, url: str, topic: str, eid: str, token_hex: str, push_magic: str) -> PushOutcome:
        outcome = send_push(
            self.http,
            url,
            token_hex=token_hex,
            push_magic=push_magic,
            topic=topic,
            headers=self.push_headers(),
        )
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            db.execute(
                """
                UPDATE enrollments SET
                    push_sent = push_sent + ?, push_failed = push_failed + ?, push_last_status = ?,
                    push_last_error = CASE WHEN ? THEN push_last_error ELSE ? END, push_last_at = ?,
                    push_invalid = CASE WHEN ? THEN 1 ELSE push_invalid END
                WHERE id = ? AND token_hex = ?
                """,
                (
                    int(outcome.ok),
                    int(not outcome.ok),
                    outcome.status,
                    int(outcome.ok),
                    f"{outcome.status} {outcome.reason or ''}".strip(),
                    now,
                    int(outcome.unregistered),
                    eid,
                    token_hex,
                ),
            )
        return outcome

    def wait_for_outbound(self, timeout: float = 10.0) -> bool:
        """Block (bounded) until queued pushes and webhook posts are done: for tests and drivers."""
        return self.outbound.drain(timeout)

    def close(self) -> None:
        self.outbound.close()

    # == webhooks ====================================================================================
    def _after_commit_checkin(
        self, msg: CheckinMessage, raw: bytes, url_params: Mapping[str, str] | None
    ) -> None:
        urls = webhook_targets(self.webhook_urls(), f"mdm.{msg.message_type}")
        if not urls:
            return
        event = checkin_event(
            msg.message_type,
            udid=msg.udid,
            enrollment_id=msg.enrollment_id,
            raw=raw,
            url_params=url_params,
            **self._event_stamp(),
        )
        for url in urls:
            self.outbound.submit(post_webhook, self.http, url, event)

    def _after_commit_connect(
        self, result: CommandResult, raw: bytes, url_params: Mapping[str, str] | None, request_type: str | None
    ) -> None:
        urls = webhook_targets(self.webhook_urls(), "mdm.Connect", request_type)
        if not urls:
            return
        event = acknowledge_event(
            udid=result.udid,
            enrollment_id=result.enrollment_id,
            status=result.status,
            command_uuid=result.command_uuid,
            request_type=request_type,
            raw=raw,
            url_params=url_params,
            **self._event_stamp(),
        )
        for url in urls:
            self.outbound.submit(post_webhook, self.http, url, event)

    def _event_stamp(self) -> dict[str, str]:
        return {"event_id": str(uuid.uuid4()), "created_at": isoformat(self.clock.now())}

    # == command API views ===========================================================================
    def command_status(self, command_uuid: str) -> dict[str, Any] | None:
        """The command, and per enrollment its queue state and latest report."""
        with self.store.read() as db:
            cmd = db.execute("SELECT * FROM commands WHERE uuid = ?", (command_uuid,)).fetchone()
            queue = db.execute(
                "SELECT * FROM queue WHERE command_uuid = ? ORDER BY seq", (command_uuid,)
            ).fetchall()
            results = db.execute(
                "SELECT * FROM results WHERE command_uuid = ? ORDER BY id", (command_uuid,)
            ).fetchall()
        if cmd is None and not results:
            return None
        latest: dict[str, sqlite3.Row] = {}
        counts: dict[str, int] = {}
        for r in results:
            latest[r["enrollment_id"]] = r
            counts[r["enrollment_id"]] = counts.get(r["enrollment_id"], 0) + 1
        devices = []
        seen = set()
        for row in queue:
            seen.add(row["enrollment_id"])
            devices.append(
                self._command_device(
                    row["enrollment_id"],
                    row,
                    latest.get(row["enrollment_id"]),
                    counts.get(row["enrollment_id"], 0),
                )
            )
        for eid, res in latest.items():
            if eid not in seen:
                devices.append(self._command_device(eid, None, res, counts[eid]))
        out: dict[str, Any] = {"command_uuid": command_uuid, "devices": devices}
        if cmd is not None:
            out.update(
                request_type=cmd["request_type"],
                priority=cmd["priority"],
                created_at=iso_from_timestamp(cmd["created_at"]),
                command=_json_safe(loads(bytes(cmd["plist"]))["Command"]),
            )
        return out

    @staticmethod
    def _command_device(
        eid: str, row: sqlite3.Row | None, res: sqlite3.Row | None, reports: int
    ) -> dict[str, Any]:
        udid, _, user = eid.partition(":")
        item: dict[str, Any] = {
            "udid": udid,
            "enrollment_id": eid,
            "user_id": user or None,
            "status": row["status"] if row is not None else (res["status"] if res is not None else None),
            "deliveries": row["deliveries"] if row is not None else 0,
            "sent_at": iso_from_timestamp(row["sent_at"]) if row is not None else None,
            "answered_at": iso_from_timestamp(row["answered_at"]) if row is not None else None,
            "reports": reports,
            "result": None,
        }
        if res is not None:
            raw = bytes(res["raw"])
            try:
                decoded: Any = _json_safe(loads(raw))
            except PlistError:
                decoded = None
            item["result"] = {
                "status": res["status"],
                "received_at": iso_from_timestamp(res["received_at"]),
                "error_chain": json.loads(res["error_chain"]) if res["error_chain"] else [],
                "raw": base64.b64encode(raw).decode(),
                "payload": decoded,
            }
        return item

    def devices(self) -> list[dict[str, Any]]:
        """Every device the server knows: enrolled over DEP, checked in, or both."""
        with self.store.read() as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT udid FROM devices UNION "
                    "SELECT device_id FROM enrollments WHERE user_id IS NULL ORDER BY 1"
                )
            ]
        return [d for d in (self.device(i) for i in ids) if d is not None]

    def device(self, udid: str) -> dict[str, Any] | None:
        with self.store.read() as db:
            dev = db.execute("SELECT * FROM devices WHERE udid = ?", (udid,)).fetchone()
            enr = db.execute("SELECT * FROM enrollments WHERE id = ? AND user_id IS NULL", (udid,)).fetchone()
            users = db.execute(
                "SELECT user_id, user_short_name, state FROM enrollments WHERE device_id = ? "
                "AND user_id IS NOT NULL",
                (udid,),
            ).fetchall()
        if dev is None and enr is None:
            return None
        state = enr["state"] if enr is not None else "profile_issued"
        return {
            "udid": udid,
            "serial_number": (dev["serial_number"] if dev is not None else None)
            or (enr["serial_number"] if enr is not None else None),
            "enrolled": state == "enrolled",
            "enrollment_state": state,
            "awaiting_configuration": bool(enr["awaiting_configuration"]) if enr is not None else False,
            "last_seen": iso_from_timestamp(enr["last_seen"]) if enr is not None else None,
            "push_token_present": bool(enr is not None and enr["token_hex"]),
            "topic": enr["topic"] if enr is not None else None,
            "user": dev["user_upn"] if dev is not None else None,
            "product": dev["product"] if dev is not None else None,
            "os_version": dev["os_version"] if dev is not None else None,
            "profile_issued_at": iso_from_timestamp(dev["enrolled_at"]) if dev is not None else None,
            "user_channels": [
                {"user_id": u["user_id"], "short_name": u["user_short_name"], "state": u["state"]}
                for u in users
            ],
            "push": {
                "sent": enr["push_sent"] if enr is not None else 0,
                "failed": enr["push_failed"] if enr is not None else 0,
                "token_invalid": bool(enr["push_invalid"]) if enr is not None else False,
                "last_status": enr["push_last_status"] if enr is not None else None,
                "last_error": enr["push_last_error"] if enr is not None else None,
                "last_at": iso_from_timestamp(enr["push_last_at"]) if enr is not None else None,
            },
        }

    def bootstrap_token(self, enrollment_id: str) -> bytes | None:
        with self.store.read() as db:
            row = db.execute(
                "SELECT bootstrap_token FROM enrollments WHERE id = ?", (enrollment_id,)
            ).fetchone()
        return bytes(row[0]) if row is not None and row[0] is not None else None


def _owner_key(cert: x509.Certificate) -> str:
    """The memo key of "which UDID was this identity issued for"."""
    return f"identity-owner:{cert.serial_number:x}"
