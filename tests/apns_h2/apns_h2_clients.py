"""A served world with two push vendors, and the clients the tests of the push gateway's listeners use.

Everything here goes through real sockets on 127.0.0.1, as a provider and a device do:

* :class:`H2Client`, a provider written on the ``h2`` state machine over an ``ssl`` socket, for what
  curl and aioapns never send (two ``apns-topic`` headers, a GET to ``/3/device/…``, a thousand streams
  on one connection) and to see the frames Apple's gateway sends (``GOAWAY`` with its debug data);
* :func:`curl`, the unmodified ``curl --http2 --cert … --key …`` a reader of the README would type;
* :class:`DeviceStream`, a device holding ``GET /events?token=…`` (server-sent events), read with
  ``h11`` so each event is seen exactly as it was framed.

The module has a unique name (not ``conftest``) so ``tests/fuzz`` imports it too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from mdm.protocol.randomness import Randomness
from mdm.protocol.x509 import PrivateKey, cert_to_pem, key_to_pem
from simulator import World

PROD = "api.push.apple.com"
SANDBOX = "api.sandbox.push.apple.com"
#: How long any single read waits before the test fails (a deadline, never a sleep).
READ_TIMEOUT_S = 5.0


def push_magic(label: str) -> str:
    """A PushMagic as an MDM server makes one: a UUID, here named after what it tests."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mdmsim-test:{label}")).upper()


def mdm_body(magic: str) -> bytes:
    return json.dumps({"mdm": magic}).encode()


def csr_pem(key: PrivateKey, name: str) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Vendor:
    """One MDM vendor's push certificate from the world's Push Certificates Portal, as files."""

    name: str
    cert_id: str
    topic: str
    cert: Path
    key: Path
    #: certificate and key in one PEM, as aioapns wants them
    combined: Path


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def reason(self) -> str | None:
        return self.json.get("reason") if self.body else None


@dataclass
class PushWorld:
    """A world served with the HTTP/2 provider listener, two vendors (``a``, ``b``) and its CA as a file."""

    world: World
    served: Any
    directory: Path
    ca: Path
    vendors: dict[str, Vendor] = field(default_factory=dict)
    _tokens: int = 0

    @property
    def port(self) -> int:
        return int(self.served.apns_url.rsplit(":", 1)[1])

    @property
    def a(self) -> Vendor:
        return self.vendors["a"]

    @property
    def b(self) -> Vendor:
        return self.vendors["b"]

    def token(self, vendor: Vendor | None = None) -> str:
        """A new device token, registered with APNs for ``vendor``'s topic (``a`` by default)."""
        self._tokens += 1
        token = hashlib.sha256(f"device-token:{self._tokens}".encode()).hexdigest()
        self.world.apns.register(token, (vendor or self.a).topic)
        return token

    def h2(self, vendor: Vendor | None = None, *, anonymous: bool = False, authority: str = PROD) -> H2Client:
        """A provider connection with ``vendor``'s certificate (``a``), or none when ``anonymous``."""
        chosen = None if anonymous else (vendor or self.a)
        return H2Client(self.port, self.ca, chosen.cert if chosen else None, chosen.key if chosen else None,
                        authority=authority)  # fmt: skip

    def stream(self, token: str, path: str = "/events") -> DeviceStream:
        return DeviceStream(self.served.apns_stream_url, token, path)

    def curl(self, token: str, *args: str, vendor: Vendor | None = None, anonymous: bool = False, host: str = PROD,
             body: bytes | None = None, http: str = "--http2") -> CurlResult:  # fmt: skip
        """``curl`` POSTing ``body`` (an MDM push by default) to ``https://host:port/3/device/<token>``."""
        chosen = None if anonymous else (vendor or self.a)
        identity = ["--cert", str(chosen.cert), "--key", str(chosen.key)] if chosen else []
        return curl([http, *identity, "--cacert", str(self.ca), "--resolve", f"{host}:{self.port}:127.0.0.1",
                     "--data-binary", "@-", *args, f"https://{host}:{self.port}/3/device/{token}"],
                    stdin=mdm_body(push_magic("curl")) if body is None else body)  # fmt: skip


_KEYS: dict[str, PrivateKey] = {}


def vendor_key(name: str) -> PrivateKey:
    """One RSA key per vendor name for the whole run (RSA keys take tens of milliseconds to make)."""
    if name not in _KEYS:
        _KEYS[name] = Randomness(18).rsa_key(f"apns-h2-tests:{name}")
    return _KEYS[name]


