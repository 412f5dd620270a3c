"""``mdmsim device``: power a simulated device on against a running ``mdmsim serve``, list devices.

``power-on`` asks the server for the device's identity (the world owns identities and Apple's device
CA), then runs the device in *this* process over real HTTP, printing each Setup Assistant pane as it
appears. The identity endpoint it reads, ``GET {server}/_sim/devices/<serial>/identity``, answers::

    {"identity": {<DeviceIdentity fields>},
     "device_key_pem": "-----BEGIN PRIVATE KEY-----…",
     "device_certificate_pem": "-----BEGIN CERTIFICATE-----…",
     "apple_url": "http://127.0.0.1:8080/apple",          # optional, default {server}/apple
     "apple_ca_pem": "-----BEGIN CERTIFICATE-----…"}      # only when the world serves HTTPS

With ``--listen SECONDS`` the device then holds its push stream (the world's ``urls.apns_stream``,
read from ``GET {server}/_sim/``) and answers each push that arrives on it, as an iPhone on a desk
does: send it commands from your MDM and watch them answered.

Against ``mdmsim serve --tls`` pass ``--ca-file`` (the server's ``/_sim/tls-ca.pem``): it is the
device's *system store*, the simulation's stand-in for Apple's roots, used for Apple's services and
the simulation control. The MDM server the device trusts only by its profile's anchor certificates.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import click
import httpx
from rich.console import Console
from rich.table import Table

from mdm.platform.clock import Clock
from mdm.platform.storage import Store

from .agent import agent_round
from .drivers import HTTPDriver, SocketPushStream, served_world_clock
from .identity import DeviceIdentity
from .machine import Device, DeviceScript, Request, Response
from .push_stream import reachable_stream_url
from .store import DeviceFleetService, DeviceStore, open_device_store

console = Console()
DEFAULT_SERVER = "http://127.0.0.1:8080"
STYLES = {"shown": "green", "skipped": "dim", "error": "bold red", "released": "cyan", "info": "blue"}


def fetch_device(client: httpx.Client, server: str, serial: str, script: DeviceScript) -> Device:
    """Build the device from the server's identity endpoint (shape in the module docstring)."""
    try:
        r = client.get(f"{server}/_sim/devices/{serial}/identity", timeout=15)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {server} ({exc}); is `mdmsim serve` running there?") from None
    if r.status_code != 200:
        raise click.ClickException(
            f"{server} does not know device {serial} (HTTP {r.status_code}: {r.text[:200]})"
        )
    data = r.json()
    try:
        identity = DeviceIdentity(**data["identity"])
        return Device.create(
            identity,
            device_key=data["device_key_pem"],
            device_cert=data["device_certificate_pem"],
            apple_url=data.get("apple_url") or f"{server}/apple",
            script=script,
        )
    except (KeyError, TypeError) as exc:
        raise click.ClickException(f"unexpected identity document from {server}: {exc}") from None


@click.group("device")
def device() -> None:
    """Simulated iPhones and iPads."""


@device.command("power-on")
@click.argument("serial")
@click.option("--server", default=DEFAULT_SERVER, show_default=True, help="A running `mdmsim serve`.")
@click.option("--username", help="Typed at the Authentication pane when the MDM asks for a user.")
@click.option("--password")
@click.option("--apple-id", type=click.Choice(["sign_in", "later"]), default="sign_in", show_default=True)
@click.option(
    "--apple-id-prompt", type=click.Choice(["sign_in", "cancel"]), default="sign_in", show_default=True
)
@click.option("--language", default="en", show_default=True)
@click.option("--region", default="US", show_default=True)
@click.option(
    "--agent-rounds",
    default=0,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="MDM agent wake-ups after Setup Assistant (answers queued commands).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the device's state in devices.db here (see `device list --data-dir`).",
)
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM CA the device's system store trusts (an `mdmsim serve --tls`'s /_sim/tls-ca.pem).")
@click.option("--listen", default=0.0, show_default=True, type=click.FloatRange(0, 7 * 86_400),
              help="Seconds to hold the device's push stream afterwards, answering every push.")
