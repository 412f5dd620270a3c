"""Locust users for mdmsim: simulated devices that enroll and check in, and admins that sync.

Run it with plain Locust (``--processes``, ``--master``/``--worker`` all work)::

    locust -f $(python -c 'import simulator.load.locustfile as m; print(m.__file__)') \\
        --headless -u 50 -r 10 -t 30s --host http://127.0.0.1:8080

or ``mdmsim load locust --headless -u 50 -r 10 -t 30s --host …``. The host is a served world.

* :class:`DeviceUser` claims one serial of the world (``POST /_sim/counters/locust-devices``, so
  every process of a distributed run gets distinct devices), fetches its identity, powers on and
  walks Setup Assistant through enrollment, then holds its push stream (the world's
  ``urls.apns_stream``), wakes on the pushes that arrive there and answers its commands.
* :class:`AdminUser` presses "Sync" on the controller's DEP token (204 or the 409/429 refusals are
  all correct answers), reassigns a few serials' DEP profile, and sends DeviceInformation to enrolled
  devices, which is what makes the devices' pushes arrive.

Preparation happens once, on the master (or the only process): a DEP profile assigned to every
serial, and a token onboarded in the controller for the admins' syncs.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from typing import Any

from locust import FastHttpUser, between, events, task  # first: gevent must patch before ssl loads
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import WorkerRunner
from requests import Response as RequestsResponse
from requests import Session

from simulator.device.agent import agent_round
from simulator.device.drivers import SocketPushStream
from simulator.device.push_stream import reachable_stream_url
from simulator.load.admin import GRAPH, LoadSetupError, WorldAdmin, device_from_bundle
from simulator.load.locust_driver import LocustDriver

log = logging.getLogger("mdmsim.locust")


class _RequestsClient:
    """``requests`` with the few httpx spellings :class:`WorldAdmin` uses.

    httpx cannot run here: Locust monkey-patches with gevent before this file is imported, and
    httpcore then imports trio, which needs the ``select.epoll`` gevent removed.
    """

    def __init__(self, timeout: float = 60.0) -> None:
        self.session = Session()
        self.timeout = timeout

    def request(self, method: str, url: str, *, content: Any = None, **kw: Any) -> RequestsResponse:
        return self.session.request(method, url, data=content, timeout=self.timeout, **kw)

    def get(self, url: str, **kw: Any) -> RequestsResponse:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> RequestsResponse:
        return self.request("POST", url, **kw)

    def put(self, url: str, **kw: Any) -> RequestsResponse:
        return self.request("PUT", url, **kw)

    def delete(self, url: str, **kw: Any) -> RequestsResponse:
        return self.request("DELETE", url, **kw)

    def close(self) -> None:
        self.session.close()


def _admin(host: str) -> WorldAdmin:
    return WorldAdmin(host, client=_RequestsClient())  # type: ignore[arg-type]
CLAIM_COUNTER = "locust-devices"
_local_index = itertools.count()
_serials_cache: list[str] = []


@events.test_start.add_listener
def prepare_world(environment: Environment, **_: Any) -> None:
    """Once per run, on the master (or the only process): assign a profile to every serial and
    onboard a controller token. Workers skip it; they find what they need over HTTP."""
    if isinstance(environment.runner, WorkerRunner) or not environment.host:
        return
    started = time.perf_counter()
    with _admin(environment.host) as admin:
        serials = admin.serials()
        admin.assign_profile(admin.define_profile(name="mdmsim locust"), serials)
        try:
            admin.onboard_controller("Locust")
        except LoadSetupError as exc:  # the admins then only assign and send commands
            log.warning("controller onboarding failed, admins will not sync: %s", exc)
    log.info("prepared %d serials in %.1fs", len(serials), time.perf_counter() - started)


def _claim_serial(user: FastHttpUser) -> str:
    """A serial no other user of this run (in any process) has: the world's counter, or else the
    runner's worker index and a per-process count over the portal's stable device order."""
    r = user.client.post(f"/_sim/counters/{CLAIM_COUNTER}", name="/_sim/counters/{name}")
    if r.status_code == 200:
        index = int(r.json()["value"])
    else:
        worker = getattr(user.environment.runner, "worker_index", 0) or 0
        index = worker * 100_000 + next(_local_index)
    if not _serials_cache:
        with _admin(user.host) as admin:
            _serials_cache.extend(admin.serials())
    if index >= len(_serials_cache):
        raise StopUser()  # every device of the world is already in use
    return _serials_cache[index]


_SCEP_KEYS: list[Any] = []
SCEP_KEY_POOL = 16


def _pooled_scep_key(bits: int) -> Any:
    """SCEP keys for device users: the first few users make one each, later ones share them (an RSA key
    takes ~60 ms, which would block every greenlet of this worker while it is made)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    if bits != 2048 or len(_SCEP_KEYS) < SCEP_KEY_POOL:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        if bits == 2048:
            _SCEP_KEYS.append(key)
        return key
    return random.choice(_SCEP_KEYS)


