"""Numeric settings out of their meaningful range are refused, naming the setting, whether
they come from a ``GRAPHPUSH_*`` variable or an override (a CLI flag)."""

from __future__ import annotations

import msgspec
import pytest

from app.settings import load_settings

REFUSED = [
    ("port", "70000", "port must be from 1 to 65535, not 70000"),
    ("port", "0", "port must be from 1 to 65535, not 0"),
    ("port", "-1", "port must be from 1 to 65535, not -1"),
    ("workers", "-1", "workers must be 0 or more, not -1"),
    ("queue_bound", "0", "queue_bound must be 1 or more, not 0"),
    ("max_body_bytes", "0", "max_body_bytes must be 1 or more, not 0"),
    ("shutdown_timeout_s", "-1", "shutdown_timeout_s must be 0 or more, not -1.0"),
    ("execution_timeout_s", "-5", "execution_timeout_s must be 0 or more, not -5.0"),
    ("history_max_age_s", "-1", "history_max_age_s must be 0 or more, not -1.0"),
    ("history_max_count", "-1", "history_max_count must be 0 or more, not -1"),
    ("claim_idle_s", "0", "claim_idle_s must be positive, not 0.0"),
    ("idempotency_ttl_s", "-1", "idempotency_ttl_s must be positive, not -1.0"),
    ("prune_interval_s", "0", "prune_interval_s must be positive, not 0.0"),
    ("ping_interval_s", "0", "ping_interval_s must be positive, not 0.0"),
    ("default_recursion_limit", "0", "default_recursion_limit must be 1 or more, not 0"),
    ("stream_flush_ms", "-1", "stream_flush_ms must be 0 or more, not -1"),
    ("max_message_bytes", "0", "max_message_bytes must be 1 or more, not 0"),
    ("resume_buffer_count", "-1", "resume_buffer_count must be 0 or more, not -1"),
    ("resume_buffer_age_s", "-1", "resume_buffer_age_s must be 0 or more, not -1.0"),
    ("connection_buffer_bytes", "0", "connection_buffer_bytes must be 1 or more, not 0"),
    ("max_inbound_frame_bytes", "-1", "max_inbound_frame_bytes must be 1 or more, not -1"),
    ("webhook_concurrency", "0", "webhook_concurrency must be 1 or more, not 0"),
]


@pytest.mark.parametrize(("name", "value", "says"), REFUSED)
def test_a_meaningless_number_in_the_environment_is_refused(
    name: str, value: str, says: str
) -> None:
    with pytest.raises(msgspec.ValidationError) as refused:
        load_settings(environ={f"GRAPHPUSH_{name.upper()}": value})
    assert str(refused.value) == says


@pytest.mark.parametrize(("name", "value", "says"), REFUSED)
def test_a_meaningless_number_given_as_an_option_is_refused(
    name: str, value: str, says: str
) -> None:
    with pytest.raises(msgspec.ValidationError) as refused:
        load_settings({name: int(value)}, environ={})
    assert str(refused.value) == says


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("port", 1),
        ("port", 65535),
        ("workers", 0),
        ("shutdown_timeout_s", 0),
        ("execution_timeout_s", 0),
        ("history_max_age_s", 0),
        ("history_max_count", 0),
        ("stream_flush_ms", 0),
        ("resume_buffer_count", 0),
        ("resume_buffer_age_s", 0),
    ],
)
def test_the_edges_of_each_range_and_zero_where_it_means_something_are_taken(
    name: str, value: int
) -> None:
    assert getattr(load_settings({name: value}, environ={}), name) == value
