"""The one encoder of push messages: every message is encoded once, when it is made."""

from __future__ import annotations

from typing import Final

import msgspec

from app.messages.execution import ExecutionMessage


def _fallback(value: object) -> object:
    """Values JSON has no form for (a registered graph may return any object): a pydantic
    model (a LangChain message, say) as its JSON form, anything else as text."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:  # a model whose fields JSON cannot hold: shown as text like others
            return repr(value)
    return repr(value)


encoder: Final = msgspec.json.Encoder(enc_hook=_fallback)


def encode(message: ExecutionMessage) -> bytes:
    return encoder.encode(message)
