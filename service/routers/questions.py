"""POST /v1/questions: a question about a stored video becomes a job; ``?wait=`` answers synchronously, bounded."""
from __future__ import annotations

from contextlib import nullcontext

from fastapi import APIRouter, HTTPException, Query, Request, Response

from sportlens.agent.conformal import CalibrationError
from sportlens.service.auth import Caller
from sportlens.service.deps import Jobs, Videos
from sportlens.service.jobs import TooManyJobs
from sportlens.service.schemas import TERMINAL, V1_PROBLEMS, JobOut, Problem, QuestionRequest
from sportlens.service.worker import JOB_FUNCTION

router = APIRouter(prefix="/v1/questions", tags=["questions"], responses=V1_PROBLEMS)


@router.post("", status_code=202, response_model=JobOut,
             responses={200: {"model": JobOut, "description": "finished within ?wait="},
                        400: {"model": Problem, "description": "the body cannot be read: JSON must be UTF-8"},
                        404: {"model": Problem}, 422: {"model": Problem}})
async def ask(
    body: QuestionRequest,
    request: Request,
    response: Response,
    owner: Caller,
    jobs: Jobs,
    videos: Videos,
    wait: float = Query(0, ge=0, description="seconds to wait for the answer (bounded by the server's max_wait_s)"),
) -> JobOut:
    """Queue the question. 202 with the job while it runs; 200 when it finished within ``wait`` seconds
    (or came from this key's result cache: then ``cached`` is true). The same question asked again while its
    job runs gets that job. 429 when this key has too many jobs queued or running, or ``wait=`` requests open.
    Follow the job with GET /v1/jobs/{id} or its /events stream."""
    state = request.app.state
    bound = min(wait, state.settings.max_wait_s)
    # The wait's slot is held before any work, so that a refused wait queues nothing.
    async with state.waits.held(owner) if bound > 0 else nullcontext():
        job_id = await _job_for(body, owner, jobs, videos, state)
        if bound > 0:
            await jobs.wait_finished(job_id, bound)
    job = await jobs.get(job_id)
    assert job is not None
    if job.status in TERMINAL:
        response.status_code = 200
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return job


async def _job_for(body: QuestionRequest, owner: str, jobs: Jobs, videos: Videos, state) -> str:
    """The id of the job that answers ``body``, queued when it is new."""
    if await videos.get(body.video_id, owner) is None:
        raise HTTPException(404, f"no video {body.video_id} for this key; upload it with POST /v1/videos")
    _check_calibration(body, state.settings)
    try:
        job_id, to_queue = await jobs.create(body, owner)
    except TooManyJobs as refused:
        raise HTTPException(429, str(refused), headers={"Retry-After": "5"}) from None
    if to_queue:
        await state.queue.enqueue_job(JOB_FUNCTION, job_id, _job_id=job_id, _queue_name=state.settings.queue_name)
    return job_id


def _check_calibration(body: QuestionRequest, settings) -> None:
    """alpha and selective need a calibration that can serve them; refuse before queueing, not after."""
    artifact = settings.calibration_artifact
    if artifact is None:
        if body.alpha is not None or body.selective:
            raise HTTPException(422, "this service has no calibration artifact (SPORTLENS_CALIBRATION): "
                                     "alpha and selective cannot be honoured")
        return
    if body.alpha is not None:
        try:
            artifact.at_alpha(body.alpha)
        except CalibrationError as error:
            raise HTTPException(422, f"alpha={body.alpha}: {error}") from error
