"""API keys and rate limits, checked before a request's body is read (AuthGate), and the owner as a dependency.

Keys are configured as sha256 digests (an API key is a long random secret, so a plain digest stores it
safely; no password-hashing work factor is needed). A key's id, the first 16 hex digits of its digest,
owns the videos and jobs it creates. Without configured keys every caller is "anonymous".

The gate is ASGI middleware, not a FastAPI dependency, because FastAPI reads and parses a JSON body before it
solves dependencies: a caller without a key would have its body read, and would get 422 for bad input.
Callers without a valid key are throttled per client address, so that guessing keys is slow and a flood of
unauthenticated requests costs one Redis call each; keyed callers are throttled per key.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from typing import Annotated

import redis.exceptions
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from sportlens.service.limits import RateLimited, RateLimiter

ANONYMOUS = "anonymous"
_bearer = HTTPBearer(auto_error=False, description="an API key, when the service has keys configured")


def hash_key(key: str) -> str:
    """The digest to put in SPORTLENS_API_KEYS for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def guarded(path: str, keyed: bool) -> bool:
    """Whether ``path`` needs a key (with keys configured) and counts against a rate limit: the API, and the
    metrics when there are keys (they tell how busy the service is and with what)."""
    return path.startswith("/v1/") or path == "/v1" or (keyed and path == "/metrics")


async def reply(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """A JSON problem answered from middleware; the connection closes, so a body still on its way is never read."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"connection", b"close")]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class AuthGate:
    """Checks the key and the rate limit from the headers alone, then hands the owner to the app in
    ``request.state.owner``; refusals (401, 429, 503 when Redis is down) are answered here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state if scope["type"] == "http" else None
        if state is None or not guarded(scope["path"], bool(state.settings.api_keys)):
            await self.app(scope, receive, send)
            return
        settings = state.settings
        address = f"ip:{scope['client'][0] if scope.get('client') else 'unknown'}"
        limiter: RateLimiter = state.rate_limiter
        try:
            if not settings.api_keys:
                await limiter.hit(address, settings.rate_limit_per_minute)
                owner = ANONYMOUS
            else:
                owner = _owner(Headers(scope=scope).get("authorization"), settings.api_keys)
                if owner is None:
                    await limiter.hit(f"failed:{address}", settings.failed_auth_per_minute)
                    sent = Headers(scope=scope).get("authorization", "").lower().startswith("bearer ")
                    await reply(send, 401, "the API key is not valid" if sent else
                                "this service needs an API key: send 'Authorization: Bearer KEY'",
                                {"WWW-Authenticate": "Bearer"})
                    return
                await limiter.hit(owner, settings.rate_limit_per_minute)
        except RateLimited as limited:
            await reply(send, 429, f"{limited} (for this {'key' if settings.api_keys else 'client'}, or for "
                                   f"requests without a valid key from this address)",
                        {"Retry-After": str(limited.retry_after_s)})
            return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            await reply(send, 503, f"the job store (Redis) is unavailable: {error}")
            return
        scope.setdefault("state", {})["owner"] = owner
        await self.app(scope, receive, send)


def _owner(authorization: str | None, digests: list[str]) -> str | None:
    """The owner id of a valid ``Authorization: Bearer KEY``, or None."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    digest = hash_key(key.strip())
    valid = False
    for known in digests:  # every digest compared, in constant time each
        valid |= hmac.compare_digest(digest, known)
    return digest[:16] if valid else None


async def caller(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The owner id AuthGate established (``credentials`` is here so that the OpenAPI document names the scheme)."""
    return request.state.owner


Caller = Annotated[str, Depends(caller)]
