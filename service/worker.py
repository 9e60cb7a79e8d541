"""The worker: an arq job function that runs the agent on one question, and the arq configuration around it.

A job's only argument is its id; the question lives in the job record (service.jobs). The agent runs on a
thread (it is blocking: decoding, a model call); its events are published to Redis as they happen.
Failures of the model backend are retried with exponential backoff up to ``job_max_tries``; a worker that
dies mid-job leaves an arq in-progress key that expires, and another worker takes the job up again.
With SPORTLENS_VIDEO_TTL_S set, workers also run the video retention sweep, as an arq cron job.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from arq import Retry
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.cron import cron
from arq.worker import Worker, func
from redis.asyncio import Redis

from sportlens.agent.backends.base import BackendError, ModelBackend
from sportlens.agent.conformal import apply_calibration
from sportlens.agent.loop import AgentEvent, answer_question
from sportlens.agent.records import Result
from sportlens.models import open_backend
from sportlens.service.jobs import JobStore, agent_settings
from sportlens.service.schemas import TERMINAL
from sportlens.service.settings import ServiceSettings
from sportlens.service.storage import VideoStore
from sportlens.tools.video import Video, VideoError

log = logging.getLogger(__name__)

JOB_FUNCTION = "answer_job"


class _Cancelled(Exception):
    """Raised inside the agent's thread, from its event callback, to stop a cancelled, overdue or superseded try."""


def make_backend(settings: ServiceSettings) -> ModelBackend:
    """The model backend the settings name: an OpenAI-compatible server, or a checkpoint in-process."""
    if settings.backend_url and not settings.model_name:
        raise BackendError("SPORTLENS_BACKEND_URL needs SPORTLENS_MODEL_NAME (the name the server serves)")
    return open_backend(model_dir=settings.model_dir, backend_url=settings.backend_url,
                        model_name=settings.model_name, api_key=settings.backend_api_key, home=settings.home,
                        status=log.info)


async def answer_job(ctx: dict[str, Any], job_id: str) -> str:
    """Runs one question's job; returns its final status. Raises arq's Retry to try again after a backoff."""
    jobs: JobStore = ctx["jobs"]
    settings: ServiceSettings = ctx["settings"]
    attempt: int = ctx["job_try"]
    job = await jobs.get(job_id)
    if job is None or job.status in TERMINAL:
        return job.status if job else "gone"
    if attempt > settings.job_max_tries:  # arq counts a try lost with its worker too
        await jobs.finish(job_id, status="failed", error=f"gave up after {settings.job_max_tries} tries "
                                                          f"(the last ones ended with their worker)")
        return "failed"
    request = job.request
    if request.cache and (cached := await jobs.cached_result(job_id)) is not None:
        await jobs.finish(job_id, result=cached)
        return "complete"
    if not await jobs.start_attempt(job_id, attempt, request.max_turns):
        return "finished elsewhere"
    path = ctx["videos"].path(job.video_id)
    if not path.is_file():
        await jobs.finish(job_id, status="failed", attempt=attempt,
                          error=f"video {job.video_id} was deleted before the job could run")
        return "failed"
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    published: asyncio.Queue[AgentEvent | None] = asyncio.Queue()

    def on_event(event: AgentEvent) -> None:  # on the agent's thread: hand over, never wait for Redis
        if stop.is_set():
            raise _Cancelled()
        loop.call_soon_threadsafe(published.put_nowait, event)

    async def publish() -> None:  # one task, so events reach the stream in the order they happened
        seen: set[int] = set()
        while (event := await published.get()) is not None:
            await jobs.agent_event(job_id, event, request.max_turns, seen, attempt)

    def run() -> Result:
        with Video(path, threads=1) as video:
            trajectory = answer_question(video, request.question, ctx["backend"], options=request.options,
                                         settings=agent_settings(request, settings), on_event=on_event)
        result = Result(trajectory=trajectory, sport=request.sport, task=request.task)
        artifact = settings.calibration_artifact
        if artifact is not None and trajectory.answer is not None and (request.options or artifact.method == "sample"):
            result = apply_calibration(result, artifact.at_alpha(request.alpha or artifact.alpha),
                                       selective=request.selective)
        return result

    watcher = asyncio.create_task(_watch_superseded(jobs, job_id, attempt, stop))
    publisher = asyncio.create_task(publish())
    try:
        try:
            result = await asyncio.wait_for(asyncio.to_thread(run), settings.job_deadline_s)
        finally:
            published.put_nowait(None)
            await asyncio.shield(publisher)
    except _Cancelled:
        return "stopped (cancelled, or a later try took over)"
    except asyncio.TimeoutError:
        stop.set()
        await jobs.finish(job_id, status="failed", attempt=attempt,
                          error=f"the job ran past its deadline of {settings.job_deadline_s:g} s")
        return "failed"
    except (VideoError, ValueError) as error:  # the video or the request, not the machinery: retrying cannot help
        await jobs.finish(job_id, status="failed", error=str(error), attempt=attempt)
        return "failed"
    except BackendError as error:
        message = f"model backend error on try {attempt} of {settings.job_max_tries}: {error}"
        if attempt >= settings.job_max_tries:
            await jobs.finish(job_id, status="failed", error=message, attempt=attempt)
            return "failed"
        await jobs.retrying(job_id, message, attempt)
        raise Retry(defer=settings.retry_backoff_s * 2 ** (attempt - 1)) from error
    except asyncio.CancelledError:
        stop.set()  # the worker is shutting down: arq puts the job back, the thread stops at its next step
        raise
    finally:
        watcher.cancel()
    if await jobs.finish(job_id, result=result, attempt=attempt):
        await jobs.store_in_cache(job_id, result)
    return "complete"


