"""Load runs start their own event loop, even where one is already running in the calling thread."""

from __future__ import annotations

import asyncio
import concurrent.futures

from simulator.load.drivers import run_coroutine


async def _answer() -> int:
    await asyncio.sleep(0)
    return 42


def test_run_coroutine_without_and_inside_a_running_loop() -> None:
    assert run_coroutine(_answer()) == 42

    async def inside() -> int:  # e.g. a test session holding Playwright's sync API open
        return run_coroutine(_answer())

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # a thread of our own: its loop is ours
        assert pool.submit(asyncio.run, inside()).result() == 42
