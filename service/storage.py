"""Uploaded videos: streamed to disk under a size limit, sniffed by probing, stored content-addressed by sha256.

A file is written under ``uploads/`` while it arrives and moved into ``videos/ab/abcdef…`` only once it
proved to be a usable video; on any failure the partial file is deleted, so nothing half-written remains.
Ownership (which API keys may use a video) lives in Redis beside the probed info.

Quotas: the bytes each key claims and the bytes stored in all are counted in Redis (USAGE_KEY); an upload that
would pass its key's quota is refused with 413, one that would pass the total or leave less than the minimum free
space on the disk with 507, before it is read when its size is declared and while it streams in any case. A video
counts once: uploading bytes again that the key already claims takes none of its quota, nor of the total. While
an upload streams its id is unknown, so the bound lets through as much as the largest video the key claims (each
key's claims are indexed by size); once the bytes are hashed, the quotas are checked exactly.

Removal: a key that deletes a video gives up its claim; the file goes when no key claims it any more. With a
retention time, a periodic sweep removes videos not uploaded or asked about for that long. Neither removes a
video that a queued or running job needs. Storing, deleting and sweeping one video take its lock in Redis, so
an upload of the same bytes never lands in the middle of a removal.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header
from redis.asyncio import Redis
from starlette.concurrency import run_in_threadpool

from sportlens.service.jobs import PREFIX, VIDEOS_USED, JobStore, video_jobs_key
from sportlens.service.records_out import VideoInfoOut
from sportlens.service.schemas import VideoOut
from sportlens.tools.video import NotAVideo, VideoError, probe


class UploadRejected(Exception):
    """The upload cannot be stored; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class VideoInUse(Exception):
    """The video cannot be deleted now: ``job_ids`` (queued or running) need it."""

    def __init__(self, job_ids: list[str]) -> None:
        super().__init__(f"jobs {', '.join(job_ids)} need this video")
        self.job_ids = job_ids


def frame_cache_key(video_id: str) -> str:
    """The hash of a video's decoded frames as JPEG, by frame index (for GET /v1/jobs/{id}/frames/{index}.jpg)."""
    return f"{PREFIX}:frames:{video_id}"


PART_GRACE_S = 3600  # an upload not written to for this long is dead: its .part file is swept


USAGE_KEY = f"{PREFIX}:videos:bytes"  # hash: owner → bytes of the videos it claims; TOTAL → bytes stored
TOTAL = "*total*"


@dataclass(frozen=True)
class Quotas:
    """Bounds on stored videos, in bytes: per key (claims), in all (files), and the disk's free space to keep."""

    per_key: int
    total: int
    min_free: int

    @classmethod
    def of(cls, settings) -> Quotas:
        """The quotas a ServiceSettings names."""
        return cls(int(settings.video_quota_mb_per_key * 2**20), int(settings.video_quota_mb * 2**20),
                   int(settings.min_free_disk_mb * 2**20))

    def key_refusal(self) -> UploadRejected:
        return UploadRejected(413, f"this key's videos would pass its quota of {self.per_key / 2**20:.4g} MiB; "
                                   f"delete some first")

    def total_refusal(self) -> UploadRejected:
        return UploadRejected(507, f"the service's videos would pass its quota of {self.total / 2**20:.4g} MiB")


def too_large(limit: int) -> str:
    return f"the video is larger than the {limit / 2**20:.3g} MiB limit; send a shorter or smaller clip"


