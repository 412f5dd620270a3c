"""depsim's scripted response names → what Apple's service sends for them.

``config_failures.json`` of Apple's ``depsim`` queues responses by these names per endpoint
(``post_devices_sync_responses: [{"count": 1, "response": "bad_request_invalid_cursor"}]``). The
world's control party looks a name up here and answers ``(status, body)`` in place of the real
handler. Bodies are Apple's short plain-text error strings.

The per-device names (:data:`DEVICE_FAULTS`) are different: they do not replace the response but make
every serial of a device-list request (details, disown, assign, clear) come back with that status.
The control party marks the request with ``environ["mdmsim.fault"] = name`` and lets it through.
"""

from __future__ import annotations

__all__ = ["FAULT_RESPONSES", "DEVICE_FAULTS", "FAULT_ENVIRON_KEY"]

FAULT_ENVIRON_KEY = "mdmsim.fault"

FAULT_RESPONSES: dict[str, tuple[int, str]] = {
    "bad_request": (400, "BAD_REQUEST"),
    "bad_request_invalid_cursor": (400, "INVALID_CURSOR"),
    "bad_request_exhausted_cursor": (400, "EXHAUSTED_CURSOR"),
    "bad_request_expired_cursor": (400, "EXPIRED_CURSOR"),
    "bad_request_cursor_required": (400, "CURSOR_REQUIRED"),
    "bad_request_malformed_request_body": (400, "MALFORMED_REQUEST_BODY"),
    "bad_request_device_id_required": (400, "DEVICE_ID_REQUIRED"),
    "bad_request_profile_uuid_required": (400, "PROFILE_UUID_REQUIRED"),
    # Apple documents GET /profile's "profile not found" as 400 NOT_FOUND; depsim's name says bad_request.
    "bad_request_profile_not_found": (400, "NOT_FOUND"),
    "bad_request_config_name_required": (400, "CONFIG_NAME_REQUIRED"),
    "bad_request_config_url_required": (400, "CONFIG_URL_REQUIRED"),
    "bad_request_department_required": (400, "DEPARTMENT_REQUIRED"),
    "bad_request_support_phone_required": (400, "SUPPORT_PHONE_REQUIRED"),
    "forbidden": (403, "FORBIDDEN"),
    "forbidden_access_denied": (403, "ACCESS_DENIED"),
    "forbidden_t_c_not_signed": (403, "T_C_NOT_SIGNED"),
    "unauthorized": (401, "UNAUTHORIZED"),
    "invalid_method": (405, "METHOD_NOT_ALLOWED"),
    "not_found": (404, "NOT_FOUND"),
    "too_many_requests": (429, "TOO_MANY_REQUESTS"),
    "service_unavailable": (503, "SERVICE_UNAVAILABLE"),
}

# name → the per-serial status every device of the request gets (THROTTLED needs protocol v9+,
# older clients see FAILED; v10+ also get ``retry_after_seconds``).
DEVICE_FAULTS: dict[str, str] = {
    "success": "SUCCESS",
    "not_accessible": "NOT_ACCESSIBLE",
    "failed": "FAILED",
    "throttled": "THROTTLED",
}
