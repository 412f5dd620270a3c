"""The OData query options Graph's lists take here: ``$filter`` (equalities joined by ``and``) and paging.

Only what the controller's lists need, parsed by hand: ``field eq 'value'`` or ``field eq true/false``
clauses joined by ``and``, a quote in a value doubled (``'O''Brien'``); ``$top`` a positive integer;
``$skiptoken`` an opaque token this API handed out. Anything else is a 400 that says what is
supported. Nothing here knows a table: :mod:`mdm.controller.devices` maps the fields to columns.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Iterable
from typing import Any

from .errors import GraphError

__all__ = ["MAX_FILTER_CHARS", "decode_skiptoken", "encode_skiptoken", "parse_filter", "parse_top"]

MAX_FILTER_CHARS = 2000


def parse_filter(text: str | None, fields: Collection[str]) -> list[tuple[str, Any]]:
    """``$filter`` as ``[(field, value)]``: each field one of ``fields``, each value a str or 0/1 (false/true)."""
    if not text:
        return []
    if len(text) > MAX_FILTER_CHARS:
        raise GraphError(400, "badRequest", "$filter is too long")
    equal: list[tuple[str, Any]] = []
    for clause in _split_and(text):
        parts = clause.strip().split(" ", 2)
        if len(parts) != 3 or parts[1].lower() != "eq" or parts[0] not in fields:
            raise GraphError(
                400,
                "badRequest",
                "$filter supports `field eq 'value'` joined by `and`, for " + ", ".join(fields),
            )
        value_text = parts[2].strip()
        value: Any
        if value_text in ("true", "false"):
            value = int(value_text == "true")
        elif len(value_text) >= 2 and value_text[0] == value_text[-1] == "'":
            value = value_text[1:-1].replace("''", "'")
        else:
            raise GraphError(400, "badRequest", f"$filter value {value_text!r} must be quoted or true/false")
        equal.append((parts[0], value))
    return equal


def _split_and(text: str) -> Iterable[str]:
    """The clauses between the words ``and`` that are not inside a quoted value."""
    parts, buffer, quoted = [], "", False
    for word in text.split(" "):
        if not quoted and word.lower() == "and":
            parts.append(buffer)
            buffer = ""
            continue
        buffer = f"{buffer} {word}" if buffer else word
        quoted ^= word.count("'") % 2 == 1
    parts.append(buffer)
    return parts


def parse_top(text: str | None, *, default: int, maximum: int) -> int:
    """``$top``: the page size asked for, at most ``maximum``; ``default`` when absent."""
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        raise GraphError(400, "badRequest", "$top must be a positive integer")
    return min(int(text), maximum)


def encode_skiptoken(position: int) -> str:
    """The ``$skiptoken`` of the page after ``position`` (opaque to clients, a base64 number here)."""
    return base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")


def decode_skiptoken(token: str | None) -> int:
    """The position a ``$skiptoken`` points after (0 without one); 400 for one this API did not hand out."""
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode() + b"==").decode())
    except (ValueError, binascii.Error, UnicodeError):
        raise GraphError(400, "badRequest", "$skiptoken is not one this API handed out") from None
