"""Who is who: the MDM CA, the push certificate and topic, device identities, and proof of identity.

The server's own identity is made on first use and kept in the store (two processes creating the CA at
once agree on the first one written). A device gets its identity from a DEP enrollment: MachineInfo
signed by Apple's device CA in, a signed profile carrying a PKCS#12 identity issued by our CA out. Every
later message is signed with that identity (``Mdm-Signature``), and :meth:`IdentityService.signer_of`
plus :meth:`IdentityService.check_owner` are what make a check-in or a command report trustworthy.

Memos. State read from the store is memoised with the store's own scheme (:meth:`Store.cached`, dropped
with :meth:`Store.forget` inside the transaction that changes the rows): exact in memory, a plain read
on disk where other processes write. What those stored bytes *parse to* is memoised by the bytes
themselves (:class:`_ParsedFrom` for the CA and the push certificate header, and the signature
checker's memos in :mod:`mdm.server.signature`): a value keyed by its own input cannot go stale, and
without it a server on disk (where the store memo is a plain read) would re-parse the CA's key on every
check-in.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Generic, Literal, TypeVar

import httpx
from cryptography import x509

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol import cms
from mdm.protocol.isotime import isoformat
from mdm.protocol.machineinfo import MachineInfo, parse_machine_info
from mdm.protocol.plist import PlistError
from mdm.protocol.randomness import Randomness
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
    PROFILE_SUBJECT,
    ACMEIdentity,
    EnrollmentProfile,
    SCEPIdentity,
    acme_capable,
    build_enrollment_profile,
    identity_owner,
    new_identity_key,
    new_identity_serial,
    new_topic,
)
from .idp import IdPUnavailable, check_credentials
from .replies import MDMError
from .signature import fast_verify, fast_verify_embedded

__all__ = ["IdentityService", "PUSH_CERT_HEADER", "parse_push_certificate_request"]

#: The simulation's stand-in for the TLS client certificate on pushes (base64 DER of the push cert).
PUSH_CERT_HEADER = "X-Mdmsim-Client-Cert"

T = TypeVar("T")


class _ParsedFrom(Generic[T]):
    """A value parsed from stored bytes, kept with those bytes: asked again with the same bytes, it
    answers without parsing; with other bytes (a new CA after a reset, a new push certificate) it
    parses again. Keyed by its own input, it cannot go stale, so it needs no :meth:`Store.forget`."""

    __slots__ = ("_entry",)

    def __init__(self) -> None:
        self._entry: tuple[bytes, T] | None = None

    def get(self, raw: bytes, parse: Callable[[bytes], T]) -> T:
        entry = self._entry  # one read of one attribute: threads see an old pair or a new one, never half
        if entry is not None and entry[0] == raw:
            return entry[1]
        value = parse(raw)
        self._entry = (raw, value)
        return value


def _push_certificate_header(cert_pem: bytes) -> str:
    """The push certificate as the header carries it: base64 of its DER."""
    return base64.b64encode(cert_to_der(cert_from_pem(cert_pem))).decode()


def _owner_key(serial: int) -> str:
    """The store memo of "which UDID was the identity with this serial issued for"."""
    return f"identity-owner:{serial:x}"


def parse_push_certificate_request(data: Any) -> tuple[str, str]:
    """The command API's ``PUT /push-certificate`` body: ``{"certificate": PEM, "key": PEM}``."""
    if not isinstance(data, dict):
        raise MDMError(400, 'body must be a JSON object {"certificate": PEM, "key": PEM}')
    cert, key = data.get("certificate"), data.get("key")
    if not isinstance(cert, str) or not isinstance(key, str):
        raise MDMError(400, "certificate and key must be PEM strings")
    return cert, key


