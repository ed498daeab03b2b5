"""The operator's routes: liveness (``/healthz``), readiness (``/readyz``) and Prometheus
metrics (``/metrics``); see docs/deploy.md."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from app.errors import BackendUnavailable
from app.http.bodies import JSONResponse
from app.metrics import prometheus
from app.runtime import runtime


async def healthz(request: Request) -> Response:
    """Liveness: 200 while the process answers, also when its store cannot write (a restart
    frees no disk and loses the writes held for retry). ``{"status": "ok"}``, or
    ``{"status": "degraded", "store": {...}}`` saying why (docs/deploy.md)."""
    health = runtime(request).health
    if health.writable and health.checkpointing:
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "degraded", "store": health.report()})


async def readyz(request: Request) -> Response:
    """200 while every shared backend (PostgreSQL, Redis) answers; 503 naming the ones that
    do not (``/healthz`` stays 200: the process itself is alive)."""
    checks = await runtime(request).readiness()
    if any(state != "ok" for state in checks.values()):
        raise BackendUnavailable("a backend is unavailable", details=checks)
    return JSONResponse({"status": "ready", "checks": checks})


async def metrics(request: Request) -> Response:
    rt = runtime(request)
    lag = prometheus(rt.loop_lag.gauges()) if rt.loop_lag else ""
    pruned = prometheus({}, rt.pruner.counters()) if rt.pruner else ""
    return PlainTextResponse(
        rt.service.metrics_text() + rt.hub.metrics_text() + rt.health.metrics_text() + lag + pruned
    )


def operation_routes() -> list[BaseRoute]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
