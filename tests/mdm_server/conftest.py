"""Fixtures of the MDM server's tests; the world and the documented device live in ``mdm_world``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Response
from mdm_world import Device, World, build_world, enqueue


@pytest.fixture
def world() -> Iterator[World]:
    w = build_world()
    yield w
    w.mdm.close()
    w.http.close()


@pytest.fixture
def client(world: World) -> Any:
    from werkzeug.test import Client

    return Client(world.wsgi, Response)


@pytest.fixture
def make_device(world: World, client: Any) -> Any:
    counter = [0]

    def make(udid: str | None = None, *, enrolled: bool = True) -> Device:
        counter[0] += 1
        udid = udid or f"00008110-{counter[0]:016X}"
        cert, key = world.mdm.issue_identity(udid)
        device = Device(client, udid, cert, key)
        if enrolled:
            device.enroll(world.mdm.topic)
        return device

    return make


@pytest.fixture
def api_enqueue(client: Any) -> Any:
    return lambda udids, command, **extra: enqueue(client, udids, command, **extra)
