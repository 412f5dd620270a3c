"""The DEP web service's one error type: Apple's status code and short plain-text body."""

from __future__ import annotations

__all__ = ["DEPError", "bad_request", "UNAUTHORIZED"]

UNAUTHORIZED = "UNAUTHORIZED"


class DEPError(Exception):
    """An error Apple's service answers with ``status`` and the plain-text body ``code``."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code


def bad_request(code: str) -> DEPError:
    """A 400 with Apple's error string (``MALFORMED_REQUEST_BODY``, ``INVALID_CURSOR``…)."""
    return DEPError(400, code)