@click.option("--pushes", type=click.IntRange(1), help="With --listen: stop once this many pushes were answered.")
def power_on(
    serial: str,
    server: str,
    username: str | None,
    password: str | None,
    apple_id: str,
    apple_id_prompt: str,
    language: str,
    region: str,
    agent_rounds: int,
    data_dir: Path | None,
    ca_file: Path | None = None,
    listen: float = 0.0,
    pushes: int | None = None,
) -> None:
    """Walk one device through Setup Assistant, pane by pane."""
    server = server.rstrip("/")
    script = DeviceScript(
        username=username,
        password=password,
        apple_id=apple_id,  # type: ignore[arg-type]
        apple_id_prompt=apple_id_prompt,
        language=language,
        region=region,
    )  # type: ignore[arg-type]
    verify: ssl.SSLContext | bool = True
    if ca_file is not None:
        try:
            verify = ssl.create_default_context(cafile=str(ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise click.BadParameter(f"{ca_file}: not a PEM certificate ({exc})", param_hint="--ca-file") from None
    with httpx.Client(verify=verify) as client:
        dev = fetch_device(client, server, serial, script)
        shown = [0]

        def print_new(_: Request, __: Response) -> None:
            for pane, outcome, at, detail in dev.transcript[shown[0] :]:
                console.print(f"[{STYLES.get(outcome, 'white')}]{at}  {pane:<24} {outcome:<9}[/] {detail}")
            shown[0] = len(dev.transcript)

        driver = HTTPDriver(client, now=served_world_clock(client, server), observer=print_new)
        console.print(
            f"[bold]{dev.identity.model_name}[/bold] {serial} ({dev.identity.os} {dev.identity.os_version})"
        )
        phase = driver.run_until_home(dev)
        if agent_rounds:
            driver.run_agent(dev, agent_rounds)
        print_new(Request("GET", ""), Response(0))
        if listen and dev.enrolled:
            listen_for_pushes(client, server, driver, dev, listen, pushes)
            print_new(Request("GET", ""), Response(0))
        console.print(f"stopped: [bold]{phase}[/bold] on pane [bold]{dev.pane}[/bold]")
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            fleet = DeviceFleetService(open_device_store(data_dir / "devices.db"), Clock(Store(None, [])),
                                       apple_url=dev.state.apple_url)  # fmt: skip
            fleet.save(dev)
        if phase == "setup":
            raise SystemExit(1)


def push_stream_url(client: httpx.Client, server: str) -> str | None:
    """Where the world's devices hold their push streams (``urls.apns_stream`` of ``/_sim/``)."""
    try:
        r = client.get(f"{server}/_sim/", timeout=15)
        url = r.json().get("urls", {}).get("apns_stream") if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return reachable_stream_url(str(url), server) if url else None


def listen_for_pushes(client: httpx.Client, server: str, driver: HTTPDriver, dev: Device, seconds: float,
                      pushes: int | None) -> int:  # fmt: skip
    """Hold the device's push stream for ``seconds`` and answer each push; the pushes answered."""
    url = push_stream_url(client, server)
    token = dev.state.push_token
    if url is None or token is None:
        console.print(f"[yellow]{server} advertises no push stream (urls.apns_stream): not listening[/yellow]")
        return 0
    deadline = time.monotonic() + seconds
    answered = 0
    stream: SocketPushStream | None = None
    try:
        while (left := deadline - time.monotonic()) > 0 and (pushes is None or answered < pushes):
            if stream is None or stream.closed:
                if stream is not None:  # the gateway went away: say so, then connect again
                    console.print(f"[yellow]{stream.error}; reconnecting[/yellow]")
                    time.sleep(min(1.0, left))
                stream = SocketPushStream(url, token, timeout=min(15.0, max(left, 0.1)))
                if not stream.open():
                    continue
                console.print(f"holding the push stream at {url} for {left:.0f} s")
            notes = stream.wait(deadline - time.monotonic())
            if not notes:
                continue
            report = driver.run(agent_round(dev, driver.now, notifications=notes, connect=False))
            if not report.pushed:
                continue
            answered += 1
            done = ", ".join(f"{kind} {status}" for kind, status in report.commands) or "nothing queued"
            console.print(f"[cyan]push[/cyan] → connected: {done}")
    finally:
        if stream is not None:
            stream.close()
    return answered


@device.command("list")
@click.option("--server", default=DEFAULT_SERVER, show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Read a local device store instead of asking the server.",
)
def list_devices(server: str, data_dir: Path | None) -> None:
    """Devices and where they are in Setup Assistant."""
    if data_dir is not None:
        rows = DeviceStore(open_device_store(data_dir / "devices.db")).summaries()
    else:
        try:
            r = httpx.get(f"{server.rstrip('/')}/_sim/devices", timeout=15)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach {server}: {exc}") from None
        if r.status_code != 200:
            raise click.ClickException(f"{server}/_sim/devices answered HTTP {r.status_code}")
        body = r.json()
        rows = body.get("devices", body) if isinstance(body, dict) else body
    table = Table(title=f"{len(rows)} devices")
    for column in ("serial", "phase", "pane", "enrolled", "last"):
        table.add_column(column)
    for row in rows:
        last = row.get("last_entry") or []
        table.add_row(row.get("serial_number", ""), row.get("phase", ""), row.get("pane", ""),
                      "yes" if row.get("enrolled") else "no", " ".join(str(x) for x in last[:2]))  # fmt: skip
    console.print(table)
