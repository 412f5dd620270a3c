"""``mdmsim demo --identity acme``, run as a user runs it: every device enrolls, and every ACME identity's
key is the Secure Enclave key Apple attested (devices before iOS 16, which have no ACME, get SCEP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_the_demo_enrolls_every_device_and_each_acme_identity_is_for_the_attested_key() -> None:
    result = subprocess.run([sys.executable, "-m", "simulator.cli", "demo", "--json", "--identity", "acme",
                             "--devices", "10", "--seed", "7"],
                            capture_output=True, text=True, timeout=240, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert (outcome["enrolled"], outcome["failures"]) == (10, [])
    identity = outcome["identity"]
    assert identity["method"] == "acme" and identity["hardware_bound"] is True and identity["attested"] is True
    assert identity["acme"] + identity["scep"] == 10 and identity["acme"] >= 7
    assert identity["attestation_root"].endswith("/apple/activation/attestation-root.pem")
    assert "attested by Apple" in result.stdout
