"""A simulated iPhone or iPad as a sans-I/O state machine (DESIGN.md rule 5).

The device never opens a socket. Each of its activities (power on and walk Setup Assistant, one MDM
agent round, the user removing the MDM profile) is a *flow*: a generator that yields
:class:`Request` objects and is sent the :class:`Response` for each, in the h11 style::

    flow = setup_assistant.run_setup(device, now)
    request = next(flow)
    while True:
        response = driver.send(request)
        request = flow.send(response)      # StopIteration carries the flow's result

so one device logic runs in process (WSGI), over real sockets or inside a Locust user. A response
that never arrived (connection refused, timeout) is a :class:`Response` with ``status == 0`` and
``error`` set, so a flow records the failure in its transcript instead of raising.

Everything the device knows is in :class:`DeviceState`, a plain dataclass of strings, numbers and
lists that round-trips through JSON (``to_dict``/``from_dict``): a store can persist it and a fleet can
hold ten thousand of them (a few KB each: keys and certificates as PEM text, the transcript as a list
of ``(pane, outcome, time, detail)`` tuples).

This module is the bottom of the device: its data, its keys and what it signs with them. The flows
live above it and take a :class:`Device`: :mod:`~simulator.device.setup_assistant` (power on, walk the
panes, enroll), :mod:`~simulator.device.agent` (wake up, answer commands, remove management); the
drivers run them. Nothing here imports those modules.

Random values a device makes (its Apple identity key, push token, PushMagic, unlock token) come from
:class:`~mdm.protocol.randomness.Randomness` with the device's ``seed`` and labels naming the device by
serial number (:meth:`Device.label`), so one seed reproduces them whatever order a fleet runs in.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from cryptography import x509

from mdm.protocol import cms
from mdm.protocol.isotime import isoformat
from mdm.protocol.plist import dumps
from mdm.protocol.randomness import Randomness
from mdm.protocol.x509 import PrivateKey, cert_from_pem, cert_to_pem, key_from_pem, key_to_pem

from .identity import DeviceIdentity
from .phases import Pane, Phase
from .secure_enclave import HardwareKey, SecureEnclave, new_fuse

__all__ = [
    "Request",
    "Response",
    "Flow",
    "Now",
    "DeviceScript",
    "DeviceState",
    "Device",
    "Outcome",
    "TRANSCRIPT_LIMIT",
    "USER_AGENT",
    "device_key_for",
    "wall_now",
]

T = TypeVar("T")
#: A device activity: yields requests, is sent responses, returns its result.
Flow = Generator["Request", "Response", T]
#: World time, supplied by whoever drives the device.
Now = Callable[[], datetime]

Outcome = Literal["shown", "skipped", "error", "released", "info"]
TRANSCRIPT_LIMIT = 400
COMMAND_LOG_LIMIT = 60
USER_AGENT = "MDM/1.0 (mdmsim device)"


def wall_now() -> datetime:
    """Fallback clock for a device driven without a world (a demo against an external server)."""
    return datetime.now(UTC)


@dataclass(slots=True, frozen=True)
class Request:
    """One HTTP request the device wants sent; ``url`` is absolute.

    ``trust``: the certificates (base64 DER or PEM) the server's TLS certificate must chain to, and
    only those; ``None`` means the device's system store (the driver's default). The device decides
    what it trusts, the driver enforces it: requests to the MDM server carry the cloud configuration's
    ``AnchorCertificates``, as on a real device. In-process drivers (no TLS) ignore it.
    """

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    trust: tuple[str, ...] | None = None


@dataclass(slots=True, frozen=True)
class Response:
    """The answer to a :class:`Request`. Header names are lower case.

    ``status == 0`` means no HTTP answer at all; ``error`` then says why ("connection refused").
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str | None = None

    @classmethod
    def network_error(cls, reason: str) -> Response:
        return cls(0, {}, b"", reason)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def describe(self) -> str:
        """A short human account of a failed exchange for the transcript."""
        if self.status == 0:
            return self.error or "no response"
        snippet = self.body[:160].decode("utf-8", "replace").strip()
        return f"HTTP {self.status}" + (f": {snippet}" if snippet else "")


