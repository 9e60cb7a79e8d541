"""The worker: an arq job function that runs the agent on one question, and the arq configuration around it.

A job's only argument is its id; the question lives in the job record (service.jobs). The agent runs on a
thread (it is blocking: decoding, a model call); its events are published to Redis as they happen.
Failures of the model backend are retried with exponential backoff up to ``job_max_tries``. A running job
holds a lease (arq's in-progress key, ``worker_lease_s`` long) that its worker renews with its heartbeat: a
worker that dies mid-job stops renewing it, and another worker takes the job up once it expires. A worker
rides out Redis outages: the job a lost Redis interrupts goes back in the queue, and the worker starts again,
with backoff, once Redis answers. Workers sweep the ``.part`` files crashed uploads left, and, with
SPORTLENS_VIDEO_TTL_S set, run the video retention sweep; both are arq cron jobs.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
import uuid
from typing import Any

from arq import Retry
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix
from arq.cron import cron
from arq.worker import Worker, func
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sportlens.agent.backends.base import BackendError, ModelBackend
from sportlens.agent.conformal import apply_calibration
from sportlens.agent.loop import AgentEvent, answer_question
from sportlens.agent.models import open_backend
from sportlens.agent.records import Result
from sportlens.service.jobs import JobStore, agent_settings, workers_key
from sportlens.service.schemas import TERMINAL
from sportlens.service.settings import ServiceSettings
from sportlens.service.storage import VideoStore
from sportlens.tools.video import Video, VideoError

log = logging.getLogger(__name__)

JOB_FUNCTION = "answer_job"
LOST_REDIS = (RedisConnectionError, RedisTimeoutError)  # what a command to a Redis that went away raises


class _Cancelled(Exception):
    """Raised inside the agent's thread, from its event callback, to stop a cancelled, overdue or superseded try."""


def make_backend(settings: ServiceSettings) -> ModelBackend:
    """The model backend the settings name: an OpenAI-compatible server, or a checkpoint in-process."""
    return open_backend(model_dir=settings.model_dir, backend_url=settings.backend_url,
                        model_name=settings.model_name, api_key=settings.backend_api_key, status=log.info)


async def answer_job(ctx: dict[str, Any], job_id: str) -> str:
    """Runs one question's job; returns its final status. Raises arq's Retry to try again after a backoff.

    A job that loses Redis mid-try goes back in the queue (arq counts the try); when Redis is gone for good
    the worker dies with it, and the job's lease expires instead.
    """
    try:
        return await _answer(ctx, job_id)
    except LOST_REDIS as error:
        log.warning("job %s lost the job store (Redis) on try %d: %s; it goes back in the queue",
                    job_id, ctx["job_try"], error)
        raise Retry(defer=ctx["settings"].retry_backoff_s) from error


async def _answer(ctx: dict[str, Any], job_id: str) -> str:
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
        await jobs.finish(job_id, result=cached, cached=True)
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
        try:
            while (event := await published.get()) is not None:
                await jobs.agent_event(job_id, event, request.max_turns, seen, attempt)
        except LOST_REDIS:
            stop.set()  # no use going on: the try's steps cannot be told
            raise

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
        if not await jobs.superseded(job_id, attempt):  # stopped by a Redis that came back since
            raise Retry(defer=settings.retry_backoff_s) from None
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
    except asyncio.CancelledError:  # the worker is shutting down: arq puts the job back
        raise
    finally:
        stop.set()  # whatever ended the try, its thread stops at its next step
        watcher.cancel()
    # Cached before the job says it is complete: a client that sees it complete and asks again is answered from the
    # cache (the other way round, a loaded machine let that client in between and ran the model again).
    await jobs.store_in_cache(job_id, result)
    await jobs.finish(job_id, result=result, attempt=attempt)
    return "complete"


async def _watch_superseded(jobs: JobStore, job_id: str, attempt: int, stop: threading.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(0.25)
        try:
            if await jobs.superseded(job_id, attempt):
                stop.set()
        except LOST_REDIS:  # the try cannot tell whether it is still wanted: it stops and asks again later
            stop.set()


async def sweep_videos(ctx: dict[str, Any]) -> int:
    """arq cron job: removes the videos unused for SPORTLENS_VIDEO_TTL_S; returns how many."""
    removed = await ctx["videos"].sweep(ctx["settings"].video_ttl_s)
    if removed:
        log.info("removed %d videos unused for %g s: %s", len(removed), ctx["settings"].video_ttl_s, ", ".join(removed))
    return len(removed)


async def sweep_uploads(ctx: dict[str, Any]) -> int:
    """arq cron job: removes the ``.part`` files of uploads a crash cut short; returns how many."""
    removed = await asyncio.to_thread(ctx["videos"].sweep_uploads)
    if removed:
        log.info("removed %d unfinished uploads: %s", len(removed), ", ".join(p.name for p in removed))
    return len(removed)


def _sweep_schedule(every_s: int) -> set[int]:
    """The seconds of each minute at which to sweep: every ``every_s`` seconds, rounded down to a divisor of 60."""
    step = max(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60) if d <= every_s)
    return set(range(0, 60, step))


