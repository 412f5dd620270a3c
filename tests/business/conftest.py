"""Fixtures for the Business API tests (the helpers are :mod:`business_support`'s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from axm_client import AxMClient
from business_support import client_for, make_world

from simulator.world import World


@pytest.fixture
def world() -> Iterator[World]:
    with make_world() as w:
        yield w


@pytest.fixture
def client(world: World) -> AxMClient:
    return client_for(world)

