"""pytest fixtures for users' test suites (registered through the ``pytest11`` entry point).

Two lines give a test Apple, an MDM server, a controller and devices::

    def test_my_dep_client(mdmsim_server):
        client = MyDEPClient(mdmsim_server.dep_url, **mdmsim_server.dep_credentials)

The Business API's account is there too (``mdmsim_server.business_credentials``: client ID, key ID,
private key, token and API URLs). ``@pytest.mark.mdmsim(devices=N, seed=S)`` sizes the world. When a test using a world fails, the
world's most recent requests are added to the report, which is usually where the bug shows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_WORLD_KEY = pytest.StashKey["Any"]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mdmsim(devices=100, seed=None, **options): configure the mdmsim world")


def _world_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("mdmsim")
    options: dict[str, Any] = {"devices": 100, "seed": None}
    if marker is not None:
        if marker.args:
            raise pytest.UsageError("use keywords: @pytest.mark.mdmsim(devices=10, seed=1)")
        options.update(marker.kwargs)
    return options


@pytest.fixture
def mdmsim_world(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh in-process world (no sockets); every test gets its own."""
    from simulator.world import World

    with World(**_world_options(request)) as world:
        request.node.stash[_WORLD_KEY] = world
        yield world


@pytest.fixture
def mdmsim_server(mdmsim_world: Any) -> Iterator[Any]:
    """The same world served on 127.0.0.1 (a free port): ``.url``, ``.world`` and the world's attributes."""
    with mdmsim_world.serve() as served:
        yield served


def fixtures_dir() -> Path | None:
    """Where mdmsim's sample files are: ``$MDMSIM_FIXTURES``, else the ``fixtures/`` of the checkout
    this package runs from (an editable install or a clone on ``sys.path``); ``None`` when neither.

    The files are test data, not part of the installed package, so a wheel does not carry them.
    """
    configured = os.environ.get("MDMSIM_FIXTURES")
    if configured:
        return Path(configured)
    beside = Path(__file__).resolve().parents[1] / "fixtures"
    return beside if (beside / "README.md").is_file() else None


@pytest.fixture(scope="session")
def mdmsim_fixtures() -> Path:
    """mdmsim's ``fixtures/`` folder: DEP JSON Schemas, sample device messages, depsim configs, portal CSVs."""
    found = fixtures_dir()
    if found is None or not found.is_dir():
        pytest.fail(
            "mdmsim's fixtures/ folder was not found: install mdmsim from a clone (pip install -e PATH) "
            "or set MDMSIM_FIXTURES to the fixtures/ folder of a clone",
            pytrace=False,
        )
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    world = item.stash.get(_WORLD_KEY, None)
    if world is not None and report.failed and call.when == "call":
        try:
            recent = world.recent_traffic()[-40:]
        except Exception:  # the world may already be closed; the report must not fail because of it
            recent = []
        if recent:
            lines = [json.dumps(entry) for entry in recent]
            report.sections.append(("mdmsim: recent traffic (oldest first)", "\n".join(lines)))
    return report