def worker_for(settings: ServiceSettings, pool: ArqRedis, redis: Redis, backend: ModelBackend) -> Worker:
    """An arq Worker for the settings on the queue ``pool``, running jobs on ``backend``.

    Its jobs' leases (arq's in-progress keys) are ``worker_lease_s`` long rather than arq's job timeout + 10 s:
    ``heartbeat`` renews them while the worker lives.
    """

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["settings"] = settings
        ctx["jobs"] = JobStore(redis, settings)
        ctx["videos"] = VideoStore(settings.storage_dir, redis, int(settings.max_upload_mb * 2**20), ctx["jobs"])
        ctx["backend"] = backend
        if settings.calibration_artifact is not None:  # refuse to serve sets calibrated for another model
            settings.calibration_artifact.check_model(backend.model_id)

    sweeps = [cron(sweep_uploads, minute=set(range(0, 60, 10)), second=0, run_at_startup=True, timeout=300)]
    if settings.video_ttl_s:
        sweeps.append(cron(sweep_videos, second=_sweep_schedule(settings.video_sweep_s), run_at_startup=True,
                           timeout=300))
    worker = Worker(
        functions=[func(answer_job, name=JOB_FUNCTION, timeout=settings.job_deadline_s + 1,
                        max_tries=settings.job_max_tries + 1)],
        cron_jobs=sweeps,
        queue_name=settings.queue_name,
        redis_pool=pool,
        on_startup=startup,
        max_jobs=settings.concurrency,
        keep_result=settings.result_ttl_s,
        poll_delay=settings.poll_s,
        handle_signals=False,
    )
    worker.in_progress_timeout_s = settings.worker_lease_s  # no Worker option sets it; arq reads it per job
    return worker


async def heartbeat(worker: Worker, redis: Redis, worker_id: str, settings: ServiceSettings) -> None:
    """Every third of ``worker_lease_s``: renews the leases of the worker's running jobs, and says it takes jobs.

    /readyz counts the workers whose heartbeat is fresher than a lease; a worker that stopped for good is
    dropped from the set by the others.
    """
    lease_ms = int(settings.worker_lease_s * 1000)
    while True:
        now = time.time()
        running = [job_id for job_id, task in worker.tasks.items() if not task.done()]
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for job_id in running:
                    pipe.pexpire(in_progress_key_prefix + job_id, lease_ms)
                pipe.zadd(workers_key(settings), {worker_id: now})
                pipe.zremrangebyscore(workers_key(settings), "-inf", now - 10 * settings.worker_lease_s)
                await pipe.execute()
        except LOST_REDIS:  # the worker's poll loop fails too, and `work` starts it again
            pass
        await asyncio.sleep(settings.worker_lease_s / 3)


async def work(settings: ServiceSettings, url: str, backend: ModelBackend) -> None:
    """Takes jobs from the Redis at ``url`` until cancelled, through Redis outages.

    When Redis goes away the worker's running jobs are stopped (they go back in the queue, or their leases
    expire) and a fresh arq worker starts as soon as Redis answers again, trying every 0.5 s to 10 s.
    """
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    delay = 0.5
    while True:
        try:
            pool, redis = await connect(url)
        except (*LOST_REDIS, OSError) as error:
            log.warning("Redis at %s is unreachable (%s); the worker tries again in %.1f s", url, error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            continue
        worker = worker_for(settings, pool, redis, backend)
        beat = asyncio.create_task(heartbeat(worker, redis, worker_id, settings))
        started = time.monotonic()
        try:
            await worker.async_run()
        except LOST_REDIS as error:
            log.warning("the worker lost Redis (%s); it starts again once Redis answers", error)
        finally:
            beat.cancel()
            await _stop(worker, redis, workers_key(settings), worker_id)
        delay = 0.5 if time.monotonic() - started > 30 else min(delay * 2, 10.0)
        await asyncio.sleep(delay)


async def _stop(worker: Worker, redis: Redis, key: str, worker_id: str) -> None:
    """Cancels the worker's jobs (arq puts them back in the queue when it still can), leaves the workers' set
    and closes the connections; a Redis that is gone is no reason to fail."""
    for task in worker.tasks.values():
        task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    try:
        await redis.zrem(key, worker_id)
    except LOST_REDIS:
        pass
    await redis.aclose()
    await worker.pool.aclose(close_connection_pool=True)


async def connect(url: str) -> tuple[ArqRedis, Redis]:
    """Two clients of one Redis: arq's pool (bytes, for the queue) and one that decodes replies (for records)."""
    pool = await create_pool(RedisSettings.from_dsn(url))
    return pool, Redis.from_url(url, decode_responses=True)


async def run_worker(settings: ServiceSettings) -> None:
    """`sportlens worker`: take jobs from the shared Redis until SIGINT or SIGTERM."""
    if settings.redis_url is None:
        raise BackendError("`sportlens worker` joins a shared Redis: set REDIS_URL (and SPORTLENS_BACKEND_URL)")
    backend = await asyncio.to_thread(make_backend, settings)
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, main.cancel)
    try:
        await work(settings, settings.redis_url, backend)
    except asyncio.CancelledError:  # a signal: a clean stop, the running jobs went back in the queue
        pass
    finally:
        backend.close()
