"""Scripted failures of the Business API (``/_sim/faults`` with ``"party": "business"``).

``{"party": "business", "get_v1_orgDevices_responses": [{"count": 2, "response": "too_many_requests"}]}``
makes the next two device listings answer 429 with ``Retry-After``; ``latency_ms`` slows an endpoint.
Endpoint names are the route's method and path (``post_v1_orgDeviceActivities``,
``get_v1_orgDeviceActivities_id``). The gateway statuses (502/503/504) are what clients retry on.
"""

from __future__ import annotations

from .errors import APIError

__all__ = ["FAULT_RESPONSES"]

#: name → the error the endpoint answers instead of its own reply.
FAULT_RESPONSES: dict[str, APIError] = {
    "bad_request": APIError(400, "PARAMETER_ERROR.INVALID", "A parameter has an invalid value", "Scripted fault"),
    "unauthorized": APIError(401, "NOT_AUTHORIZED", "Authentication credentials are missing or invalid.",
                             "The access token is not valid. Request a new one from the token endpoint."),
    "forbidden": APIError(403, "FORBIDDEN_ERROR", "Request not authorized",
                          "This API account is not allowed to make this request."),
    "not_found": APIError(404, "NOT_FOUND", "The specified resource doesn't exist", "Scripted fault"),
    "conflict": APIError(409, "ENTITY_ERROR", "The request entity is not valid", "Scripted fault"),
    "unprocessable": APIError(422, "ENTITY_UNPROCESSABLE", "The request entity is not valid", "Scripted fault"),
    "too_many_requests": APIError(429, "RATE_LIMIT_EXCEEDED", "The request rate limit has been reached.",
                                  "Too many requests for this API account. Wait and try again.", retry_after=60),
    "internal_error": APIError(500, "UNEXPECTED_ERROR", "An unexpected error occurred.", "Scripted fault"),
    "bad_gateway": APIError(502, "BAD_GATEWAY", "Bad gateway", "Scripted fault"),
    "service_unavailable": APIError(503, "SERVICE_UNAVAILABLE", "The service is unavailable",
                                    "Scripted fault", retry_after=60),
    "gateway_timeout": APIError(504, "GATEWAY_TIMEOUT", "Gateway timeout", "Scripted fault"),
}
