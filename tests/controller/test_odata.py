"""The hand-written OData options: ``$filter`` equalities joined by ``and``, ``$top`` and ``$skiptoken``."""

from __future__ import annotations

import pytest

from mdm.controller import odata
from mdm.controller.devices import FILTER_FIELDS
from mdm.controller.errors import GraphError


def test_filter_clauses_values_and_quotes() -> None:
    assert odata.parse_filter(None, FILTER_FIELDS) == []
    assert odata.parse_filter("", FILTER_FIELDS) == []
    parsed = odata.parse_filter(
        "serialNumber eq 'A and B' and isDeleted eq false AND isSupervised eq true", FILTER_FIELDS
    )
    assert parsed == [("serialNumber", "A and B"), ("isDeleted", 0), ("isSupervised", 1)]
    assert odata.parse_filter("serialNumber eq 'O''Brien'", FILTER_FIELDS) == [("serialNumber", "O'Brien")]
    assert odata.parse_filter("enrollmentState EQ 'enrolled'", FILTER_FIELDS) == [("enrollmentState", "enrolled")]


@pytest.mark.parametrize(
    "text",
    ["model eq 'x'", "serialNumber gt 'x'", "serialNumber eq", "isDeleted eq yes", "serialNumber eq 'x", "x" * 2001],
)
def test_filter_refusals_say_what_is_supported(text: str) -> None:
    with pytest.raises(GraphError) as refused:
        odata.parse_filter(text, FILTER_FIELDS)
    assert (refused.value.status, refused.value.code) == (400, "badRequest")
    assert "$filter" in refused.value.message


def test_filter_refusal_lists_the_fields() -> None:
    with pytest.raises(GraphError) as refused:
        odata.parse_filter("model eq 'x'", FILTER_FIELDS)
    assert refused.value.message.endswith(", ".join(FILTER_FIELDS))


def test_top_and_skiptoken() -> None:
    assert odata.parse_top(None, default=100, maximum=1000) == 100
    assert odata.parse_top("5000", default=100, maximum=1000) == 1000
    for bad in ("0", "-1", "ten", ""):
        with pytest.raises(GraphError):
            odata.parse_top(bad, default=100, maximum=1000)
    assert odata.decode_skiptoken(None) == 0
    for position in (1, 99, 123_456_789):
        token = odata.encode_skiptoken(position)
        assert "=" not in token and odata.decode_skiptoken(token) == position
    for bad in ("???", "bm90IGEgbnVtYmVy"):  # not base64; base64 of "not a number"
        with pytest.raises(GraphError):
            odata.decode_skiptoken(bad)


FIELDS = odata.Fields("thing", ("name", "n", "on"), ("name", "n"), ("name", "n", "on"))


def test_query_options_with_or_without_dollar_each_once() -> None:
    query = odata.parse_query([("top", "2"), ("$Skip", "1"), ("$orderby", "n desc, name"), ("limit", "x")], FIELDS)
    assert (query.top, query.skip, query.orderby) == ("2", 1, (("n", True), ("name", False)))
    with pytest.raises(GraphError, match="more than once"):
        odata.parse_query([("$top", "1"), ("top", "2")], FIELDS)
    with pytest.raises(GraphError, match="not supported"):
        odata.parse_query([("$levels", "2")], FIELDS)


def test_apply_filters_orders_counts_pages_and_selects() -> None:
    items = [{"@odata.type": "#t", "name": name, "n": n, "on": on}
             for name, n, on in (("b", 2, True), ("a", None, False), ("c", 1, True), ("d", 1, False))]
    query = odata.parse_query(
        [("$filter", "n ne 2"), ("$orderby", "n,name desc"), ("$top", "2"), ("$count", "true"), ("$select", "name")],
        FIELDS,
    )
    page = odata.apply(items, query, default_top=10, maximum=10)
    assert page.count == 3  # before paging
    assert page.items == [{"@odata.type": "#t", "name": "a"}, {"@odata.type": "#t", "name": "d"}]  # nulls first
    rest = odata.apply(items, odata.Query(**{**query.__dict__, "skiptoken": page.next_skiptoken}), default_top=10, maximum=10)
    assert (rest.items, rest.next_skiptoken) == ([{"@odata.type": "#t", "name": "c"}], None)
    # eq compares type too: true is not 1
    assert odata.apply(items, odata.parse_query([("$filter", "n eq true")], FIELDS), default_top=10, maximum=10).items == []
