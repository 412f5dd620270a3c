"""The OData query options Graph's collections take here, parsed by hand and applied to rendered items.

Graph beta accepts a system query option with or without its ``$`` (``$top`` or ``top``), each at most
once. The collections here take:

* ``$filter``: clauses ``field eq value``, ``field ne value`` and ``startswith(field,'text')`` joined by
  ``and``; a value is a quoted string (a quote doubled: ``'O''Brien'``), ``true``/``false``, ``null`` or an
  integer;
* ``$orderby``: ``field [asc|desc]``, comma-separated;
* ``$select``: comma-separated property names (``@odata.type`` always stays, so clients still know the
  derived type they read);
* ``$top`` (the page size, at most the collection's maximum), ``$skip``, ``$skiptoken`` (opaque, handed
  out in ``@odata.nextLink``) and ``$count=true`` (``@odata.count``, the matches before paging).

Every other system option (``$expand``, ``$search``, ``$format``, …) is a 400 naming it, as Graph answers
an option a collection does not allow, so a client never mistakes an ignored option for an applied one.
A single entity takes only ``$select``. Nothing here knows a table: :mod:`mdm.controller.devices` maps
fields to columns for the one collection too large to filter in memory.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import GraphError

__all__ = [
    "MAX_FILTER_CHARS",
    "Clause",
    "Fields",
    "Page",
    "Query",
    "apply",
    "decode_position",
    "decode_skiptoken",
    "encode_offset",
    "encode_skiptoken",
    "matches",
    "parse_filter",
    "parse_query",
    "parse_top",
    "project",
]

MAX_FILTER_CHARS = 2000
MAX_OPTION_CHARS = 2000
#: Every OData system query option a client might send; the collections here take the first seven.
SYSTEM_OPTIONS = (
    "filter", "orderby", "select", "top", "skip", "skiptoken", "count",
    "expand", "search", "format", "apply", "compute", "levels", "deltatoken", "index", "schemaversion", "id",
)  # fmt: skip
COLLECTION_OPTIONS = frozenset(SYSTEM_OPTIONS[:7])
ENTITY_OPTIONS = frozenset({"select"})
_STARTSWITH = re.compile(r"^startswith\(\s*([A-Za-z@.]+)\s*,\s*('(?:[^']|'')*')\s*\)$", re.IGNORECASE)
_INTEGER = re.compile(r"^-?\d{1,18}$")


@dataclass(frozen=True)
class Clause:
    """One ``$filter`` clause: ``op`` is ``eq``, ``ne`` or ``startswith``."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Fields:
    """What a collection lets a query name; ``entity`` is the Graph type, for messages."""

    entity: str
    filterable: Collection[str]
    orderable: Collection[str]
    selectable: Collection[str]


@dataclass(frozen=True)
class Query:
    """The parsed options of one request (``orderby``: ``(field, descending)`` pairs)."""

    filter: tuple[Clause, ...] = ()
    orderby: tuple[tuple[str, bool], ...] = ()
    select: tuple[str, ...] | None = None
    top: str | None = None
    skip: int = 0
    skiptoken: str | None = None
    count: bool = False


@dataclass(frozen=True)
class Page:
    """One page of a collection: its items, the ``$skiptoken`` of the next page, and ``@odata.count``."""

    items: list[dict[str, Any]]
    next_skiptoken: str | None
    count: int | None


def _bad(message: str) -> GraphError:
    return GraphError(400, "badRequest", message[:500])


def parse_query(pairs: Iterable[tuple[str, str]], fields: Fields, *, collection: bool = True) -> Query:
    """The system query options among ``pairs`` (a request's arguments, repeats included).

    Arguments that are not system options are left alone, as Graph leaves them.
    """
    seen: dict[str, str] = {}
    allowed = COLLECTION_OPTIONS if collection else ENTITY_OPTIONS
    for key, value in pairs:
        name = key[1:].lower() if key.startswith("$") else key.lower()
        if not key.startswith("$") and name not in SYSTEM_OPTIONS:
            continue
        shown = "$" + name
        if name not in allowed:
            if not collection and name in COLLECTION_OPTIONS:
                raise _bad(
                    f"Query option '{shown}' applies to collections only; a single {fields.entity} "
                    "takes $select"
                )
            raise _bad(f"Query option '{shown[:40]}' is not supported on {fields.entity}")
        if name in seen:
            raise _bad(f"Query option '{shown}' was specified more than once, but it must be specified at most once")
        if len(value) > MAX_OPTION_CHARS:
            raise _bad(f"Query option '{shown}' is too long")
        seen[name] = value
    count = seen.get("count")
    if count is not None and count.lower() not in ("true", "false"):
        raise _bad(f"Invalid value '{count[:40]}' for $count query option found; it must be true or false")
    return Query(
        filter=tuple(_clauses(seen.get("filter"), fields.filterable)),
        orderby=_orderby(seen.get("orderby"), fields),
        select=_select(seen.get("select"), fields),
        top=seen.get("top"),
        skip=_skip(seen.get("skip")),
        skiptoken=seen.get("skiptoken") or None,
        count=count is not None and count.lower() == "true",
    )


# == $filter =========================================================================================
def parse_filter(text: str | None, fields: Collection[str]) -> list[tuple[str, Any]]:
    """``$filter`` of equalities only, as ``[(field, value)]`` (booleans as 0/1): what SQL columns take."""
    out = []
    for clause in _clauses(text, fields):
        if clause.op != "eq":
            raise _bad(_filter_help(fields))
        value = clause.value
        out.append((clause.field, int(value) if isinstance(value, bool) else value))
    return out


