"""Job records in Redis: state, progress, events (a Redis stream per job), results and the result cache.

arq carries the work (queue, retries, crash recovery); this module keeps what clients read. Every state
change goes through a Lua script that refuses to touch a finished job, so a second worker finishing the
same job (at-least-once delivery) or a late write after a cancel changes nothing: result writes are idempotent.
A try writes only while it is the job's latest: when a retry starts, the event stream loses the steps of the
earlier tries, and a try that was given up for lost but still runs can no longer add events or an ending.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone

from redis.asyncio import Redis

from sportlens.agent.conformal import calibrated_settings
from sportlens.agent.loop import AgentEvent, AgentSettings
from sportlens.agent.models import thought_chars
from sportlens.agent.records import PROTOCOL_VERSION, Result
from sportlens.service.schemas import TERMINAL, JobEvent, JobOut, Progress, QuestionRequest
from sportlens.service.settings import ServiceSettings

PREFIX = "sportlens"
STATS_KEY = f"{PREFIX}:stats"
_TERMINAL_LIST = ",".join(sorted(TERMINAL))

# KEYS: job hash, events stream, frames set, shared stats. ARGV: ttl, event json (or ""), terminal statuses, the
# try that writes ("" for writes that are no try's: a cancel, a cached answer), n, n frame indices shown, then
# field, value pairs.
_TRANSITION = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if string.find(',' .. ARGV[3] .. ',', ',' .. status .. ',', 1, true) then return 0 end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[4] then return 0 end
local n = tonumber(ARGV[5])
if n > 0 then
  redis.call('SADD', KEYS[3], unpack(ARGV, 6, 5 + n))
  redis.call('EXPIRE', KEYS[3], ARGV[1])
  redis.call('HINCRBY', KEYS[4], 'frames_decoded', n)
end
if #ARGV > 5 + n then redis.call('HSET', KEYS[1], unpack(ARGV, 6 + n)) end
if ARGV[2] ~= '' then redis.call('XADD', KEYS[2], '*', 'data', ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""

# KEYS: job hash, events stream, frames set. ARGV: ttl, terminal statuses, try number, its `running` event json,
# progress json. A retry (an earlier try started) empties the stream but for its first event (`queued`), so that
# a client reading it from the start sees each step once; the `running` event says why the earlier try ended.
_START_TRY = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if string.find(',' .. ARGV[2] .. ',', ',' .. status .. ',', 1, true) then return 0 end
local previous = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if tonumber(ARGV[3]) <= previous then return 0 end
local event = ARGV[4]
if previous > 0 then
  local entries = redis.call('XRANGE', KEYS[2], '-', '+')
  local stale = {}
  for i = 2, #entries do stale[#stale + 1] = entries[i][1] end
  if #stale > 0 then redis.call('XDEL', KEYS[2], unpack(stale)) end
  local why = redis.call('HGET', KEYS[1], 'error')
  if status ~= 'retrying' or not why or why == '' then why = 'try ' .. previous .. ' ended with its worker' end
  local decoded = cjson.decode(event)
  decoded['error'] = why
  event = cjson.encode(decoded)
end
redis.call('HSET', KEYS[1], 'status', 'running', 'attempts', ARGV[3], 'error', '', 'progress', ARGV[5])
redis.call('DEL', KEYS[3])
redis.call('XADD', KEYS[2], '*', 'data', event)
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""


# KEYS: the in-flight key of a question. ARGV: the new job's id, ttl, terminal statuses, the job key prefix.
# Returns the id of a job asking the same question that has not finished, or claims the question for the new job.
_COALESCE = """
local other = redis.call('GET', KEYS[1])
if other then
  local status = redis.call('HGET', ARGV[4] .. other, 'status')
  if status and not string.find(',' .. ARGV[3] .. ',', ',' .. status .. ',', 1, true) then return other end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""


class TooManyJobs(Exception):
    """The owner has as many queued or running jobs as it may have."""


def _job_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def _events_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:events"


def _frames_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:frames"


