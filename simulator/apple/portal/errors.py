"""The portal's one error type, shared by its service, catalog and HTTP layers."""

from __future__ import annotations

__all__ = ["PortalError"]


class PortalError(Exception):
    """A portal request that cannot be done: ``status`` 400 or 404 and a message for a person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
