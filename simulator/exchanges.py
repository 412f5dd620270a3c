"""A device's HTTP exchanges as the parties saw them: the record behind a device's timeline.

A device's flows yield requests that a driver sends (:mod:`simulator.device.drivers`); a driver given
a :class:`Tape` records each exchange on it: who called whom, method, URL, status, world time, how
long it took, and both bodies (bounded). What a party does *while answering* the device is recorded
too when it goes through the world's in-process client (:func:`simulator.in_process.call_world`): the
MDM server's webhook to the controller during a check-in, the controller's command to the MDM
server's API, the push to APNs. The driver sends in a context (:mod:`contextvars`) that names the tape;
a call made in that context belongs to the device, one level deeper, from the party that was
answering. Work a party queues for later (the MDM server's outbound threads) copies the context of the
request that queued it, so it lands on the same tape even after the device's flow ended: a tape that
was already handed to the store passes such late exchanges to its *sink*.

Why a context and not a lookup by device token or UDID: every party's request is recorded as it was
sent, without any party knowing it is watched, and attribution costs one ``ContextVar.get()`` per
in-process call (nothing when no device is being recorded, as in load runs).

This module only records and describes exchanges; the device store keeps them
(:class:`simulator.device.store.DeviceStore`), ``/_sim/devices/<serial>/exchanges`` serves them.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mdm.protocol.cms import signed_content
from mdm.protocol.isotime import isoformat
from mdm.protocol.plist import PlistError, dumps, loads

from .apple.hosts import prefix_for_host

__all__ = [
    "Exchange",
    "Tape",
    "PARTIES",
    "MAX_BODY",
    "current",
    "serving",
    "party_of",
    "render_body",
    "note_of",
    "summary",
    "detail",
    "timeline",
]

#: Bytes of each body kept: a signed enrollment profile or a DeviceInformation answer fits; a
#: 10,000-device world does not keep gigabytes of them.
MAX_BODY = 16 * 1024
#: Headers kept with an exchange: the ones that say what a body is or who sent it.
_KEPT_HEADERS = ("content-type", "content-length", "user-agent", "mdm-signature", "x-apple-aspen-deviceinfo",
                 "apns-topic", "apns-push-type", "apns-id", "apns-priority", "apns-expiration", "location",
                 "retry-after", "www-authenticate")  # fmt: skip
_MAX_HEADER_VALUE = 200
_MAX_RENDERED = 64 * 1024

#: The parties of a timeline, in the order their lanes are drawn, with the name each lane shows.
PARTIES: dict[str, str] = {
    "device": "Device",
    "activation": "Activation",
    "dep": "DEP",
    "idp": "Identity provider",
    "enroll": "MDM enroll",
    "scep": "SCEP",
    "acme": "ACME",
    "checkin": "Check-in",
    "connect": "Commands",
    "mdm-api": "Command API",
    "apns": "APNs",
    "controller": "Controller",
}

_PATH_PARTIES = (  # (path fragment, party), first match wins
    ("/apple/activation", "activation"), ("/apple/apns", "apns"), ("/3/device/", "apns"), ("/apple/dep", "dep"),
    ("/mdm/enroll", "enroll"), ("/mdm/checkin", "checkin"), ("/mdm/connect", "connect"), ("/mdm/api/", "mdm-api"),
    ("/intune/", "controller"), ("/idp/", "idp"), ("scep", "scep"), ("acme", "acme"),
)  # fmt: skip
_HOST_PARTIES = {"/apple/activation": "activation", "/apple/apns": "apns", "/apple/dep": "dep"}


def party_of(url: str) -> str:
    """The party a URL reaches: by the world's URL map, by Apple's host names, else the host itself."""
    parts = urlsplit(url)
    by_host = _HOST_PARTIES.get(prefix_for_host(parts.netloc) or "")
    if by_host:
        return by_host
    path = (parts.path or "/").lower()
    for fragment, party in _PATH_PARTIES:
        if fragment in path:
            return party
    return parts.hostname or "unknown"


@dataclass(slots=True)
class Exchange:
    """One request and its answer. ``status`` 0: no answer (``error`` says why)."""

    seq: int
    at: str  # world time when the request was sent
    started_ns: int  # wall clock, orders exchanges across tapes and processes
    source: str
    target: str
    method: str
    url: str
    depth: int
    request_headers: dict[str, str]
    request_body: bytes
    request_size: int
    status: int = 0
    ms: float = 0.0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    response_size: int = 0
    error: str | None = None

    def answer(self, status: int, headers: Mapping[str, str] | Any, body: bytes, error: str | None = None,
               started: float = 0.0) -> None:  # fmt: skip
        self.status = status
        self.response_headers = _kept(headers)
        self.response_body = body[:MAX_BODY]
        self.response_size = len(body)
        self.error = error[:300] if error else None
        if started:
            self.ms = round((time.perf_counter() - started) * 1000.0, 2)


def _kept(headers: Mapping[str, str] | Any) -> dict[str, str]:
    """The headers worth keeping, by lower-case name (a list of pairs or a mapping)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    kept: dict[str, str] = {}
    for name, value in pairs:
        lowered = str(name).lower()
        if lowered in _KEPT_HEADERS:
            kept[lowered] = str(value)[:_MAX_HEADER_VALUE]
    return kept