def _owner_jobs_key(owner: str) -> str:
    """The set of an owner's jobs that may still be live (pruned when read)."""
    return f"{PREFIX}:owner:{owner}:jobs"


def video_jobs_key(video_id: str) -> str:
    """The set of jobs asked about a video that may still be live (pruned when read)."""
    return f"{PREFIX}:video:{video_id}:jobs"


def workers_key(settings: ServiceSettings) -> str:
    """Sorted set of the queue's workers: worker id → when its heartbeat last said it takes jobs (for /readyz)."""
    return f"{settings.queue_name}:workers"


VIDEOS_USED = f"{PREFIX}:videos:used"  # sorted set: video id → when it was last uploaded or asked about


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def agent_settings(request: QuestionRequest, settings: ServiceSettings) -> AgentSettings:
    """The loop's settings for a request; in-process models are constrained to the protocol, as `sportlens ask` does."""
    return calibrated_settings(AgentSettings(
        max_turns=request.max_turns,
        frames_per_call=request.frames_per_call,
        constrain=settings.backend_url is None,
        max_thought_chars=thought_chars(settings.model_dir, settings.backend_url),
    ), settings.calibration_artifact, closed=bool(request.options), samples=settings.answer_samples)


def cache_key(request: QuestionRequest, settings: ServiceSettings, owner: str) -> str:
    """Same owner, video bytes, question, options, model and settings → same key (and so the stored result).

    Per owner: a cached answer carries its trajectory and times, which would tell another key what was asked."""
    identity = {
        "owner": owner,
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
        self._start_try = redis.register_script(_START_TRY)
        self._coalesce = redis.register_script(_COALESCE)

    async def create(self, request: QuestionRequest, owner: str) -> tuple[str, bool]:
        """The job that answers ``request``, and whether it needs queueing.

        A new job record, complete at once when the cache holds its answer; or, when the owner asked the same
        question (``cache`` on) and that job has not finished, that job: one model run answers both. Raises
        TooManyJobs when a new job would pass the owner's limit of live jobs.
        """
        job_id = uuid.uuid4().hex
        key = cache_key(request, self.settings, owner)
        cached = await self.redis.get(f"{PREFIX}:cache:{key}") if request.cache and self.settings.cache_ttl_s else None
        if cached is None:
            if len(await self._live(_owner_jobs_key(owner))) >= self.settings.max_live_jobs_per_key:
                raise TooManyJobs(f"this key has {self.settings.max_live_jobs_per_key} jobs queued or running, its "
                                  f"limit; wait for one to finish or cancel one")
            if request.cache and (other := await self._coalesce(
                    keys=[f"{PREFIX}:inflight:{key}"],
                    args=[job_id, self.settings.result_ttl_s, _TERMINAL_LIST, _job_key("")])):
                return other, False
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
            pipe.sadd(video_jobs_key(request.video_id), job_id)
            pipe.sadd(_owner_jobs_key(owner), job_id)
            pipe.expire(_owner_jobs_key(owner), ttl)
            pipe.zadd(VIDEOS_USED, {request.video_id: time.time()})
            await pipe.execute()
        if cached is None:
            return job_id, True
        await self.finish(job_id, result=Result.model_validate_json(cached), cached=True)
        return job_id, False

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

    async def start_attempt(self, job_id: str, attempt: int, max_turns: int) -> bool:
        """Marks try ``attempt`` running; False when the job is finished (or gone), or a later try started.

        A retry drops the earlier tries' events from the stream (see _START_TRY) and resets the progress.
        """
        event = JobEvent(kind="status", status="running", attempt=attempt).model_dump_json(exclude_none=True)
        progress = Progress(max_turns=max_turns).model_dump_json()
        done = await self._start_try(keys=[_job_key(job_id), _events_key(job_id), _frames_key(job_id)],
                                     args=[self.settings.result_ttl_s, _TERMINAL_LIST, attempt, event, progress]) == 1
        if done:
            await self.redis.hincrby(STATS_KEY, "jobs_running", 1)
        return done

    async def retrying(self, job_id: str, error: str, attempt: int) -> None:
        event = JobEvent(kind="status", status="retrying", attempt=attempt, error=error)
        if await self._set(job_id, event.model_dump_json(exclude_none=True), attempt=attempt, status="retrying",
                           error=error):
            await self.redis.hincrby(STATS_KEY, "jobs_retrying", 1)

    async def finish(self, job_id: str, *, result: Result | None = None, status: str = "complete",
                     error: str | None = None, attempt: int | None = None, cached: bool = False) -> bool:
        """Records the end of a job once; a job already finished keeps its first ending.

        ``attempt``: the try that ends it, refused when a later try has started since. ``cached``: the result
        came from the result cache, when the job was asked for or when a worker took it up; the job says so and
        the hit is counted here, with the ending, so that it counts once whichever path found it.
        """
        fields = {"status": status, "finished_at": _now(), "error": error or ""}
        if result is not None:
            fields["result"] = result.model_dump_json()
        if cached:
            fields["cached"] = 1
        event = JobEvent(kind="status", status=status, error=error).model_dump_json(exclude_none=True)
        done = await self._set(job_id, event, attempt=attempt, **fields)
        if done:
            trajectory = result.trajectory if result else None
            video_id = await self.raw_field(job_id, "video_id")
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(STATS_KEY, f"jobs_{status}", 1)
                if cached:
                    pipe.hincrby(STATS_KEY, "cache_hits", 1)
                pipe.srem(video_jobs_key(video_id), job_id)
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

    async def agent_event(self, job_id: str, event: AgentEvent, max_turns: int, seen: set[int], attempt: int) -> None:
        """Publishes one step of try ``attempt`` as it happens, with the progress and the frames it showed.

        ``seen`` is the frames this try has shown so far, kept by the caller; it is updated here. Nothing is
        written once a later try has started.
        """
        frames = [ref.index for ref in event.frames]
        if event.step is not None:
            frames += [ref.index for ref in event.step.frames_shown]
        seen.update(frames)
        progress = Progress(turn=event.turn, max_turns=max_turns, frames_seen=len(seen)).model_dump_json()
        data = JobEvent(kind=event.kind, attempt=attempt, agent=event).model_dump_json(exclude_none=True)
        await self._set(job_id, data, attempt=attempt, frames=frames, progress=progress)

    async def superseded(self, job_id: str, attempt: int) -> bool:
        """Whether try ``attempt`` should stop: the job was cancelled, is gone, or a later try started."""
        status, attempts = await self.redis.hmget(_job_key(job_id), ["status", "attempts"])
        return status is None or status == "cancelled" or attempts != str(attempt)

    async def live_jobs(self, video_id: str) -> dict[str, str]:
        """The jobs about ``video_id`` that have not finished, as job id → owner; finished ones leave the set."""
        return await self._live(video_jobs_key(video_id))

    async def _live(self, key: str) -> dict[str, str]:
        """The jobs of the set ``key`` that have not finished, as job id → owner; finished ones leave the set."""
        job_ids = sorted(await self.redis.smembers(key))
        if not job_ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(_job_key(job_id), ["status", "owner"])
            records = await pipe.execute()
        live = {job_id: owner for job_id, (status, owner) in zip(job_ids, records)
                if status is not None and status not in TERMINAL}
        if finished := [job_id for job_id in job_ids if job_id not in live]:
            await self.redis.srem(key, *finished)
        return live

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

    async def _set(self, job_id: str, event_json: str, *, attempt: int | None = None, frames: list[int] = (),
                   **fields: object) -> bool:
        args: list[object] = [self.settings.result_ttl_s, event_json, _TERMINAL_LIST,
                              "" if attempt is None else attempt, len(frames), *frames]
        for name, value in fields.items():
            args += [name, value]
        keys = [_job_key(job_id), _events_key(job_id), _frames_key(job_id), STATS_KEY]
        return await self._transition(keys=keys, args=args) == 1
