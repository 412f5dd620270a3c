"""Fixtures of the push certificate tests; the stack lives in ``pushcert_stack`` (a unique name).

The device is the one ``tests/mdm_server/mdm_world.py`` wrote from Apple's documentation, so that
directory goes on ``sys.path`` before ``pushcert_stack`` imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mdm_server"))

from pushcert_stack import Stack, build_stack  # noqa: E402


@pytest.fixture
def stack() -> Iterator[Stack]:
    s = build_stack()
    yield s
    s.close()