def issue_vendor(world: World, directory: Path, name: str) -> Vendor:
    """A push certificate for ``name`` from the world's portal (a new topic each), written to files."""
    key = vendor_key(name)
    issued = world.pushcert.create(f"{name}@vendors.example", csr_pem(key, f"vendor {name}"))
    cert, key_file, combined = directory / f"{name}.crt", directory / f"{name}.key", directory / f"{name}.pem"
    cert.write_text(issued["certificate"])
    key_file.write_bytes(key_to_pem(key))
    combined.write_bytes(issued["certificate"].encode() + key_to_pem(key))
    return Vendor(name, issued["id"], issued["topic"], cert, key_file, combined)


@contextlib.contextmanager
def push_world() -> Iterator[PushWorld]:
    """A fresh world on real sockets (device streams and the provider API) with vendors ``a`` and ``b``."""
    world = World(devices=0, seed=18, push_certificate=False, background_sync=False)
    directory = Path(tempfile.mkdtemp(prefix="mdmsim-apns-h2-"))
    try:
        ca = directory / "world-ca.pem"
        ca.write_bytes(cert_to_pem(world.tls_ca.certificate))
        vendors = {name: issue_vendor(world, directory, name) for name in ("a", "b")}
        with world.serve(apns_port=0) as served:
            yield PushWorld(world, served, directory, ca, vendors)
    finally:
        world.close()
        shutil.rmtree(directory, ignore_errors=True)


# -- curl ------------------------------------------------------------------------------------------
@dataclass
class CurlResult:
    returncode: int
    status: int | None
    headers: dict[str, str]
    body: bytes
    stderr: str

    @property
    def reason(self) -> str | None:
        return json.loads(self.body).get("reason") if self.body else None


def curl_binary() -> str:
    """The system's curl with HTTP/2; a missing one fails the test with the command that installs it."""
    found = shutil.which("curl")
    if found is None:
        pytest.fail("curl is not installed: apt-get install curl")
    features = subprocess.run([found, "-V"], capture_output=True, text=True, check=True).stdout
    if "HTTP2" not in features:
        pytest.fail(f"this curl has no HTTP/2 (nghttp2): apt-get install curl\n{features}")
    return found


