"""Query parameters of the REST routes, read in one place (SPEC §3: bad values are 422).

A route reads each parameter it takes through one :class:`QueryReader`, which collects a
problem per bad parameter; :meth:`QueryReader.check` then raises one
:class:`~app.errors.ValidationFailed` naming every one of them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from app.errors import ValidationFailed, problem
from app.model.cursor import MAX_CURSOR, parse_integer


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

    def text(self, name: str) -> str | None:
        """Any text; None if absent or empty."""
        return self._params.get(name) or None

    def flag(self, name: str) -> bool:
        """True for ``1`` or ``true``; anything else (or nothing) is false."""
        return self._params.get(name) in ("1", "true")

    def check(self) -> None:
        """Raise :class:`ValidationFailed` naming every bad parameter read so far."""
        if self._problems:
            raise ValidationFailed("bad query parameters", self._problems)
