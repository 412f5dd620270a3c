"""The fleet runner: N simulated devices at once, in one process, on one asyncio loop.

A run is what an MDM vendor sees when a school unboxes ten thousand iPads on the first morning:
every device powers on, activates with Apple (``/apple/activation``), enrolls at the ConfigurationURL
its cloud configuration names, checks in (Authenticate, TokenUpdate), and answers the first command
the vendor sends, DeviceInformation. Three phase timings come out per device:

* ``activation``: power-on until Apple's cloud configuration arrived;
* ``enrollment``: from there until TokenUpdate was accepted (the device is enrolled);
* ``first_command``: from there until the device's DeviceInformation answer was acknowledged,
  which includes the admin's enqueue, the APNs push and the device's wake-up.

The admin side is a companion task that batches freshly enrolled UDIDs into one
``POST /mdm/api/v1/commands`` per batch (one CommandUUID for many devices, as the command API allows);
the server pushes each device through the world's APNs. With ``--wake push`` (the default) every
enrolled device holds a stream to the push gateway's device listener (the world advertises it in
``/_sim/`` as ``urls.apns_stream``), opened before its command is enqueued and kept until the run ends,
as a real device holds its APNs connection, and wakes on the push that arrives there; a device whose
push has not come within ``push_wait_s`` polls ``/mdm/connect`` instead and counts as ``push_missed``.
A world that advertises no stream listener (an older ``mdmsim serve``) gets the old behaviour: devices
read their push events with ``GET /apple/apns/events?wait=0``. ``--wake poll`` polls ``/mdm/connect``.

Devices stay lean: one :class:`~simulator.device.machine.Device` (its ``DeviceState`` of strings)
each, a few shared :class:`~simulator.load.transport.LoadClient` pools, timings in flat arrays, and
one :class:`~simulator.load.streams.AsyncPushStream` (a socket, its transport, a small parser).
``kb_per_idle_device`` is the growth of the process's RSS from before the identities were fetched
to the end of the run, every device idle and still holding its stream, divided by N: everything the
fleet added, not an estimate of one object.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import re
import resource
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from simulator.device.machine import Device, Request, Response

from .admin import WorldAdmin, device_from_bundle
from .drivers import AsyncHTTPDriver, run_coroutine
from .stats import LatencyStats, Series, Timeline, percentiles
from .streams import AsyncPushStream, open_push_stream
from .transport import LoadClient, LoadHTTPError

__all__ = ["FleetOptions", "FleetReport", "FleetRunner", "run_fleet", "rss_mb", "device_from_bundle"]

DEVICE_INFORMATION_QUERIES = [
    "UDID", "SerialNumber", "DeviceName", "Model", "ModelName", "ProductName", "OSVersion", "BuildVersion",
    "IsSupervised", "DeviceCapacity", "WiFiMAC",
]  # fmt: skip
Wake = Literal["push", "poll"]
#: distinct failure reasons a report keeps apart; more are counted as "other reasons"
MAX_FAILURE_REASONS = 50
#: a serial, UDID, token or UUID inside an error message (so one reason counts many devices)
_ANY_ID = re.compile(r"\b(?=[0-9A-Za-z_-]*\d)[0-9A-Za-z_-]{12,}\b")


def rss_mb() -> float:
    """Resident set size now, from /proc (Linux); 0 where unavailable."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 1_048_576
    except (OSError, ValueError, IndexError):
        return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def allow_open_files(needed: int) -> int:
    """Raise this process's soft limit on open files towards ``needed`` (one per device stream), as
    far as the hard limit allows; the limit now. A stream refused for lack of descriptors is counted
    in ``streams_failed`` and its device polls instead."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    return int(soft)


@dataclass
class FleetOptions:
    """How a fleet run behaves; defaults suit a 2-core machine running server and fleet together."""

    devices: int
    concurrency: int = 64
    wake: Wake = "push"
    command_batch: int = 250
    batch_wait_s: float = 0.05
    push_wait_s: float = 10.0  # a device waits this long for its push, then polls /mdm/connect anyway
    #: the push gateway's device listener (default: what the world advertises as ``urls.apns_stream``)
    stream_url: str | None = None
    timeout_s: float = 60.0
    prepare: bool = True  # define and assign a DEP profile (off: the admin already did)
    mdm_url: str | None = None  # ConfigurationURL for the profile (default: the world's /mdm/enroll)
    #: RSA keys made before the run for SCEP enrollments, handed round-robin to devices (0: none; a
    #: device then makes its own, ~60 ms each, which a fleet of thousands cannot afford in the run)
    scep_key_pool: int = 0


@dataclass
class FleetReport:
    devices: int
    enrolled: int
    acknowledged: int
    failed: int
    elapsed_s: float
    prepare_s: float
    devices_per_s: float
    requests: int
    requests_per_s: float
    phases_ms: dict[str, dict[str, float]]
    endpoints: dict[str, dict[str, Any]]
    peak_rss_mb: float
    kb_per_idle_device: float
    push_missed: int = 0
    #: device streams open when the run ended (every enrolled device holds one with ``--wake push``)
    streams_open: int = 0
    #: devices whose stream could not be opened (they poll ``/mdm/connect`` instead)
    streams_failed: int = 0
    errors: list[str] = field(default_factory=list)
    #: why devices failed, each reason with its count (every failure, where ``errors`` keeps ten)
    failure_reasons: dict[str, int] = field(default_factory=dict)
    #: requests and devices per second over the run, for ``--report``
    throughput: list[Series] = field(default_factory=list)

    def headline(self) -> dict[str, Any]:
        """The benchmark's JSON line."""
        return {
            "devices": self.devices, "enrolled": self.enrolled, "acknowledged": self.acknowledged,
            "failed": self.failed, "elapsed_s": self.elapsed_s, "devices_per_s": self.devices_per_s,
            "requests_per_s": self.requests_per_s, "peak_rss_mb": self.peak_rss_mb,
            "kb_per_idle_device": self.kb_per_idle_device, "prepare_s": self.prepare_s,
            "push_missed": self.push_missed, "streams_open": self.streams_open,
            "streams_failed": self.streams_failed,
            "phases_ms": self.phases_ms,
        }  # fmt: skip


