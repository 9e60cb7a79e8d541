"""Job records in Redis: state, progress, events (a Redis stream per job), results and the result cache.

arq carries the work (queue, retries, crash recovery); this module keeps what clients read. Every state
change goes through one Lua script that refuses to touch a finished job, so a second worker finishing the
same job (at-least-once delivery) or a late write after a cancel changes nothing: result writes are idempotent.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone

from redis.asyncio import Redis

from sportlens.agent.loop import AgentEvent, AgentSettings
from sportlens.agent.records import PROTOCOL_VERSION, Result
from sportlens.service.schemas import TERMINAL, JobEvent, JobOut, Progress, QuestionRequest
from sportlens.service.settings import ServiceSettings

PREFIX = "sportlens"
STATS_KEY = f"{PREFIX}:stats"
_TERMINAL_LIST = ",".join(sorted(TERMINAL))

# KEYS: job hash, events stream. ARGV: ttl, event json (or ""), then field, value pairs.
_TRANSITION = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if string.find(',' .. ARGV[3] .. ',', ',' .. status .. ',', 1, true) then return 0 end
if #ARGV > 3 then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end
if ARGV[2] ~= '' then redis.call('XADD', KEYS[2], '*', 'data', ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""


def _job_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def _events_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:events"


def _frames_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:frames"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def agent_settings(request: QuestionRequest, settings: ServiceSettings) -> AgentSettings:
    """The loop's settings for a request; in-process models are constrained to the protocol, as `sportlens ask` does."""
    artifact = settings.calibration_artifact
    return AgentSettings(
        max_turns=request.max_turns,
        frames_per_call=request.frames_per_call,
        constrain=settings.backend_url is None,
        score_options=artifact is not None and artifact.method != "sample" and bool(request.options),
        answer_samples=settings.answer_samples if artifact is not None and artifact.method == "sample" else 0,
    )


