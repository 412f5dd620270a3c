"""The command line answers a user's mistakes with what to fix, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.cli import main


@pytest.mark.parametrize("args, message", [
    (["serve", "--port", "70000"], "a port is a number from 0 to 65535"),
    (["serve", "--workers", "3"], "use --data-dir for several --workers"),
    (["demo", "--devices", "0"], "0 is not in the range"),
    (["device", "power-on", "X", "--server", "http://127.0.0.1:9"], "cannot reach"),
    (["load", "fleet", "--devices", "-5"], "Invalid value"),
])
def test_bad_arguments_get_a_message_not_a_traceback(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_depsim_config_and_data_dir(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"device_insertions": {"devices_per_event": "many"}}')
    result = CliRunner().invoke(main, ["serve", "--devices", "1", "--depsim-config", str(config)])
    assert result.exit_code == 2 and "devices_per_event must be a non-negative integer" in result.output
    corrupt = tmp_path / "world"
    corrupt.mkdir()
    (corrupt / "world.db").write_text("not a database")
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(corrupt)])
    assert result.exit_code == 2 and "not mdmsim databases" in result.output
