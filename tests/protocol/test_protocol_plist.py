from __future__ import annotations

import datetime as dt
import plistlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdm.protocol.plist import PlistError, dumps, loads

SAMPLE = {"MessageType": "TokenUpdate", "Token": b"\x01\x02", "AwaitingConfiguration": False, "N": 3}


def test_round_trip_xml_and_binary_keep_order_and_types():
    xml = dumps(SAMPLE)
    assert xml.startswith(b"<?xml")
    assert loads(xml) == SAMPLE
    assert list(loads(xml)) == list(SAMPLE)  # sort_keys=False
    assert loads(dumps(SAMPLE, binary=True)) == SAMPLE


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty body"),
        (b"hello", "not a valid plist"),
        (b"<?xml version='1.0'?><plist><dict><key>a</key>", "malformed XML"),
        (plistlib.dumps(["a"]), "root must be a dictionary"),
        (b"bplist00garbage", "not a valid plist"),
    ],
)
def test_bad_input_gives_plist_error_with_reason(data, reason):
    with pytest.raises(PlistError) as e:
        loads(data)
    assert reason in e.value.reason


def test_size_limit():
    with pytest.raises(PlistError, match="larger than 10 bytes"):
        loads(dumps({"a": "b"}), max_size=10)


def test_types_are_strict_about_bool_and_int():
    with pytest.raises(PlistError, match="N must be boolean, not integer"):
        loads(dumps({"N": 1}), types={"N": bool})
    with pytest.raises(PlistError, match="N must be integer, not boolean"):
        loads(dumps({"N": True}), types={"N": int})
    with pytest.raises(PlistError, match="Token must be data, not string"):
        loads(dumps({"Token": "x"}), types={"Token": bytes})
    assert loads(dumps({"N": 1}), types={"N": (int, float), "Missing": str}) == {"N": 1}


def test_badly_padded_data_is_repaired_like_corefoundation():
    xml = dumps({"Token": b"x"}).replace(b"eA==", b"eA=")
    assert loads(xml) == {"Token": b"x"}
    with pytest.raises(PlistError, match="invalid base64"):
        loads(xml, repair_base64=False)


def test_deep_nesting_and_shared_containers_refused():
    deep = b"<plist><dict><key>a</key>" + b"<array>" * 100 + b"</array>" * 100 + b"</dict></plist>"
    with pytest.raises(PlistError, match="nested deeper"):
        loads(deep)
    bomb: list = []
    for _ in range(60):
        bomb = [bomb, bomb]
    with pytest.raises(PlistError, match="shares a container"):
        loads(plistlib.dumps({"x": bomb}, fmt=plistlib.FMT_BINARY))


def test_dumps_rejects_unserialisable():
    with pytest.raises(PlistError):
        dumps({"a": object()})
    with pytest.raises(PlistError):
        dumps(["not a dict"])  # type: ignore[arg-type]


def _text(n: int) -> st.SearchStrategy[str]:
    # XML plists cannot carry control characters, and XML parsing turns \r into \n
    return st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=n)


plist_values = st.recursive(
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | _text(20)
    | st.binary(max_size=20)
    | st.floats(allow_nan=False)
    | st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1)).map(
        lambda d: d.replace(microsecond=0)
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text(8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_text(8), plist_values, max_size=5), st.booleans())
def test_any_plist_round_trips(d, binary):
    assert loads(dumps(d, binary=binary)) == d


def _mutate(data: bytes, ops: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for pos, val in ops:
        if not b:
            break
        b[pos % len(b)] = val
    return bytes(b)


_SEEDS = [
    dumps(SAMPLE),
    dumps(SAMPLE, binary=True),
    dumps({"a": [{"b": [1, 2.5, b"x"]}], "d": dt.datetime(2020, 1, 1)}, binary=True),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_SEEDS),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    st.integers(0, 400),
)
def test_fuzz_mutated_plists_only_raise_plist_error(seed, ops, cut):
    data = _mutate(seed, ops)[: len(seed) - cut if cut < len(seed) else None]
    try:
        loads(data)
    except PlistError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.binary(max_size=200).map(lambda b: b"bplist00" + b))
def test_fuzz_random_bytes_only_raise_plist_error(data):
    try:
        loads(data)
    except PlistError:
        pass
