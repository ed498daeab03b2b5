"""Prometheus text exposition for ``GET /metrics``."""

from __future__ import annotations

from collections.abc import Mapping


def prometheus(gauges: Mapping[str, float], counters: Mapping[str, float] | None = None) -> str:
    """``graphpush_``-prefixed series; a counter name may carry labels (``runs{status="x"}``)."""
    lines: list[str] = []
    for kind, series in (("gauge", gauges), ("counter", counters or {})):
        declared: set[str] = set()
        for name, value in series.items():
            base = name.partition("{")[0]
            if base not in declared:
                declared.add(base)
                lines.append(f"# TYPE graphpush_{base} {kind}")
            lines.append(f"graphpush_{name} {value}")
    return "\n".join(lines) + "\n"
