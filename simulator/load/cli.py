"""``mdmsim load``: fleet enrollment, sync storms, steady check-ins and Locust, from the shell.

Without ``--target`` each command starts its own ``mdmsim serve`` in a subprocess (in memory, or
``--data-dir`` with ``--workers``) and stops it afterwards; the last line printed is JSON.
``--report report.html`` also writes the run's plots (:mod:`simulator.load.report`).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from .report import LoadRun
    from .sampler import MachineSampler

console = Console(stderr=True)


@contextlib.contextmanager
def _world(target: str | None, devices: int, data_dir: str | None, workers: int | None,
           seed: int | None, threads: int = 16, identity: str = "pkcs12",
           machine: MachineSampler | None = None) -> Iterator[str]:
    if target:
        yield target.rstrip("/")
        return
    from .server import served_world

    with console.status(f"starting mdmsim serve ({devices} devices)…"):
        cm = served_world(devices=devices, seed=seed, data_dir=data_dir, workers=workers, threads=threads,
                          identity=identity, on_start=machine.watch_server if machine else None)
        url = cm.__enter__()
    try:
        yield url
    finally:
        cm.__exit__(None, None, None)


def _server_options(f: Any) -> Any:
    f = click.option("--report", "report_path", type=click.Path(dir_okay=False, writable=True),
                     help="Also write an HTML report here: throughput over time, latency per phase, failures "
                          "by reason, CPU and memory (one file, opens offline; needs the 'load' extra).")(f)
    f = click.option("--target", help="A served world's base URL; default: start mdmsim serve here.")(f)
    f = click.option("--data-dir", help="Serve the world from SQLite files here ('tmp': a temporary "
                     "directory); enables --workers.")(f)
    f = click.option("--workers", type=click.IntRange(1, 64), help="gunicorn workers (with --data-dir).")(f)
    f = click.option("--seed", type=int, default=1, show_default=True)(f)
    return f


def _print_endpoints(endpoints: dict[str, dict[str, Any]]) -> None:
    table = Table(title="latency per endpoint (ms)")
    for column in ("endpoint", "count", "p50", "p95", "p99", "max", "statuses"):
        table.add_column(column)
    for name, row in endpoints.items():
        table.add_row(name, str(row["count"]), str(row["p50"]), str(row["p95"]), str(row["p99"]),
                      str(row["max"]), " ".join(f"{k}:{v}" for k, v in row["statuses"].items()))
    console.print(table)


def _start_machine(report_path: str | None) -> MachineSampler | None:
    """The sampler for ``--report`` (started now, so the server's start is on the plots), or None.

    A missing plotting library is said before the run, not after minutes of load."""
    if report_path is None:
        return None
    from .report import require_plotting

    if (missing := require_plotting()) is not None:
        raise click.UsageError(missing)
    from .sampler import MachineSampler

    return MachineSampler().start()


def _mark(machine: MachineSampler | None, then: Callable[[str], None] | None = None) -> Callable[[str], None]:
    """An ``on_phase`` callback: the report marks the moment, ``then`` sees the text too."""
    def on_phase(text: str) -> None:
        if machine is not None:
            machine.mark(text)
        if then is not None:
            then(text)
    return on_phase


def _write_report(report_path: str | None, machine: MachineSampler | None,
                  make: Callable[[MachineSampler, str], LoadRun]) -> None:
    if report_path is None or machine is None:
        return
    from .report import write_report

    machine.stop()
    ctx = click.get_current_context()
    settings = " ".join(f"{k.replace('_', '-')}={v}" for k, v in ctx.params.items()
                        if v not in (None, False) and k != "report_path")
    started = time.perf_counter()
    with console.status("drawing the report…"):
        size = write_report(report_path, make(machine, f"mdmsim load {ctx.info_name} · {settings}"))
    console.print(f"report: {report_path} ({size / 1024:,.0f} KB, drawn in {time.perf_counter() - started:.1f} s)")


@click.group("load")
def load() -> None:
    """Fleet-scale load: enrollment of thousands of devices, sync storms, check-ins, Locust."""


@load.command("fleet")
@click.option("--devices", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--concurrency", default=64, show_default=True, type=click.IntRange(1, 10_000),
              help="Devices in flight at once.")
@click.option("--wake", type=click.Choice(["push", "poll"]), default="push", show_default=True,
              help="How a device learns of its first command: the push on the stream it holds to the world's "
                   "push gateway (urls.apns_stream in /_sim/; a world without one: its APNs events), or polling "
                   "/mdm/connect.")
@click.option("--no-prepare", is_flag=True, help="Do not define and assign a DEP profile (already done).")
@click.option("--mdm-url", help="ConfigurationURL for the DEP profile (default: the world's /mdm/enroll).")
@click.option("--identity", type=click.Choice(["pkcs12", "scep", "acme"]), default="pkcs12", show_default=True,
              help="How the served world's profiles give identities; scep makes a key pool before the run; acme "
                   "(iOS 16+: attested Secure Enclave keys) too, for the devices before iOS 16 that get SCEP.")
@click.option("--scep-key-pool", default=256, show_default=True, type=click.IntRange(1, 100_000),
              help="RSA keys made before the run and shared by the devices (with --identity scep, or a "
                   "--target whose profiles use SCEP).")
@_server_options
def fleet_command(devices: int, concurrency: int, wake: str, no_prepare: bool, mdm_url: str | None,
                  identity: str, scep_key_pool: int, report_path: str | None,
                  target: str | None, data_dir: str | None, workers: int | None, seed: int | None) -> None:
    """Power on N devices at once: activation, enrollment, first DeviceInformation acknowledged."""
    from .fleet import FleetOptions, run_fleet
    from .server import FLEET_SERVER_THREADS

    machine = _start_machine(report_path)
    options = FleetOptions(devices=devices, concurrency=concurrency, wake=wake,  # type: ignore[arg-type]
                           prepare=not no_prepare, mdm_url=mdm_url,
                           scep_key_pool=scep_key_pool if identity in ("scep", "acme") or target else 0)
    with _world(target, devices, data_dir, workers, seed, FLEET_SERVER_THREADS, identity, machine) as url, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(), console=console,
    ) as progress:  # fmt: skip
        task = progress.add_task("preparing", total=devices, detail="")

        def update(enrolled: int, acknowledged: int, failed: int) -> None:
            progress.update(task, completed=acknowledged + failed,
                            detail=f"enrolled {enrolled} · acknowledged {acknowledged} · failed {failed}")

        report = run_fleet(url, options, on_update=update,
                           on_phase=_mark(machine, lambda text: progress.update(task, description=text)))
        _mark(machine)("run over")
    phases = Table(title="phases (ms)")
    for column in ("phase", "p50", "p95", "p99"):
        phases.add_column(column)
    for name, row in report.phases_ms.items():
        phases.add_row(name, str(row["p50"]), str(row["p95"]), str(row["p99"]))
    console.print(phases)
    _print_endpoints(report.endpoints)
    for error in report.errors:
        console.print(f"[red]{error}[/red]")
    from .report import fleet_run

    _write_report(report_path, machine, lambda m, command: fleet_run(report, m, command))
    click.echo(json.dumps(report.headline()))
    if report.failed:
        sys.exit(1)


@load.command("storm")
@click.option("--requests", "count", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--concurrency", default=32, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--devices", default=1000, show_default=True, type=click.IntRange(0, 1_000_000),
              help="Devices in the world the sync fetches (when starting a server).")
@click.option("--apple-latency-ms", default=2000, show_default=True, type=click.IntRange(0, 60_000),
              help="Latency added to Apple's device fetch so the one sync is still running while the storm lands.")
@click.option("--setting", help="An onboarded depOnboardingSetting id (default: onboard a new token).")
@_server_options
def storm_command(count: int, concurrency: int, devices: int, apple_latency_ms: int, setting: str | None,
                  report_path: str | None,
                  target: str | None, data_dir: str | None, workers: int | None, seed: int | None) -> None:
    """K concurrent sync requests to the controller: exactly one may start."""
    from .storm import run_storm

    machine = _start_machine(report_path)
    with _world(target, devices, data_dir, workers, seed, machine=machine) as url:
        report = run_storm(url, requests=count, concurrency=concurrency, apple_latency_ms=apple_latency_ms,
                           setting=setting, on_phase=_mark(machine))
        _mark(machine)("run over")
    for problem in report.problems:
        console.print(f"[red]{problem}[/red]")
    from .report import storm_run

    _write_report(report_path, machine, lambda m, command: storm_run(report, m, command))
    click.echo(json.dumps(report.headline()))
    if report.problems:
        sys.exit(1)


@load.command("checkin")
@click.option("--devices", default=200, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--seconds", default=10.0, show_default=True, type=click.FloatRange(0.5, 3600))
@click.option("--concurrency", default=32, show_default=True, type=click.IntRange(1, 10_000))
@_server_options
def checkin_command(devices: int, seconds: float, concurrency: int, report_path: str | None, target: str | None,
                    data_dir: str | None, workers: int | None, seed: int | None) -> None:
    """Enrolled devices idle-polling and answering pushed commands, against a bare-endpoint floor."""
    from .checkin import run_checkins

    machine = _start_machine(report_path)
    with _world(target, devices, data_dir, workers, seed, machine=machine) as url:
        report = run_checkins(url, devices=devices, seconds=seconds, concurrency=concurrency,
                              on_phase=_mark(machine))
        _mark(machine)("run over")
    _print_endpoints(report.endpoints)
    from .report import checkin_run

    _write_report(report_path, machine, lambda m, command: checkin_run(report, m, command))
    click.echo(json.dumps(report.headline()))


@load.command("locust", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("locust_args", nargs=-1, type=click.UNPROCESSED)
def locust_command(locust_args: tuple[str, ...]) -> None:
    """Run Locust with mdmsim's device and admin users (every Locust option passes through)."""
    from .locustfile_path import LOCUSTFILE as locustfile
    sys.exit(subprocess.call([sys.executable, "-m", "locust", "-f", str(locustfile), *locust_args]))
