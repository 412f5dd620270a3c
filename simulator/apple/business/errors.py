"""The Business API's errors: ``{"errors": [{id, status, code, title, detail, source}]}``.

Apple documents the shape (ErrorResponse) and one real error, 404 ``NOT_FOUND``, "The specified
resource doesn't exist" / "There is no resource of type 'orgDevices' with id '…'". The other codes
follow the conventions of Apple's JSON:API services (App Store Connect), which the Business API shares:
``PARAMETER_ERROR.INVALID`` / ``PARAMETER_ERROR.ILLEGAL`` with ``source.parameter``,
``ENTITY_ERROR.*`` with ``source.pointer``, ``NOT_AUTHORIZED``, ``FORBIDDEN_ERROR``,
``RATE_LIMIT_EXCEEDED``. Their titles and details are mdmsim's; every one says what to change.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "not_found",
    "invalid_parameter",
    "illegal_parameter",
    "not_authorized",
    "rate_limited",
    "not_acceptable",
    "entity_error",
    "unprocessable",
]


class APIError(Exception):
    """One refused request: its HTTP status and the one error object the body carries."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        parameter: str | None = None,
        pointer: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.parameter = parameter
        self.pointer = pointer
        self.retry_after = retry_after

    def error(self, error_id: str) -> dict[str, Any]:
        """The error object, with ``error_id`` (a UUID for this instance, as Apple gives each)."""
        out: dict[str, Any] = {
            "id": error_id,
            "status": str(self.status),
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
        }
        if self.parameter is not None:
            out["source"] = {"parameter": self.parameter}
        elif self.pointer is not None:
            out["source"] = {"pointer": self.pointer}
        return out


def not_found(kind: str, resource_id: str) -> APIError:
    """Apple's documented 404, word for word."""
    return APIError(
        404, "NOT_FOUND", "The specified resource doesn't exist",
        f"There is no resource of type '{kind}' with id '{resource_id[:200]}'",
    )


def invalid_parameter(parameter: str, detail: str) -> APIError:
    return APIError(400, "PARAMETER_ERROR.INVALID", "A parameter has an invalid value", detail, parameter=parameter)


def illegal_parameter(parameter: str) -> APIError:
    return APIError(
        400, "PARAMETER_ERROR.ILLEGAL", "The parameter given is not allowed",
        f"The parameter '{parameter[:100]}' can not be used with this request", parameter=parameter[:100],
    )


def not_authorized(detail: str) -> APIError:
    return APIError(401, "NOT_AUTHORIZED", "Authentication credentials are missing or invalid.", detail)


def rate_limited(retry_after: int, kind: str) -> APIError:
    return APIError(
        429, "RATE_LIMIT_EXCEEDED", "The request rate limit has been reached.",
        f"Too many {kind} requests for this API account. Wait {retry_after} seconds (Retry-After) and try again.",
        retry_after=retry_after,
    )


def not_acceptable() -> APIError:
    return APIError(
        406, "NOT_ACCEPTABLE", "The specified accept header isn't supported",
        "The API answers application/json only: send Accept: application/json.",
    )


def entity_error(code: str, detail: str, pointer: str) -> APIError:
    """409: the request body's entity is well formed but names something wrong (``ENTITY_ERROR.…``)."""
    return APIError(409, code, "The request entity is not valid", detail, pointer=pointer)


def unprocessable(detail: str, pointer: str | None = None) -> APIError:
    """422: the body is not a JSON:API document this endpoint can read."""
    return APIError(422, "ENTITY_UNPROCESSABLE", "The request entity is not valid", detail, pointer=pointer or "")
