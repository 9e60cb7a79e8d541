"""The FastAPI application: routers, the Redis connections, and (embedded default) a private Redis and a worker."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse

from sportlens.agent.backends.base import ModelBackend
from sportlens.service.embedded_redis import EmbeddedRedis
from sportlens.service.jobs import JobStore
from sportlens.service.metrics import Metrics, MetricsMiddleware, SharedStats
from sportlens.service.routers import health, jobs, questions, videos
from sportlens.service.settings import ServiceSettings
from sportlens.service.storage import VideoStore
from sportlens.service.worker import connect, make_backend, worker_for

log = logging.getLogger(__name__)
PAGE = Path(__file__).parent / "static" / "index.html"


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
        pool, redis_text = await connect(url)
        state = app.state
        state.settings, state.queue, state.redis, state.redis_bytes = settings, pool, redis_text, pool
        state.jobs = JobStore(redis_text, settings)
        state.videos = VideoStore(settings.storage_dir, redis_text, int(settings.max_upload_mb * 2**20), state.jobs)
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
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    for router in (videos.router, questions.router, jobs.router, health.router):
        app.include_router(router)

    def openapi() -> dict:
        """The document of this service as configured: without keys there is no auth to send and no 401 or 429."""
        document = FastAPI.openapi(app)
        if not settings.api_keys:
            document.get("components", {}).pop("securitySchemes", None)
            for operations in document["paths"].values():
                for operation in operations.values():
                    operation.pop("security", None)
                    operation["responses"].pop("401", None)
                    operation["responses"].pop("429", None)
        return document

    app.openapi = openapi

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE, media_type="text/html")

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def redis_down(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"the job store (Redis) is unavailable: {error}"}, status_code=503)

    return app


async def _in_process_worker(settings: ServiceSettings, url: str, ready: asyncio.Event,
                             backend: ModelBackend | None) -> None:
    """The embedded default's worker: loads the model (built on first use) off the event loop, then takes jobs."""
    own_backend = backend is None
    backend = backend or await asyncio.to_thread(make_backend, settings)
    ready.set()
    pool, redis_text = await connect(url)
    worker = worker_for(settings, pool, redis_text, handle_signals=False, backend=backend)
    try:
        await worker.async_run()
    finally:
        try:
            await worker.close()
        except asyncio.CancelledError:  # the jobs it cancelled end this way; arq puts them back in the queue
            pass
        await redis_text.aclose()
        if own_backend:
            backend.close()
