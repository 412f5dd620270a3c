"""The controller's one error type, shared by its rule modules, and the few ways they build one."""

from __future__ import annotations

import math

__all__ = ["GraphError", "not_found", "retry_after_seconds"]


class GraphError(Exception):
    """An answer in Graph's error shape: ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def not_found(what: str, ident: str) -> GraphError:
    """404 for a Graph entity (``depOnboardingSetting``, ``enrollmentProfile``, ...) that does not exist."""
    return GraphError(404, "notFound", f"{what} {ident!r} was not found"[:300])


def retry_after_seconds(seconds: float) -> int:
    """A ``Retry-After`` for a wait of ``seconds``: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds - 1e-9))
