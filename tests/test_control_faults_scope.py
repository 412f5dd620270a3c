"""Faults can be scripted only for parties with a fault vocabulary; others are never looked up."""

from __future__ import annotations

import pytest

from simulator.control.service import FaultError
from simulator.world import World


def test_only_dep_faults_exist_and_still_fire() -> None:
    with World(devices=0, seed=1) as world:
        with pytest.raises(FaultError):
            world.control.script_faults({"party": "mdm", "connect_responses": [{"response": "x"}]})
        world.faults.add({"get_session_responses": [{"count": 1, "response": "forbidden"}]})
        assert world.control.take_fault("mdm", "get_session") == (None, 0)  # another party: nothing scripted
        assert world.control.take_fault("dep", "get_session") == ("forbidden", 0)
        assert world.control.take_fault("dep", "get_session") == (None, 0)
