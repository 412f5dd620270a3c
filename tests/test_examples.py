"""The examples are what users copy: they must pass from a folder outside this project.

They use only the installed plugin's fixtures (``pytest11`` entry point), so running them from a
temporary directory proves the plugin works for a user who ran ``pip install mdmsim``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_examples_pass_outside_the_project(tmp_path: Path) -> None:
    target = tmp_path / "my_mdm_tests"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(target)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_a_failing_test_prints_the_worlds_recent_traffic(tmp_path: Path) -> None:
    (tmp_path / "test_fails.py").write_text(
        "def test_fails(mdmsim_world):\n"
        "    mdmsim_world.http.get('/apple/dep/account')\n"
        "    assert False\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    assert "mdmsim: recent traffic" in result.stdout
    assert '"endpoint": "get_account"' in result.stdout


def test_mdmsim_fixtures_names_the_folder_or_says_how_to_get_it(tmp_path: Path) -> None:
    (tmp_path / "test_uses_fixtures.py").write_text(
        "def test_it(mdmsim_fixtures):\n"
        "    assert (mdmsim_fixtures / 'dep' / 'schemas' / 'Device.json').is_file()\n"
    )
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    found = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stdout[-2000:]
    missing = subprocess.run(
        run, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MDMSIM_FIXTURES": str(tmp_path / "nowhere")},
    )
    assert missing.returncode == 1
    assert "set MDMSIM_FIXTURES to the fixtures/ folder of a clone" in missing.stdout
