"""``mdmsim demo``: the README's main command, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run_demo(*args: str) -> tuple[dict, str]:
    result = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "demo", "--json", *args],
        capture_output=True, text=True, timeout=240, env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stdout


def test_demo_enrolls_25_devices_with_the_panes_the_profile_allows() -> None:
    outcome, story = run_demo("--devices", "25", "--seed", "3")
    assert outcome["devices"] == 25
    assert outcome["enrolled"] == 25
    assert outcome["synced"] == 25
    assert outcome["failures"] == []
    skipped_by_profile = set(outcome["profile"]["skip_setup_items"])
    assert {"Siri", "AppleID", "Payment"} <= skipped_by_profile
    for serial, panes in outcome["panes"].items():
        assert not skipped_by_profile & set(panes["shown"]), serial
        assert {"RemoteManagement", "Enrollment", "HomeScreen"} <= set(panes["shown"]), serial
        assert "Passcode" in panes["shown"]  # the seed profile shows Passcode
        assert "Authentication" not in panes["shown"]  # no user affinity
    for step in ("push certificate", "Enrollment program token", "DEP profile", "Sync", "Retry-After",
                 "DeviceInformation"):
        assert step in story
    # Each device's timeline, the one the dashboard draws: its enrollment in order, then DeviceInformation.
    assert set(outcome["exchanges"]) == set(outcome["panes"])
    for serial, exchanges in outcome["exchanges"].items():
        calls = [(e["source"], e["target"], e["method"], e["note"]) for e in exchanges]
        assert calls[:9] == [
            ("device", "activation", "POST", "RequestProfileConfiguration"),
            ("device", "enroll", "POST", "MachineInfo → enrollment profile"),
            ("device", "scep", "GET", "GetCACert"), ("device", "scep", "GET", "GetCACaps"),
            ("device", "scep", "POST", "PKIOperation"),
            ("device", "checkin", "PUT", "Authenticate"), ("checkin", "controller", "POST", "mdm.Authenticate"),
            ("device", "checkin", "PUT", "TokenUpdate"), ("checkin", "controller", "POST", "mdm.TokenUpdate"),
        ], serial
        assert ("device", "connect", "PUT", "Idle → DeviceInformation") in calls[9:], serial
        assert all(200 <= e["status"] < 300 and e["at"].endswith("Z") and e["path"].startswith("/") for e in exchanges)


def test_demo_with_user_affinity_signs_a_user_in_on_each_device() -> None:
    outcome, story = run_demo("--devices", "3", "--user-affinity")
    assert outcome["enrolled"] == 3 and outcome["failures"] == []
    for panes in outcome["panes"].values():
        assert "Authentication" in panes["shown"]
    assert "@contoso.com" in story  # the summary names each device's user
