"""``--report report.html``: one self-contained HTML file with a load run's plots.

The file is for people who were not at the terminal: it opens offline, from a mail attachment or a
CI artifact, with nothing fetched and no script run. Plots are drawn by matplotlib as SVG and
inlined (text kept as text, so the page stays searchable and a test can read the axis titles); the
styles are inline; a Content-Security-Policy forbids every fetch. Why matplotlib and not plotly: the
README's "Load reports" says, with the file sizes.

What is drawn, on one time axis (seconds since the command started, :class:`MachineSampler` ``t0``):
throughput per second from the runners' flat counters (:class:`~simulator.load.stats.PerSecond`),
latency percentiles per phase, failures by reason, and the machine's CPU and memory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import io
import json
import os
import platform
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .sampler import MachineSampler
from .stats import Series

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .checkin import CheckinReport
    from .fleet import FleetReport
    from .storm import StormReport

__all__ = ["LoadRun", "checkin_run", "fleet_run", "render_html", "require_plotting", "storm_run", "write_report"]

COLORS = ["#2563eb", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#4b5563"]
PERCENTILE_COLORS = {"p50": "#93c5fd", "p95": "#3b82f6", "p99": "#1e3a8a"}
#: a throughput plot has about this many points, whatever the run's length
_POINTS = 50
#: marks closer than this share of the time axis are drawn as one (the last one's label)
_MARK_GAP = 0.03
#: series whose name says they count failures are drawn red, whatever their position
_FAILURE_COLOR = "#dc2626"


def require_plotting() -> str | None:
    """None when a report can be drawn; else what to install (asked before a run, not after it)."""
    missing = []
    for module in ("matplotlib", "psutil"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        return f"--report needs {' and '.join(missing)}: pip install 'mdmsim[load]'"
    return None


@dataclass
class LoadRun:
    """Everything a report shows, whichever command made it."""

    command: str
    title: str
    summary: dict[str, Any]
    throughput: list[Series]
    #: ``{phase: {"p50", "p95", "p99"}}`` in milliseconds
    phases_ms: dict[str, dict[str, float]]
    endpoints: dict[str, dict[str, Any]]
    #: ``{reason: count}``: devices that failed and requests without an answer or with a 5xx
    failures: dict[str, int]
    machine: MachineSampler
    notes: list[str] = field(default_factory=list)
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


def request_failures(endpoints: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """``{"HTTP 503 · POST /mdm/enroll": n, "no answer · …": n}`` from per-endpoint statuses."""
    out: dict[str, int] = {}
    for name, row in endpoints.items():
        for status, count in row.get("statuses", {}).items():
            code = int(status)
            if code == 0 or code >= 500:
                out[f"{'no answer' if code == 0 else f'HTTP {code}'} · {name}"] = count
    return out


def fleet_run(report: FleetReport, machine: MachineSampler, command: str) -> LoadRun:
    failures = {f"device: {why}": n for why, n in report.failure_reasons.items()}
    if report.streams_failed:
        failures["push stream not opened (the device polled instead)"] = report.streams_failed
    failures.update(request_failures(report.endpoints))
    return LoadRun(
        command=command, title=f"Fleet enrollment: {report.devices:,} devices",
        summary=report.headline(), throughput=report.throughput, phases_ms=report.phases_ms,
        endpoints=report.endpoints, failures=failures, machine=machine, notes=report.errors,
    )  # fmt: skip


def checkin_run(report: CheckinReport, machine: MachineSampler, command: str) -> LoadRun:
    phases: dict[str, dict[str, float]] = {}
    failures: dict[str, int] = {}
    throughput: list[Series] = []
    if report.enrollment is not None:  # the fleet enrolled before the window, on the same time axis
        enrollment = report.enrollment
        phases.update({f"enrollment: {name}": row for name, row in enrollment.phases_ms.items()})
        failures.update({f"enrollment: device: {why}": n for why, n in enrollment.failure_reasons.items()})
        failures.update({f"enrollment: {why}": n for why, n in request_failures(enrollment.endpoints).items()})
        throughput += [dataclasses.replace(s, name="enrollment requests") for s in enrollment.throughput
                       if (s.axis, s.name) == ("requests per second", "requests")]
    phases["agent round (check-in window)"] = report.round_ms
    failures.update(request_failures(report.endpoints))
    return LoadRun(
        command=command, title=f"Steady check-ins: {report.devices:,} devices for {report.seconds:g} s",
        summary=report.headline(), throughput=throughput + report.throughput, phases_ms=phases,
        endpoints=report.endpoints, failures=failures, machine=machine,
    )  # fmt: skip


def storm_run(report: StormReport, machine: MachineSampler, command: str) -> LoadRun:
    failures = {("no answer" if status == "0" else f"HTTP {status}"): n for status, n in report.other.items()}
    statuses: dict[str, int] = {"204": report.started}
    if report.refused:
        statuses["409/429"] = report.refused
    statuses.update(report.other)
    endpoint = {"POST …/syncWithAppleDeviceEnrollmentProgram": {
        "count": report.requests, "p50": report.p50_ms, "p95": report.p95_ms, "p99": report.p99_ms,
        "max": "", "statuses": statuses}}
    return LoadRun(
        command=command, title=f"Sync storm: {report.requests:,} concurrent sync requests",
        summary=report.headline(), throughput=report.throughput, phases_ms=report.outcomes_ms,
        endpoints=endpoint, failures=failures, machine=machine, notes=report.problems,
    )  # fmt: skip


# --- plots -----------------------------------------------------------------------------------------


def _figure(height: float, rows: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, height), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax in axes:
        ax.grid(True, color="#e5e7eb", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, list(axes)


def _svg(fig: Figure, name: str) -> str:
    """The figure as an ``<svg>`` element for inlining: text as text, ids unique to this figure."""
    import matplotlib

    buffer = io.StringIO()
    # hashsalt: ids (clip paths) are hashes of content; two figures of one page must not share one
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"mdmsim-{name}",
                                "font.family": "sans-serif"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _marks(ax: Axes, marks: Sequence[tuple[float, str]], span: float, label: bool) -> None:
    """Dotted lines where the run moved on; of marks crowded together only the last is drawn."""
    kept: list[tuple[float, str]] = []
    for at, text in marks:
        if kept and at - kept[-1][0] < _MARK_GAP * max(span, 1.0):
            kept[-1] = (at, text)
        else:
            kept.append((at, text))
    for at, text in kept:
        ax.axvline(at, color="#9ca3af", linestyle=":", linewidth=1)
        if label:
            ax.annotate(textwrap.shorten(text, 32, placeholder="…"), (at, 1), xycoords=("data", "axes fraction"),
                        xytext=(3, -3), textcoords="offset points", va="top", fontsize=7, color="#6b7280",
                        rotation=90)


def _legend(ax: Axes) -> None:
    """A one-row legend above the plot, where it hides no line."""
    handles = ax.get_legend_handles_labels()[0]
    if handles:
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=min(len(handles), 4), fontsize=8,
                  frameon=False, borderaxespad=0.2)


def _color(name: str, k: int) -> str:
    return _FAILURE_COLOR if "fail" in name else COLORS[k % len(COLORS)]


def bin_width(span_s: float, slot_s: float) -> float:
    """The bin of a throughput plot: a whole number of slots, a round width, about ``_POINTS`` bins."""
    for width in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if width >= slot_s - 1e-9 and span_s / width <= _POINTS:
            return float(width)
    return 600.0


def rates(series: Series, width: float, t0: float) -> tuple[list[float], list[float]]:
    """``(x, events per second)``: each bin's middle in seconds since ``t0``, and its rate."""
    per_bin = max(1, round(width / series.slot_s))
    offset = series.t0 - t0
    xs: list[float] = []
    ys: list[float] = []
    for start in range(0, len(series.counts), per_bin):
        xs.append(offset + (start + per_bin / 2) * series.slot_s)
        ys.append(sum(series.counts[start : start + per_bin]) / (per_bin * series.slot_s))
    return xs, ys


