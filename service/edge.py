"""What every connection and request meets before the app does any work for it.

- Connections: a client has ``header_timeout_s`` to send a request's headers (uvicorn has no such timeout: a
  slowloris could hold a connection for ever), ``keep_alive_s`` idle between requests, and ``max_connections``
  bound the open connections (uvicorn answers 503 past it).
- Bodies (BodyLimit): counted while they are read, never trusted from Content-Length alone; past the limit, or
  silent for ``body_timeout_s``, the request is answered (413, 408) and its body is no longer read.
- Exposure (HostCheck, SecurityHeaders): without API keys the service is for this machine only, so the Host
  header must name it (a DNS-rebinding page names its own host); every answer says nosniff and refuses framing,
  and the page's content security policy allows only its own script and style.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from sportlens.service.auth import reply
from sportlens.service.settings import ServiceSettings
from sportlens.service.storage import too_large

UPLOAD_OVERHEAD = 2**16  # multipart boundaries and part headers around an upload's file


class BodyLimit:
    """Counts each request body's bytes as they arrive (uploads: the upload limit, anything else: max_body_kb)."""

    def __init__(self, app: ASGIApp, settings: ServiceSettings) -> None:
        self.app = app
        self.body_limit = int(settings.max_body_kb * 1024)
        self.upload_limit = int(settings.max_upload_mb * 2**20)
        self.timeout_s = settings.body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST" and scope["path"] == "/v1/videos":
            limit, refusal = self.upload_limit + UPLOAD_OVERHEAD, too_large(self.upload_limit)
        else:
            limit, refusal = self.body_limit, f"the request body is larger than the {self.body_limit // 1024} KiB limit"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await reply(send, 413, refusal)
            return
        received, body_done, started = 0, False, False
        refusal_due: tuple[int, str] | None = None

        def refuse(status: int, detail: str) -> Message:
            nonlocal refusal_due
            refusal_due = (status, detail)
            return {"type": "http.disconnect"}  # the app stops reading; its cleanup runs before the answer goes

        async def counted_receive() -> Message:
            nonlocal received, body_done
            if refusal_due is not None:
                return {"type": "http.disconnect"}
            if body_done:  # a stream listening for the client to go away: no timeout
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                return refuse(408, f"the request body stopped arriving for {self.timeout_s:g} s")
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit:
                    return refuse(413, refusal)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refusal_due is not None:  # the app's answer to a body cut short: the client gets the refusal
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if refusal_due is None:
                raise
        if refusal_due is not None and not started:
            await reply(send, *refusal_due)


class HostCheck:
    """Without API keys, answers 421 to a request whose Host header is not one of ``allowed_hosts``."""

    def __init__(self, app: ASGIApp, settings: ServiceSettings) -> None:
        self.app = app
        self.allowed = None if settings.api_keys else {host.lower() for host in settings.allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allowed is not None and scope["type"] == "http":
            host = Headers(scope=scope).get("host", "").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host  # "[::1]:8080", "localhost:8080"
            if name not in self.allowed:
                await reply(send, 421, f"this service has no API keys and answers only to "
                                       f"{', '.join(sorted(self.allowed))}; set SPORTLENS_API_KEYS to serve "
                                       f"other hosts, or add this one to SPORTLENS_ALLOWED_HOSTS")
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Adds nosniff and no-framing to every answer, and ``page_policy`` (a Content-Security-Policy) to the page."""

    def __init__(self, app: ASGIApp, page_policy: str) -> None:
        self.app = app
        self.page_policy = page_policy.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY")]
                if scope["path"] == "/":
                    headers.append((b"content-security-policy", self.page_policy))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def page_policy(html: str) -> str:
    """The page's Content-Security-Policy: its inline script and style by hash, API calls and frames' blobs."""

    def hashes(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in bodies)

    return (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
            "img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class _HeaderDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers take longer than ``header_timeout_s``
    (from the connection's start, or from the first byte of a later request on a kept-alive connection)."""

    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_headers():
            self._arm()
        super().data_received(data)
        if not self._waiting_for_headers():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout_s, self.transport.close)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None


def server_options(settings: ServiceSettings) -> dict[str, Any]:
    """uvicorn.run's connection limits for ``settings``.

    The keep-alive default (75 s) outlasts clients' idle connection expiry (httpx: 5 s, browsers and load balancers:
    ≥ 60 s): with uvicorn's 5 s a pooled connection could be closed just as a client reused it, failing that request.
    """
    protocol = type("HeaderDeadlineH11", (_HeaderDeadlineH11,), {"header_timeout_s": settings.header_timeout_s})
    return {"http": protocol, "limit_concurrency": settings.max_connections, "timeout_keep_alive": settings.keep_alive_s}