def curl(args: Sequence[str], stdin: bytes = b"") -> CurlResult:
    """Run curl with ``-sS -i`` and split its output into status, headers and body."""
    run = subprocess.run([curl_binary(), "-sS", "-i", "--max-time", "10", *args], input=stdin, capture_output=True,
                         timeout=20)  # fmt: skip
    status, headers, body = None, {}, b""
    if run.stdout:
        head, _, body = run.stdout.partition(b"\r\n\r\n")
        first, *lines = head.decode("latin-1").split("\r\n")
        status = int(first.split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return CurlResult(run.returncode, status, headers, body, run.stderr.decode(errors="replace"))


# -- a provider on h2 --------------------------------------------------------------------------------
def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


class H2Client:
    """One HTTP/2 connection to the provider listener, driven by hand (blocking socket, one thread)."""

    def __init__(self, port: int, ca: Path, cert: Path | None = None, key: Path | None = None, *,
                 authority: str = PROD, validate: bool = True) -> None:  # fmt: skip
        self.port = port
        self.authority = f"{authority}:{port}"
        raw = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_S)
        self.sock = client_context(ca, cert, key).wrap_socket(raw, server_hostname=authority)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=validate,
            normalize_outbound_headers=validate, validate_inbound_headers=True))  # fmt: skip
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.responses: dict[int, Response] = {}
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.reset: set[int] = set()
        self.closed = False
        self._partial: dict[int, Response] = {}

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self.closed = True

    # -- sending -------------------------------------------------------------------------------------
    def start(self, path: str, body: bytes = b"", headers: Sequence[tuple[str, str]] = (), *,
              method: str = "POST", end: bool = True) -> int:  # fmt: skip
        """Send one request (headers, then the body); its stream id."""
        stream_id = self.conn.get_next_available_stream_id()
        pseudo = [(":method", method), (":scheme", "https"), (":authority", self.authority), (":path", path)]
        self.conn.send_headers(stream_id, [*pseudo, *headers], end_stream=not body and end)
        if body:
            self._send_body(stream_id, body, end)
        self.flush()
        return stream_id

    def flush(self) -> None:
        """Write what h2 has queued; a connection the server closed is a :class:`ConnectionError`."""
        try:
            self.sock.sendall(self.conn.data_to_send())
        except TimeoutError:
            raise
        except OSError as exc:  # SSLEOFError, BrokenPipeError, ConnectionResetError
            self.closed = True
            raise ConnectionError(f"the server closed the connection: {exc!r}") from exc

    def _send_body(self, stream_id: int, body: bytes, end: bool) -> None:
        """The body in frames the peer's window and frame size allow (a 5 KB body is two frames)."""
        view = memoryview(body)
        while view:
            size = min(len(view), self.conn.max_outbound_frame_size, self.conn.local_flow_control_window(stream_id))
            if size <= 0:
                self.flush()
                self._receive()
                continue
            self.conn.send_data(stream_id, bytes(view[:size]), end_stream=end and size == len(view))
            view = view[size:]

    def push(self, token: str, body: bytes | None = None, headers: Sequence[tuple[str, str]] = (), **kw: Any) -> Response:
        """One request to ``/3/device/<token>`` (an MDM push by default) and its response."""
        stream_id = self.start(f"/3/device/{token}", mdm_body(push_magic(token)) if body is None else body, headers, **kw)
        return self.response(stream_id)

    # -- receiving -----------------------------------------------------------------------------------
    def response(self, stream_id: int) -> Response:
        while stream_id not in self.responses:
            if self.closed or self.terminated is not None or stream_id in self.reset:
                raise ConnectionError(f"no response on stream {stream_id}: {self.terminated or 'reset'}")
            self._receive()
        return self.responses.pop(stream_id)

    def until_terminated(self) -> h2.events.ConnectionTerminated:
        """Read until the server's GOAWAY (fails the test if the connection ends without one)."""
        while self.terminated is None:
            if self.closed:
                raise ConnectionError("the server closed the connection without GOAWAY")
            self._receive()
        return self.terminated

    def _receive(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLError, ConnectionError) as exc:  # a reset after GOAWAY, or a refused handshake
            self.closed = True
            if self.terminated is None:
                raise ConnectionError(f"connection failed: {exc!r}") from exc
            return
        if not data:
            self.closed = True
            return
        partial = self._partial
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                partial[event.stream_id] = Response(int(dict(event.headers)[":status"]), dict(event.headers))
            elif isinstance(event, h2.events.DataReceived):
                partial[event.stream_id].body += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.responses[event.stream_id] = partial.pop(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.reset.add(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.terminated = event
        with contextlib.suppress(OSError):
            self.sock.sendall(self.conn.data_to_send())


# -- a device's stream -------------------------------------------------------------------------------
class DeviceStream:
    """``GET /events?token=…`` held open, as a device holds its connection to APNs.

    Construction returns once the gateway said ``: connected``: from then on the device is online."""

    def __init__(self, base_url: str, token: str, path: str = "/events") -> None:
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=READ_TIMEOUT_S)
        self.conn = h11.Connection(h11.CLIENT)
        request = h11.Request(method="GET", target=f"{path}?token={token}",
                              headers=[("host", f"{host}:{port}"), ("accept", "text/event-stream")])  # fmt: skip
        self.sock.sendall(self.conn.send(request) + self.conn.send(h11.EndOfMessage()))
        event = self._next()
        assert isinstance(event, h11.Response), event
        self.status = event.status_code
        self.headers = {k.decode(): v.decode() for k, v in event.headers}
        self._buffer = b""
        self.comments: list[str] = []
        self.ended = False
        if self.status == 200:
            while ": connected" not in self.comments:
                self._block()

    def __enter__(self) -> DeviceStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _next(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(self.sock.recv(65536))  # socket.timeout after READ_TIMEOUT_S fails the test

    def _block(self) -> dict[str, str] | None:
        """The next server-sent event's fields, or ``None`` for a comment block (recorded)."""
        while b"\n\n" not in self._buffer:
            event = self._next()
            if isinstance(event, h11.Data):
                self._buffer += bytes(event.data)
            else:  # EndOfMessage / ConnectionClosed: the gateway ended the stream
                self.ended = True
                raise EOFError("the device stream ended")
        block, _, self._buffer = self._buffer.partition(b"\n\n")
        fields: dict[str, str] = {}
        for line in block.decode().split("\n"):
            if line.startswith(":"):
                self.comments.append(line)
            else:
                name, _, value = line.partition(": ")
                fields[name] = value
        return fields or None

    def next_push(self) -> dict[str, Any]:
        """The next notification the gateway delivers on this stream (keep-alives skipped)."""
        while True:
            fields = self._block()
            if fields and "data" in fields:
                notification: dict[str, Any] = json.loads(fields["data"])
                assert fields.get("id") == notification["apns_id"] and fields.get("event") == "push", fields
                return notification

    def until_comment(self, comment: str) -> None:
        """Read until the gateway writes ``comment`` (``: keepalive``); a push meanwhile fails the test."""
        while comment not in self.comments:
            fields = self._block()
            assert fields is None, f"expected only comments, got {fields}"

    def read_rest(self) -> bytes:
        """Everything until the gateway ends the stream (its last chunk)."""
        rest = []
        with contextlib.suppress(EOFError):
            while True:
                fields = self._block()
                if fields:
                    rest.append(json.dumps(fields).encode())
        return b"".join(rest)