class _FilePart:
    """Receives the multipart body chunk by chunk and writes the part named ``file`` to disk as it arrives."""

    def __init__(self, handle, limit: int, refusal: UploadRejected) -> None:
        self._handle = handle
        self._limit = limit
        self._refusal = refusal
        self._header_field = b""
        self._header_value = b""
        self._in_file = False
        self.found = False
        self.size = 0
        self.digest = hashlib.sha256()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._add("_header_field", data[start:end]),
            "on_header_value": lambda data, start, end: self._add("_header_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _add(self, name: str, data: bytes) -> None:
        setattr(self, name, getattr(self, name) + data)

    def _part_begin(self) -> None:
        self._in_file = False

    def _header_end(self) -> None:
        if self._header_field.lower() == b"content-disposition":
            _, params = parse_options_header(self._header_value)
            if params.get(b"name") == b"file" and not self.found:
                self._in_file = self.found = True
        self._header_field = self._header_value = b""

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            return
        self.size += end - start
        if self.size > self._limit:
            raise self._refusal
        chunk = data[start:end]
        self.digest.update(chunk)
        self._handle.write(chunk)

    def _part_end(self) -> None:
        self._in_file = False


class VideoStore:
    """Videos on disk (``root/videos``) and their records in Redis; ``jobs`` tells which videos live jobs need."""

    def __init__(self, root: Path, redis: Redis, max_bytes: int, jobs: JobStore, quotas: Quotas | None = None) -> None:
        self.root = Path(root)
        self.redis = redis
        self.max_bytes = max_bytes
        self.jobs = jobs
        self.quotas = quotas
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)
        (self.root / "videos").mkdir(parents=True, exist_ok=True)

    def path(self, video_id: str) -> Path:
        return self.root / "videos" / video_id[:2] / video_id

    async def room(self, owner: str, declared: int = 0) -> tuple[int, UploadRejected]:
        """The most bytes an upload of ``owner`` may store, and the refusal past it; raises that refusal at once
        when ``declared`` bytes (the body's Content-Length, 0 when unknown) do not fit.

        The quotas leave room for a video the key already claims at least (its id is not known yet, and a
        re-upload takes no room); ``_check_quotas`` decides once it is."""
        bounds = [(self.max_bytes, UploadRejected(413, too_large(self.max_bytes)))]
        if self.quotas is not None:
            mine, stored = (int(value or 0) for value in await self.redis.hmget(USAGE_KEY, [owner, TOTAL]))
            largest = await self.redis.zrange(_claims_key(owner), -1, -1, withscores=True)
            again = int(largest[0][1]) if largest else 0
            free = shutil.disk_usage(self.root).free
            bounds += [
                (max(self.quotas.per_key - mine, again), self.quotas.key_refusal()),
                (max(self.quotas.total - stored, again), self.quotas.total_refusal()),
                (free - self.quotas.min_free, UploadRejected(507, "the disk of the video store is nearly full")),
            ]
        room, refusal = min(bounds, key=lambda bound: bound[0])
        if room <= 0 or declared > room + 2**16:  # a declared body holds multipart framing around the file
            raise refusal
        return room, refusal

    async def receive(self, content_type: str, body: AsyncIterator[bytes], owner: str, declared: int = 0) -> VideoOut:
        """Stores a ``multipart/form-data`` body's ``file`` part and returns its record.

        ``declared``: the body's Content-Length when the client sent one, so that an upload that cannot fit
        is refused before it is read."""
        kind, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise UploadRejected(415, "send the video as multipart/form-data with a part named 'file'")
        room, refusal = await self.room(owner, declared)
        partial = self.root / "uploads" / f"{uuid.uuid4().hex}.part"
        try:
            with open(partial, "wb") as handle:
                part = _FilePart(handle, room, refusal)
                parser = MultipartParser(boundary, part.callbacks())
                async for chunk in body:
                    parser.write(chunk)
                parser.finalize()
            if not part.found:
                raise UploadRejected(422, "no part named 'file' in the form; send the video as the 'file' field")
            if part.size == 0:
                raise UploadRejected(422, "the uploaded file is empty")
            try:
                info = await run_in_threadpool(probe, partial)
            except NotAVideo:
                raise UploadRejected(415, "the upload is not a video (no known container format); "
                                          "send an .mp4, .mkv, .webm or .mov file") from None
            except VideoError as error:
                message = str(error).replace(str(partial), "the upload")
                raise UploadRejected(422, f"the video cannot be used: {message}") from None
            video_id = part.digest.hexdigest()
            record = VideoOut(
                id=video_id,
                size_bytes=part.size,
                info=VideoInfoOut.model_validate(info),
                created_at=datetime.now(timezone.utc),
            )
            async with self._lock(video_id):
                await self._check_quotas(video_id, owner, part.size)
                final = self.path(video_id)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(partial, final)  # same filesystem: atomic; a second upload of the same bytes is harmless
                key = _record_key(video_id)
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.set(key, record.model_dump_json(), nx=True)
                    pipe.sadd(f"{key}:owners", owner)
                    pipe.zadd(VIDEOS_USED, {video_id: time.time()})
                    pipe.get(key)
                    new_file, new_claim, _, stored = await pipe.execute()
                await self._count(video_id, owner if new_claim else None, part.size if new_file else 0, part.size)
        except UploadRejected:
            raise
        except Exception as error:  # a malformed multipart body, a client that went away mid-upload
            if type(error).__module__.startswith("python_multipart"):
                raise UploadRejected(400, f"malformed multipart body: {error}") from None
            raise
        finally:
            partial.unlink(missing_ok=True)
        return VideoOut.model_validate_json(stored)

    async def get(self, video_id: str, owner: str | None) -> VideoOut | None:
        """The video's record, or None when unknown, gone from disk, or not uploaded by this owner."""
        key = _record_key(video_id)
        raw = await self.redis.get(key)
        if raw is None or not self.path(video_id).is_file():
            return None
        if owner is not None and not await self.redis.sismember(f"{key}:owners", owner):
            return None
        return VideoOut.model_validate_json(raw)

    async def delete(self, video_id: str, owner: str) -> bool:
        """Withdraws ``owner``'s claim on the video, and removes it when no other key claims it.

        False when the owner has no such video; raises VideoInUse while a job of this owner that has not
        finished needs it (cancel the job first, or wait for it).
        """
        async with self._lock(video_id):
            owners = f"{_record_key(video_id)}:owners"
            record = await self.get(video_id, owner)
            if record is None:
                return False
            live = await self.jobs.live_jobs(video_id)
            if needed := sorted(job_id for job_id, job_owner in live.items() if job_owner == owner):
                raise VideoInUse(needed)
            if await self.redis.srem(owners, owner):
                await self._count(video_id, owner, 0, -record.size_bytes)
            if not live and not await self.redis.scard(owners):
                await self._remove(video_id)
            return True

    async def sweep(self, ttl_s: float) -> list[str]:
        """Removes the videos not uploaded or asked about for ``ttl_s`` seconds that no live job needs."""
        cutoff = time.time() - ttl_s
        removed = []
        for video_id in await self.redis.zrangebyscore(VIDEOS_USED, "-inf", cutoff):
            async with self._lock(video_id):
                last_used = await self.redis.zscore(VIDEOS_USED, video_id)
                if last_used is None or last_used > cutoff or await self.jobs.live_jobs(video_id):
                    continue  # used again since, removed meanwhile, or needed: a later sweep looks again
                await self._remove(video_id)
                removed.append(video_id)
        return removed

    def sweep_uploads(self, grace_s: float = PART_GRACE_S) -> list[Path]:
        """Removes the ``.part`` files of uploads that a crash cut short: none written to for ``grace_s`` seconds.

        An upload in progress writes its file as bytes arrive, so the grace period spares every upload but one
        that stalled for longer than any client would wait; returns the files removed.
        """
        cutoff = time.time() - grace_s
        removed = []
        for partial in (self.root / "uploads").glob("*.part"):
            try:
                if partial.stat().st_mtime < cutoff:
                    partial.unlink()
                    removed.append(partial)
            except FileNotFoundError:  # its upload finished or failed meanwhile
                continue
        return removed

    async def _remove(self, video_id: str) -> None:
        """The file, its record, its owners and its cached frames; held under the video's lock."""
        key = _record_key(video_id)
        record = await self.redis.get(key)
        if record is not None:
            size = VideoOut.model_validate_json(record).size_bytes
            for owner in await self.redis.smembers(f"{key}:owners"):
                await self._count(video_id, owner, 0, -size)
            await self._count(video_id, None, -size, 0)
        self.path(video_id).unlink(missing_ok=True)
        await self.redis.delete(key, f"{key}:owners", video_jobs_key(video_id), frame_cache_key(video_id))
        await self.redis.zrem(VIDEOS_USED, video_id)

    async def _check_quotas(self, video_id: str, owner: str, size: int) -> None:
        """Raises the refusal of a quota that the upload of ``video_id`` (``size`` bytes) would pass: the key's
        counts the video only when the key does not claim it yet, the total only when it is not stored yet.
        Held under the video's lock, so that its claims and its file do not change meanwhile."""
        if self.quotas is None:
            return
        key = _record_key(video_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sismember(f"{key}:owners", owner)
            pipe.exists(key)
            pipe.hmget(USAGE_KEY, [owner, TOTAL])
            claimed, stored_already, usage = await pipe.execute()
        mine, stored = (int(value or 0) for value in usage)
        if not claimed and mine + size > self.quotas.per_key:
            raise self.quotas.key_refusal()
        if not stored_already and stored + size > self.quotas.total:
            raise self.quotas.total_refusal()

    async def _count(self, video_id: str, owner: str | None, stored: int, claimed: int) -> None:
        """Adds ``stored`` bytes to the total and, when ``owner`` is given, ``claimed`` bytes to its usage and the
        video to its claims (a negative ``claimed`` takes it out of them)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            if stored:
                pipe.hincrby(USAGE_KEY, TOTAL, stored)
            if owner is not None and claimed:
                pipe.hincrby(USAGE_KEY, owner, claimed)
                if claimed > 0:
                    pipe.zadd(_claims_key(owner), {video_id: claimed})
                else:
                    pipe.zrem(_claims_key(owner), video_id)
            await pipe.execute()

    def _lock(self, video_id: str):
        return self.redis.lock(f"{_record_key(video_id)}:lock", timeout=60, blocking_timeout=30)


def _record_key(video_id: str) -> str:
    return f"{PREFIX}:video:{video_id}"


def _claims_key(owner: str) -> str:
    """The sorted set of the videos a key claims, by size: the largest bounds what a re-upload may need."""
    return f"{PREFIX}:owner:{owner}:videos"
