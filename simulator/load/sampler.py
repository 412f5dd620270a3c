"""The machine during a load run: CPU and memory, sampled by a background thread with psutil.

A load run on a 2-core machine measures the server and the load generator competing for the same
cores, so a report that shows devices per second without the CPU beside it cannot say which one ran
out. The sampler reads, every ``interval_s``: the system's CPU (all cores), this process's CPU and
RSS, and, when the run started the server itself, the CPU and RSS of every process in the server's
process group (``mdmsim serve`` and its gunicorn workers; a forked worker's shared pages count in
each, so the sum is an upper bound). Samples go into flat arrays; a reading costs about a
millisecond of this process's time, twice a second.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from array import array
from typing import Any

__all__ = ["MachineSampler"]

_MB = 1_048_576


class MachineSampler:
    """Samples CPU and memory from :meth:`start` to :meth:`stop`; ``t0`` is the run's time zero.

    Every plot of a report counts seconds from ``t0`` (a ``time.perf_counter()`` reading), so the
    runners' per-second counts and these samples line up. ``marks`` are the moments the run moved
    on (``"powering on"``), drawn as lines across the plots.
    """

    def __init__(self, interval_s: float = 0.5) -> None:
        import psutil  # only a run with --report needs it

        self._psutil = psutil
        self.interval_s = interval_s
        self.t0 = time.perf_counter()
        self.cpu_count = psutil.cpu_count() or 1
        self.memory_total_mb = psutil.virtual_memory().total / _MB
        self.at = array("d")  # seconds since t0
        self.system_cpu = array("f")  # percent of all cores
        self.load_cpu = array("f")  # this process, percent of all cores
        self.load_rss_mb = array("f")
        self.server_cpu = array("f")  # the server's process group, percent of all cores (NaN: none)
        self.server_rss_mb = array("f")
        self.server_pgid: int | None = None
        self.marks: list[tuple[float, str]] = []
        self._me = psutil.Process()
        self._server: dict[int, Any] = {}  # pid -> psutil.Process, kept so cpu_percent has a baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mdmsim-load-sampler", daemon=True)

    def watch_server(self, proc: subprocess.Popen[bytes]) -> None:
        """Measure the server this run started (its own session: process group id = its pid)."""
        self.server_pgid = proc.pid
        self.mark("server answering")

    def mark(self, label: str) -> None:
        self.marks.append((time.perf_counter() - self.t0, label))

    def start(self) -> MachineSampler:
        self._me.cpu_percent(None)  # the first reading of each counter sets its baseline
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (a last sample first, so short runs still have their end)."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self._sample()

    def __enter__(self) -> MachineSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def watched_server(self) -> bool:
        return self.server_pgid is not None

    def _run(self) -> None:
        # psutil keeps the system's baseline per thread: this thread's own, taken here
        self._psutil.cpu_percent(None)
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        cores = self.cpu_count
        system = self._psutil.cpu_percent(None)
        load_cpu = load_rss = 0.0
        with contextlib.suppress(self._psutil.Error):
            load_cpu = self._me.cpu_percent(None) / cores
            load_rss = self._me.memory_info().rss / _MB
        nan = float("nan")  # no server process (not started yet, or stopped): a gap, not a zero
        server_cpu, server_rss = self._server_usage() if self.server_pgid is not None else (nan, nan)
        self.at.append(time.perf_counter() - self.t0)
        self.system_cpu.append(system)
        self.load_cpu.append(load_cpu)
        self.load_rss_mb.append(load_rss)
        self.server_cpu.append(server_cpu / cores)
        self.server_rss_mb.append(server_rss)

    def _server_usage(self) -> tuple[float, float]:
        """CPU percent (of one core) and RSS in MB summed over the server's process group now."""
        members: dict[int, Any] = {}
        for pid in self._psutil.pids():
            try:
                if os.getpgid(pid) != self.server_pgid:
                    continue
            except OSError:
                continue  # gone since the listing
            process = self._server.get(pid)
            if process is None:
                with contextlib.suppress(self._psutil.Error):
                    process = self._psutil.Process(pid)
                    process.cpu_percent(None)  # baseline: it counts from the next sample on
            if process is not None:
                members[pid] = process
        self._server = members
        if not members:
            return float("nan"), float("nan")
        cpu = rss = 0.0
        for process in members.values():
            with contextlib.suppress(self._psutil.Error):
                cpu += process.cpu_percent(None)
                rss += process.memory_info().rss / _MB
        return cpu, rss
