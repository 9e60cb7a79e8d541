"""API keys and the per-key rate limit, as FastAPI dependencies.

Keys are configured as sha256 digests (an API key is a long random secret, so a plain digest stores it
safely; no password-hashing work factor is needed). A key's id, the first 16 hex digits of its digest,
owns the videos and jobs it creates. Without configured keys every caller is "anonymous".
"""
from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

ANONYMOUS = "anonymous"
_bearer = HTTPBearer(auto_error=False, description="an API key, when the service has keys configured")


def hash_key(key: str) -> str:
    """The digest to put in SPORTLENS_API_KEYS for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


async def caller(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The owner id of the request: checks the bearer key (when keys are configured) and the rate limit."""
    state = request.app.state
    digests: list[str] = state.settings.api_keys
    if not digests:
        return ANONYMOUS
    if credentials is None:
        raise HTTPException(401, "this service needs an API key: send 'Authorization: Bearer KEY'",
                            headers={"WWW-Authenticate": "Bearer"})
    digest = hash_key(credentials.credentials)
    if not any(hmac.compare_digest(digest, known) for known in digests):
        raise HTTPException(401, "the API key is not valid", headers={"WWW-Authenticate": "Bearer"})
    owner = digest[:16]
    await _rate_limit(request, owner)
    return owner


async def _rate_limit(request: Request, owner: str) -> None:
    """A fixed one-minute window per key, counted in Redis so that every API process shares it."""
    limit = request.app.state.settings.rate_limit_per_minute
    window = int(time.time() // 60)
    key = f"sportlens:rate:{owner}:{window}"
    async with request.app.state.redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, 120)
        count, _ = await pipe.execute()
    if count > limit:
        retry_after = 60 - int(time.time()) % 60
        raise HTTPException(429, f"rate limit of {limit} requests per minute reached for this key; "
                                 f"retry in {retry_after} s", headers={"Retry-After": str(retry_after)})


Caller = Annotated[str, Depends(caller)]
