"""The token endpoint's one error type: RFC 6749 §5.2's ``{"error", "error_description"}``."""

from __future__ import annotations

__all__ = ["OAuthError"]


class OAuthError(Exception):
    """A refused token request: an RFC 6749 error code, a sentence for the developer, an HTTP status.

    Apple answers 400 for all of them, ``invalid_client`` included (what clients report seeing, and the
    only status NanoAXM decodes the body of), so that is the default."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}
