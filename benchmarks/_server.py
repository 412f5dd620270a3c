"""Start ``mdmsim serve`` in a subprocess for a benchmark (see :mod:`simulator.load.server`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from simulator.load.server import free_port, mdmsim_serve  # noqa: E402

__all__ = ["free_port", "mdmsim_serve"]
