"""Origin check (SPEC §5.5, n8n's host rules) and the other admission checks, as tables."""

from __future__ import annotations

import pytest

from app.errors import BadRequest
from app.push import admission
from app.push.origin import origin_allowed

CASES = [
    # (headers, allowed, expected)
    ({}, (), True),  # no Origin: same-origin EventSource or a non-browser client
    ({"host": "localhost:8000"}, (), True),
    ({"origin": "http://localhost:8000", "host": "localhost:8000"}, (), True),
    ({"origin": "http://evil.example", "host": "localhost:8000"}, (), False),
    ({"origin": "http://localhost:9000", "host": "localhost:8000"}, (), False),
    ({"origin": "https://app.example", "host": "app.example:443"}, (), True),
    ({"origin": "http://app.example:80", "host": "APP.example"}, (), True),
    ({"origin": "https://app.example", "host": "app.example:80"}, (), False),
    ({"origin": "http://[::1]:8000", "host": "[::1]:8000"}, (), True),
    ({"origin": "http://[::1]", "host": "[::1]:80"}, (), True),
    (
        {
            "origin": "https://pub.example",
            "host": "internal:8000",
            "x-forwarded-host": "pub.example",
        },
        (),
        True,
    ),
    (
        {
            "origin": "https://pub.example",
            "host": "x",
            "x-forwarded-host": "pub.example:443, proxy",
        },
        (),
        True,
    ),
    (
        {
            "origin": "http://pub.example",
            "host": "x",
            "x-forwarded-host": "pub.example:443",
            "x-forwarded-proto": "https",
        },
        (),
        True,
    ),
    (
        {
            "origin": "https://a.example",
            "host": "x",
            "x-forwarded-host": "b.example",
            "forwarded": 'for=1.2.3.4;host="a.example";proto=https',
        },
        (),
        True,
    ),
    (
        {"origin": "https://b.example", "host": "b.example", "forwarded": "host=a.example"},
        (),
        False,
    ),
    ({"origin": "http://evil.example", "host": "localhost"}, ("http://evil.example",), True),
    ({"origin": "http://evil.example:80", "host": "localhost"}, ("http://evil.example",), True),
    ({"origin": "https://evil.example", "host": "localhost"}, ("http://evil.example",), False),
    ({"origin": "null", "host": "localhost"}, (), False),
    ({"origin": "file://", "host": "localhost"}, (), False),
    ({"origin": "http://localhost:99999", "host": "localhost:99999"}, (), False),
    ({"origin": "http://localhost"}, (), False),  # nothing to compare with
]


@pytest.mark.parametrize(("headers", "allowed", "expected"), CASES)
def test_origin_rules(headers: dict[str, str], allowed: tuple[str, ...], expected: bool) -> None:
    assert origin_allowed(headers, allowed) is expected


@pytest.mark.parametrize("ref", ["a", "abcdefghij", "A-Z_09", "x" * 64])
def test_valid_push_refs(ref: str) -> None:
    assert admission.push_ref(ref) == ref


@pytest.mark.parametrize("ref", [None, "", "x" * 65, "a b", "a/b", "ä", "a.b"])
def test_invalid_push_refs_are_bad_requests(ref: str | None) -> None:
    with pytest.raises(BadRequest):
        admission.push_ref(ref)


def test_cursors() -> None:
    assert admission.cursor(None, "after") is None
    assert admission.cursor("", "after") is None
    assert admission.cursor("17", "after") == 17
    for bad in ("-1", "x", "1.5", "9" * 30):
        with pytest.raises(BadRequest):
            admission.cursor(bad, "after")


@pytest.mark.parametrize(
    ("accept", "ok"),
    [
        (None, True),
        ("text/event-stream", True),
        ("*/*", True),
        ("text/html, */*;q=0.8", True),
        ("application/json", False),
    ],
)
def test_accept_header(accept: str | None, ok: bool) -> None:
    assert admission.accepts_event_stream(accept) is ok
