"""Fixtures of the push gateway's listener tests: served worlds with two vendors (``apns_h2_clients``).

Stopping a served world takes half a second (werkzeug's server polls for shutdown twice a second), so
tests that only push to tokens of their own share one world per module; a test that moves the clock,
revokes a certificate or stops the server gets a world of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from apns_h2_clients import PushWorld, push_world


@pytest.fixture(scope="module")
def apns() -> Iterator[PushWorld]:
    """One world for the module: each test makes its own device tokens and connections."""
    with push_world() as world:
        yield world


@pytest.fixture
def own_apns() -> Iterator[PushWorld]:
    """A world for one test: its clock, certificates and server are the test's to change."""
    with push_world() as world:
        yield world
