"""The machine during a load run: CPU and memory, sampled by a background thread with psutil.

A load run on a 2-core machine measures the server and the load generator competing for the same
cores, so a report that shows devices per second without the CPU beside it cannot say which one ran
out. The sampler reads, every ``interval_s``: the system's CPU (all cores), this process's CPU and
RSS, and, when the run started the server itself, the CPU and RSS of every process in the server's
process group (``mdmsim serve`` and its gunicorn workers; a forked worker's shared pages count in
each, so the sum is an upper bound). Samples go into flat arrays; a reading costs ~0.2 ms of this
process's time, twice a second.
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
_MIN_GAP_S = 0.2


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
        self._cpu_times = psutil.cpu_times()
        self._server: dict[int, Any] = {}  # pid -> psutil.Process, kept so cpu_percent has a baseline
        self._lock = threading.Lock()  # samples come from the thread and from mark()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mdmsim-load-sampler", daemon=True)

    def watch_server(self, proc: subprocess.Popen[bytes]) -> None:
        """Measure the server this run started (its own session: process group id = its pid)."""
        self.server_pgid = proc.pid
        self.mark("server answering")

    def mark(self, label: str) -> None:
        """Note that the run moved on, with a sample of that moment (a short run has few others)."""
        at = time.perf_counter() - self.t0
        self.marks.append((at, label))
        # (not right after another sample: CPU over a few milliseconds is noise)
        if self._thread.is_alive() and (not self.at or at - self.at[-1] >= _MIN_GAP_S):
            self._sample()

    def start(self) -> MachineSampler:
        self._me.cpu_percent(None)  # the first reading of each counter sets its baseline
        self._cpu_times = self._psutil.cpu_times()
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
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            self._sample_now()

    def _sample_now(self) -> None:
        cores = self.cpu_count
        system = self._system_cpu()
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

    def _system_cpu(self) -> float:
        """Busy share of all cores since the last sample, whichever thread samples (psutil's own
        ``cpu_percent()`` keeps one baseline per calling thread)."""
        now, last = self._psutil.cpu_times(), self._cpu_times
        self._cpu_times = now

        def total(t: Any) -> float:  # guest time is already inside user time on Linux
            return sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)

        def idle(t: Any) -> float:
            return float(t.idle + getattr(t, "iowait", 0.0))

        elapsed = total(now) - total(last)
        if elapsed <= 0:
            return 0.0
        return max(0.0, min(100.0, 100.0 * (elapsed - (idle(now) - idle(last))) / elapsed))

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
        cpu = rss = 0.0
        for process in members.values():
            with contextlib.suppress(self._psutil.Error):
                cpu += process.cpu_percent(None)
                rss += process.memory_info().rss / _MB
        if not rss:  # none left, or only the zombies of a server that has stopped
            return float("nan"), float("nan")
        return cpu, rss
