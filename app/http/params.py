"""Path and query parameters of the routes, read in one place.

A path parameter written ``{name:id}`` matches an id (:mod:`app.model.ids`) only, so a path
with any other text is a 404 before a handler runs. A route reads each query parameter it
takes through one :class:`QueryReader`, which collects a problem per bad parameter;
:meth:`QueryReader.check` then raises one :class:`~app.errors.ValidationFailed` (422, SPEC
§3) naming every one of them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Final

from starlette.convertors import StringConvertor, register_url_convertor

from app.errors import ValidationFailed, problem
from app.model.cursor import MAX_CURSOR, parse_integer
from app.model.ids import ID_PATTERN, is_identifier


class _IdConvertor(StringConvertor):
    regex = ID_PATTERN


register_url_convertor("id", _IdConvertor())

#: The paths of one workflow and of one execution, and the prefix of their sub-resources.
WORKFLOW_PATH: Final = "/agents/workflows/{workflow_id:id}"
EXECUTION_PATH: Final = "/agents/executions/{execution_id:id}"


class QueryReader:
    __slots__ = ("_params", "_problems")

    def __init__(self, params: Mapping[str, str]) -> None:
        self._params = params
        self._problems: list[dict[str, str]] = []

    def integer(self, name: str, default: int, low: int = 0, high: int = MAX_CURSOR) -> int:
        """An integer from ``low`` to ``high`` written in ASCII digits; ``default`` if absent."""
        raw = self._params.get(name)
        if raw is None:
            return default
        value = parse_integer(raw, low, high)
        if value is None:
            self._problems.append(problem(name, f"expected an integer from {low} to {high}"))
            return default
        return value

    def choice(self, name: str, choices: Collection[str]) -> str | None:
        """One of ``choices``; None if absent or empty."""
        raw = self._params.get(name) or None
        if raw is not None and raw not in choices:
            self._problems.append(problem(name, f"unknown {name} {raw!r}"))
            return None
        return raw

    def identifier(self, name: str) -> str | None:
        """An id (:mod:`app.model.ids`); None if absent or empty."""
        raw = self._params.get(name) or None
        if raw is not None and not is_identifier(raw):
            self._problems.append(problem(name, f"expected {ID_PATTERN}"))
            return None
        return raw

    def flag(self, name: str) -> bool:
        """True for ``1`` or ``true``; anything else (or nothing) is false."""
        return self._params.get(name) in ("1", "true")

    def check(self) -> None:
        """Raise :class:`ValidationFailed` naming every bad parameter read so far."""
        if self._problems:
            raise ValidationFailed("bad query parameters", self._problems)