@dataclass(slots=True)
class DeviceScript:
    """What the (simulated) person holding the device does when asked.

    ``apple_id``: at the Apple ID pane, ``"sign_in"`` or ``"later"`` ("Set Up Later in Settings").
    ``apple_id_prompt``: when an app install asks for an Apple ID afterwards, ``"sign_in"`` or ``"cancel"``.
    ``username``/``password``: typed at the Authentication pane when the enrollment URL demands them.
    """

    username: str | None = None
    password: str | None = None
    apple_id: Literal["sign_in", "later"] = "sign_in"
    apple_id_prompt: Literal["sign_in", "cancel"] = "sign_in"
    apple_id_account: str | None = None
    language: str = "en"
    region: str = "US"
    set_passcode: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DeviceScript:
        if not d:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _tuples(rows: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in rows or []]


@dataclass(slots=True)
class DeviceState:
    """Everything one device knows. JSON-safe by construction: bytes are kept as PEM/hex/base64 text.

    ``phase``/``pane``: where Setup Assistant is (:mod:`~simulator.device.phases`: ``setup``,
    ``awaiting_configuration`` or ``home``; a device shut down by MDM keeps its phase with ``powered``
    false, which stores list as ``off``). Only :func:`~simulator.device.phases.move` assigns them.
    ``seed``: the device's :class:`~mdm.protocol.randomness.Randomness` seed (``None``: OS randomness).
    ``cloud_config``: ``None`` before activation, ``{}`` when Apple had no configuration.
    ``enrollment``: the installed MDM profile's settings and identity (``None`` when not enrolled).
    """

    identity: dict[str, Any]
    device_key_pem: str
    device_cert_pem: str
    apple_url: str
    mdm_url_override: str | None = None
    script: dict[str, Any] = field(default_factory=dict)
    phase: str = Phase.SETUP.value
    pane: str = Pane.HELLO.value
    powered: bool = True
    cloud_config: dict[str, Any] | None = None
    enrollment: dict[str, Any] | None = None
    profiles: list[dict[str, Any]] = field(default_factory=list)
    apps: list[dict[str, Any]] = field(default_factory=list)
    prompts: dict[str, str] = field(default_factory=dict)
    push_token: str | None = None
    push_magic: str | None = None
    unlock_token: str | None = None
    user: str | None = None
    apple_id: str | None = None
    passcode_set: bool = False
    location_services: bool = False
    locked: bool = False
    device_name: str | None = None
    erase_count: int = 0
    seed: int | None = None
    #: an enrollment waiting for its SCEP identity (PENDING): the installed profile and the exchange so far
    scep_pending: dict[str, Any] | None = None
    transcript: list[tuple[str, str, str, str]] = field(default_factory=list)
    commands: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: how many transcript entries were ever recorded: the oldest go (TRANSCRIPT_LIMIT), so entry ``i``
    #: of the transcript is number ``recorded - len(transcript) + i``, which a live view follows
    recorded: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["transcript"] = [list(t) for t in self.transcript]
        d["commands"] = [list(c) for c in self.commands]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeviceState:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        values["transcript"] = _tuples(values.get("transcript"))
        values["commands"] = _tuples(values.get("commands"))
        return cls(**values)