def cache_key(request: QuestionRequest, settings: ServiceSettings) -> str:
    """Same video bytes, question, options, model and settings → same key (and so the stored result)."""
    identity = {
        "video": request.video_id,
        "question": request.question,
        "options": request.options,
        "sport": request.sport,
        "task": request.task,
        "alpha": request.alpha,
        "selective": request.selective,
        "calibration": settings.calibration_artifact.data_sha256 if settings.calibration_artifact else None,
        "model": settings.model_key,
        "settings": agent_settings(request, settings).__dict__,
        "protocol": PROTOCOL_VERSION,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class JobStore:
    """Reads and writes job records. Owners are API key ids ("anonymous" without auth); a job belongs to one."""

    def __init__(self, redis: Redis, settings: ServiceSettings) -> None:
        self.redis = redis
        self.settings = settings
        self._transition = redis.register_script(_TRANSITION)

    async def create(self, request: QuestionRequest, owner: str) -> tuple[str, Result | None]:
        """A new job record, complete at once when the cache holds its answer (then nothing needs queueing)."""
        job_id = uuid.uuid4().hex
        key = cache_key(request, self.settings)
        cached = await self.redis.get(f"{PREFIX}:cache:{key}") if request.cache and self.settings.cache_ttl_s else None
        record = {
            "owner": owner,
            "video_id": request.video_id,
            "request": request.model_dump_json(),
            "status": "queued",
            "progress": Progress(max_turns=request.max_turns).model_dump_json(),
            "attempts": 0,
            "cached": int(cached is not None),
            "cache_key": key,
            "created_at": _now(),
        }
        ttl = self.settings.result_ttl_s
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(_job_key(job_id), mapping=record)
            pipe.expire(_job_key(job_id), ttl)
            pipe.xadd(_events_key(job_id), {"data": JobEvent(kind="status", status="queued").model_dump_json(exclude_none=True)})
            pipe.expire(_events_key(job_id), ttl)
            pipe.hincrby(STATS_KEY, "jobs_queued", 1)
            await pipe.execute()
        if cached is None:
            return job_id, None
        result = Result.model_validate_json(cached)
        await self.redis.hincrby(STATS_KEY, "cache_hits", 1)
        await self.finish(job_id, result=result)
        return job_id, result

    async def get(self, job_id: str, owner: str | None = None) -> JobOut | None:
        """The job, or None when there is none or it belongs to another owner (both look alike to a client)."""
        raw = await self.redis.hgetall(_job_key(job_id))
        if not raw or (owner is not None and raw.get("owner") != owner):
            return None
        return JobOut(
            id=job_id,
            status=raw["status"],
            video_id=raw["video_id"],
            request=QuestionRequest.model_validate_json(raw["request"]),
            progress=Progress.model_validate_json(raw["progress"]),
            attempts=int(raw.get("attempts", 0)),
            cached=raw.get("cached") == "1",
            error=raw.get("error") or None,
            created_at=raw["created_at"],
            finished_at=raw.get("finished_at") or None,
            result=Result.model_validate_json(raw["result"]) if raw.get("result") else None,
        )

    async def raw_field(self, job_id: str, field: str) -> str | None:
        return await self.redis.hget(_job_key(job_id), field)

    async def start_attempt(self, job_id: str, attempt: int) -> bool:
        """Marks a try running; False when the job is finished (or gone) and must not run."""
        event = JobEvent(kind="status", status="running", attempt=attempt).model_dump_json(exclude_none=True)
        done = await self._set(job_id, event, status="running", attempts=attempt, error="")
        if done:
            await self.redis.delete(_frames_key(job_id))
            await self.redis.hincrby(STATS_KEY, "jobs_running", 1)
        return done

    async def retrying(self, job_id: str, error: str) -> None:
        event = JobEvent(kind="status", status="retrying", error=error).model_dump_json(exclude_none=True)
        if await self._set(job_id, event, status="retrying", error=error):
            await self.redis.hincrby(STATS_KEY, "jobs_retrying", 1)

    async def finish(self, job_id: str, *, result: Result | None = None, status: str = "complete",
                     error: str | None = None) -> bool:
        """Records the end of a job once; a job already finished keeps its first ending."""
        fields = {"status": status, "finished_at": _now(), "error": error or ""}
        if result is not None:
            fields["result"] = result.model_dump_json()
        event = JobEvent(kind="status", status=status, error=error).model_dump_json(exclude_none=True)
        done = await self._set(job_id, event, **fields)
        if done:
            trajectory = result.trajectory if result else None
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(STATS_KEY, f"jobs_{status}", 1)
                if trajectory is not None:  # a cached result's frames become this job's frames too
                    shown = [ref.index for ref in trajectory.initial_frames]
                    shown += [ref.index for step in trajectory.steps for ref in step.frames_shown]
                    pipe.sadd(_frames_key(job_id), *shown)
                    pipe.hincrby(STATS_KEY, "tokens_in", trajectory.tokens_in)
                    pipe.hincrby(STATS_KEY, "tokens_out", trajectory.tokens_out)
                pipe.expire(_frames_key(job_id), self.settings.result_ttl_s)
                await pipe.execute()
        return done

    async def store_in_cache(self, job_id: str, result: Result) -> None:
        key = await self.raw_field(job_id, "cache_key")
        if key and self.settings.cache_ttl_s:
            await self.redis.set(f"{PREFIX}:cache:{key}", result.model_dump_json(), ex=self.settings.cache_ttl_s)

    async def cached_result(self, job_id: str) -> Result | None:
        key = await self.raw_field(job_id, "cache_key")
        raw = await self.redis.get(f"{PREFIX}:cache:{key}") if key else None
        return Result.model_validate_json(raw) if raw else None

    async def agent_event(self, job_id: str, event: AgentEvent, max_turns: int, seen: set[int]) -> None:
        """Publishes one step as it happens and keeps the progress and the set of frames shown up to date.

        ``seen`` is the frames this try has shown so far, kept by the caller; it is updated here.
        """
        frames = [ref.index for ref in event.frames]
        if event.step is not None:
            frames += [ref.index for ref in event.step.frames_shown]
        seen.update(frames)
        progress = Progress(turn=event.turn, max_turns=max_turns, frames_seen=len(seen)).model_dump_json()
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip
            if frames:
                pipe.sadd(_frames_key(job_id), *frames)
                pipe.expire(_frames_key(job_id), self.settings.result_ttl_s)
                pipe.hincrby(STATS_KEY, "frames_decoded", len(frames))
            await self._set(job_id, JobEvent(kind=event.kind, agent=event).model_dump_json(exclude_none=True),
                            client=pipe, progress=progress)
            await pipe.execute()

    async def cancel(self, job_id: str) -> bool:
        return await self.finish(job_id, status="cancelled", error="cancelled by the client")

    async def frame_was_shown(self, job_id: str, index: int) -> bool:
        return bool(await self.redis.sismember(_frames_key(job_id), index))

    async def wait_finished(self, job_id: str, timeout_s: float) -> None:
        """Returns when the job is finished or after ``timeout_s``, woken by its event stream, not by polling."""
        deadline = time.monotonic() + timeout_s
        last = "0-0"
        while (remaining := deadline - time.monotonic()) > 0:
            reply = await self.redis.xread({_events_key(job_id): last}, block=max(1, int(remaining * 1000)), count=100)
            if not reply and not await self.redis.exists(_job_key(job_id)):
                return
            for _, entries in reply:
                last = entries[-1][0]
                for _, fields in entries:
                    event = JobEvent.model_validate_json(fields["data"])
                    if event.kind == "status" and event.status in TERMINAL:
                        return

    async def events(self, job_id: str, last_id: str = "0-0", keepalive_s: float = 15.0) -> AsyncIterator[tuple[str, str | None]]:
        """(event id, JSON data) pairs from ``last_id`` on, as they happen; (``""``, None) for a keep-alive.

        Ends after the job's final status event, or when the job record expires.
        """
        while True:
            reply = await self.redis.xread({_events_key(job_id): last_id}, block=int(keepalive_s * 1000), count=100)
            if not reply:
                if not await self.redis.exists(_job_key(job_id)):
                    return
                yield "", None
                continue
            for entry_id, fields in reply[0][1]:
                last_id = entry_id
                data = fields["data"]
                yield entry_id, data
                event = JobEvent.model_validate_json(data)
                if event.kind == "status" and event.status in TERMINAL:
                    return

    async def _set(self, job_id: str, event_json: str, client=None, **fields: object) -> bool:
        args: list[object] = [self.settings.result_ttl_s, event_json, _TERMINAL_LIST]
        for name, value in fields.items():
            args += [name, value]
        return await self._transition(keys=[_job_key(job_id), _events_key(job_id)], args=args, client=client) == 1