class IdentityService:
    """The MDM CA and topic, the push certificate, device identities (DEP enrollment) and their checks."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        random: Randomness,
        *,
        trust_roots: Sequence[x509.Certificate],
        http: httpx.Client,
        base_url: Callable[[], str],
        idp_url: Callable[[], str | None],
        identity_key: Literal["ec", "rsa"],
        identity_days: int,
        organization: str,
        identity_method: Literal["scep", "pkcs12", "acme"] = "pkcs12",
        scep_url: str | None = None,
        scep_challenge: str | None = None,
        identity_cas: Sequence[x509.Certificate] = (),
    ) -> None:
        self.store = store
        self.clock = clock
        self.random = random
        self.trust_roots = list(trust_roots)
        self.http = http
        self.base_url = base_url
        self.idp_url = idp_url
        self.identity_key = identity_key
        self.identity_days = identity_days
        self.organization = organization
        if identity_method not in ("scep", "pkcs12", "acme"):
            raise ValueError("identity_method is 'scep', 'pkcs12' or 'acme'")
        if (scep_url is None) != (scep_challenge is None):
            raise ValueError("an outside SCEP server needs both its URL and its challenge")
        self.identity_method = identity_method
        #: Someone else's SCEP server (NanoMDM's and MicroMDM's set-up): its URL and static challenge.
        self.scep_url = scep_url
        self.scep_challenge = scep_challenge
        #: CAs besides ours whose identities may sign check-ins (the outside SCEP server's).
        self.identity_cas = list(identity_cas)
        #: ``new_challenge(subject_cn, label=…)`` of our SCEP service (set by the MDM server's front).
        self.new_scep_challenge: Callable[..., str] | None = None
        #: ``new_client_identifier(udid, serial)`` of our ACME service (set by the MDM server's front)
        self.new_acme_client_identifier: Callable[[str, str | None], str] | None = None
        #: a simulation knob: our SCEP service answers PENDING this long (world time) before issuing
        self.scep_pending_seconds = 0.0
        self._scep_ra: _ParsedFrom[tuple[x509.Certificate, PrivateKey]] = _ParsedFrom()
        # The signature checker's memos (see mdm.server.signature): "this identity was issued by this CA"
        # and "these certificate bytes parse to this", both keyed by the certificate's own bytes.
        self._issued_by_ca: dict[tuple[bytes, x509.Certificate], bool] = {}
        self._parsed_signers: dict[bytes, tuple[x509.Certificate, int, bytes, bytes]] = {}
        self._ca: _ParsedFrom[CertificateAuthority] = _ParsedFrom()
        self._push_header: _ParsedFrom[str] = _ParsedFrom()

    # -- the server's own identity -----------------------------------------------------------------
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
                key=self.random.ec_key("mdm-ca"),
                days=3650,
                organization=self.organization,
            )
            cert_pem, key_pem = ca.to_pem()
            with self.store.transaction() as db:
                if q.get_setting(db, "ca_cert") is None:
                    q.set_setting(db, "ca_cert", cert_pem)
                    q.set_setting(db, "ca_key", key_pem)
                cert_pem = q.get_setting(db, "ca_cert")
        return self._ca.get(bytes(cert_pem), self._parse_ca)

    def _parse_ca(self, cert_pem: bytes) -> CertificateAuthority:
        """The CA of this certificate: its key is read only here, when the certificate is new to us."""
        with self.store.read() as db:
            key_pem = bytes(q.get_setting(db, "ca_key"))
        return CertificateAuthority(cert_from_pem(cert_pem), key_from_pem(key_pem))

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
                topic = q.insert_setting_if_absent(db, "topic", new_topic(self.random))
        return str(topic)

    # -- the push certificate ------------------------------------------------------------------------
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
        return {PUSH_CERT_HEADER: self._push_header.get(bytes(pem), _push_certificate_header)}

    # -- device identities ---------------------------------------------------------------------------
    def issue_identity(self, udid: str, *, days: float | None = None) -> tuple[x509.Certificate, PrivateKey]:
        """A device identity (CN = UDID) issued by the MDM CA and recorded as belonging to ``udid``."""
        ca = self.certificate_authority()
        now = self.clock.now()
        cert, key = self._new_identity(ca, udid, now, days if days is not None else self.identity_days)
        with self.store.transaction() as db:
            self._record_identity(db, cert, udid, now.timestamp())
        return cert, key

    def _new_identity(
        self, ca: CertificateAuthority, udid: str, now: _dt.datetime, days: float
    ) -> tuple[x509.Certificate, PrivateKey]:
        key = new_identity_key(self.identity_key, self.random, udid)
        serial = new_identity_serial(self.random, udid, now)
        return ca.issue(key.public_key(), subject=udid, now=now, days=days, serial=serial), key

    def _record_identity(self, db: sqlite3.Connection, cert: x509.Certificate, udid: str, now: float) -> None:
        self.store.forget(_owner_key(cert.serial_number))
        q.record_identity(
            db,
            serial=format(cert.serial_number, "x"),
            udid=udid,
            fingerprint=fingerprint_sha256(cert),
            not_after=cert.not_valid_after_utc.timestamp(),
            now=now,
        )

    # -- SCEP ----------------------------------------------------------------------------------------------
    def scep_ra(self) -> tuple[x509.Certificate, PrivateKey]:
        """The SCEP registration authority: an RSA certificate from the MDM CA (made once, stored), to
        which devices encrypt their requests and with which the server signs its answers."""
        def load() -> bytes:
            with self.store.read() as db:
                stored = q.get_setting(db, "scep_ra")
            if stored is not None:
                return bytes(stored)
            ca = self.certificate_authority()
            key = self.random.rsa_key("mdm-scep-ra")
            cert = ca.issue(key.public_key(), subject=f"{self.organization} SCEP RA", now=self.clock.now(),
                            days=3650, client_auth=False)
            pem = cert_to_pem(cert) + key_to_pem(key)
            with self.store.transaction() as db:
                return bytes(q.insert_setting_if_absent(db, "scep_ra", pem))

        raw = self.store.cached("scep-ra", load)
        return self._scep_ra.get(raw, lambda pem: (cert_from_pem(pem), key_from_pem(pem)))

    def record_scep_identity(
        self,
        db: sqlite3.Connection,
        cert: x509.Certificate,
        subject_cn: str | None,
        now: float,
        *,
        renews: x509.Certificate | None = None,
    ) -> None:
        """An identity our SCEP service issued, recorded as the UDID's (the CN the profile asked for); a
        renewal keeps the owner of the identity it renews (one bound after profile-based enrollment)."""
        owner = q.identity_udid(db, format(renews.serial_number, "x")) if renews is not None else None
        if owner or subject_cn:
            self._record_identity(db, cert, owner or subject_cn or "", now)

    def record_acme_identity(self, db: sqlite3.Connection, cert: x509.Certificate, udid: str, now: float) -> None:
        """An identity our ACME service issued for the device its ClientIdentifier was made for."""
        self._record_identity(db, cert, udid, now)

    def _acme_identity(self, udid: str, serial: str | None) -> ACMEIdentity:
        if self.new_acme_client_identifier is None:
            raise MDMError(500, "the MDM server has no ACME service")
        client_identifier = self.new_acme_client_identifier(udid, serial)
        return ACMEIdentity(directory_url=f"{self.base_url().rstrip('/')}/acme/directory",
                            client_identifier=client_identifier, subject_cn=udid)

    def _scep_identity(self, udid: str) -> SCEPIdentity:
        if self.scep_url is not None:
            assert self.scep_challenge is not None
            return SCEPIdentity(url=self.scep_url, challenge=self.scep_challenge, subject_cn=udid)
        if self.new_scep_challenge is None:
            raise MDMError(500, "the MDM server has no SCEP service")
        challenge = self.new_scep_challenge(udid, label=f"enroll:{udid}", pending_seconds=self.scep_pending_seconds)
        return SCEPIdentity(url=f"{self.base_url().rstrip('/')}/scep", challenge=challenge, subject_cn=udid)

    # -- profile-based enrollment ----------------------------------------------------------------------
    def profile_for_any_device(self) -> bytes:
        """The signed enrollment profile a device installs without Setup Assistant (Intune's
        ``exportMobileConfig``): no MachineInfo, so no UDID to issue for. Its SCEP payload asks for an
        identity with the subject :data:`PROFILE_SUBJECT` and a one-time challenge (an hour of world
        time, as every challenge here): one device enrolls with one export. The identity belongs to
        the first device that authenticates with it (:meth:`check_owner`)."""
        if self.scep_url is not None:
            assert self.scep_challenge is not None
            scep_identity = SCEPIdentity(url=self.scep_url, challenge=self.scep_challenge, subject_cn=PROFILE_SUBJECT)
        elif self.new_scep_challenge is not None:
            challenge = self.new_scep_challenge(PROFILE_SUBJECT, label="profile-based")
            scep_identity = SCEPIdentity(
                url=f"{self.base_url().rstrip('/')}/scep", challenge=challenge, subject_cn=PROFILE_SUBJECT
            )
        else:
            raise MDMError(503, "the MDM server has no SCEP service to issue identities")
        return build_enrollment_profile(
            ca=self.certificate_authority(), topic=self.topic, base_url=self.base_url(), scep=scep_identity,
            udid=PROFILE_SUBJECT, organization=self.organization, random=self.random,
        )

    # -- DEP enrollment ------------------------------------------------------------------------------
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
        The IdP is asked before any transaction opens: network I/O never holds the store's write lock.
        """
        info = self.verify_machine_info(signed_machine_info)
        upn = self._authenticate_user(credentials) if require_user else None
        ca = self.certificate_authority()
        topic = self.topic
        now = self.clock.now()
        cert: x509.Certificate | None = None
        if self.identity_method == "acme" and acme_capable(info.os_version):
            signed = build_enrollment_profile(
                ca=ca, topic=topic, base_url=self.base_url(), acme=self._acme_identity(info.udid, info.serial),
                udid=info.udid, organization=self.organization, random=self.random,
            )
        elif self.identity_method in ("scep", "acme"):  # before iOS 16 there is no ACME payload: SCEP
            signed = build_enrollment_profile(
                ca=ca, topic=topic, base_url=self.base_url(), scep=self._scep_identity(info.udid), udid=info.udid,
                organization=self.organization, random=self.random,
            )
        else:
            cert, key = self._new_identity(ca, info.udid, now, self.identity_days)
            signed = build_enrollment_profile(
                ca=ca, topic=topic, base_url=self.base_url(), identity=cert, identity_key=key,
                organization=self.organization, random=self.random,
            )
        ts = now.timestamp()
        with self.store.transaction() as db:
            if cert is not None:
                self._record_identity(db, cert, info.udid, ts)
            q.upsert_device(
                db,
                udid=info.udid,
                serial_number=info.serial,
                product=info.product,
                version=info.version,
                os_version=info.os_version,
                imei=info.imei,
                meid=info.meid,
                language=info.language,
                user_upn=upn,
                now=ts,
            )
        return EnrollmentProfile(signed=signed, udid=info.udid, certificate=cert, user=upn)

    def _authenticate_user(self, credentials: tuple[str, str] | None) -> str:
        """The user's UPN once the IdP accepted their password (user-affinity enrollment)."""
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
        return result.upn or credentials[0]

    # -- message authenticity ------------------------------------------------------------------------
    def signer_of(self, body: bytes, header: str | None, now: _dt.datetime) -> x509.Certificate:
        """The identity that signed ``body`` (Mdm-Signature), chaining to our CA and valid now; 403 else."""
        if not header:
            raise MDMError(403, "missing Mdm-Signature header (the profile sets SignMessage)")
        try:
            der = base64.b64decode("".join(header.split()), validate=True)
        except (binascii.Error, ValueError):
            raise MDMError(403, "Mdm-Signature is not base64") from None
        ca = self.ca_certificate()
        signer = fast_verify(der, body, ca, now, self._issued_by_ca, self._parsed_signers)
        if signer is not None:
            return signer
        try:
            verified = cms.verify(der, content=body, trust_roots=[ca, *self.identity_cas], now=now)
        except cms.CMSError as exc:
            raise MDMError(403, f"Mdm-Signature not accepted: {exc.reason}") from None
        return verified.signer

    def check_owner(self, signer: x509.Certificate, device_id: str, *, bind: bool = False) -> None:
        """The signing identity must have been issued for this device: no device speaks for another.

        An identity from profile-based enrollment (subject :data:`PROFILE_SUBJECT`) names no device;
        ``bind`` (an Authenticate, the first message of an enrollment) makes it this device's, as
        NanoMDM's certificate association does, unless the device has an identity already.
        """
        serial = signer.serial_number

        def load() -> str | None:
            with self.store.read() as db:
                return q.identity_udid(db, format(serial, "x"))

        # Every check-in asks; an identity's owner is written once, at issue (which forgets the memo).
        owner = self.store.cached(_owner_key(serial), load) or identity_owner(signer)
        if owner == device_id:
            return
        if owner == PROFILE_SUBJECT and bind:
            self._bind(signer, device_id)
            return
        if owner == PROFILE_SUBJECT:
            raise MDMError(403, "this identity belongs to no device yet: enrollment starts with Authenticate")
        raise MDMError(403, f"identity certificate belongs to {owner!r}, not to {device_id!r}"[:300])

    def _bind(self, signer: x509.Certificate, device_id: str) -> None:
        """Make a profile-based enrollment's identity ``device_id``'s, deciding in one transaction."""
        key = format(signer.serial_number, "x")
        with self.store.transaction() as db:
            owner = q.identity_udid(db, key) or identity_owner(signer)
            if owner == device_id:
                return
            if owner != PROFILE_SUBJECT:
                raise MDMError(403, f"identity certificate belongs to {owner!r}, not to {device_id!r}"[:300])
            if q.udid_has_identity(db, device_id):
                raise MDMError(403, f"{device_id!r} enrolled with another identity already"[:300])
            self._record_identity(db, signer, device_id, self.clock.timestamp())