class Device:
    """One simulated device: its state plus the flows that change it.

    Create it with :meth:`create` from a :class:`DeviceIdentity`, the device's private key and the
    identity certificate Apple's device CA issued for it; revive it with ``Device(DeviceState.from_dict(d))``.
    Its activities are functions of the flow modules that take it (``setup_assistant.run_setup(device,
    now)``, ``agent.agent_round(device, now)``), run by a driver.
    """

    __slots__ = ("state", "_identity", "_key", "_cert", "_mdm_identity", "scep_key_source", "_enclave")

    def __init__(self, state: DeviceState, *, fuse: bytes | None = None) -> None:
        self.state = state
        # The Secure Enclave (see :mod:`~simulator.device.secure_enclave`), from the fuse the world's device
        # side hands in; a device made on its own draws one when it first needs it, good for this object's
        # lifetime. Only the enclave keeps (a key derived from) the fuse.
        self._enclave = SecureEnclave(fuse, str(state.identity["serial_number"])) if fuse is not None else None
        #: where SCEP keys come from when not made on the spot: a load run's pool made before it starts
        #: (an RSA key costs ~60 ms, more than the rest of an enrollment); not part of the state
        self.scep_key_source: Callable[[int], Any] | None = None
        self._identity: DeviceIdentity | None = None
        self._key: PrivateKey | None = None
        self._cert: x509.Certificate | None = None
        self._mdm_identity: tuple[x509.Certificate, PrivateKey | HardwareKey] | None = None

    @classmethod
    def create(
        cls,
        identity: DeviceIdentity,
        *,
        device_key: PrivateKey | bytes | str | None = None,
        device_cert: x509.Certificate | bytes | str,
        apple_url: str,
        script: DeviceScript | None = None,
        mdm_url_override: str | None = None,
        seed: int | None = None,
        fuse: bytes | None = None,
    ) -> Device:
        """A factory-fresh device at the Hello pane.

        Without ``device_key`` the key is derived from ``seed`` as :func:`device_key_for` does, so a
        seeded device made here and one made from the world's identity bundle hold the same key.
        """
        key = device_key if device_key is not None else device_key_for(identity.serial_number, seed)
        key_pem = key_to_pem(key).decode() if not isinstance(key, bytes | str) else _text(key)
        cert_pem = (
            cert_to_pem(device_cert).decode()
            if isinstance(device_cert, x509.Certificate)
            else _text(device_cert)
        )
        state = DeviceState(
            identity=dataclasses.asdict(identity),
            device_key_pem=key_pem,
            device_cert_pem=cert_pem,
            apple_url=apple_url.rstrip("/"),
            mdm_url_override=mdm_url_override,
            script=(script or DeviceScript()).to_dict(),
            seed=seed,
        )
        return cls(state, fuse=fuse)

    # -- what the device is ----------------------------------------------------------------------------
    @property
    def identity(self) -> DeviceIdentity:
        if self._identity is None:
            self._identity = DeviceIdentity(**self.state.identity)
        return self._identity

    @property
    def serial(self) -> str:
        return str(self.state.identity["serial_number"])

    @property
    def udid(self) -> str:
        return str(self.state.identity["udid"])

    @property
    def script(self) -> DeviceScript:
        return DeviceScript.from_dict(self.state.script)

    @property
    def pane(self) -> str:
        return self.state.pane

    @property
    def phase(self) -> str:
        return self.state.phase

    @property
    def transcript(self) -> list[tuple[str, str, str, str]]:
        return self.state.transcript

    @property
    def enrolled(self) -> bool:
        return self.state.enrollment is not None

    @property
    def cloud_config(self) -> dict[str, Any]:
        return self.state.cloud_config or {}

    def mdm_trust(self) -> tuple[str, ...] | None:
        """What the MDM server's TLS certificate must chain to: the profile's ``AnchorCertificates``
        when it has any (then nothing else, not even the system store), else the system store."""
        anchors = self.cloud_config.get("AnchorCertificates")
        if isinstance(anchors, list) and anchors:
            return tuple(str(a) for a in anchors)
        return None

    @property
    def is_supervised(self) -> bool:
        return bool(self.cloud_config.get("IsSupervised"))

    @property
    def awaiting_configuration(self) -> bool:
        return self.state.phase == Phase.AWAITING_CONFIGURATION

    def device_key(self) -> PrivateKey:
        if self._key is None:
            self._key = key_from_pem(self.state.device_key_pem)
        return self._key

    def device_certificate(self) -> x509.Certificate:
        if self._cert is None:
            self._cert = cert_from_pem(self.state.device_cert_pem)
        return self._cert

    @property
    def secure_enclave(self) -> SecureEnclave:
        """This device's Secure Enclave: hardware-bound keys are made and used there, never read."""
        if self._enclave is None:
            self._enclave = SecureEnclave(new_fuse(), self.serial)
        return self._enclave

    def mdm_identity(self) -> tuple[x509.Certificate, PrivateKey | HardwareKey] | None:
        """The identity the MDM profile installed (signs ``Mdm-Signature``), or None. An ACME identity
        with a hardware-bound key comes with a :class:`HardwareKey`: it signs, it cannot be read."""
        enrollment = self.state.enrollment
        if enrollment is None:
            self._mdm_identity = None
            return None
        if self._mdm_identity is None:
            item = enrollment.get("identity_key_item")
            key = self.secure_enclave.key(item) if item else key_from_pem(enrollment["identity_key_pem"])
            self._mdm_identity = (cert_from_pem(enrollment["identity_cert_pem"]), key)
        return self._mdm_identity

    def forget_cached_keys(self) -> None:
        """Called when the state's keys change (enrollment, erase) so parsed objects never go stale,
        and by fleets to let an idle device shrink to its state (keys are parsed again when needed)."""
        self._mdm_identity = None
        self._key = None
        self._cert = None
        self._identity = None

    # -- randomness ------------------------------------------------------------------------------------
    @property
    def randomness(self) -> Randomness:
        """The device's random source (made per use: a ``Randomness`` is only its seed)."""
        return Randomness(self.state.seed)

    def label(self, thing: str, *, per_erase: bool = False) -> str:
        """The :class:`Randomness` label of ``thing`` this device makes: ``device:<serial>:<thing>``.

        ``per_erase`` for values a device makes anew after Erase All Content and Settings (push token,
        PushMagic, unlock token): the label then names how many erases came before
        (``device:<serial>:erase-0:push-token``), so a re-enrolled device does not repeat its old ones.
        """
        if per_erase:
            return f"device:{self.serial}:erase-{self.state.erase_count}:{thing}"
        return f"device:{self.serial}:{thing}"

    # -- transcript ------------------------------------------------------------------------------------
    def record(self, pane: str, outcome: Outcome, now: datetime, detail: str = "") -> None:
        """Append a transcript entry; the oldest entries go once the device has a long history."""
        self.state.transcript.append((pane, outcome, isoformat(now), detail[:300]))
        self.state.recorded = max(self.state.recorded, len(self.state.transcript) - 1) + 1
        if len(self.state.transcript) > TRANSCRIPT_LIMIT:
            del self.state.transcript[: len(self.state.transcript) - TRANSCRIPT_LIMIT]

    def log_command(self, now: datetime, request_type: str, status: str, command_uuid: str) -> None:
        self.state.commands.append((isoformat(now), request_type, status, command_uuid))
        if len(self.state.commands) > COMMAND_LOG_LIMIT:
            del self.state.commands[: len(self.state.commands) - COMMAND_LOG_LIMIT]

    def panes(self, *, since_erase: bool = True) -> list[tuple[str, str]]:
        """``(pane, outcome)`` of the Setup Assistant panes, since the last erase by default."""
        entries = self.state.transcript
        if since_erase:
            marks = [i for i, e in enumerate(entries) if e[0] == "EraseDevice"]
            if marks:
                entries = entries[marks[-1] + 1 :]
        return [(e[0], e[1]) for e in entries if e[1] in ("shown", "skipped")]

    # -- signing ---------------------------------------------------------------------------------------
    def sign_with_device_identity(self, data: bytes) -> bytes:
        """CMS SignedData (content embedded) by Apple's device identity: how MachineInfo travels."""
        return cms.sign(data, self.device_certificate(), self.device_key())

    def mdm_signature(self, body: bytes) -> str | None:
        """The ``Mdm-Signature`` header value (detached CMS, base64), when the profile asks for it."""
        enrollment = self.state.enrollment
        identity = self.mdm_identity()
        if enrollment is None or identity is None or not enrollment.get("sign_message", True):
            return None
        cert, key = identity
        if isinstance(key, HardwareKey):
            return base64.b64encode(key.sign_cms(body, cert, detached=True)).decode("ascii")
        return base64.b64encode(cms.sign(body, cert, key, detached=True)).decode("ascii")

    def signed_put(self, url: str, content_type: str, message: dict[str, Any]) -> Request:
        """A plist message PUT to the MDM server (check-in or command result), with ``Mdm-Signature``
        when the profile asks for signed messages, trusting what the cloud configuration pins."""
        body = dumps(message)
        headers = {"Content-Type": content_type, "User-Agent": USER_AGENT}
        signature = self.mdm_signature(body)
        if signature:
            headers["Mdm-Signature"] = signature
        return Request("PUT", url, headers, body, trust=self.mdm_trust())

    # -- the user --------------------------------------------------------------------------------------
    def user_unlock(self, now: Now = wall_now) -> None:
        """The user unlocks the screen (commands deferred with NotNow can now run)."""
        if self.state.locked:
            self.state.locked = False
            self.record("LockScreen", "info", now(), "unlocked by the user")


def device_key_for(serial: str, seed: int | None) -> PrivateKey:
    """The key of the device's Apple identity (what signs MachineInfo): P-256, derived from ``seed``
    under ``device:<serial>`` (the label the world's identity bundle uses), fresh without a seed."""
    return Randomness(seed).ec_key(f"device:{serial}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
