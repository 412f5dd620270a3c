"""Strict property-list codec on top of the standard library's ``plistlib``.

Every party reads plists that came over the network (check-ins, command results, profiles, MachineInfo),
so one function decides what "a valid plist" means and turns every way of failing into a single
exception type, :class:`PlistError`, whose ``reason`` is short enough to put in an HTTP 400 body. A
handler can then write ``except PlistError`` and never leak a traceback (DESIGN rule 7).

The module also holds the small "plist record" helpers (:func:`plist_field`, :func:`record_from_dict`,
:func:`record_to_dict`) that the message modules use to map Apple's key names onto snake_case dataclass
fields with strict type checks, so that each message type is declared once, as data.
"""

from __future__ import annotations

import binascii
import dataclasses
import datetime as _dt
import plistlib
import re
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = [
    "PlistError",
    "loads",
    "dumps",
    "check_types",
    "type_name",
    "plist_field",
    "record_from_dict",
    "record_to_dict",
]

DEFAULT_MAX_SIZE = 1_048_576
DEFAULT_MAX_DEPTH = 64

TypeSpec = type | tuple[type, ...]


class PlistError(ValueError):
    """A plist that cannot be accepted; ``reason`` is a short message fit for a 400 response body."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_PLIST_TYPE_NAMES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "real",
    str: "string",
    bytes: "data",
    bytearray: "data",
    dict: "dictionary",
    list: "array",
    _dt.datetime: "date",
    plistlib.UID: "UID",
}


def type_name(value_or_type: Any) -> str:
    """Name a Python value's type in plist words (``data`` rather than ``bytes``) for error messages."""
    t = value_or_type if isinstance(value_or_type, type) else type(value_or_type)
    for cls, name in _PLIST_TYPE_NAMES.items():
        if t is cls:
            return name
    for cls, name in _PLIST_TYPE_NAMES.items():
        if issubclass(t, cls):
            return name
    return t.__name__


def _spec_name(spec: TypeSpec) -> str:
    specs = spec if isinstance(spec, tuple) else (spec,)
    return " or ".join(type_name(s) for s in specs)


def matches(value: Any, spec: TypeSpec) -> bool:
    """``isinstance`` that keeps booleans and integers apart.

    ``bool`` subclasses ``int`` in Python, but ``<true/>`` and ``<integer>1</integer>`` are different
    plist types and Apple's parsers reject one where the other is expected.
    """
    specs = spec if isinstance(spec, tuple) else (spec,)
    if object in specs:
        return True
    if isinstance(value, bool):
        return bool in specs
    return isinstance(value, specs)


def check_types(d: Mapping[str, Any], types: Mapping[str, TypeSpec]) -> None:
    """Raise :class:`PlistError` if a key of ``d`` named in ``types`` holds a value of another type."""
    for key, spec in types.items():
        if key in d and not matches(d[key], spec):
            raise PlistError(f"{key} must be {_spec_name(spec)}, not {type_name(d[key])}")


_DATA_RE = re.compile(rb"(<data>)(.*?)(</data>)", re.S)
_NOT_B64 = re.compile(rb"[^A-Za-z0-9+/]")


def _repair_data(m: re.Match[bytes]) -> bytes:
    body = _NOT_B64.sub(b"", m.group(2))
    if len(body) % 4 == 1:  # a dangling sextet carries no whole byte; CoreFoundation ignores it
        body = body[:-1]
    body += b"=" * (-len(body) % 4)
    return m.group(1) + body + m.group(3)


def _check_tree(root: Any, max_depth: int) -> None:
    """Walk the parsed tree without recursion: string keys only, bounded depth, no shared containers.

    Bounding the depth protects every later consumer (``dumps``, ``repr``, recursive validators) from
    ``RecursionError``. A binary plist can also point several references at one container, making a
    cycle or a "billion laughs" DAG that is exponential to walk; Apple's and Python's writers never
    share containers, so any container met twice is refused.
    """
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise PlistError(f"plist nested deeper than {max_depth} levels")
        if id(node) in seen:
            raise PlistError("plist shares a container between references")
        seen.add(id(node))
        if isinstance(node, dict):
            for k, v in node.items():
                if not isinstance(k, str):
                    raise PlistError("dictionary key is not a string")
                if isinstance(v, dict | list):
                    stack.append((v, depth + 1))
        else:
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))