_world_info: dict[str, Any] = {}
#: How long one round of a device user waits on its stream for a push before the round ends.
PUSH_WAIT_S = 5.0


def _stream_url(user: FastHttpUser) -> str | None:
    """The world's device-stream listener (read once per process from ``/_sim/``), or None."""
    if not _world_info:
        r = user.client.get("/_sim/", name="/_sim/")
        _world_info.update(r.json() if r.status_code == 200 else {"urls": {}})
    url = (_world_info.get("urls") or {}).get("apns_stream")
    return reachable_stream_url(str(url), user.host or "") if url else None


class DeviceUser(FastHttpUser):
    """One simulated iPhone or iPad: enrolls once, then checks in whenever it is pushed.

    Pushes reach it as they reach an iPhone: on one connection it holds to the push gateway (a
    gevent socket read by the device's sans-I/O stream parser inside the round, so it needs no
    greenlet of its own; what arrives in between waits in the socket). Each round waits up to
    :data:`PUSH_WAIT_S` for a push; every tenth round connects to the MDM server anyway, as iOS
    eventually does. Against a world that advertises no stream listener the user polls APNs's
    events endpoint instead, as before streams existed.
    """

    weight = 20
    wait_time = between(0.2, 0.6)

    def on_start(self) -> None:
        serial = _claim_serial(self)
        r = self.client.get(f"/_sim/devices/{serial}/identity", name="/_sim/devices/{serial}/identity")
        if r.status_code != 200:
            raise StopUser()
        self.device = device_from_bundle(r.json())
        self.device.scep_key_source = _pooled_scep_key  # profiles that name a SCEP payload
        self.driver = LocustDriver(self.client)
        self.rounds = 0
        self.stream: SocketPushStream | None = None
        self.stream_url = _stream_url(self)
        started = time.perf_counter()
        phase = self.driver.run_until_home(self.device)
        ms = (time.perf_counter() - started) * 1000
        exception = None if self.device.enrolled else RuntimeError(
            f"{serial} not enrolled: stopped in {phase} on {self.device.pane}: "
            f"{[e for e in self.device.transcript if e[1] == 'error'][-1:]}")
        events.request.fire(request_type="DEVICE", name="enrollment", response_time=ms, response_length=0,
                            exception=exception, context={})
        if exception is not None:
            raise StopUser()
        self.device.forget_cached_keys()
        if self.stream_url is not None:
            self._open_stream()  # before any command is sent to it: the push will arrive here

    def on_stop(self) -> None:
        if getattr(self, "stream", None) is not None:
            self.stream.close()  # type: ignore[union-attr]
            self.stream = None

    def _open_stream(self) -> SocketPushStream | None:
        """Connect the device's stream; Locust shows how long the gateway took to hold it."""
        token = self.device.state.push_token
        if self.stream_url is None or token is None:
            return None
        stream = SocketPushStream(self.stream_url, token, timeout=15.0)
        started = time.perf_counter()
        ok = stream.open()
        events.request.fire(request_type="STREAM", name="/events (open)", response_time=(time.perf_counter() - started)
                            * 1000, response_length=0, exception=None if ok else RuntimeError(stream.error), context={})
        self.stream = stream if ok else None
        return self.stream

    def _wait_for_push(self, timeout: float) -> list[dict[str, Any]]:
        stream = self.stream if self.stream is not None and not self.stream.closed else self._open_stream()
        if stream is None:
            return []
        started = time.perf_counter()
        notes = stream.wait(timeout)
        if notes:
            events.request.fire(request_type="APNS", name="push", response_time=(time.perf_counter() - started) * 1000,
                                response_length=len(notes), exception=None, context={})
        return notes

    @task
    def check_in(self) -> None:
        """Wake on a push (or, every tenth round, poll as iOS eventually does) and answer commands."""
        self.rounds += 1
        poll = self.rounds % 10 == 0
        if self.stream_url is None:
            report = self.driver.run_agent(self.device, connect=poll)[0]
        else:
            notes = self._wait_for_push(0.0 if poll else PUSH_WAIT_S)
            if not notes and not poll:
                return
            report = self.driver.run(agent_round(self.device, self.driver.now, notifications=notes, connect=poll))
        for request_type, status in report.commands:
            events.request.fire(request_type="COMMAND", name=request_type, response_time=0, response_length=0,
                                exception=None if status in ("Acknowledged", "NotNow") else RuntimeError(status),
                                context={})
        self.device.forget_cached_keys()


