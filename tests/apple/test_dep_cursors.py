"""Cursors are opaque, bound to one world and one server, and refuse any tampering."""

from __future__ import annotations

import pytest

from simulator.apple.dep.cursors import Cursor, CursorError, CursorKind, decode_cursor, encode_cursor

SECRET = b"s" * 32


def test_round_trip_and_length() -> None:
    cursor = Cursor(CursorKind.FETCH, 7, 1234, 99, 1_770_000_000, exhausted=True)
    text = encode_cursor(cursor, SECRET)
    assert decode_cursor(text, SECRET) == cursor
    assert len(text) < 100 and text.replace("-", "").replace("_", "").isalnum()


def test_every_single_character_change_is_refused() -> None:
    text = encode_cursor(Cursor(CursorKind.SYNC, 1, 5, 5, 1_770_000_000), SECRET)
    for i in range(len(text)):
        changed = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]
        with pytest.raises(CursorError):
            decode_cursor(changed, SECRET)


@pytest.mark.parametrize("bad", ["", "!!!", "AAAA", "A" * 1001, None, 12])
def test_garbage_is_refused(bad: object) -> None:
    with pytest.raises(CursorError):
        decode_cursor(bad, SECRET)


def test_another_worlds_secret_is_refused() -> None:
    text = encode_cursor(Cursor(CursorKind.SYNC, 1, 5, 5, 1_770_000_000), SECRET)
    with pytest.raises(CursorError):
        decode_cursor(text, b"t" * 32)
