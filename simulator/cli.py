"""The ``mdmsim`` command."""

from __future__ import annotations

import gc
import json
import os
import secrets
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.panel import Panel

console = Console(stderr=True)


def _port(value: int) -> int:
    if not 0 <= value <= 65535:
        raise click.BadParameter("a port is a number from 0 to 65535")
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mdmsim")
def main() -> None:
    """mdmsim: Apple Automated Device Enrollment, end to end, on your machine."""


def _identity_options(command: Any) -> Any:
    """``--identity``, ``--scep-url``, ``--scep-challenge``, ``--identity-ca``: how enrolling devices get
    their identity (shared by ``serve`` and ``demo``)."""
    options = [
        click.option("--identity", "identity", type=click.Choice(["scep", "pkcs12", "acme"]), default="scep", show_default=True,
                     help="How enrollment profiles give devices their identity: SCEP (as production MDM servers do), "
                          "a PKCS#12 inside the profile, or ACME with an attested Secure Enclave key (iOS 16+)."),
        click.option("--scep-url", help="Send devices to this SCEP server instead of our /mdm/scep (needs --scep-challenge)."),
        click.option("--scep-challenge", help="The challenge password of the SCEP server given with --scep-url."),
        click.option("--identity-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="PEM CA certificate(s) of the --scep-url server: the MDM server accepts identities they issued."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _identity_settings(identity: str, scep_url: str | None, scep_challenge: str | None,
                       identity_ca: Path | None) -> dict[str, Any]:
    """World keyword arguments for the identity options, or a usage error that says what to fix."""
    if (scep_url is None) != (scep_challenge is None):
        raise click.UsageError("--scep-url and --scep-challenge go together")
    if scep_url is not None and identity != "scep":
        raise click.UsageError("--scep-url needs --identity scep")
    if identity_ca is not None and scep_url is None:
        raise click.UsageError("--identity-ca names the CA of the SCEP server given with --scep-url")
    if scep_url is not None and not scep_url.startswith(("http://", "https://")):
        raise click.BadParameter("the SCEP URL must start with http:// or https://", param_hint="--scep-url")
    cas: list[Any] = []
    if identity_ca is not None:
        from cryptography import x509

        try:
            cas = x509.load_pem_x509_certificates(identity_ca.read_bytes())
        except ValueError:
            raise click.BadParameter(f"{identity_ca} holds no PEM certificate", param_hint="--identity-ca") from None
    return {"identity": identity, "scep_url": scep_url, "scep_challenge": scep_challenge, "identity_ca": cas}


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8080, show_default=True, type=int, callback=lambda c, p, v: _port(v))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the world in SQLite files here; a restart finds the same world.")
@click.option("--devices", default=100, show_default=True, type=click.IntRange(0, 1_000_000),
              help="Devices assigned to the MDM server 'mdmsim' in a new world.")
@click.option("--seed", type=int, help="Make identities, serials and keys reproducible.")
@click.option("--depsim-compat", is_flag=True,
              help="Serve the DEP API at / too, with depsim's well-known credentials and GET /token.")
@click.option("--depsim-config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A depsim config.json: device insertions/deletions and scripted failure queues.")
@click.option("--workers", type=click.IntRange(1, 64),
              help="Worker processes (data-dir worlds only; default: one per core).")
@click.option("--threads", default=16, show_default=True, type=click.IntRange(1, 512))
@click.option("--sync-rules", type=click.Choice(["2016", "current"]), default="2016", show_default=True,
              help="The controller's sync limits: the seed document's (2016) or today's documentation.")
@click.option("--tls", is_flag=True,
              help="Serve HTTPS with a certificate from the world's TLS CA (or --tls-cert/--tls-key); "
                   "profiles then carry the CA as anchor_certs.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path),
              help="PEM certificate (chain) to serve with --tls; devices trust its last certificate.")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), help="PEM private key of --tls-cert.")
@click.option("--apns-port", type=int, callback=lambda c, p, v: None if v is None else _port(v),
              help="Also serve Apple's HTTP/2 provider API (POST /3/device/<token>, push certificate as TLS "
                   "client certificate) on this port, as api.push.apple.com does (0: any free port).")
@click.option("--dep-port", type=int, callback=lambda c, p, v: None if v is None else _port(v),
              help="Also serve Apple's DEP web service alone at the root of this port (/session, /account, …), "
                   "as mdmenrollment.apple.com does, for clients that keep only a base URL's host.")
