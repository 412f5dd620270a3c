"""Drivers: the only code that performs a device's HTTP requests.

A device's flows (``setup_assistant.run_setup``, ``agent.agent_round``, …) yield
:class:`~simulator.device.machine.Request` objects; a driver sends them and feeds back the
:class:`~simulator.device.machine.Response`. Two drivers run the same flows:

* :class:`WSGIDriver` calls a WSGI app in process (``httpx.WSGITransport``): no sockets, for fast
  tests and for fleets of thousands of devices inside one world;
* :class:`HTTPDriver` uses a caller's ``httpx.Client`` over real sockets: demos, external MDM servers.

Over sockets a device learns of pushes as a real one does, on a connection it holds open to the
push gateway: :class:`SocketPushStream` runs a :class:`~simulator.device.push_stream.PushStream` on a
blocking socket (threads, or gevent's patched socket in a Locust user) and hands what arrived to
:func:`~simulator.device.agent.agent_round` as ``notifications``.

Transport failures (connection refused, timeouts, an app that raised) become ``Response(status=0,
error=…)`` or a 500, so the device writes them into its transcript and nothing crashes. World time is
the driver's ``now``: pass the world clock's ``now`` so transcripts carry simulated time.
"""

from __future__ import annotations

import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from mdm.protocol.isotime import parse_iso
from simulator.exchanges import Tape
from simulator.tls import anchor_context

from .agent import AgentRound, agent_round, remove_mdm_profile
from .machine import Device, Flow, Now, Request, Response, wall_now
from .phases import Phase
from .push_stream import PushStream
from .setup_assistant import run_setup

__all__ = [
    "Driver",
    "WSGIDriver",
    "HTTPDriver",
    "SocketPushStream",
    "StepLimitExceeded",
    "DEFAULT_TIMEOUT",
    "served_world_clock",
]


def served_world_clock(client: httpx.Client, server: str) -> Now:
    """The world's clock for a device run outside it: read once from ``/_sim/clock``, then advanced
    with the wall clock (wall time if the server has no such endpoint).

    ``/_sim/clock`` answers whole seconds, so the offset is rounded up by one: a device a fraction of
    a second behind the world would find a CA made "now" not yet valid.
    """
    offset = 0.0
    try:
        r = client.get(f"{server.rstrip('/')}/_sim/clock", timeout=5)
        if r.status_code == 200:
            offset = parse_iso(r.json()["now"]).timestamp() + 1.0 - time.time()
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        offset = 0.0
    return lambda: datetime.fromtimestamp(time.time() + offset, UTC)


T = TypeVar("T")
DEFAULT_TIMEOUT = 15.0
#: Called after every exchange, e.g. by the CLI to print new transcript entries as they appear.
Observer = Callable[[Request, Response], None]


class StepLimitExceeded(RuntimeError):
    """A flow asked for more exchanges than the caller allowed (a server looping a device)."""


