"""How much one caller may ask for: requests in any 60 s, and scarce things held at once (both shared in Redis).

The rate limit is a sliding log: a request is let through when fewer than ``limit`` requests of the same caller
were let through in the 60 s before it, so no 60-s span ever holds more than ``limit`` (a fixed window lets 2×
through at its edge). Event streams and ``wait=`` requests are limited per key across all API processes, as
leases in Redis that a crashed process cannot keep; each also holds a Redis connection of its process while it
blocks, so a process bounds how many it holds in all.
"""
from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import HTTPException
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

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

# KEYS: a key's slots (a sorted set: token → when its lease ends). ARGV: now, lease in seconds, limit, a new token.
# Slots whose lease ended (their process died) leave first; returns 1 when the token got a slot, 0 when all are held.
_ACQUIRE_SLOT = """
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now + lease, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000))
return 1
"""

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)  # what a command to a Redis that went away raises


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
    """Things a key holds at once (event streams, ``wait=`` requests), counted in Redis so that every API process
    counts the same ones; ``what`` names them in the refusals.

    A key over its share gets 429 (it can wait for its own to end). Each slot is a lease in the key's sorted set
    that its holder renews every third of ``lease_s``: a process that dies holding slots stops renewing them, and
    they count no more once their leases end. ``total`` bounds what this process holds in all (each holds one of
    its Redis connections while it blocks): 503 past it.
    """

    def __init__(self, redis: Redis, name: str, what: str, per_key: int, total: int, lease_s: float) -> None:
        self.what = what
        self.per_key = per_key
        self.total = total
        self.lease_s = lease_s
        self.redis = redis
        self._script = redis.register_script(_ACQUIRE_SLOT)
        self._prefix = f"sportlens:slots:{name}"  # services sharing one Redis name theirs apart
        self._open = 0

    async def acquire(self, owner: str) -> Lease:
        """A slot of ``owner``'s, held until the lease is released; raises HTTPException 429 or 503 when full."""
        if self._open >= self.total:
            raise HTTPException(503, f"the server holds {self.total} {self.what}, its limit; try again shortly",
                                headers={"Retry-After": "1"})
        key, token = f"{self._prefix}:{owner}", uuid.uuid4().hex
        self._open += 1  # before the await: requests arriving together cannot pass the total together
        try:
            if not await self._script(keys=[key], args=[repr(time.time()), self.lease_s, self.per_key, token]):
                raise HTTPException(429, f"this key already holds {self.per_key} {self.what}, its limit; "
                                         f"close one first", headers={"Retry-After": "1"})
        except BaseException:
            self._open -= 1
            raise
        return Lease(self, key, token)

    def released(self) -> None:
        """Called by a Lease that ends: this process holds one fewer."""
        self._open -= 1

    @asynccontextmanager
    async def held(self, owner: str) -> AsyncIterator[None]:
        """A slot of ``owner``'s for the duration of the block (see ``acquire``)."""
        lease = await self.acquire(owner)
        try:
            yield
        finally:
            await lease.release()


class Lease:
    """One slot held in Redis, renewed in the background until it is released."""

    def __init__(self, slots: Slots, key: str, token: str) -> None:
        self._slots = slots
        self._key = key
        self._token = token
        self._renewal = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        lease_s = self._slots.lease_s
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                async with self._slots.redis.pipeline(transaction=False) as pipe:
                    pipe.zadd(self._key, {self._token: time.time() + lease_s}, xx=True)  # never brings a slot back
                    pipe.pexpire(self._key, math.ceil(lease_s * 1000))
                    await pipe.execute()
            except REDIS_DOWN:  # renewed on the next beat, or the lease ends
                pass

    async def release(self) -> None:
        """Gives the slot back, even while the request is being cancelled; when Redis cannot be told, the lease
        ends by itself."""
        self._renewal.cancel()
        self._slots.released()
        with anyio.CancelScope(shield=True):
            try:
                await self._slots.redis.zrem(self._key, self._token)
            except REDIS_DOWN:
                pass