@click.option("--apns-stream-port", default=0, show_default=True, type=int, callback=lambda c, p, v: _port(v),
              help="Port of the device-stream listener devices hold open to wake on a push (0: any free port).")
@click.option("--wake-devices/--no-wake-devices", default=True, show_default=True,
              help="The world's powered-on devices wake on their push and answer their MDM server by themselves.")
@click.option("--redis", "redis_url", metavar="URL",
              help="Fan pushes out through this Redis server (redis://host:6379/0) to every APNs process on every host.")
@_identity_options
def serve(host: str, port: int, data_dir: Path | None, devices: int, seed: int | None, depsim_compat: bool,
          depsim_config: Path | None, workers: int | None, threads: int, sync_rules: str, tls: bool,
          tls_cert: Path | None, tls_key: Path | None, apns_port: int | None, dep_port: int | None,
          apns_stream_port: int,
          wake_devices: bool, redis_url: str | None, identity: str, scep_url: str | None, scep_challenge: str | None,
          identity_ca: Path | None) -> None:
    """Serve every party of a world on one port (gunicorn, gthread workers), and the push gateway beside it."""
    from .serving import (
        GatewaySockets,
        PortDispatch,
        WorldApplication,
        advertise_gateway,
        default_workers,
        gunicorn_options,
        start_gateway,
        world_channel_id,
    )
    from .wake import PushWaker
    from .world import World

    _raise_open_files_limit()
    given_pem = _given_tls_pair(tls, tls_cert, tls_key)
    identity_settings = _identity_settings(identity, scep_url, scep_challenge, identity_ca)
    config = _read_depsim_config(depsim_config) if depsim_config else None
    if data_dir is None and workers not in (None, 1):
        raise click.UsageError("an in-memory world lives in one process: use --data-dir for several --workers")
    if data_dir is not None:
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # its stores hold private keys
            probe = data_dir / ".mdmsim-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise click.BadParameter(f"cannot keep a world in {data_dir}: {exc.strerror}", param_hint="--data-dir") from None
    with console.status(f"building the world ({devices} devices)…"):
        try:
            world = World(devices=devices, seed=seed, data_dir=data_dir, depsim_compat=depsim_compat,
                          sync_rules=sync_rules, synchronous_push=False, **identity_settings)
        except sqlite3.DatabaseError as exc:
            raise click.BadParameter(f"{data_dir} holds files that are not mdmsim databases ({exc})",
                                     param_hint="--data-dir") from None
        if config is not None:
            try:
                world.apply_depsim_config(config)
            except ValueError as exc:
                world.close()
                raise click.BadParameter(f"{depsim_config}: {exc}", param_hint="--depsim-config") from None
    public = f"{'https' if tls else 'http'}://{'[' + host + ']' if ':' in host else host}:{port}"
    world.control.set_setting("public_url", public)
    if redis_url:
        _check_redis(redis_url)
        world_channel_id(world)  # chosen once, before the fork: every worker publishes on one channel
    try:
        gateway_sockets = GatewaySockets(host, device_port=apns_stream_port, apns_port=apns_port, per_process=True)
    except OSError as exc:
        world.close()
        raise click.ClickException(f"cannot listen for the push gateway: {exc.strerror} "
                                   "(is --apns-port or --apns-stream-port already in use?)") from None
    advertise_gateway(world, gateway_sockets)
    tls_files = _tls_files(world, host, data_dir, tls_cert, tls_key, given_pem) if tls else None
    token = None
    if not _is_loopback(host):
        token = secrets.token_urlsafe(24)
        world.control.set_setting("api_token", token)
    else:
        world.control.set_setting("api_token", "")
    _print_banner(world, public)
    if tls:
        console.print(f"HTTPS: devices and clients trust the CA at [bold]curl -k {public}/_sim/tls-ca.pem[/bold]"
                      " (profiles defined by the controller carry it as anchor_certs)")
    if token:
        console.print(f"[yellow]Bound beyond {DEFAULT_HOSTS[0]}:[/yellow] /_sim/, /mdm/api/ and /intune/ need "
                      f"[bold]Authorization: Bearer {token}[/bold]"
                      f" (dashboard: open {public}/intune/?api_token={token} once)")
    worlds: list[Any] = []  # this process's world, once gunicorn's worker has it
    running: list[Any] = []  # this worker's gateway thread and device waker, stopped when it exits

    def gateway_in_worker(_worker: Any) -> None:
        # Threads do not survive a fork: each worker starts its own gateway on the shared sockets.
        # A world in a data directory may be served by other processes (workers, another mdmsim serve):
        # without Redis, the gateway looks in the store for the pushes they accepted.
        running.append(start_gateway(worlds[0], gateway_sockets, redis_url=redis_url,
                                     watch_store=data_dir is not None and not redis_url))  # fmt: skip
        if wake_devices:
            waker = PushWaker(worlds[0])
            worlds[0].apns.add_listener(waker)
            running.append(waker)

    def gateway_at_exit(_server: Any, _worker: Any) -> None:
        # GOAWAY Shutdown to providers, the last chunk to device streams, executors and pools closed.
        for each in reversed(running):
            if isinstance(each, PushWaker):
                worlds[0].apns.remove_listener(each)
                each.close()
            else:
                each.stop()

    def wsgi_of(served_world: Any) -> Any:
        if dep_port is None:
            return served_world.wsgi
        return PortDispatch(served_world.wsgi, {dep_port: served_world.party_wsgi("dep")})

    dep_root = f"{'https' if tls else 'http'}://{_url_host(host)}:{dep_port}" if dep_port is not None else ""
    world.control.set_setting("dep_root_url", dep_root)  # a data directory keeps settings: say it each start
    if data_dir is None:
        options = gunicorn_options(host, port, workers=1, threads=threads, preload=True)
        worlds.append(world)
        world.build_party_apps()
        # Everything built so far (the world, every party's routes) lives as long as the server: out
        # of the collector's way, a full collection no longer walks it again and again under load.
        gc.collect()
        gc.freeze()
        options["post_worker_init"] = gateway_in_worker
        options["worker_exit"] = gateway_at_exit
        app = WorldApplication(lambda: wsgi_of(world), options)
    else:
        world.close()  # each worker opens the data directory itself, after the fork
        options = gunicorn_options(host, port, workers=workers or default_workers(), threads=threads, preload=False)
        options["post_worker_init"] = gateway_in_worker
        options["worker_exit"] = gateway_at_exit

        def load() -> Any:
            worlds.append(World(data_dir=data_dir, seed=seed, depsim_compat=depsim_compat, sync_rules=sync_rules,
                                synchronous_push=False, **identity_settings).build_party_apps())
            return wsgi_of(worlds[-1])

        app = WorldApplication(load, options)
    if dep_port is not None:
        app.cfg.set("bind", [options["bind"], f"{_url_host(host)}:{dep_port}"])
    if tls_files is not None:  # gunicorn read its options when the application was made
        app.cfg.set("certfile", str(tls_files[0]))
        app.cfg.set("keyfile", str(tls_files[1]))
    master = os.getpid()  # workers leave app.run() through SystemExit too: only the master cleans up
    try:
        app.run()
    except SystemExit as exc:  # gunicorn exits through SystemExit; a bind error is a user error
        if exc.code not in (0, None):
            raise click.ClickException(f"the server stopped (is port {port} already in use?)") from None
    finally:
        if tls_files is not None and data_dir is None and given_pem is None and os.getpid() == master:
            import shutil

            shutil.rmtree(tls_files[0].parent, ignore_errors=True)  # the private temporary key directory


