"""Start ``mdmsim serve`` in a subprocess for a load run, and stop it afterwards.

A subprocess (not a thread) so the server has its own interpreter and GIL: the load generator and
the server compete for cores as two real programs would, and ``--workers`` can fork.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

__all__ = ["FLEET_SERVER_THREADS", "free_port", "mdmsim_serve", "served_world"]

#: Server threads (the WSGI server's) for a fleet run. The fleet never holds a WSGI thread waiting:
#: its devices hold their push streams on the push gateway's own listener, an event loop beside the
#: WSGI server that holds thousands of idle connections on one thread, and every request they make
#: to the WSGI server is answered at once. So four threads keep the in-memory server busy, and fewer
#: threads hand the GIL and the stores' locks around less: 3,000 devices back to back, 4 threads
#: against 16, ran at 91.5 against 82.9 and 112.6 against 106.4 devices/s (measured when devices
#: still polled APNs with ``wait=0``). ``mdmsim serve`` keeps 16 by default for clients that long-poll
#: the WSGI server (``GET /apple/apns/events?wait=N``).
FLEET_SERVER_THREADS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def served_world(
    *,
    devices: int,
    seed: int | None = 1,
    data_dir: str | Path | None = None,
    workers: int | None = None,
    threads: int = 16,
    timeout_s: float = 300.0,
    extra: tuple[str, ...] = (),
    identity: str = "pkcs12",
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> Iterator[str]:
    """Yield the base URL of a fresh ``mdmsim serve`` (in memory, or ``data_dir`` with ``workers``).

    Load runs serve PKCS#12 identities unless told otherwise: a SCEP enrollment makes every simulated
    device generate an RSA key, which a fleet of thousands cannot afford inside the timed run (a key
    pool made beforehand is the way, not built yet).

    ``data_dir="tmp"`` makes a temporary directory that goes away with the server. ``on_start`` is
    :func:`mdmsim_serve`'s (a report's sampler measures the server's process group through it).
    """
    with contextlib.ExitStack() as stack:
        if data_dir == "tmp":
            data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mdmsim-load-"))
        args = ["--devices", str(devices), "--threads", str(threads), "--identity", identity, *extra]
        if seed is not None:
            args += ["--seed", str(seed)]
        if data_dir is not None:
            args += ["--data-dir", str(data_dir), "--workers", str(workers or 2)]
        yield stack.enter_context(mdmsim_serve(*args, timeout_s=timeout_s, on_start=on_start))


@contextlib.contextmanager
def mdmsim_serve(*args: str, timeout_s: float = 300.0,
                 on_start: Callable[[subprocess.Popen[bytes]], None] | None = None) -> Iterator[str]:  # fmt: skip
    """Yield the base URL of ``mdmsim serve <args>`` on a free port; stopped (workers too) afterwards.

    The one way benchmarks and load runs start a server, so all of them measure the same stack.
    ``on_start`` receives the server's process (its group holds the workers) once it answers.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "simulator.cli", "serve", "--port", str(port), *args]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"mdmsim serve exited: {log.read().decode(errors='replace')[-2000:]}")
                try:
                    if httpx.get(f"{url}/_sim/clock", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("mdmsim serve did not start in time")
                time.sleep(0.05)
            if on_start is not None:
                on_start(proc)
            yield url
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (gunicorn's workers too), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
