"""Liveness, readiness (Redis and the model backend reachable, workers taking jobs) and Prometheus metrics."""
from __future__ import annotations

import time

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from sportlens.service.jobs import workers_key
from sportlens.service.schemas import Health, Problem

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up and serving HTTP."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request) -> Response:
    """Ready when Redis answers, a worker's heartbeat is fresher than a lease (jobs are being taken), and the
    model backend answers (its /v1/models over HTTP; loaded, in-process)."""
    state = request.app.state
    checks: dict[str, str] = {}
    settings = state.settings
    try:
        await state.redis.ping()
        checks["redis"] = "ok"
        lease = settings.worker_lease_s
        taking = await state.redis.zcount(workers_key(settings), time.time() - lease, "+inf")
        checks["workers"] = f"ok ({taking} taking jobs)" if taking else f"no worker has taken jobs for {lease:g} s"
    except Exception as error:  # any failure means not ready; the reason goes in the body
        checks["redis"] = f"unreachable: {error}"
        checks["workers"] = "unknown (no Redis)"
    if settings.backend_url:
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                reply = await client.get(f"{settings.backend_url.rstrip('/').removesuffix('/v1')}/v1/models")
            checks["model"] = "ok" if reply.status_code < 400 else f"answered HTTP {reply.status_code}"
        except httpx.HTTPError as error:
            checks["model"] = f"unreachable: {error!r}"
    elif settings.runs_in_process_worker:
        checks["model"] = "ok" if state.model_ready.is_set() else "loading"
    else:
        checks["model"] = "ok (in-process in the workers)"
    ok = all(value.startswith("ok") for value in checks.values())
    health = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(health.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}},
                                                            503: {"model": Problem}})
def metrics(request: Request) -> Response:
    """Prometheus text format: requests, latencies, queue depth, jobs by state, frames decoded, model tokens."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