class Tape:
    """The exchanges of one activity of one device (a power-on, an agent round), in the order sent.

    Thread-safe: a party's outbound thread may record on it while the device's flow runs. At most
    ``limit`` exchanges are kept (a server looping a device must not fill memory); :meth:`close`
    hands them over and sends every later one to ``sink``.
    """

    def __init__(self, now: Callable[[], datetime], limit: int = 400) -> None:
        self.now = now
        self.limit = limit
        self._entries: list[Exchange] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._sink: Callable[[list[Exchange]], None] | None = None

    def start(self, source: str, method: str, url: str, headers: Mapping[str, str] | Any, body: bytes,
              depth: int, target: str | None = None) -> Exchange:  # fmt: skip
        return Exchange(
            seq=next(self._seq), at=isoformat(self.now()), started_ns=time.time_ns(), source=source,
            target=target or party_of(url), method=method.upper(), url=url, depth=depth,
            request_headers=_kept(headers), request_body=body[:MAX_BODY], request_size=len(body),
        )  # fmt: skip

    def add(self, exchange: Exchange) -> None:
        with self._lock:
            sink = self._sink
            if sink is None:
                if len(self._entries) < self.limit:
                    self._entries.append(exchange)
                return
        try:
            sink([exchange])
        except Exception:  # a late exchange is a nicety; it never fails the party that made it
            pass

    def close(self, sink: Callable[[list[Exchange]], None] | None = None) -> list[Exchange]:
        """The exchanges so far, in the order they were sent; later ones go to ``sink`` (or nowhere)."""
        with self._lock:
            entries, self._entries = self._entries, []
            self._sink = sink or _discard
        entries.sort(key=lambda e: (e.started_ns, e.seq))
        return entries

    @contextmanager
    def device_exchange(self, method: str, url: str, headers: Mapping[str, str], body: bytes, *,
                        trace_calls: bool = True) -> Iterator[Exchange]:  # fmt: skip
        """Record the device's own request; while it is out, calls made in this context are its.

        ``trace_calls``: the request reaches the world through :func:`simulator.in_process.call_world`
        (whose first sight of it must not count as a call of its own); a driver that calls a WSGI app
        directly says False, and the calls the app makes are then not attributed."""
        exchange = self.start("device", method, url, headers, body, 0)
        started = time.perf_counter()
        token = None
        if trace_calls:
            parts = urlsplit(url)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            token = _frame.set(_Frame(self, "device", (exchange.method, target), 1))
        try:
            yield exchange
        finally:
            if token is not None:
                _frame.reset(token)
            exchange.ms = round((time.perf_counter() - started) * 1000.0, 2)
            self.add(exchange)


def _discard(_entries: list[Exchange]) -> None:
    pass


@dataclass(slots=True)
class _Frame:
    """Who is making calls in this context, for which tape, how deep; ``own``: the device's request not
    yet seen arriving in process (method and path with query)."""

    tape: Tape
    party: str
    own: tuple[str, str] | None
    depth: int


_frame: contextvars.ContextVar[_Frame | None] = contextvars.ContextVar("mdmsim_exchange_frame", default=None)


def current() -> _Frame | None:
    """The recording context of this call, if a device's exchange is in flight in it."""
    return _frame.get()