class Driver:
    """Runs device flows; subclasses implement :meth:`send`.

    ``tape``: when set, every exchange is recorded on it (:mod:`simulator.exchanges`), with the calls
    the world's parties make while answering, for the device's timeline.
    """

    #: Whether requests reach the world through its in-process client, which attributes the calls the
    #: parties make while answering to the device (see :meth:`simulator.exchanges.Tape.device_exchange`).
    traces_calls = True

    def __init__(self, *, now: Now | None = None, observer: Observer | None = None) -> None:
        self.now: Now = now or wall_now
        self.observer = observer
        self.exchanges = 0
        self.tape: Tape | None = None

    def send(self, request: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, flow: Flow[T], *, max_steps: int | None = None) -> T:
        """Drive one flow to its end and return its result."""
        steps = 0
        try:
            request = next(flow)
            while True:
                if max_steps is not None and steps >= max_steps:
                    flow.close()
                    raise StepLimitExceeded(f"flow needed more than {max_steps} HTTP exchanges")
                response = self.send(request) if self.tape is None else self._send_recorded(request, self.tape)
                steps += 1
                self.exchanges += 1
                if self.observer is not None:
                    self.observer(request, response)
                request = flow.send(response)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _send_recorded(self, request: Request, tape: Tape) -> Response:
        with tape.device_exchange(request.method, request.url, request.headers, request.body,
                                  trace_calls=self.traces_calls) as exchange:  # fmt: skip
            response = self.send(request)
            exchange.answer(response.status, response.headers, response.body, response.error)
        return response

    def run_until_home(self, device: Device, max_steps: int = 500) -> str:
        """Power on and walk Setup Assistant; while the device is held at Awaiting Configuration, act
        as its MDM agent until DeviceConfigured arrives or the server has nothing more to say.

        Returns the phase it stopped in: ``home``, ``awaiting_configuration`` or ``setup`` (stuck on a
        pane with an error; see the transcript).
        """
        start = self.exchanges
        while True:
            remaining = max_steps - (self.exchanges - start)
            phase = self.run(run_setup(device, self.now), max_steps=max(remaining, 0))
            if phase != Phase.AWAITING_CONFIGURATION:
                return phase
            remaining = max_steps - (self.exchanges - start)
            if remaining <= 0:
                return phase
            report = self.run(agent_round(device, self.now), max_steps=remaining)
            if device.phase == Phase.AWAITING_CONFIGURATION and not report.commands:
                return device.phase

    def run_agent(self, device: Device, rounds: int = 1, *, connect: bool = True) -> list[AgentRound]:
        """Wake the MDM agent ``rounds`` times (push poll + connect); the reports in order."""
        reports = []
        for _ in range(rounds):
            reports.append(self.run(agent_round(device, self.now, connect=connect)))
        return reports

    def remove_mdm_profile(self, device: Device) -> bool:
        """The user removes management in Settings (CheckOut goes out when allowed)."""
        return self.run(remove_mdm_profile(device, self.now))

    def close(self) -> None:
        """Release the HTTP client (drivers own theirs unless one was passed in)."""


def _to_response(r: httpx.Response) -> Response:
    return Response(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content)


def _send_with(client: httpx.Client, request: Request, timeout: float) -> Response:
    try:
        r = client.request(request.method, request.url, headers=request.headers, content=request.body,
                           timeout=timeout)  # fmt: skip
    except httpx.ConnectError as exc:
        if _untrusted(exc):
            return Response.network_error(f"server certificate not trusted: {_origin(request.url)}: {_short(exc)}")
        return Response.network_error(f"cannot connect to {_origin(request.url)}: {_short(exc)}")
    except httpx.TimeoutException:
        return Response.network_error(f"{_origin(request.url)} did not answer in time")
    except httpx.HTTPError as exc:
        return Response.network_error(f"{_origin(request.url)}: {_short(exc)}")
    return _to_response(r)


