"""Request bodies decoded against their Structs: JSON numbers as JSON Schema reads them."""

from __future__ import annotations

import msgspec
import pytest

from app.errors import ValidationFailed
from app.http.requests import decode_json


class Limits(msgspec.Struct, forbid_unknown_fields=True):
    ttl_s: int
    sizes: list[int] = []
    input: dict[str, object] | None = None


def test_a_whole_number_written_with_a_fraction_is_an_integer() -> None:
    # JSON Schema's "integer" (the documented type) includes 60.0; so must the decoding.
    limits = decode_json(b'{"ttl_s": 60.0, "sizes": [1.0, 2]}', Limits)
    assert limits.ttl_s == 60 and type(limits.ttl_s) is int
    assert limits.sizes == [1, 2]


def test_a_value_as_sent_keeps_its_numbers_when_nothing_needed_changing() -> None:
    limits = decode_json(b'{"ttl_s": 60, "input": {"x": 1.0}}', Limits)
    assert limits.input == {"x": 1.0} and type(limits.input["x"]) is float


@pytest.mark.parametrize("body", [b'{"ttl_s": 60.5}', b'{"ttl_s": "60"}', b'{"ttl_s": true}'])
def test_a_fraction_a_string_or_a_boolean_is_still_refused(body: bytes) -> None:
    with pytest.raises(ValidationFailed) as refused:
        decode_json(body, Limits)
    assert refused.value.details[0]["path"] == "ttl_s"