def loads(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    types: Mapping[str, TypeSpec] | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    repair_base64: bool = True,
) -> dict[str, Any]:
    """Parse an XML or binary plist whose root must be a dictionary.

    ``types`` maps known top-level keys to the type they must have when present (missing keys are the
    caller's business). With ``repair_base64`` (the default) badly padded ``<data>`` is accepted the way
    CoreFoundation accepts it: redacted real payloads such as ``<data>Base64=</data>`` must still parse.
    Any failure, including ``RecursionError`` from a deeply nested binary plist, becomes ``PlistError``.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise PlistError("plist must be bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise PlistError(f"plist larger than {max_size} bytes")
    if not data.strip():
        raise PlistError("empty body")
    try:
        try:
            root = plistlib.loads(data)
        except binascii.Error:
            if not repair_base64 or data.startswith(b"bplist"):
                raise
            root = plistlib.loads(_DATA_RE.sub(_repair_data, data))
    except PlistError:
        raise
    except Exception as e:  # plistlib raises ExpatError, InvalidFileException, ValueError, KeyError...
        raise PlistError(_describe(e)) from None
    if not isinstance(root, dict):
        raise PlistError(f"plist root must be a dictionary, not {type_name(root)}")
    _check_tree(root, max_depth)
    if types:
        check_types(root, types)
    return root


def _describe(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "plist nested too deeply"
    if isinstance(e, binascii.Error):
        return "invalid base64 in <data>"
    if isinstance(e, plistlib.InvalidFileException):
        return "not a valid plist"
    name = type(e).__name__
    if name == "ExpatError":
        return f"malformed XML plist: {e}"[:200]
    return f"not a valid plist ({name})"


def dumps(obj: Mapping[str, Any], *, binary: bool = False) -> bytes:
    """Serialise a dictionary as an XML plist (binary with ``binary=True``), keeping key order.

    Key order is kept (``sort_keys=False``) so output matches what the caller built, which makes
    signed profiles and recorded fixtures stable. Unsupported values raise :class:`PlistError`.
    """
    if not isinstance(obj, Mapping):
        raise PlistError(f"plist root must be a dictionary, not {type_name(obj)}")
    fmt = plistlib.FMT_BINARY if binary else plistlib.FMT_XML
    try:
        return plistlib.dumps(dict(obj), fmt=fmt, sort_keys=False)
    except (TypeError, OverflowError, ValueError, RecursionError) as e:
        raise PlistError(f"cannot serialise plist: {e}"[:200]) from None


# --- plist records: dataclasses whose fields carry Apple's key names -------------------------------

_MISSING = dataclasses.MISSING
R = TypeVar("R")


def plist_field(
    key: str,
    kind: TypeSpec,
    *,
    required: bool = False,
    default: Any = None,
    default_factory: Any = _MISSING,
) -> Any:
    """Declare a dataclass field stored under plist key ``key`` with plist type ``kind``.

    Required fields have no default (use them in ``kw_only`` dataclasses) unless ``default_factory``
    makes one for new records (a fresh PayloadUUID); parsing still insists on the key. Optional ones
    default to ``None`` so that :func:`record_to_dict` can leave them out, as devices leave out absent
    keys.
    """
    meta = {"plist_key": key, "plist_type": kind, "required": required}
    if required and default_factory is _MISSING:
        return dataclasses.field(metadata=meta)
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def record_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The dataclass fields of ``cls`` that map to plist keys."""
    return [f for f in dataclasses.fields(cls) if "plist_key" in f.metadata]


def record_types(cls: type) -> dict[str, TypeSpec]:
    """Plist key → type for ``cls``, in the form :func:`loads` takes as ``types``."""
    return {f.metadata["plist_key"]: f.metadata["plist_type"] for f in record_fields(cls)}


def record_from_dict(cls: type[R], d: Mapping[str, Any], **extra: Any) -> R:
    """Build ``cls`` from a parsed plist dict, checking types and required keys.

    The whole input dict is kept in the record's ``raw`` field (when it has one) so that keys this
    code does not know about survive a round trip and stay visible to callers.
    """
    if not isinstance(d, Mapping):
        raise PlistError(f"expected a dictionary, not {type_name(d)}")
    kwargs: dict[str, Any] = {}
    for f in record_fields(cls):
        key, spec = f.metadata["plist_key"], f.metadata["plist_type"]
        if key in d:
            value = d[key]
            if not matches(value, spec):
                raise PlistError(f"{key} must be {_spec_name(spec)}, not {type_name(value)}")
            kwargs[f.name] = value
        elif f.metadata["required"]:
            raise PlistError(f"missing {key}")
    if "raw" in {f.name for f in dataclasses.fields(cls)}:  # type: ignore[arg-type]
        kwargs["raw"] = dict(d)
    kwargs.update(extra)
    return cls(**kwargs)


def record_to_dict(obj: Any, *, include_raw: bool = True) -> dict[str, Any]:
    """The plist dict for a record: unknown keys from ``raw`` first, then the typed fields on top."""
    out: dict[str, Any] = {}
    known = {f.metadata["plist_key"] for f in record_fields(type(obj))}
    raw = getattr(obj, "raw", None)
    if include_raw and isinstance(raw, Mapping):
        out.update((k, v) for k, v in raw.items() if k not in known)
    for f in record_fields(type(obj)):
        value = getattr(obj, f.name)
        if value is not None:
            out[f.metadata["plist_key"]] = value
    return out