@main.command()
@click.option("--devices", default=25, show_default=True, type=click.IntRange(1, 1000))
@click.option("--seed", type=int, help="Make identities, serials and keys reproducible.")
@click.option("--user-affinity/--no-user-affinity", default=False, show_default=True,
              help="Devices authenticate a user of the identity provider during Setup Assistant.")
@click.option("--keep-serving", is_flag=True, help="Leave the server and dashboard running afterwards.")
@click.option("--json", "as_json", is_flag=True, help="End with one line of JSON describing the outcome.")
@click.option("--port", default=0, type=int, callback=lambda c, p, v: _port(v), help="Port (default: any free one).")
@_identity_options
def demo(devices: int, seed: int | None, user_affinity: bool, keep_serving: bool, as_json: bool, port: int,
         identity: str, scep_url: str | None, scep_challenge: str | None, identity_ca: Path | None) -> None:
    """Tell the whole story: Apple, the controller, a profile, a sync, devices from box to enrolled."""
    from .demo import Demo, DemoError
    from .world import World

    identity_settings = _identity_settings(identity, scep_url, scep_challenge, identity_ca)
    out = Console(quiet=False)
    with World(devices=0, seed=seed, push_certificate=False, **identity_settings) as world, \
            world.serve(port=port) as served:
        out.print(Panel.fit(f"[bold]mdmsim demo[/bold]: {devices} devices, from box to enrolled\n"
                            f"every party is served at {served.url}", border_style="blue"), )
        story = Demo(world, served.url, out, user_affinity=user_affinity, quiet=False)
        try:
            result = story.run(devices)
        except DemoError as exc:
            raise click.ClickException(str(exc)) from None
        out.print(f"\n[bold green]{result.enrolled} of {devices} devices enrolled[/bold green] "
                  f"in {result.elapsed_s:.1f} s")
        if as_json:
            click.echo(result.to_json())
        if keep_serving:
            out.print(f"Dashboard: [bold]{served.url}/intune/[/bold]   Portal: [bold]{served.url}/apple/portal/[/bold]")
            out.print("Serving until Ctrl-C…")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        if result.failures:
            raise SystemExit(1)


