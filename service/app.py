"""The FastAPI application: routers, the Redis connections, and (embedded default) a private Redis and a worker."""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from redis.asyncio import BlockingConnectionPool, Redis

from sportlens.agent.backends.base import ModelBackend
from sportlens.service.auth import AuthGate
from sportlens.service.edge import BodyLimit, HostCheck, SecurityHeaders, page_policy
from sportlens.service.embedded_redis import EmbeddedRedis
from sportlens.service.jobs import JobStore
from sportlens.service.limits import RateLimiter, Slots
from sportlens.service.metrics import Metrics, MetricsMiddleware, SharedStats
from sportlens.service.routers import health, jobs, questions, videos
from sportlens.service.settings import ServiceSettings
from sportlens.service.storage import Quotas, VideoStore
from sportlens.service.worker import connect, make_backend, work

log = logging.getLogger(__name__)
PAGE = Path(__file__).parent / "static" / "index.html"
ECHO_LIMIT = 200  # characters of a rejected input quoted back in a 422


def create_app(settings: ServiceSettings | None = None, *, backend: ModelBackend | None = None,
               embedded_redis: EmbeddedRedis | None = None) -> FastAPI:
    """The API. Connections open in its lifespan; with no REDIS_URL it starts its own Redis and worker.

    ``backend`` replaces the model the settings name in the in-process worker (benchmarks use one that
    answers at once, to measure what the service itself costs). ``embedded_redis``: the embedded default's
    private Redis, already started (`sportlens serve` starts it first, so that a failure is one line); without
    it the lifespan starts one. Either way the lifespan stops it at shutdown.
    """
    settings = settings or ServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        embedded = embedded_redis
        url = settings.redis_url
        if url is None:
            if embedded is None:
                embedded = EmbeddedRedis(settings.home / "redis").start()
            url = embedded.url
            log.info("embedded Redis on %s (data in %s)", url, embedded.data_dir)
        pool, unbounded = await connect(url)
        await unbounded.aclose()
        # One bounded pool: event streams and waits block on theirs, so they get half of it at most (Slots).
        redis_text = Redis.from_pool(BlockingConnectionPool.from_url(
            url, decode_responses=True, max_connections=settings.redis_max_connections, timeout=5))
        state = app.state
        state.settings, state.queue, state.redis, state.redis_bytes = settings, pool, redis_text, pool
        state.jobs = JobStore(redis_text, settings)
        state.videos = VideoStore(settings.storage_dir, redis_text, int(settings.max_upload_mb * 2**20), state.jobs,
                                  quotas=Quotas.of(settings))
        state.rate_limiter = RateLimiter(redis_text, settings.queue_name)
        blocking = settings.redis_max_connections // 4
        state.streams = Slots(redis_text, f"{settings.queue_name}:streams", "open event streams",
                              settings.max_streams_per_key, blocking, settings.slot_lease_s)
        state.waits = Slots(redis_text, f"{settings.queue_name}:waits", "open wait= requests",
                            settings.max_waits_per_key, blocking, settings.slot_lease_s)
        shared.connect(url)
        state.model_ready = asyncio.Event()
        worker_task = None
        if settings.runs_in_process_worker:
            worker_task = asyncio.create_task(_in_process_worker(settings, url, state.model_ready, backend))
        try:
            yield
        finally:
            if worker_task is not None:
                worker_task.cancel()
                await asyncio.gather(worker_task, return_exceptions=True)
            shared.close()
            await redis_text.aclose()
            await pool.aclose()
            if embedded is not None:
                embedded.stop()

    app = FastAPI(
        title="sportlens",
        version="1",
        summary="Ask questions about sports videos; an agent looks at frames, thinks, and answers.",
        lifespan=lifespan,
    )
    shared = SharedStats(settings.queue_name)
    app.state.metrics = Metrics(shared)
    app.state.settings = settings
    page = PAGE.read_text()
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(AuthGate)
    app.add_middleware(HostCheck, settings=settings)
    app.add_middleware(SecurityHeaders, page_policy=page_policy(page))
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    for router in (videos.router, questions.router, jobs.router, health.router):
        app.include_router(router)

    def openapi() -> dict:
        """The document of this service as configured: without keys there is no auth to send and no 401, but
        a Host that is not this machine gets 421; with keys, /metrics needs one too."""
        document = FastAPI.openapi(app)
        problems = document["paths"]["/v1/questions"]["post"]["responses"]
        if settings.api_keys:
            metrics = document["paths"]["/metrics"]["get"]
            metrics["security"] = document["paths"]["/v1/questions"]["post"]["security"]
            metrics["responses"].update({code: problems[code] for code in ("401", "429")})
            return document
        document.get("components", {}).pop("securitySchemes", None)
        for operations in document["paths"].values():
            for operation in operations.values():
                operation.pop("security", None)
                operation["responses"].pop("401", None)
                operation["responses"]["421"] = {"description": "the Host header does not name this machine",
                                                  "content": problems["503"]["content"]}
        return document

    app.openapi = openapi

    @app.get("/", include_in_schema=False)
    async def page_route() -> HTMLResponse:
        return HTMLResponse(page)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": [_without_large_input(problem) for problem in error.errors()]}, status_code=422)

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def redis_down(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"the job store (Redis) is unavailable: {error}"}, status_code=503)

    return app


def _without_large_input(problem: dict) -> dict:
    """A validation problem whose quoted input (and names in its location) are cut to ECHO_LIMIT characters: a
    reply must not grow with what was sent."""
    problem = jsonable_encoder(problem)
    problem["loc"] = [part[:ECHO_LIMIT] if isinstance(part, str) else part for part in problem.get("loc", [])]
    if "input" in problem:
        quoted = json.dumps(problem["input"])
        if len(quoted) > ECHO_LIMIT:
            problem["input"] = f"{quoted[:ECHO_LIMIT]}… ({len(quoted)} characters, not all quoted)"
    return problem


async def _in_process_worker(settings: ServiceSettings, url: str, ready: asyncio.Event,
                             backend: ModelBackend | None) -> None:
    """The embedded default's worker: loads the model (built on first use) off the event loop, then takes jobs."""
    own_backend = backend is None
    backend = backend or await asyncio.to_thread(make_backend, settings)
    ready.set()
    try:
        await work(settings, url, backend)
    finally:
        if own_backend:
            backend.close()
