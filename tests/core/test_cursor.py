"""A client's integers: ASCII digits only, every cursor bounded by what the stores hold."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import BadRequest
from app.model.cursor import MAX_CURSOR, parse_integer
from app.push import admission

ASCII_DIGITS = frozenset("0123456789")


@pytest.mark.parametrize(
    "text",
    [
        *("", " ", "²", "\u0663", "\u06f3", "\uff13", "1_0", "+1", "-1", "1.0", "0x1", "1e3"),
        *(str(MAX_CURSOR + 1), "9" * 4_000),
    ],
)
def test_anything_but_ascii_digits_in_bounds_is_not_an_integer(text: str) -> None:
    assert parse_integer(text) is None


def test_bounds_are_inclusive() -> None:
    assert parse_integer(str(MAX_CURSOR)) == MAX_CURSOR
    assert parse_integer("0") == 0
    assert parse_integer(" 7 ") == 7
    assert parse_integer("200", 1, 200) == 200
    assert parse_integer("201", 1, 200) is None
    assert parse_integer("0", 1, 200) is None


@given(st.text(max_size=30), st.integers(0, 300), st.integers(0, MAX_CURSOR))
def test_a_parsed_integer_is_the_ascii_digits_of_the_text_within_bounds(
    text: str, low: int, high: int
) -> None:
    value = parse_integer(text, low, high)

    digits = text.strip()
    if value is None:
        assert not (digits and ASCII_DIGITS.issuperset(digits) and low <= int(digits) <= high)
    else:
        assert ASCII_DIGITS.issuperset(digits) and int(digits) == value and low <= value <= high


@given(st.integers(0, MAX_CURSOR))
def test_every_cursor_in_bounds_reads_back(value: int) -> None:
    assert parse_integer(str(value)) == value
    assert admission.cursor(str(value), "after") == value


@pytest.mark.parametrize("bad", ["²", "\u0663", str(MAX_CURSOR + 1)])
def test_push_cursors_share_the_bounds(bad: str) -> None:
    with pytest.raises(BadRequest, match="lastEventId"):
        admission.cursor(bad, "lastEventId")