DEFAULT_HOSTS = ("127.0.0.1", "::1", "localhost")


def _given_tls_pair(tls: bool, cert: Path | None, key: Path | None) -> bytes | None:
    """Check ``--tls-cert``/``--tls-key`` before building a world: both or neither, loadable, a pair."""
    from .tls import TLSError, load_pair

    if (cert is None) != (key is None):
        raise click.UsageError("--tls-cert and --tls-key go together: give both, or neither for a generated certificate")
    if cert is None or key is None:
        return None
    if not tls:
        raise click.UsageError("--tls-cert/--tls-key need --tls")
    try:
        return load_pair(cert, key)
    except TLSError as exc:
        raise click.BadParameter(str(exc), param_hint="--tls-cert/--tls-key") from None


def _tls_files(world: object, host: str, data_dir: Path | None, cert: Path | None, key: Path | None,
               given_pem: bytes | None) -> tuple[Path, Path]:
    """The certificate and key files gunicorn serves: the given pair, or one issued by the world's
    TLS CA for ``host`` (written 0600 into the data dir, or a private temporary directory)."""
    from .tls import issue_server_pair, tls_now, top_certificate_pem, write_pair

    if given_pem is not None and cert is not None and key is not None:
        world.control.set_setting("tls_anchor_pem", top_certificate_pem(given_pem).decode())  # type: ignore[attr-defined]
        return cert, key
    world.control.set_setting("tls_anchor_pem", "")  # type: ignore[attr-defined]
    cert_pem, key_pem = issue_server_pair(world.tls_ca, host, tls_now())  # type: ignore[attr-defined]
    return write_pair(cert_pem, key_pem, data_dir / "tls" if data_dir is not None else None)


def _is_loopback(host: str) -> bool:
    """Only the default loopback addresses go without the API token.

    Any other address, even another loopback one such as 127.0.0.2, gets the token: "bound where I
    did not mean it" is the mistake the token guards against, and it lets tests exercise the token
    path without leaving the machine.
    """
    return host in DEFAULT_HOSTS


def _print_banner(world: object, public: str) -> None:
    from rich.table import Table

    info = world.info()  # type: ignore[attr-defined]
    table = Table(title="mdmsim is serving", show_header=True)
    table.add_column("party")
    table.add_column("URL")
    for party, url in info["urls"].items():
        if url:
            table.add_row(party, url)
    if info.get("depsim_compat"):
        table.add_row("depsim", f"{public}/ (GET /token for credentials)")
    console.print(table)
    console.print(f"DEP credentials (OAuth token keys): [bold]curl {info['credentials']}[/bold]")
    console.print(f"World clock: {info['now']}  ·  move it with POST {public}/_sim/clock  ·  Ctrl-C stops")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _raise_open_files_limit() -> None:
    """Each device stream is an open socket: let the server hold as many as the hard limit allows."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _check_redis(url: str) -> None:
    """Fail before serving when ``--redis`` names a server that cannot be reached."""
    try:
        import redis
    except ImportError:
        raise click.ClickException("--redis needs the redis package: pip install 'redis>=5'") from None
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except ValueError as exc:
        raise click.BadParameter(f"{url}: {exc}", param_hint="--redis") from None
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis at {url}: {exc} (start it with: redis-server)") from None


def _read_depsim_config(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.BadParameter(f"{path}: not a readable JSON file ({exc})", param_hint="--depsim-config") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected a JSON object", param_hint="--depsim-config")
    return data


def _register_groups() -> None:
    from .device.cli import device
    from .load.cli import load

    main.add_command(device)
    main.add_command(load)


_register_groups()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
