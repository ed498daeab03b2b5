"""The operator's routes: liveness (``/healthz``), readiness (``/readyz``) and Prometheus
metrics (``/metrics``); see docs/deploy.md. The probes are open, for orchestrators that
send no credentials; ``/metrics`` is REST like the rest (SPEC §5: an API key when keys are
set), since it tells how busy the service is."""

from __future__ import annotations

from typing import Final

from app.errors import BackendUnavailable
from app.http.operation import Answer, Call, Operation, operation
from app.http.schemas import Health, Readiness
from app.metrics import prometheus
from app.runtime import runtime


@operation("GET", "/healthz", Answer(200, "alive", Health), access="public", tag="operations")
async def healthz(call: Call) -> Health:
    """Liveness: 200 while the process answers, also when its store cannot write.

    A restart frees no disk and loses the writes held for retry: `status` is `degraded`
    then, and `store` says why (docs/deploy.md).
    """
    health = runtime(call.request).health
    if health.writable and health.checkpointing:
        return Health(status="ok")
    return Health(status="degraded", store=health.report())


@operation(
    "GET",
    "/readyz",
    Answer(200, "every shared backend answers", Readiness),
    errors=(BackendUnavailable,),
    access="public",
    tag="operations",
)
async def readyz(call: Call) -> Readiness:
    """Readiness: every shared backend (PostgreSQL, Redis) answers.

    503 names the ones that do not, in `details` (`/healthz` stays 200: the process itself
    is alive).
    """
    checks = await runtime(call.request).readiness()
    if any(state != "ok" for state in checks.values()):
        raise BackendUnavailable("a backend is unavailable", details=checks)
    return Readiness(status="ready", checks=checks)


@operation(
    "GET",
    "/metrics",
    Answer(200, "Prometheus text", str, "text/plain; version=0.0.4"),
    tag="operations",
)
async def metrics(call: Call) -> str:
    """Prometheus metrics (an API key when keys are set; the probes stay open)."""
    rt = runtime(call.request)
    lag = prometheus(rt.loop_lag.gauges()) if rt.loop_lag else ""
    pruned = prometheus({}, rt.pruner.counters()) if rt.pruner else ""
    passes = rt.push_passes
    passed = prometheus(passes.gauges(), passes.counters()) if passes else ""
    texts = (rt.service.metrics_text(), rt.hub.metrics_text(), rt.health.metrics_text())
    return "".join(texts) + lag + pruned + passed


OPERATIONS: Final[tuple[Operation, ...]] = (healthz, readyz, metrics)
