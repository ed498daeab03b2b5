"""Sets of values by key, a key gone once its set is empty (who follows which execution)."""

from __future__ import annotations

from typing import Generic, TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")


class Index(dict[_K, set[_V]], Generic[_K, _V]):
    def add(self, key: _K, value: _V) -> None:
        self.setdefault(key, set()).add(value)

    def discard(self, key: _K, value: _V) -> None:
        values = self.get(key)
        if values is not None:
            values.discard(value)
            if not values:
                del self[key]
