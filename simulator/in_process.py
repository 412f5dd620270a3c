"""The world's HTTP client: parties call each other over HTTP, in process while the world is not served."""

from __future__ import annotations

__all__ = ["IN_PROCESS_URL"]

IN_PROCESS_HOST = "mdmsim.invalid"
IN_PROCESS_URL = f"http://{IN_PROCESS_HOST}"
