"""Serial numbers as an admin hands them to the portal: typed into a box or uploaded as a CSV file.

The pages and the JSON API read CSV files through this one function, so a file that assigns on one
assigns on the other: the first column, upper-cased (spreadsheets keep whatever case was typed), a
first row that is not a serial number skipped as a header, blank rows ignored, a UTF-8 byte-order
mark (Excel's "CSV UTF-8") accepted. An unreadable file is a :class:`PortalError`, never a 500.
"""

from __future__ import annotations

import csv
import io
import re

from .catalog import SERIAL_PATTERN
from .errors import PortalError

__all__ = ["serials_from_csv", "serials_from_text"]

_SEPARATORS = re.compile(r"[\s,;]+")


def serials_from_text(text: str) -> list[str]:
    """Serial numbers typed or pasted one per line, or separated by commas or spaces."""
    return [s.upper() for s in _SEPARATORS.split(text) if s]


def serials_from_csv(data: bytes) -> list[str]:
    """The first column of each row; a first row that is not a serial number is a header."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PortalError(400, "the CSV file is not UTF-8 text") from None
    serials: list[str] = []
    try:
        for number, row in enumerate(csv.reader(io.StringIO(text))):
            value = row[0].strip().upper() if row else ""
            if not value or (number == 0 and not SERIAL_PATTERN.match(value)):
                continue
            serials.append(value)
    except csv.Error as exc:
        raise PortalError(400, f"the CSV file could not be read: {exc}") from None
    return serials
