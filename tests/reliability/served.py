"""``mdmsim serve`` as a real subprocess on a free port, for crash, concurrency and security tests.

The process gets its own session so ``kill -9`` reaches the gunicorn master and its workers at once
(a crash of the machine, not a polite shutdown). Readiness and state are polled with deadlines, never
slept for. Every helper here speaks HTTP only, as an admin or a device elsewhere would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from simulator.load.server import free_port

GRAPH = "/intune/deviceManagement/depOnboardingSettings"
ROOT = Path(__file__).resolve().parents[2]


def poll(check: Callable[[], Any], *, deadline_s: float, what: str, interval_s: float = 0.05) -> Any:
    """Call ``check`` until it returns something truthy; fail with ``what`` after the deadline."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        try:
            last = check()
        except httpx.HTTPError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {deadline_s} s waiting for {what} (last: {last!r})")


class Served:
    """One ``mdmsim serve`` process: ``start()``, ``url``, ``kill9()``, ``stop()``, ``output()``."""

    def __init__(self, data_dir: Path, *, devices: int = 20, workers: int = 2, host: str = "127.0.0.1",
                 extra: list[str] | None = None, seed: int = 3) -> None:
        self.data_dir = data_dir
        self.devices = devices
        self.workers = workers
        self.host = host
        self.extra = extra or []
        self.seed = seed
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.token: str | None = None
        self._log = data_dir.parent / f"{data_dir.name}-serve.log"
        self.scheme = "https" if "--tls" in self.extra else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self, deadline_s: float = 60.0) -> Served:
        self.port = self.port or free_port()  # a restart comes back on the same address, as a real one does
        args = [sys.executable, "-m", "simulator.cli", "serve", "--host", self.host, "--port", str(self.port),
                "--data-dir", str(self.data_dir), "--devices", str(self.devices), "--seed", str(self.seed),
                "--workers", str(self.workers), "--threads", "16", *self.extra]
        log = self._log.open("ab")
        env = {**os.environ, "COLUMNS": "400", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env=env)
        log.close()

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"mdmsim serve exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            with httpx.Client(verify=False, timeout=2.0) as client:
                return client.get(f"{self.url}/apple/activation/device-ca.pem").status_code == 200

        poll(ready, deadline_s=deadline_s, what="mdmsim serve to answer", interval_s=0.1)
        return self

    def client(self, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, timeout=60.0, headers=headers, verify=False, **kw)

    def kill9(self) -> None:
        """``kill -9`` of the whole process group: master and workers die mid-sentence."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._reap_workers()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._reap_workers()

    def _reap_workers(self) -> None:
        """Workers are in the same process group; make sure none outlives the test holding the port."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def output(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""


def onboard(http: httpx.Client) -> str:
    """An admin's first steps over HTTP: a token in the controller, its key at Apple, the .p7m back."""
    setting = http.post(GRAPH, json={"tokenName": "Contoso"}).raise_for_status().json()["id"]
    pem = http.post(f"{GRAPH}/{setting}/generateEncryptionPublicKey").raise_for_status().json()["value"]
    server = next(s for s in http.get("/apple/portal/api/servers").raise_for_status().json()
                  if s["server_name"] == "mdmsim")["server_uuid"]
    http.post(f"/apple/portal/api/servers/{server}/public-key", content=pem).raise_for_status()
    p7m = http.get(f"/apple/portal/api/servers/{server}/token.p7m").raise_for_status().text
    http.post(f"{GRAPH}/{setting}/uploadDepToken", json={"appleId": "admin@contoso.com", "depToken": p7m}).raise_for_status()
    return setting


def create_profile(http: httpx.Client, setting: str) -> str:
    reply = http.post(f"{GRAPH}/{setting}/enrollmentProfiles", json={
        "@odata.type": "#microsoft.graph.depIOSEnrollmentProfile", "displayName": "Corporate",
        "supervisedModeEnabled": True, "profileRemovalDisabled": True, "passCodeDisabled": True,
    })
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def setting_of(http: httpx.Client, setting: str) -> dict[str, Any]:
    return dict(http.get(f"{GRAPH}/{setting}").raise_for_status().json())


def wait_synced(http: httpx.Client, setting: str, deadline_s: float = 60.0) -> dict[str, Any]:
    return poll(lambda: (s := setting_of(http, setting))["syncStatus"] != "running" and s,
                deadline_s=deadline_s, what="the sync to end")
