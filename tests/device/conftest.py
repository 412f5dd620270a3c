"""Fixtures of the device tests; the stack itself lives in ``device_stack`` (a uniquely named module,
so a whole-suite run never confuses it with another folder's ``conftest``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from device_stack import Stack, build_stack


@pytest.fixture
def stack() -> Iterator[Stack]:
    s = build_stack()
    yield s
    s.mdm.close()
    s.http.close()