def _untrusted(exc: BaseException) -> bool:
    """True when the TLS handshake failed because the server's certificate did not verify."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower() or "errno 111" in text.lower():
        return "connection refused"
    return text[:160]


class WSGIDriver(Driver):
    """In process: requests go straight into ``wsgi_app`` (no sockets, still real HTTP semantics).

    ``hosts`` limits which hosts exist: a request for any other host fails as "connection refused",
    which is how an in-process test points a device at an MDM server that is down. By default every
    host reaches the app (the world serves everything under one origin).
    """

    traces_calls = False  # httpx's WSGI transport, not the world's client: the app's own calls are not seen

    def __init__(
        self,
        wsgi_app: Callable[..., Any],
        *,
        now: Now | None = None,
        hosts: set[str] | None = None,
        observer: Observer | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(now=now, observer=observer)
        self.client = httpx.Client(transport=httpx.WSGITransport(app=wsgi_app, raise_app_exceptions=False))
        self.hosts = {h.lower() for h in hosts} if hosts is not None else None
        self.timeout = timeout

    def send(self, request: Request) -> Response:
        if self.hosts is not None:
            host = (urllib.parse.urlsplit(request.url).netloc or "").lower()
            if host not in self.hosts:
                return Response.network_error(f"cannot connect to {_origin(request.url)}: connection refused")
        return _send_with(self.client, request, self.timeout)

    def close(self) -> None:
        self.client.close()


class HTTPDriver(Driver):
    """Over real sockets with the caller's ``httpx.Client`` (connection pooling, proxies, TLS options
    stay the caller's choice).

    The caller's client is the device's *system store*: requests without ``trust`` (Apple's services)
    use it as it is. A request with ``trust`` (the MDM server, when the profile has anchor
    certificates) goes through a client that verifies against exactly those anchors; one such client
    per anchor set, made on first use and kept, so a fleet with one profile shares one connection pool.
    """

    def __init__(
        self,
        base_client: httpx.Client | None = None,
        *,
        now: Now | None = None,
        observer: Observer | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(now=now, observer=observer)
        self._owned = base_client is None
        self.client = base_client if base_client is not None else httpx.Client()
        self.timeout = timeout
        self._trusted: dict[tuple[str, ...], httpx.Client] = {}

    def _client_for(self, request: Request) -> httpx.Client:
        if request.trust is None or not request.url.lower().startswith("https:"):
            return self.client
        client = self._trusted.get(request.trust)
        if client is None:
            client = httpx.Client(verify=anchor_context(request.trust))
            self._trusted[request.trust] = client
        return client

    def send(self, request: Request) -> Response:
        return _send_with(self._client_for(request), request, self.timeout)

    def close(self) -> None:
        for client in self._trusted.values():
            client.close()
        self._trusted.clear()
        if self._owned:
            self.client.close()


class SocketPushStream:
    """A device's push stream on a blocking socket: :meth:`open` once, then :meth:`wait` for pushes.

    The socket is read only inside :meth:`wait`; between calls the kernel keeps what the gateway sent,
    so a caller that is busy answering commands misses nothing and needs no reader thread (under
    gevent, no greenlet of its own). Failures never raise: :attr:`closed` and :attr:`error` say what
    happened, and the caller opens a new stream when it wants one.
    """

    def __init__(self, stream_url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT,
                 ssl_context: ssl.SSLContext | None = None) -> None:  # fmt: skip
        self.stream = PushStream(stream_url, token)
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.sock: socket.socket | None = None
        self._pending: list[dict[str, Any]] = []

    @property
    def connected(self) -> bool:
        return self.stream.connected

    @property
    def closed(self) -> bool:
        return self.stream.closed

    @property
    def error(self) -> str | None:
        return self.stream.error

    def open(self) -> bool:
        """Connect and wait until the gateway holds the subscription (True) or refused it (False)."""
        address = self.stream.address
        try:
            sock = socket.create_connection((address.host, address.port), timeout=self.timeout)
            self.sock = sock  # closed by close() below if the TLS handshake fails
            if address.scheme == "https":
                context = self.ssl_context or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=address.host)
            self.sock = sock
            sock.sendall(self.stream.request_bytes())
        except OSError as exc:
            self.stream.connection_lost(f"cannot connect to the push gateway: {_short(exc)}")
            self.close()
            return False
        deadline = time.monotonic() + self.timeout
        while not (self.stream.connected or self.stream.closed):
            if not self._read(deadline):
                self.stream.connection_lost("the push gateway did not answer in time")
                self.close()
        return self.stream.connected

    def wait(self, timeout: float) -> list[dict[str, Any]]:
        """The notifications that arrived, waiting up to ``timeout`` seconds for the first (0: only
        what is already here); ``[]`` when none came or the stream ended (see :attr:`closed`)."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while not self._pending and not self.stream.closed:
            if not self._read(deadline):
                break
        out, self._pending = self._pending, []
        return out

    def _read(self, deadline: float) -> bool:
        """One read from the socket into the stream; False when the deadline passed first."""
        sock = self.sock
        if sock is None:
            return False
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.0) or 0.000_001)
            data = sock.recv(65536)
        except TimeoutError:
            return False
        except OSError as exc:
            self.stream.connection_lost(f"the connection to the push gateway failed: {_short(exc)}")
            self.close()
            return True
        self._pending.extend(self.stream.feed(data))
        if self.stream.closed:
            self.close()
        return True

    def close(self) -> None:
        """Hang up (the gateway forgets the subscription; pushes meanwhile wait in its store)."""
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        self.stream.connection_lost("closed by the device")
