"""Every push message a test receives, checked against its schema in the AsyncAPI document.

The decoders of :mod:`support.push` and :mod:`support.app` pass each message they decode
through :func:`check_message`, so every test that reads a WebSocket frame, an SSE event or
the stored log also proves that what the server sent matches ``docs/asyncapi.yaml``.
"""

from __future__ import annotations

from typing import Any, Final

import jsonschema

from app.http.asyncapi import asyncapi_document

_DOCUMENT: Final = asyncapi_document()
_VALIDATORS: Final = {
    name: jsonschema.Draft7Validator(
        {"$ref": message["payload"]["$ref"], "components": _DOCUMENT["components"]}
    )
    for name, message in _DOCUMENT["components"]["messages"].items()
}


def check_message(message: Any) -> Any:
    """``message`` unchanged, once it matches the schema of its ``type``.

    Raises AssertionError for a message of no documented type or one that breaks its schema.
    """
    assert isinstance(message, dict), f"a push message is a JSON object: {message!r}"
    validator = _VALIDATORS.get(message.get("type"))
    assert validator is not None, f"undocumented message type: {message.get('type')!r}"
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(message)]
    assert not errors, f"{message['type']} breaks docs/asyncapi.yaml: {errors}"
    return message
