"""How much one caller may ask for: requests in any 60 s (shared in Redis), and scarce things held at once.

The rate limit is a sliding log: a request is let through when fewer than ``limit`` requests of the same caller
were let through in the 60 s before it, so no 60-s span ever holds more than ``limit`` (a fixed window lets 2×
through at its edge). Event streams and ``wait=`` requests each hold a Redis connection while they block; their
slots are counted per API process, which owns those connections.
"""
from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException
from redis.asyncio import Redis

WINDOW_S = 60.0

# KEYS: the caller's log (a sorted set of request times). ARGV: now, window, limit, a unique member.
# Returns {1, 0} when let through, {0, seconds until the oldest request leaves the window} when not.
_SLIDING_LOG = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tostring(tonumber(oldest[2]) + window - now)}
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return {1, '0'}
"""


class RateLimited(Exception):
    """The caller used its requests of the last 60 s; ``retry_after_s`` says when one frees up."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(f"rate limit of {limit} requests per minute reached; retry in {retry_after_s} s")
        self.limit = limit
        self.retry_after_s = retry_after_s


class RateLimiter:
    """Sliding-log rate limits kept in Redis, so that every API process counts the same requests."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self._script = redis.register_script(_SLIDING_LOG)
        self._namespace = namespace  # services sharing one Redis (their queues differ) count apart

    async def hit(self, caller: str, limit: int, now: float | None = None) -> None:
        """Counts one request of ``caller``; raises RateLimited when ``limit`` were let through in the last 60 s."""
        now = time.time() if now is None else now
        allowed, wait = await self._script(keys=[f"sportlens:rate:{self._namespace}:{caller}"],
                                           args=[repr(now), WINDOW_S, limit, f"{now!r}:{uuid.uuid4().hex[:8]}"])
        if not int(allowed):
            raise RateLimited(limit, max(1, math.ceil(float(wait))))


class Slots:
    """Things held at once, per key and in all, in this process: ``what`` names them in the refusals.

    A key over its share gets 429 (it can wait for its own to end); the process over its total gets 503.
    """

    def __init__(self, what: str, per_key: int, total: int) -> None:
        self.what = what
        self.per_key = per_key
        self.total = total
        self._held: Counter[str] = Counter()

    def acquire(self, owner: str) -> None:
        if self._held[owner] >= self.per_key:
            raise HTTPException(429, f"this key already holds {self.per_key} {self.what}, its limit; "
                                     f"close one first", headers={"Retry-After": "1"})
        if self._held.total() >= self.total:
            raise HTTPException(503, f"the server holds {self.total} {self.what}, its limit; try again shortly",
                                headers={"Retry-After": "1"})
        self._held[owner] += 1

    def release(self, owner: str) -> None:
        self._held[owner] -= 1
        if self._held[owner] <= 0:
            del self._held[owner]

    @contextmanager
    def held(self, owner: str) -> Iterator[None]:
        self.acquire(owner)
        try:
            yield
        finally:
            self.release(owner)