class _Call:
    """An in-process call seen by :func:`serving`: :meth:`answer` records it (unless it is the device's own)."""

    __slots__ = ("exchange", "started", "tape")

    def __init__(self, tape: Tape, exchange: Exchange | None) -> None:
        self.tape = tape
        self.exchange = exchange
        self.started = time.perf_counter()

    def answer(self, status: int, headers: Any, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.answer(status, headers, body, started=self.started)
            self.tape.add(self.exchange)


@contextmanager
def serving(frame: _Frame, method: str, url: str, target: str, headers: Any, body: bytes) -> Iterator[_Call]:
    """An in-process call made in a recording context: the device's own request arriving (not recorded
    here: the driver has it), or a call a party makes while answering it (recorded, one level deeper).
    Either way the party called is the caller of whatever it calls in turn."""
    party = party_of(url)
    exchange = None
    if frame.own is not None and frame.own == (method.upper(), target):
        frame.own = None
        depth = frame.depth
    else:
        exchange = frame.tape.start(frame.party, method, url, headers, body, frame.depth, target=party)
        depth = frame.depth + 1
    token = _frame.set(_Frame(frame.tape, party, None, depth))
    try:
        yield _Call(frame.tape, exchange)
    finally:
        _frame.reset(token)


# -- describing an exchange ----------------------------------------------------------------------------
def summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """One stored exchange (:meth:`simulator.device.store.DeviceStore.exchanges`) as a timeline lists
    it: who called whom, method, path, status, time, what it carried; the bodies' sizes, not the bodies."""
    parts = urlsplit(str(row["url"]))
    return {
        "id": row["id"], "at": row["at"], "source": row["source"], "target": row["target"],
        "method": row["method"], "path": (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        "host": parts.netloc, "status": row["status"], "ms": row["ms"], "depth": row["depth"],
        "error": row["error"], "note": note_of(row),
        "request_type": row["request_headers"].get("content-type", ""), "request_size": row["request_size"],
        "response_type": row["response_headers"].get("content-type", ""), "response_size": row["response_size"],
    }  # fmt: skip


def detail(row: Mapping[str, Any]) -> dict[str, Any]:
    """One exchange with both bodies rendered for reading (:func:`render_body`) and the headers kept."""
    return {
        **summary(row),
        "url": row["url"],
        "request": {"headers": row["request_headers"],
                    "body": render_body(row["request_headers"], row["request_body"], row["request_size"])},
        "response": {"headers": row["response_headers"],
                     "body": render_body(row["response_headers"], row["response_body"], row["response_size"])},
    }  # fmt: skip


def timeline(serial: str, rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A device's exchanges in order, with the parties they involve in lane order (device first)."""
    exchanges = [summary(r) for r in rows]
    seen = {e["source"] for e in exchanges} | {e["target"] for e in exchanges} | {"device"}
    lanes = [[key, label] for key, label in PARTIES.items() if key in seen]
    lanes += [[key, key] for key in sorted(seen - PARTIES.keys())]
    return {"serial_number": serial, "parties": lanes, "exchanges": exchanges}


def note_of(exchange: Mapping[str, Any]) -> str:
    """A few words on what an exchange carried (``Authenticate``, ``GetCACert``, ``mdm.TokenUpdate``)."""
    target = exchange.get("target")
    body = exchange.get("request_body") or b""
    if target in ("checkin", "connect"):
        message = _plist(body)
        if isinstance(message, dict):
            word = str(message.get("MessageType") or message.get("Status") or "")
            reply = _plist(exchange.get("response_body") or b"")
            command = reply.get("Command") if isinstance(reply, dict) else None
            if isinstance(command, dict) and command.get("RequestType"):
                word += f" → {command['RequestType']}"
            return word
    if target in ("scep", "acme"):
        operation = parse_qs(urlsplit(str(exchange.get("url", ""))).query).get("operation")
        if operation:
            return operation[0][:40]
        resource = _acme_resource(body)
        if resource:
            return resource
    if target == "apns":
        return "push" if str(exchange.get("method")) == "POST" else "look for pushes"
    data = _json(body)
    if isinstance(data, dict):
        for key in ("topic", "action", "RequestType"):
            if isinstance(data.get(key), str):
                return data[key][:60]
        command = data.get("command")
        if isinstance(command, dict) and isinstance(command.get("RequestType"), str):
            return f"queue {command['RequestType']}"
    if target == "enroll":
        return "MachineInfo → enrollment profile"
    return ""


def _acme_resource(body: bytes) -> str:
    """The resource an ACME request (a flattened JWS) was made for, from its protected header's ``url``:
    ``new-order``, ``finalize``, …"""
    data = _json(body)
    if not isinstance(data, dict) or not isinstance(data.get("protected"), str):
        return ""
    try:
        header = json.loads(base64.urlsafe_b64decode(data["protected"] + "=" * (-len(data["protected"]) % 4)))
    except (ValueError, binascii.Error):
        return ""
    url = header.get("url") if isinstance(header, dict) else None
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1][:40] if isinstance(url, str) else ""


def render_body(headers: Mapping[str, str], body: bytes, size: int) -> dict[str, Any]:
    """A body as a person reads it: ``kind`` (json, plist, cms, text, binary, empty), ``text``, ``note``.

    Plists (XML or binary) are shown as XML; CMS SignedData (MachineInfo, a signed enrollment profile)
    as the content it signs, with the signer in ``note``; a webhook's base64 check-in plist decoded
    beside it; anything else binary as base64. Bounded: a body was cut at :data:`MAX_BODY` when kept.
    """
    cut = f" (first {len(body):,} of {size:,} bytes kept)" if size > len(body) else ""
    content_type = headers.get("content-type", "")
    if not body:
        return {"kind": "empty", "text": "", "note": "no body", "content_type": content_type}
    data = _json(body)
    if data is not None:
        text = json.dumps(data, indent=2)
        note = f"JSON, {size:,} bytes{cut}"
        decoded = _webhook_plist(data)
        if decoded:
            text += "\n\n// raw_payload, decoded:\n" + decoded
        return _rendered("json", text, note, content_type)
    value = _plist(body)
    if value is not None:
        kind = "binary plist" if body.startswith(b"bplist") else "XML plist"
        return _rendered("plist", _plist_text(value), f"{kind}, {size:,} bytes{cut}", content_type)
    if body[:1] == b"\x30":
        try:
            inner, signer = signed_content(body)
        except Exception:  # not SignedData (a SCEP envelope, a certificate): shown as binary below
            inner, signer = None, None
        if inner is not None:
            who = signer.subject.rfc4514_string() if signer is not None else "an unknown signer"
            value = _plist(inner)
            if value is not None:
                text, what = _plist_text(value), "a plist"
            else:
                text, what = _text_or_base64(inner)
            note = f"CMS SignedData by {who}, signing {what} of {len(inner):,} bytes; {size:,} bytes{cut}"
            return _rendered("cms", text, note, content_type)
    text, what = _text_or_base64(body)
    kind = "text" if what == "text" else "binary"
    return _rendered(kind, text, f"{what} ({content_type or 'no type'}), {size:,} bytes{cut}", content_type)


def _text_or_base64(data: bytes) -> tuple[str, str]:
    """Printable UTF-8 as it is; anything else as base64 (the first 4,096 bytes)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text[:4096]):
        return text, "text"
    more = ", the first 4,096 shown" if len(data) > 4096 else ""
    return base64.encodebytes(data[:4096]).decode("ascii"), f"binary as base64{more}"


def _rendered(kind: str, text: str, note: str, content_type: str) -> dict[str, Any]:
    if len(text) > _MAX_RENDERED:
        text = text[:_MAX_RENDERED] + "\n…"
    return {"kind": kind, "text": text, "note": note, "content_type": content_type}


def _json(body: bytes) -> Any:
    if not body or body[:1] not in (b"{", b"["):
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _plist(body: bytes) -> Any:
    if not body.startswith((b"<?xml", b"<plist", b"bplist")):
        return None
    try:
        return loads(body)
    except (PlistError, ValueError):
        return None


def _plist_text(value: Any) -> str:
    if isinstance(value, dict):
        try:
            return dumps(value).decode("utf-8", "replace")
        except (TypeError, ValueError, OverflowError):
            pass
    return json.dumps(value, indent=2, default=str)


def _webhook_plist(data: Any) -> str:
    """A webhook event's ``raw_payload`` (the device's check-in plist, base64), decoded."""
    if not isinstance(data, dict):
        return ""
    for key in ("checkin_event", "acknowledge_event"):
        part = data.get(key)
        if isinstance(part, dict) and isinstance(part.get("raw_payload"), str):
            try:
                raw = base64.b64decode(part["raw_payload"], validate=True)
            except (binascii.Error, ValueError):
                return ""
            value = _plist(raw)
            return _plist_text(value) if value is not None else ""
    return ""
