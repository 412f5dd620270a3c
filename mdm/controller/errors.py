"""The controller's one error type, shared by its rule modules (``service``, ``pushcert``)."""

from __future__ import annotations

__all__ = ["GraphError"]


class GraphError(Exception):
    """An answer in Graph's error shape: ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