class AdminUser(FastHttpUser):
    """An Intune admin: syncs the DEP token, reassigns profiles, sends DeviceInformation."""

    weight = 1
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.setting: str | None = None
        r = self.client.get(GRAPH, name="/intune/…/depOnboardingSettings")
        if r.status_code == 200:
            tokens = [t for t in r.json().get("value", []) if t.get("tokenType") == "dep"]
            self.setting = tokens[-1]["id"] if tokens else None
        with _admin(self.host) as admin:
            self.dep_headers = admin.dep_headers()
            self.profile = admin.define_profile(name="mdmsim locust admin")
            self.serials = _serials_cache or admin.serials()

    @task(2)
    def sync(self) -> None:
        if self.setting is None:
            return
        with self.client.post(f"{GRAPH}/{self.setting}/syncWithAppleDeviceEnrollmentProgram",
                              name="/intune/…/syncWithAppleDeviceEnrollmentProgram", catch_response=True) as r:
            if r.status_code == 204 or (r.status_code in (409, 429) and (r.headers or {}).get("Retry-After")):
                r.success()  # a refusal with Retry-After is the controller doing its job
            else:
                r.failure(f"HTTP {r.status_code}: {(r.text or '')[:200]}")

    @task(1)
    def reassign(self) -> None:
        """Assign this admin's profile to a few serials, as an admin moving devices between profiles."""
        chosen = random.sample(self.serials, min(5, len(self.serials)))
        self.client.request("PUT", "/apple/dep/profile/devices", name="/apple/dep/profile/devices",
                            headers=self.dep_headers, json={"profile_uuid": self.profile, "devices": chosen})

    @task(3)
    def device_information(self) -> None:
        r = self.client.get("/mdm/api/v1/devices", name="/mdm/api/v1/devices")
        if r.status_code != 200:
            return
        udids = [d["udid"] for d in r.json().get("devices", []) if d.get("enrolled")]
        if udids:
            self.client.post("/mdm/api/v1/commands", name="/mdm/api/v1/commands", json={
                "udids": random.sample(udids, min(50, len(udids))),
                "command": {"RequestType": "DeviceInformation", "Queries": ["UDID", "SerialNumber", "OSVersion"]}})
