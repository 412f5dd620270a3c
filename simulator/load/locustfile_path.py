"""Where the packaged locustfile is, without importing it (importing Locust monkey-patches with gevent)."""

from __future__ import annotations

from pathlib import Path

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
