"""GET /v1/jobs/{id}, its live events (server-sent events), DELETE to cancel, and the frames the agent saw."""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import APIRouter, Header, HTTPException, Path, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from sportlens.service.auth import Caller
from sportlens.service.deps import Jobs, Videos
from sportlens.service.jobs import JobStore
from sportlens.service.schemas import V1_PROBLEMS, JobOut, Problem
from sportlens.service.storage import frame_cache_key
from sportlens.tools.video import Video, VideoError

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=V1_PROBLEMS)
JobId = Path(pattern=r"^[0-9a-f]{32}$", description="the id POST /v1/questions returned")
EVENT_ID = r"^[0-9]{1,19}-[0-9]{1,19}$"  # a Redis stream id: two numbers below 2**64


async def _owned(jobs: JobStore, job_id: str, owner: str) -> JobOut:
    job = await jobs.get(job_id, owner)
    if job is None:
        raise HTTPException(404, f"no job {job_id} for this key (unknown, expired, or another key's)")
    return job


@router.get("/{job_id}", response_model=JobOut, responses={404: {"model": Problem}})
async def get_job(owner: Caller, jobs: Jobs, job_id: str = JobId) -> JobOut:
    """The job's status and progress, and its Result (trajectory, answer, prediction set) once complete."""
    return await _owned(jobs, job_id, owner)


@router.get("/{job_id}/events", responses={200: {"content": {"text/event-stream": {}},
                                                  "description": "one event per status change and agent step"},
                                            404: {"model": Problem}})
async def job_events(request: Request, owner: Caller, jobs: Jobs, job_id: str = JobId,
                     last_event_id: str = Header(None, pattern=EVENT_ID)) -> StreamingResponse:
    """Server-sent events from the start (or after ``Last-Event-ID``): ``status`` events and one per agent step
    (``initial_frames``, ``turn_started``, ``step``) as it happens, each naming its try (``attempt``). A
    ``running`` status with ``attempt`` > 1 is a retry starting over: drop the steps received so far. Read from
    the start, the stream holds the latest try's steps only. The stream ends with the final status.
    429 when this key holds too many streams open."""
    await _owned(jobs, job_id, owner)

    async def stream() -> AsyncIterator[str]:
        async for event_id, data in jobs.events(job_id, last_event_id or "0-0"):
            if data is None:
                yield ": keep-alive\n\n"
            else:
                kind = data.split('"kind":"', 1)[1].split('"', 1)[0]
                yield f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n"

    lease = await request.app.state.streams.acquire(owner)
    return _HeldStream(stream(), lease.release, media_type="text/event-stream",
                       headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class _HeldStream(StreamingResponse):
    """A stream that gives back what it holds (a stream slot) when it ends, however it ends."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], Awaitable[None]], **kwargs) -> None:
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._release()


@router.delete("/{job_id}", response_model=JobOut, responses={404: {"model": Problem}, 409: {"model": Problem}})
async def cancel_job(owner: Caller, jobs: Jobs, job_id: str = JobId) -> JobOut:
    """Cancel a job: a queued one never starts, a running one stops at its next step. 409 once it finished."""
    job = await _owned(jobs, job_id, owner)
    if not await jobs.cancel(job_id):
        raise HTTPException(409, f"job {job_id} already finished ({job.status}); nothing to cancel")
    return await _owned(jobs, job_id, owner)


@router.get("/{job_id}/frames/{index}.jpg", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": Problem}})
async def job_frame(request: Request, owner: Caller, jobs: Jobs, videos: Videos, job_id: str = JobId,
                    index: int = Path(ge=0, le=10**7)) -> Response:
    """A frame the agent looked at in this job, as JPEG (shrunk to fit 640×360, as the model saw it)."""
    job = await _owned(jobs, job_id, owner)
    if not await jobs.frame_was_shown(job_id, index):
        raise HTTPException(404, f"frame {index} was not shown to the model in job {job_id}")
    cache_key = frame_cache_key(job.video_id)
    redis = request.app.state.redis_bytes
    jpeg = await redis.hget(cache_key, index)
    if jpeg is None:
        if not videos.path(job.video_id).is_file():
            raise HTTPException(404, f"the video of job {job_id} was deleted; its frames are gone with it")
        try:
            jpeg = await run_in_threadpool(_decode_jpeg, str(videos.path(job.video_id)), index)
        except VideoError as error:
            raise HTTPException(404, f"frame {index} cannot be decoded: {error}") from None
        async with redis.pipeline(transaction=False) as pipe:  # kept an hour after the video's last decoded frame
            pipe.hset(cache_key, index, jpeg)
            pipe.expire(cache_key, 3600)
            await pipe.execute()
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


def _decode_jpeg(path: str, index: int) -> bytes:
    with Video(path, threads=1) as video:
        return video.frames_at([index])[0].jpeg(85)
