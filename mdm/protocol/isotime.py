"""Times on the wire: ISO 8601 in UTC with a ``Z`` and whole seconds, as Apple's services write them.

One codec for every party (DEP ``op_date``, Graph's ``lastSyncDateTime``, push-certificate expiry,
the simulation's clock API), so a time written by one party always parses in another.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["IsoTimeError", "isoformat", "iso_from_timestamp", "parse_iso"]


class IsoTimeError(ValueError):
    """A time that is not ISO 8601 with a UTC offset; the message says what was expected."""


def isoformat(instant: datetime) -> str:
    """``2026-03-01T09:00:00Z``: UTC, a ``Z``, whole seconds."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_from_timestamp(ts: float | None) -> str | None:
    """A POSIX timestamp (as stores keep times) written as :func:`isoformat`; ``None`` stays ``None``."""
    return isoformat(datetime.fromtimestamp(ts, UTC)) if ts is not None else None


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 instant (``Z`` or an offset) to an aware UTC datetime; IsoTimeError otherwise."""
    if not isinstance(text, str):
        raise IsoTimeError("expected an ISO 8601 time such as 2026-01-01T00:00:00Z")
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise IsoTimeError(f"not an ISO 8601 time: {text!r}") from exc
    if value.tzinfo is None:
        raise IsoTimeError("the time needs a UTC offset, for example 2026-01-01T00:00:00Z")
    return value.astimezone(UTC)
