"""The fleet runner against a served world: every device enrolls and answers DeviceInformation."""

from __future__ import annotations

import time

from simulator import World
from simulator.device.machine import Device
from simulator.load.drivers import AsyncHTTPDriver, run_coroutine
from simulator.load.fleet import FleetOptions, device_from_bundle, run_fleet
from simulator.load.server import free_port
from simulator.load.stats import LatencyStats, endpoint_name, percentiles
from simulator.load.transport import LoadClient


def test_a_fleet_enrolls_and_acknowledges_device_information() -> None:
    with World(devices=50, seed=21) as world, world.serve() as served:
        report = run_fleet(served.url, FleetOptions(devices=50, concurrency=16, scep_key_pool=8))
        assert (report.enrolled, report.acknowledged, report.failed) == (50, 50, 0), report.errors
        assert report.push_missed == 0  # every device woke on its APNs push, none fell back to polling
        for phase in ("activation", "enrollment", "first_command"):
            assert report.phases_ms[phase]["p50"] > 0
            assert report.phases_ms[phase]["p50"] <= report.phases_ms[phase]["p99"]
        enroll = report.endpoints["POST /mdm/enroll"]
        assert enroll["count"] == 50 and enroll["statuses"] == {"200": 50}
        assert {"p50", "p95", "p99"} <= enroll.keys()
        assert report.endpoints["PUT /mdm/checkin"]["count"] == 100  # Authenticate + TokenUpdate
        scep = {name: row for name, row in report.endpoints.items() if "/mdm/scep" in name}
        assert sum(row["count"] for row in scep.values()) == 150, scep  # GetCACert, GetCACaps, PKIOperation each
        # the server agrees: the command was acknowledged by the device it was sent to
        serial = world.serials[7]
        udid = world.identity(serial).udid
        assert world.http.get(f"/mdm/api/v1/devices/{udid}").json()["enrolled"] is True
        assert report.kb_per_idle_device > 0


def test_every_device_holds_its_stream_and_wakes_on_the_push_it_brings() -> None:
    with World(devices=20, seed=23) as world, world.serve() as served:
        gateway = served.gateway
        assert gateway is not None
        held: list[int] = []
        gateway.on_delivery = lambda _note: held.append(len(gateway.device_streams))
        report = run_fleet(served.url, FleetOptions(devices=20, concurrency=8))
        assert (report.acknowledged, report.failed) == (20, 0), report.errors
        assert report.push_missed == 0 and report.streams_failed == 0  # each woke on its push, over its stream
        assert report.streams_open == 20  # and held it until the run ended
        assert gateway.delivered_count == 20
        # devices keep their streams after their push: the last push found all twenty open
        assert len(held) == 20 and max(held) == 20
        # nobody asked APNs for pushes, and nobody polled the MDM server for commands
        assert not [name for name in report.endpoints if "/apple/apns" in name], report.endpoints
        assert report.endpoints["PUT /mdm/connect"]["count"] == 20 * 2  # Idle, then the answer
        deadline = time.monotonic() + 10
        while gateway.device_streams and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not gateway.device_streams  # every stream was closed at the end of the run


def test_an_unreachable_server_becomes_a_transcript_entry_not_an_exception() -> None:
    with World(devices=1, seed=3) as world:
        bundle = world.devices.identity_bundle(world.serials[0])
        assert bundle is not None
        bundle["apple_url"] = f"http://127.0.0.1:{free_port()}/apple"  # nobody listens there
        device: Device = device_from_bundle(bundle)

        async def power_on() -> str:
            client = LoadClient()
            try:
                return await AsyncHTTPDriver(client, stats=LatencyStats()).run_until_home(device)
            finally:
                await client.aclose()

        assert run_coroutine(power_on()) == "setup"  # asyncio.run fails after the browser tests' loop
        assert device.transcript[-1][:2] == ("Activation", "error")
        assert "cannot connect" in device.transcript[-1][3]


def test_statistics_aggregate_by_endpoint() -> None:
    assert endpoint_name("put", "http://h:1/mdm/connect?x=1") == "PUT /mdm/connect"
    assert endpoint_name("GET", "http://h/_sim/devices/F17Y6TR3BTT9/identity") == "GET /_sim/devices/{id}/identity"
    assert percentiles(range(1, 101)) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
