"""``docs/asyncapi.yaml`` (SPEC §12): generated from the message Structs, valid AsyncAPI 3,
served at ``/asyncapi.yaml``, and complete (every message type, command and close code)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import msgspec
import pytest
import yaml

from app import messages
from app.http.asyncapi import asyncapi_document, asyncapi_yaml
from app.push.connection import CloseCode
from support.asyncapi import check_message
from support.engine import reference
from support.npm import installed

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "asyncapi.yaml"
#: The AsyncAPI 3.0.0 JSON Schema from the pinned @asyncapi/specs (scripts/setup: npm ci).
SPEC_SCHEMA = "@asyncapi/specs/schemas/3.0.0-without-$id.json"


def test_the_committed_document_is_the_generated_one() -> None:
    assert DOCUMENT.read_text() == asyncapi_yaml(), (
        "docs/asyncapi.yaml is stale: run .venv/bin/python -m app.http.asyncapi > "
        "docs/asyncapi.yaml"
    )


async def test_it_is_served_at_asyncapi_yaml(client: httpx.AsyncClient) -> None:
    response = await client.get("/asyncapi.yaml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/yaml")
    assert response.text == DOCUMENT.read_text()


def test_it_validates_against_the_asyncapi_3_schema() -> None:
    schema = json.loads(installed(SPEC_SCHEMA).read_text())
    document = yaml.safe_load(DOCUMENT.read_text())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator(schema, document)]
    assert not errors


def _validator(schema: Any, document: Any) -> Any:
    return jsonschema.Draft7Validator(schema).iter_errors(document)


def test_every_reference_resolves() -> None:
    document = asyncapi_document()
    refs = list(_refs(document))
    assert len(refs) > 50
    for ref in refs:
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]  # KeyError: a dangling $ref


def _refs(node: Any) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_message_command_and_close_code_is_documented() -> None:
    document = asyncapi_document()
    tagged = {
        cls.__struct_config__.tag
        for cls in vars(messages).values()
        if isinstance(cls, type)
        and issubclass(cls, msgspec.Struct)
        and isinstance(cls.__struct_config__.tag, str)
        and not cls.__name__.startswith("_")  # the bases of messages and commands
    }
    assert {"executionStarted", "executionSnapshot", "resumeFailed", "ack"} <= tagged
    assert set(document["components"]["messages"]) == tagged
    push = document["channels"]["push"]
    assert {c["code"] for c in push["x-close-codes"]} == {int(c) for c in CloseCode}
    replies = document["operations"]["subscribe_execution"]["reply"]["messages"]
    assert {"$ref": "#/channels/push/messages/ack"} in replies


@pytest.mark.parametrize(
    "capture",
    ["success-trigger-set-set.jsonl", "error-code-node-throws.jsonl", "error-stop-and-error.jsonl"],
)
def test_what_real_n8n_sends_matches_the_documented_schemas(capture: str) -> None:
    # The captures of tests/fixtures/n8n-push: a client typed by the document reads n8n too.
    messages = reference(capture)
    assert messages
    for message in messages:
        check_message(message)
