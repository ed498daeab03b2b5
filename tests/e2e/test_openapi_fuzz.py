"""schemathesis fuzzes the live REST API from its own ``/openapi.json`` (SPEC §12).

Every operation gets a fixed number of generated requests that match the document and as
many that break it, against real uvicorn; no answer may be a 5xx, and each must match the
document: a documented status, a body of its schema, the declared content type and headers.

Alone: ``.venv/bin/pytest tests/e2e/test_openapi_fuzz.py``; more examples per operation
with ``FUZZ_EXAMPLES=500``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.http.api import OPERATIONS
from app.http.openapi import openapi_document
from app.main import create_app
from app.settings import load_settings
from support.app import Server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
SCHEMA = schemathesis.openapi.from_dict(openapi_document(OPERATIONS))


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    app_settings = load_settings({"data_dir": data_dir}, environ={})
    with Server(create_app(app_settings), app_settings) as server:
        yield server.url


def _cases() -> list[Any]:
    """Every operation with valid requests, and with invalid ones where it takes any input
    that can be invalid (a body, a query parameter, a header with a pattern)."""
    cases = []
    for operation in (result.ok() for result in SCHEMA.get_all_operations()):
        if operation.path == "/agents/push":
            continue  # any valid pushRef opens an endless stream (tests/asgi/test_push_sse.py)
        params = operation.definition.raw.get("parameters", [])
        constrained = [p for p in params if p["in"] != "path" and p["schema"] != {"type": "string"}]
        breakable = constrained or "requestBody" in operation.definition.raw
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE][: 2 if breakable else 1]
        cases += [pytest.param(operation, mode, id=f"{operation.label} {mode}") for mode in modes]
    return cases


def _without_webhook(case: schemathesis.Case) -> schemathesis.Case:
    """A run's `webhook` is any string to its schema, but an address it refuses (a literal
    private or metadata address, SPEC §11) is a 422: valid runs are fuzzed without one
    (tests/e2e/test_webhooks.py covers it), invalid ones with whatever is generated."""
    if isinstance(case.body, dict):
        case.body.pop("webhook", None)
    return case


@pytest.mark.parametrize(("operation", "mode"), _cases())
def test_every_answer_matches_the_document(
    base_url: str, operation: Any, mode: GenerationMode
) -> None:
    # A workflow's JSON Schema cannot say that node types are registered ones, that
    # connections name existing nodes or that the graph is bounded (SPEC §2): a body of the
    # right shape may still be a 422, so only that check is left out for workflow bodies.
    excluded = (
        [positive_data_acceptance]
        if operation.path == "/agents/workflows"
        or (operation.path == "/agents/workflows/{workflow_id}" and operation.method == "put")
        else []
    )

    strategy = operation.as_strategy(mode)
    if mode is GenerationMode.POSITIVE and operation.path.endswith("/run"):
        strategy = strategy.map(_without_webhook)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url, timeout=10, excluded_checks=excluded)

    fuzz()
