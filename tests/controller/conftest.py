"""Fixtures for the controller tests; the stack itself lives in controller_stack.py (a unique name)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from controller_stack import BASE, Stack, build_stack  # noqa: F401


@pytest.fixture
def stack() -> Iterator[Stack]:
    s = build_stack()
    yield s
    if s.tap.gate is not None:
        s.tap.gate.set()
    s.controller.join()
    s.api.close()
    s.http.close()


@pytest.fixture
def onboarded(stack: Stack) -> tuple[Stack, str]:
    return stack, stack.onboard()
