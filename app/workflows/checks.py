"""Checking JSON against msgspec types so that every problem is reported with its path
(``nodes[3].parameters.ms: expected int``), not just the first one msgspec stops at.

Used by the workflow schema, by node types checking their parameters, and by the REST API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

import msgspec

from app.errors import problem

Problem = dict[str, str]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


@dataclass(frozen=True, slots=True)
class ValidationContext:
    """What a node type's ``validate`` may consult beyond the parameters."""

    #: Modules whose functions ``python`` nodes may call.
    python_modules: tuple[str, ...]


def check_value(raw: Any, type_: Any, path: str) -> list[Problem]:
    """Every mismatch between JSON-like ``raw`` and ``type_``, each at its path under ``path``.

    Structs, lists and dicts are walked so that all problems are found, not just the first
    one msgspec stops at. ``[]`` means ``msgspec.convert(raw, type_)`` will succeed.
    """
    origin, args = get_origin(type_), get_args(type_)
    if isinstance(type_, type) and issubclass(type_, msgspec.Struct) and isinstance(raw, dict):
        return _check_struct(raw, type_, path)
    if origin is list and isinstance(raw, list):
        return [p for i, item in enumerate(raw) for p in check_value(item, args[0], f"{path}[{i}]")]
    if origin is dict and isinstance(raw, dict):
        return [p for k, v in raw.items() for p in check_value(v, args[1], join_path(path, k))]
    if origin is Annotated:
        inner = check_value(raw, args[0], path)
        if inner:
            return inner
    try:
        msgspec.convert(raw, type_)
    except msgspec.ValidationError as exc:
        return [from_msgspec(exc, path)]
    return []


def join_path(path: str, key: object) -> str:
    """``path.key``, or ``path["key"]`` when the key is not a plain identifier."""
    if isinstance(key, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{msgspec.json.encode(key).decode()}]"


def from_msgspec(exc: msgspec.ValidationError, path: str) -> Problem:
    """``Expected `int`, got `str` - at `$.x[0]``` under ``path`` -> ``path.x[0]``."""
    message, _, where = str(exc).partition(" - at `$")
    full = (path + where.rstrip("`")).lstrip(".") or "$"
    message = message.replace("`", "")
    return problem(full, message[:1].lower() + message[1:])


def _check_struct(raw: dict[Any, Any], cls: type[msgspec.Struct], path: str) -> list[Problem]:
    fields = msgspec.structs.fields(cls)
    problems = [
        problem(join_path(path, f.encode_name), "required field missing")
        for f in fields
        if f.required and f.encode_name not in raw
    ]
    for f in fields:
        if f.encode_name in raw:
            problems += check_value(raw[f.encode_name], f.type, join_path(path, f.encode_name))
    if cls.__struct_config__.forbid_unknown_fields:
        known = {f.encode_name for f in fields}
        problems += [problem(join_path(path, k), "unknown field") for k in raw if k not in known]
    return problems