def _filter_help(fields: Collection[str]) -> str:
    return (
        "$filter supports `field eq 'value'`, `field ne 'value'` and `startswith(field,'text')` joined by `and`, "
        "for " + ", ".join(fields)
    )


def _clauses(text: str | None, fields: Collection[str]) -> list[Clause]:
    if not text:
        return []
    if len(text) > MAX_FILTER_CHARS:
        raise _bad("$filter is too long")
    clauses = []
    for part in _split_and(text):
        part = part.strip()
        started = _STARTSWITH.match(part)
        if started is not None:
            field, op, value_text = started.group(1), "startswith", started.group(2)
        else:
            words = part.split(" ", 2)
            if len(words) != 3 or words[1].lower() not in ("eq", "ne"):
                raise _bad(_filter_help(fields))
            field, op, value_text = words[0], words[1].lower(), words[2].strip()
        if field not in fields:
            raise _bad(_filter_help(fields))
        value = _value(value_text)
        if op == "startswith" and not isinstance(value, str):
            raise _bad("startswith takes a quoted text")
        clauses.append(Clause(field, op, value))
    return clauses


def _value(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if _INTEGER.match(text):
        return int(text)
    if len(text) >= 2 and text[0] == text[-1] == "'" and "'" not in text[1:-1].replace("''", ""):
        return text[1:-1].replace("''", "'")
    raise _bad(f"$filter value {text[:60]!r} must be quoted, true, false, null or an integer")


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


def matches(item: dict[str, Any], clauses: Sequence[Clause]) -> bool:
    """Whether a rendered item passes every clause (``startswith`` ignores case, as Graph's does)."""
    for clause in clauses:
        value = item.get(clause.field)
        if clause.op == "startswith":
            if not (isinstance(value, str) and value.lower().startswith(clause.value.lower())):
                return False
        elif (value == clause.value and type(value) is type(clause.value)) != (clause.op == "eq"):
            return False
    return True


# == $orderby, $select, $skip, $top ====================================================================
def _orderby(text: str | None, fields: Fields) -> tuple[tuple[str, bool], ...]:
    if not text:
        return ()
    out = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise _bad("$orderby takes `field`, `field asc` or `field desc`, comma-separated")
        if words[0] not in fields.orderable:
            raise _bad("$orderby supports " + ", ".join(fields.orderable))
        out.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return tuple(out)


def _select(text: str | None, fields: Fields) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if name not in fields.selectable and name != "*":
            raise _bad(f"Could not find a property named '{name[:80]}' on type 'microsoft.graph.{fields.entity}'")
    return None if "*" in names or not names else names


def _skip(text: str | None) -> int:
    if text is None:
        return 0
    if not (text.isascii() and text.isdigit()) or len(text) > 12:  # '²'.isdigit() is True; int('²') fails
        raise _bad(f"Invalid value '{text[:40]}' for $skip query option found; it must be a non-negative integer")
    return int(text)


def parse_top(text: str | None, *, default: int, maximum: int) -> int:
    """``$top``: the page size asked for, at most ``maximum``; ``default`` when absent."""
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 12 or int(text) < 1:
        raise _bad("$top must be a positive integer")
    return min(int(text), maximum)


def project(item: dict[str, Any], select: Sequence[str] | None) -> dict[str, Any]:
    """``item`` with only the selected properties (and its ``@odata.type``)."""
    if select is None:
        return item
    keep = {"@odata.type", *select}
    return {k: v for k, v in item.items() if k in keep}


def _sort_key(value: Any) -> tuple[int, Any]:
    """Nulls first, then by value; values of different types never compare with each other."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, str(value))


def apply(items: list[dict[str, Any]], query: Query, *, default_top: int, maximum: int) -> Page:
    """Filter, order, count and page rendered items (the collections small enough to hold in memory)."""
    found = [item for item in items if matches(item, query.filter)]
    for field, descending in reversed(query.orderby):
        found.sort(key=lambda item, f=field: _sort_key(item.get(f)), reverse=descending)
    size = parse_top(query.top, default=default_top, maximum=maximum)
    start = query.skip
    if query.skiptoken is not None:
        kind, start = decode_position(query.skiptoken)
        if kind != "offset":
            raise _bad("$skiptoken is not one this API handed out")
    page = found[start : start + size]
    more = start + size < len(found)
    return Page(
        items=[project(item, query.select) for item in page],
        next_skiptoken=encode_offset(start + size) if more else None,
        count=len(found) if query.count else None,
    )


# == $skiptoken ========================================================================================
def encode_skiptoken(position: int) -> str:
    """The ``$skiptoken`` of the page after the item numbered ``position`` (keyset paging)."""
    return base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")


def encode_offset(offset: int) -> str:
    """The ``$skiptoken`` of the page starting at ``offset`` (paging of an ordered result)."""
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


def decode_position(token: str) -> tuple[str, int]:
    """``("after", n)`` for a keyset token, ``("offset", n)`` for an offset one; 400 for anything else."""
    try:
        text = base64.urlsafe_b64decode(token.encode() + b"==").decode()
    except (ValueError, binascii.Error, UnicodeError):
        raise _bad("$skiptoken is not one this API handed out") from None
    kind, digits = ("offset", text[1:]) if text.startswith("o") else ("after", text)
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise _bad("$skiptoken is not one this API handed out")
    return kind, int(digits)


def decode_skiptoken(token: str | None) -> int:
    """The position a keyset ``$skiptoken`` points after (0 without one); 400 for one this API did not hand out."""
    if not token:
        return 0
    kind, position = decode_position(token)
    if kind != "after":
        raise _bad("$skiptoken is not one this API handed out")
    return position