async def _watch_superseded(jobs: JobStore, job_id: str, attempt: int, stop: threading.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(0.25)
        if await jobs.superseded(job_id, attempt):
            stop.set()


async def sweep_videos(ctx: dict[str, Any]) -> int:
    """arq cron job: removes the videos unused for SPORTLENS_VIDEO_TTL_S; returns how many."""
    removed = await ctx["videos"].sweep(ctx["settings"].video_ttl_s)
    if removed:
        log.info("removed %d videos unused for %g s: %s", len(removed), ctx["settings"].video_ttl_s, ", ".join(removed))
    return len(removed)


def _sweep_schedule(every_s: int) -> set[int]:
    """The seconds of each minute at which to sweep: every ``every_s`` seconds, rounded down to a divisor of 60."""
    step = max(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60) if d <= every_s)
    return set(range(0, 60, step))


def worker_for(settings: ServiceSettings, pool: ArqRedis, redis: Redis, *, handle_signals: bool = True,
               backend: ModelBackend | None = None) -> Worker:
    """An arq Worker for the settings on the queue ``pool``; ``backend`` is made on start-up when not given."""

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["settings"] = settings
        ctx["jobs"] = JobStore(redis, settings)
        ctx["videos"] = VideoStore(settings.storage_dir, redis, int(settings.max_upload_mb * 2**20), ctx["jobs"])
        ctx["backend"] = backend or await asyncio.to_thread(make_backend, settings)
        if settings.calibration_artifact is not None:  # refuse to serve sets calibrated for another model
            settings.calibration_artifact.check_model(ctx["backend"].model_id)

    async def shutdown(ctx: dict[str, Any]) -> None:
        if backend is None and "backend" in ctx:
            ctx["backend"].close()

    sweeps = [cron(sweep_videos, second=_sweep_schedule(settings.video_sweep_s), run_at_startup=True, timeout=300)]
    return Worker(
        functions=[func(answer_job, name=JOB_FUNCTION, timeout=settings.job_deadline_s + 1,
                        max_tries=settings.job_max_tries + 1)],
        cron_jobs=sweeps if settings.video_ttl_s else None,
        queue_name=settings.queue_name,
        redis_pool=pool,
        on_startup=startup,
        on_shutdown=shutdown,
        max_jobs=settings.concurrency,
        keep_result=settings.result_ttl_s,
        poll_delay=settings.poll_s,
        handle_signals=handle_signals,
        health_check_interval=10,
    )


async def connect(url: str) -> tuple[ArqRedis, Redis]:
    """Two clients of one Redis: arq's pool (bytes, for the queue) and one that decodes replies (for records)."""
    pool = await create_pool(RedisSettings.from_dsn(url))
    return pool, Redis.from_url(url, decode_responses=True)


async def run_worker(settings: ServiceSettings) -> None:
    """`sportlens worker`: take jobs from the shared Redis until SIGINT or SIGTERM."""
    if settings.redis_url is None:
        raise BackendError("`sportlens worker` joins a shared Redis: set REDIS_URL (and SPORTLENS_BACKEND_URL)")
    pool, redis = await connect(settings.redis_url)
    worker = worker_for(settings, pool, redis)
    try:
        await worker.async_run()
    except asyncio.CancelledError:  # arq's signal handler cancels its main task: a clean stop
        pass
    finally:
        await worker.close()
        await redis.aclose()