class ClientPool:
    """A few small :class:`LoadClient` pools shared by all devices, plus one for the admin.

    Why not one big pool: httpcore's pool scans every connection for every queued request, so one
    client with 64 busy connections spends more CPU choosing a connection than sending the request.
    ``per_client`` concurrent slots share one client; devices never own one.
    """

    def __init__(self, slots: int, *, per_client: int = 4, timeout: float = 60.0) -> None:
        ssl_context = httpx.create_ssl_context()  # made once, with httpx's default trust (certifi)
        count = max(1, -(-slots // per_client))
        self.clients = [LoadClient(max_connections=per_client, ssl_context=ssl_context, timeout=timeout)
                        for _ in range(count)]
        self.admin = LoadClient(max_connections=8, ssl_context=ssl_context, timeout=timeout)

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in (*self.clients, self.admin):
            await client.aclose()


class _CommandBatcher:
    """Collects enrolled UDIDs; one DeviceInformation enqueue per batch, each waiter told when done.

    A device may hand in an awaitable that must finish before its command is enqueued (its push
    stream being opened): the batch is sent once all of its devices' are done. The stream opens while
    the batch fills, off the device's critical path, and is still held before the push can come.
    """

    def __init__(self, client: LoadClient, mdm_url: str, batch: int, wait_s: float,
                 stats: LatencyStats) -> None:
        self.client = client
        self.url = f"{mdm_url}/api/v1/commands"
        self.batch = batch
        self.wait_s = wait_s
        self.stats = stats
        self.pending: list[tuple[str, asyncio.Future[bool], asyncio.Future[Any] | None]] = []
        self.wakeup = asyncio.Event()
        self.closed = False
        self.inflight: set[asyncio.Task[None]] = set()

    def submit(self, udid: str, after: asyncio.Future[Any] | None = None) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.pending.append((udid, future, after))
        if len(self.pending) >= self.batch:
            self.wakeup.set()
        return future

    async def run(self) -> None:
        while not (self.closed and not self.pending):
            try:
                await asyncio.wait_for(self.wakeup.wait(), self.wait_s)
            except TimeoutError:
                pass
            self.wakeup.clear()
            if self.pending:
                batch, self.pending = self.pending[: self.batch], self.pending[self.batch :]
                task = asyncio.create_task(self._send(batch))
                self.inflight.add(task)
                task.add_done_callback(self.inflight.discard)
        if self.inflight:
            await asyncio.gather(*self.inflight)

    async def _send(self, batch: list[tuple[str, asyncio.Future[bool], asyncio.Future[Any] | None]]) -> None:
        waiting = [after for _, _, after in batch if after is not None and not after.done()]
        if waiting:
            await asyncio.wait(waiting)
        body = {"udids": [u for u, _, _ in batch],
                "command": {"RequestType": "DeviceInformation", "Queries": DEVICE_INFORMATION_QUERIES}}
        started = time.perf_counter()
        try:
            r = await self.client.post(self.url, json=body, timeout=120.0)
            status = r.status_code
        except LoadHTTPError:
            status = 0
        self.stats.record("POST /mdm/api/v1/commands", status, (time.perf_counter() - started) * 1000.0)
        for _, future, _ in batch:
            if not future.done():
                future.set_result(status in (200, 201))


class KeyPool:
    """RSA keys made up front and handed out round-robin (devices of a load run share them: a SCEP
    server sees distinct CSRs and signers, and the run measures the server, not key generation)."""

    def __init__(self, size: int, bits: int = 2048) -> None:
        self.bits = bits
        self.keys = [rsa.generate_private_key(public_exponent=65537, key_size=bits) for _ in range(size)]
        self._next = 0

    def take(self, bits: int) -> rsa.RSAPrivateKey:
        if bits != self.bits:
            return rsa.generate_private_key(public_exponent=65537, key_size=bits)
        key = self.keys[self._next % len(self.keys)]
        self._next += 1
        return key


class FleetRunner:
    """Runs one fleet against a served world whose devices are given as identity bundles."""

    def __init__(self, bundles: Sequence[dict[str, Any]], *, mdm_url: str, options: FleetOptions,
                 now: Callable[[], datetime] | None = None,
                 on_update: Callable[[int, int, int], None] | None = None) -> None:
        self.options = options
        self.mdm_url = mdm_url.rstrip("/")
        #: where enrolled devices hold their push streams (None: they poll APNs's events endpoint)
        self.stream_url = (options.stream_url or None) if options.wake == "push" else None
        self.now = now
        self.on_update = on_update
        self.devices = [device_from_bundle(b) for b in bundles]
        n = len(self.devices)
        self.t_start = array("d", bytes(8 * n))
        self.t_activated = array("d", bytes(8 * n))
        self.t_enrolled = array("d", bytes(8 * n))
        self.t_acked = array("d", bytes(8 * n))
        #: completions per second: requests (counted by ``stats``) and devices, on one ``t0``
        self.timeline = Timeline("requests", "failed", "enrolled", "acknowledged", "devices failed")
        self.stats = LatencyStats(self.timeline)
        self.enrolled = self.acknowledged = self.failed = self.push_missed = 0
        self.failure_reasons: dict[str, int] = {}
        self.streams: list[AsyncPushStream] = []
        self.streams_open = self.streams_failed = 0
        self.rss_idle_mb: float | None = None
        self.errors: list[str] = []

    def _update(self) -> None:
        if self.on_update is not None:
            self.on_update(self.enrolled, self.acknowledged, self.failed)

    def _fail(self, device: Device, why: str, reason: str | None = None) -> None:
        """Count a failed device under ``reason`` (default ``why``, which must then name no device)."""
        self.failed += 1
        self.timeline.add("devices failed")
        last = [e for e in device.transcript if e[1] == "error"][-1:]
        key = reason or why
        if last:  # the step that went wrong and what it said (one device's ids taken out)
            key += f" · {last[0][0]}: {_ANY_ID.sub('{id}', str(last[0][3]))[:160]}"
        if key not in self.failure_reasons and len(self.failure_reasons) >= MAX_FAILURE_REASONS:
            key = "other reasons"
        self.failure_reasons[key] = self.failure_reasons.get(key, 0) + 1
        if len(self.errors) < 10:
            self.errors.append(f"{device.serial}: {why}" + (f" ({last[0][0]}: {last[0][3]})" if last else ""))
        self._update()

    async def run(self) -> float:
        """Power every device on (``concurrency`` at a time); the elapsed seconds."""
        opts = self.options
        slots = min(opts.concurrency, len(self.devices)) or 1
        async with ClientPool(slots, timeout=opts.timeout_s) as pool:
            drivers = [AsyncHTTPDriver(client, now=self.now, stats=self.stats, timeout=opts.timeout_s)
                       for client in pool.clients]
            batcher = _CommandBatcher(pool.admin, self.mdm_url, opts.command_batch, opts.batch_wait_s, self.stats)
            batching = asyncio.create_task(batcher.run())
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(len(self.devices)):
                queue.put_nowait(i)
            started = time.perf_counter()
            workers = [asyncio.create_task(self._worker(queue, drivers[k % len(drivers)], batcher))
                       for k in range(slots)]
            await asyncio.gather(*workers)
            batcher.closed = True
            batcher.wakeup.set()
            await batching
            elapsed = time.perf_counter() - started
            self._hang_up()
            for driver in drivers:
                await driver.aclose()
            return elapsed

    def _hang_up(self) -> None:
        """The run is over: note what the idle fleet holds, then close every device's stream."""
        gc.collect()
        self.rss_idle_mb = rss_mb()
        self.streams_open = sum(1 for stream in self.streams if not stream.closed)
        for stream in self.streams:
            stream.close()
        self.streams.clear()

    async def _worker(self, queue: asyncio.Queue[int], driver: AsyncHTTPDriver, batcher: _CommandBatcher) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            try:
                await self._one(i, driver, batcher)
            except Exception as exc:  # one broken device must not stop the fleet; it is counted
                self._fail(self.devices[i], f"{type(exc).__name__}: {exc}"[:200], type(exc).__name__)
            self.devices[i].forget_cached_keys()  # idle now: keep the state, drop parsed keys

    async def _one(self, i: int, driver: AsyncHTTPDriver, batcher: _CommandBatcher) -> None:
        device = self.devices[i]
        self.t_start[i] = time.perf_counter()

        def observe(request: Request, response: Response, _ms: float) -> None:
            if not self.t_activated[i] and request.url.endswith("/activation/profile") and response.status == 200:
                self.t_activated[i] = time.perf_counter()

        await driver.run_until_home(device, observer=observe)
        if not device.enrolled:
            self._fail(device, f"not enrolled (stopped on {device.pane})")
            return
        self.t_enrolled[i] = time.perf_counter()
        self.enrolled += 1
        self.timeline.add("enrolled", at=self.t_enrolled[i])
        self._update()
        # The stream is open (the gateway holds the subscription) before the command is enqueued, so
        # the push reaches the device over it however fast the server pushes; it opens while the
        # command's batch fills.
        opening = asyncio.ensure_future(self._open_stream(device, driver)) if self.stream_url else None
        enqueued = await batcher.submit(device.udid, after=opening)
        stream = await opening if opening is not None else None
        if not enqueued:
            self._fail(device, "the DeviceInformation command could not be enqueued")
            return
        if await self._answer_first_command(device, driver, stream):
            self.t_acked[i] = time.perf_counter()
            self.acknowledged += 1
            self.timeline.add("acknowledged", at=self.t_acked[i])
            self._update()
        else:
            self._fail(device, "DeviceInformation was never acknowledged")

    async def _open_stream(self, device: Device, driver: AsyncHTTPDriver) -> AsyncPushStream | None:
        """Hold the device's push stream for the rest of the run (None when it could not be opened)."""
        assert self.stream_url is not None and device.state.push_token is not None
        started = time.perf_counter()
        stream = await open_push_stream(self.stream_url, device.state.push_token, timeout=self.options.timeout_s)
        self.stats.record("GET /events (stream)", 0 if stream.closed else 200, (time.perf_counter() - started) * 1000.0)
        if stream.closed:
            self.streams_failed += 1
            device.record("Push", "error", driver.now(), (stream.error or "push stream failed")[:300])
            if len(self.errors) < 10:
                self.errors.append(f"{device.serial}: {stream.error}")
            return None
        self.streams.append(stream)
        return stream

    async def _answer_first_command(self, device: Device, driver: AsyncHTTPDriver,
                                    stream: AsyncPushStream | None = None) -> bool:
        """Wake on the push (from the stream, or polled), answer; True once DeviceInformation was
        acknowledged. A push that does not come in time makes the device poll ``/mdm/connect``."""
        deadline = time.monotonic() + self.options.push_wait_s
        delay = 0.02
        pushed = self.options.wake == "push"
        if pushed and self.stream_url is not None:
            if stream is not None:
                while (left := deadline - time.monotonic()) > 0:
                    notes = await stream.wait(left)
                    if not notes:
                        break  # no push in time, or the stream ended
                    report = await driver.run_agent(device, notifications=notes, connect=False)
                    if ("DeviceInformation", "Acknowledged") in report.commands:
                        return True
                    if report.error:
                        return False
                    # an earlier push (or another's): keep waiting for the one that carries the command
            self.push_missed += 1
            pushed = False
        while True:
            if pushed and time.monotonic() < deadline:
                report = await driver.run_agent(device, poll_push=True, connect=False)
                if not report.connected:
                    await asyncio.sleep(delay)  # the push has not reached APNs yet
                    delay = min(delay * 2, 0.5)
                    continue
            else:
                if pushed:
                    self.push_missed += 1
                    pushed = False
                report = await driver.run_agent(device, poll_push=False, connect=True)
            if ("DeviceInformation", "Acknowledged") in report.commands:
                return True
            if report.error or time.monotonic() > deadline + self.options.push_wait_s:
                return False
            await asyncio.sleep(delay)

    def report(self, elapsed_s: float, prepare_s: float, rss_before_mb: float) -> FleetReport:
        n = len(self.devices)
        gc.collect()
        grown = max(rss_mb() - rss_before_mb, 0.0)
        phases: dict[str, list[float]] = {"activation": [], "enrollment": [], "first_command": [], "total": []}
        for i in range(n):
            s, a, e, k = self.t_start[i], self.t_activated[i], self.t_enrolled[i], self.t_acked[i]
            if a:
                phases["activation"].append((a - s) * 1000)
            if a and e:
                phases["enrollment"].append((e - a) * 1000)
            if e and k:
                phases["first_command"].append((k - e) * 1000)
                phases["total"].append((k - s) * 1000)
        if self.rss_idle_mb is not None:
            grown = max(self.rss_idle_mb - rss_before_mb, 0.0)
        requests = self.stats.requests
        return FleetReport(
            devices=n, enrolled=self.enrolled, acknowledged=self.acknowledged, failed=self.failed,
            elapsed_s=round(elapsed_s, 2), prepare_s=round(prepare_s, 2),
            devices_per_s=round(self.acknowledged / elapsed_s, 1) if elapsed_s else 0.0,
            requests=requests, requests_per_s=round(requests / elapsed_s, 1) if elapsed_s else 0.0,
            phases_ms={name: percentiles(v) for name, v in phases.items()},
            endpoints=self.stats.summary(),
            peak_rss_mb=round(peak_rss_mb(), 1),
            kb_per_idle_device=round(grown * 1024 / n, 1) if n else 0.0,
            push_missed=self.push_missed, streams_open=self.streams_open, streams_failed=self.streams_failed,
            errors=self.errors, failure_reasons=dict(self.failure_reasons),
            throughput=[
                *self.timeline.series("requests per second", {"requests": "requests", "failed": "failed requests"}),
                *self.timeline.series("devices per second", {"enrolled": "enrolled", "acknowledged": "acknowledged",
                                                               "devices failed": "failed"}),
            ],
        )  # fmt: skip


def run_fleet(target: str, options: FleetOptions, *,
              on_update: Callable[[int, int, int], None] | None = None,
              on_phase: Callable[[str], None] | None = None,
              keep: dict[str, FleetRunner] | None = None) -> FleetReport:
    """Prepare ``target`` (profile, assignment, identities) over HTTP, then run the fleet.

    ``keep`` receives the runner under ``"runner"`` so a scenario can go on with the enrolled devices.
    """
    say = on_phase or (lambda _text: None)
    rss_before = rss_mb()
    started = time.perf_counter()
    with WorldAdmin(target) as admin:
        say("listing serials")
        serials = admin.serials(options.devices)
        if len(serials) < options.devices:
            raise ValueError(f"{target} has {len(serials)} devices, fewer than the {options.devices} asked for")
        if options.prepare:
            say("assigning a DEP profile")
            profile = admin.define_profile(mdm_url=options.mdm_url)
            admin.assign_profile(profile, serials)
        say("fetching identities")
        bundles = admin.identity_bundles(serials)
        now = admin.world_now()
        mdm_url = admin.url("mdm")
        if options.wake == "push" and options.stream_url is None:
            options = dataclasses.replace(options, stream_url=admin.apns_stream_url())
            say(f"devices hold push streams at {options.stream_url}" if options.stream_url else
                "the world advertises no push stream listener: devices poll APNs for their pushes")
        if options.stream_url:
            allow_open_files(options.devices + 1024)
    runner = FleetRunner(bundles, mdm_url=mdm_url, options=options, now=now, on_update=on_update)
    del bundles
    if options.scep_key_pool:
        say(f"making {options.scep_key_pool} SCEP keys (before the timed run)")
        pool = KeyPool(options.scep_key_pool)
        for device in runner.devices:
            device.scep_key_source = pool.take
    prepare_s = time.perf_counter() - started
    if keep is not None:
        keep["runner"] = runner
    say("powering on")
    # The fleet's devices live for the whole run: frozen, the collector stops re-scanning them on
    # every full collection (collector pauses in a run of 6,000 devices: 4.7 s before, 3.8 s after).
    gc.collect()
    gc.freeze()
    try:
        elapsed = run_coroutine(runner.run())
    finally:
        gc.unfreeze()
    return runner.report(elapsed, prepare_s, rss_before)
