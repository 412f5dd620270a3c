"""The Graph API as the dashboard pages call it: one request, JSON back, every failure as :class:`GraphCallError`.

The pages hold no rules of their own: what is valid, and whether a sync may start, is the API's to
say, and a refusal is shown next to the form that caused it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["Graph", "GraphCallError"]


class GraphCallError(Exception):
    """A Graph call that did not succeed: the status and the message to put next to the form."""

    def __init__(self, status: int, code: str, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Graph:
    """The Graph API as the pages need it: one call, JSON back, errors as :class:`GraphCallError`."""

    client: httpx.Client
    base: str

    def call(self, method: str, path: str, *, json: Any = None, params: Mapping[str, str] | None = None) -> Any:
        segments = path.split("/")[1:]
        if not (path.isascii() and path.isprintable()) or "%" in path or any(s in ("", ".", "..") for s in segments):
            # Graph ids are GUIDs; an id from a link with control, non-ASCII, '%' or '/' characters names
            # nothing and would not survive the trip as a URL (fuzz findings: a 500, then a 502).
            raise GraphCallError(404, "notFound", "no such item: the id is not a Graph id")
        try:
            reply = self.client.request(method, f"{self.base}{path}", json=json, params=params)
        except httpx.InvalidURL:
            raise GraphCallError(404, "notFound", "no such item: the address is not a valid URL") from None
        except httpx.HTTPError as exc:
            raise GraphCallError(502, "unreachable", f"the Graph API could not be reached ({type(exc).__name__})") from None
        if reply.status_code >= 400:
            code, message = _graph_error(reply)
            raise GraphCallError(reply.status_code, code, message, reply.headers.get("Retry-After"))
        if reply.status_code == 204 or not reply.content:
            return None
        try:
            return reply.json()
        except ValueError:
            raise GraphCallError(502, "badResponse", "the Graph API answered something that is not JSON") from None

    def get(self, path: str, **params: str) -> Any:
        return self.call("GET", path, params=params or None)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, json=body)


def _graph_error(reply: httpx.Response) -> tuple[str, str]:
    """``{"error": {"code", "message"}}``, or whatever else a proxy or the auth layer sent, as a sentence."""
    try:
        body = reply.json()
    except ValueError:
        return "error", f"the Graph API answered {reply.status_code}: {reply.text[:200]}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or "error"), str(error.get("message") or reply.status_code)
    if isinstance(error, str):
        return "error", error
    return "error", f"the Graph API answered {reply.status_code}"