def throughput_svg(run: LoadRun) -> str:
    axes_names = list(dict.fromkeys(s.axis for s in run.throughput))
    fig, axes = _figure(2.2 + 1.6 * len(axes_names), len(axes_names))
    t0 = run.machine.t0
    span = _end(run)
    for ax, axis in zip(axes, axes_names, strict=True):
        mine = [s for s in run.throughput if s.axis == axis]
        width = bin_width(span, max((s.slot_s for s in mine), default=1.0))
        for k, series in enumerate(mine):
            if not any(series.counts):
                continue  # nothing of it happened (no failures, say): the legend stays short
            xs, ys = rates(series, width, t0)
            ax.plot(xs, ys, label=series.name, color=_color(series.name, k), linewidth=1.6,
                    marker="o" if len(xs) < 15 else None, markersize=3)
        ax.set_ylabel(axis)
        ax.set_ylim(bottom=0)
        _marks(ax, run.machine.marks, span, ax is axes[0])
        _legend(ax)
    axes[-1].set_xlabel("seconds since start")
    axes[-1].set_xlim(0, max(span, 1.0))
    return _svg(fig, "throughput")


def _end(run: LoadRun) -> float:
    machine = run.machine
    ends = [machine.at[-1]] if machine.at else []
    ends += [s.t0 - machine.t0 + len(s.counts) * s.slot_s for s in run.throughput]
    return max(ends, default=0.0)


