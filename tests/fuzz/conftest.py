"""One fuzzed world for the whole folder (building it and enrolling a device takes about two seconds)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from fuzz_world import Known, build_world

from simulator import World


@pytest.fixture(scope="session")
def fuzz_world() -> Iterator[tuple[World, Known]]:
    world, known = build_world()
    try:
        yield world, known
    finally:
        world.close()


@pytest.fixture(scope="session")
def fuzz_tally() -> Counter[str]:
    """Requests sent and responses by status class, across every fuzz test of the session."""
    return Counter()