def phases_svg(run: LoadRun) -> str:
    names = [name for name, row in run.phases_ms.items() if any(row.values())]  # not those no device reached
    fig, (ax,) = _figure(1.2 + 0.55 * len(names))
    points = ("p50", "p95", "p99")
    height = 0.8 / len(points)
    for k, point in enumerate(points):
        ys = [i + (k - 1) * height for i in range(len(names))]
        values = [run.phases_ms[name].get(point, 0.0) for name in names]
        bars = ax.barh(ys, values, height=height, label=point, color=PERCENTILE_COLORS[point])
        ax.bar_label(bars, labels=[f"{v:,.0f}" if v >= 10 else f"{v:g}" for v in values], padding=3, fontsize=7)
    ax.set_yticks(range(len(names)), [textwrap.fill(n, 36) for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("latency (ms)")
    ax.margins(x=0.12)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return _svg(fig, "phases")


def failures_svg(run: LoadRun) -> str:
    reasons = sorted(run.failures.items(), key=lambda item: -item[1])
    fig, (ax,) = _figure(1.2 + 0.4 * len(reasons))
    labels = [textwrap.shorten(reason, 90, placeholder="…") for reason, _ in reasons]
    bars = ax.barh(range(len(reasons)), [n for _, n in reasons], color=_FAILURE_COLOR, height=0.6)
    ax.bar_label(bars, padding=3, fontsize=8)
    ax.set_yticks(range(len(reasons)), [textwrap.fill(label, 60) for label in labels], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("failures")
    ax.margins(x=0.1)
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _svg(fig, "failures")


def machine_svg(run: LoadRun) -> str:
    m = run.machine
    fig, (cpu, memory) = _figure(4.8, 2)
    at = list(m.at)
    style = {"linewidth": 1.6, "marker": "o" if len(at) < 30 else None, "markersize": 3}
    cpu.plot(at, list(m.system_cpu), label="whole machine", color=COLORS[6], **style)
    cpu.plot(at, list(m.load_cpu), label="load generator (this process)", color=COLORS[0], **style)
    memory.plot(at, list(m.load_rss_mb), label="load generator (this process)", color=COLORS[0], **style)
    if m.watched_server:
        cpu.plot(at, list(m.server_cpu), label="mdmsim serve (its process group)", color=COLORS[1], **style)
        memory.plot(at, list(m.server_rss_mb), label="mdmsim serve (its process group)", color=COLORS[1],
                    **style)
    cpu.set_ylabel(f"CPU (% of {m.cpu_count} cores)")
    cpu.set_ylim(0, 105)
    memory.set_ylabel("memory (RSS, MB)")
    memory.set_ylim(bottom=0)
    memory.set_xlabel("seconds since start")
    memory.set_xlim(0, max(_end(run), 1.0))
    for ax in (cpu, memory):
        _marks(ax, m.marks, _end(run), ax is cpu)
        _legend(ax)
    return _svg(fig, "machine")


# --- the page --------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111827;background:#f3f4f6;margin:0}
main{max-width:1040px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 10px}
.sub{color:#6b7280;margin:0 0 18px}code{font:12px ui-monospace,Menlo,Consolas,monospace}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:16px 18px;margin:0 0 16px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin:0 0 16px}
.tile{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:10px 12px}
.tile b{display:block;font-size:20px}.tile span{color:#6b7280;font-size:12px}
.tile.bad b{color:#dc2626}
figure{margin:0}figure svg{width:100%;height:auto;display:block}
table{border-collapse:collapse;width:100%;font-size:12px;margin-top:10px}
th,td{text-align:right;padding:4px 8px;border-bottom:1px solid #e5e7eb}
th:first-child,td:first-child{text-align:left}th{color:#374151;background:#f9fafb}
.ok{color:#16a34a;font-weight:600}.note{color:#6b7280;font-size:12px}
pre{background:#f9fafb;padding:10px;overflow:auto;font-size:12px}
"""

#: what a report may load: nothing (inline styles and inline SVG need no fetch)
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_TILES = [  # (headline key, label, failure when > 0)
    ("devices", "devices", False), ("acknowledged", "acknowledged", False), ("failed", "failed", True),
    ("devices_per_s", "devices / s", False), ("requests_per_s", "requests / s", False),
    ("elapsed_s", "elapsed (s)", False), ("peak_rss_mb", "peak RSS of the load process (MB)", False),
    ("kb_per_idle_device", "KB per idle device", False), ("rounds", "check-in rounds", False),
    ("commands_answered", "commands answered", False), ("floor_ratio", "of the bare endpoint's rate", False),
    ("failures", "failed requests", True), ("requests", "requests", False), ("started", "syncs started", False),
    ("refused", "refused", False), ("p95_ms", "p95 (ms)", False), ("apple_session_calls", "Apple sessions", False),
]  # fmt: skip


def _tiles(summary: Mapping[str, Any]) -> str:
    out = []
    for key, label, bad_when_positive in _TILES:
        value = summary.get(key)
        if value is None or isinstance(value, dict | list):
            continue
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        bad = " bad" if bad_when_positive and value else ""
        out.append(f'<div class="tile{bad}"><b>{html.escape(shown)}</b><span>{html.escape(label)}</span></div>')
    return f'<div class="tiles">{"".join(out)}</div>'


def _endpoints_table(endpoints: Mapping[str, Mapping[str, Any]]) -> str:
    if not endpoints:
        return ""
    rows = []
    for name, row in endpoints.items():
        statuses = " ".join(f"{k}:{v}" for k, v in row.get("statuses", {}).items())
        cells = [row.get("count", ""), row.get("p50", ""), row.get("p95", ""), row.get("p99", ""), row.get("max", "")]
        rows.append(f"<tr><td><code>{html.escape(name)}</code></td>"
                    + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
                    + f"<td>{html.escape(statuses)}</td></tr>")
    return ("<table><thead><tr><th>endpoint</th><th>count</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th>"
            f"<th>max ms</th><th>statuses</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _failures_table(failures: Mapping[str, int]) -> str:
    rows = "".join(f"<tr><td>{html.escape(reason)}</td><td>{n:,}</td></tr>"
                   for reason, n in sorted(failures.items(), key=lambda item: -item[1]))
    return f"<table><thead><tr><th>reason</th><th>count</th></tr></thead><tbody>{rows}</tbody></table>"


def _figure_html(svg: str, label: str) -> str:
    return f'<figure role="img" aria-label="{html.escape(label)}">{svg}</figure>'


def render_html(run: LoadRun) -> str:
    """The report as one HTML document (no external resource, no script)."""
    m = run.machine
    server_note = ("the server's figures are its whole process group (mdmsim serve and its workers)"
                   if m.watched_server else "the server ran elsewhere (--target): only this process is measured")
    reached = any(any(row.values()) for row in run.phases_ms.values())
    phases = (_figure_html(phases_svg(run), "latency percentiles per phase") if reached
              else '<p class="note">No device finished a phase.</p>')
    if run.failures:
        failures = _figure_html(failures_svg(run), "failures by reason") + _failures_table(run.failures)
    elif run.notes:
        failures = '<p>No device or request failed, but the run found problems:</p>'
    else:
        failures = '<p class="ok">No failures: every device and every request got through.</p>'
    notes = "".join(f"<li><code>{html.escape(n)}</code></li>" for n in run.notes)
    notes_html = f'<p class="note">What went wrong, first cases:</p><ul>{notes}</ul>' if notes else ""
    host = (f"{platform.node()} · {m.cpu_count} cores · {m.memory_total_mb / 1024:.1f} GB · "
            f"Python {platform.python_version()}")
    started = run.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(run.title)} · mdmsim load report</title>
<style>{_CSS}</style></head>
<body><main>
<h1>{html.escape(run.title)}</h1>
<p class="sub"><code>{html.escape(run.command)}</code><br>{html.escape(started)} · {html.escape(host)}</p>
{_tiles(run.summary)}
<section id="throughput"><h2>Throughput over time</h2>
{_figure_html(throughput_svg(run), "throughput over time")}
<p class="note">Completions per second of the run, counted as they happened; the last second is partial.
Dotted lines: where the run moved on.</p></section>
<section id="latency"><h2>Latency percentiles per phase</h2>
{phases}
{_endpoints_table(run.endpoints)}</section>
<section id="failures"><h2>Failures by reason</h2>
{failures}{notes_html}</section>
<section id="machine"><h2>CPU and memory of the machine</h2>
{_figure_html(machine_svg(run), "CPU and memory over the run")}
<p class="note">Sampled every {m.interval_s:g} s with psutil; {html.escape(server_note)}. RSS of forked
workers counts their shared pages in each.</p></section>
<section id="data"><details><summary>The run's JSON line</summary>
<pre>{html.escape(json.dumps(run.summary, indent=1))}</pre></details></section>
</main></body></html>
"""


def write_report(path: str | os.PathLike[str], run: LoadRun) -> int:
    """Write the report to ``path``; its size in bytes."""
    data = render_html(run).encode()
    Path(path).write_bytes(data)
    return len(data)
