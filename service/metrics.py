"""Prometheus metrics: this process's requests and latencies, and the shared numbers every process keeps in Redis.

Workers run elsewhere, so jobs by state, frames decoded and model tokens are counters in one Redis hash
(service.jobs.STATS_KEY); any API process reports them, with the queue depth, when scraped.
"""
from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis import Redis as SyncRedis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sportlens.service.jobs import STATS_KEY

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class SharedStats:
    """A collector that reads the shared counters and the queue depth from Redis at scrape time."""

    def __init__(self, queue_name: str) -> None:
        self._queue = queue_name
        self._redis: SyncRedis | None = None

    def connect(self, redis_url: str) -> None:
        self._redis = SyncRedis.from_url(redis_url, decode_responses=True, socket_timeout=2)

    def collect(self):
        if self._redis is None:
            return
        stats = self._redis.hgetall(STATS_KEY)
        jobs = CounterMetricFamily("sportlens_jobs", "job state changes, by the state entered", labels=["state"])
        for state in ("queued", "running", "retrying", "complete", "failed", "cancelled"):
            jobs.add_metric([state], float(stats.get(f"jobs_{state}", 0)))
        yield jobs
        yield CounterMetricFamily("sportlens_cache_hits", "questions answered from the result cache",
                                  value=float(stats.get("cache_hits", 0)))
        yield CounterMetricFamily("sportlens_frames_decoded", "frames decoded and shown to the model",
                                  value=float(stats.get("frames_decoded", 0)))
        tokens = CounterMetricFamily("sportlens_model_tokens", "model tokens, by direction", labels=["direction"])
        tokens.add_metric(["in"], float(stats.get("tokens_in", 0)))
        tokens.add_metric(["out"], float(stats.get("tokens_out", 0)))
        yield tokens
        yield GaugeMetricFamily("sportlens_queue_depth", "jobs waiting or running in the queue",
                                value=float(self._redis.zcard(self._queue)))

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None


class Metrics:
    """One registry per app: request counts and latencies by route template, plus the shared stats."""

    def __init__(self, shared: SharedStats) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("sportlens_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("sportlens_http_request_seconds", "HTTP request latency (to the first byte "
                                 "of the body for streams)", ["method", "route"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.registry.register(shared)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by method (any other than METHODS is "other"), route template (not the raw path:
    ids would explode the labels) and status: a client cannot grow the label sets."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_time(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route = scope.get("route")
                path = getattr(route, "path", "unmatched")
                method = scope["method"] if scope["method"] in METHODS else "other"
                self.metrics.latency.labels(method, path).observe(time.perf_counter() - started)
                self.metrics.requests.labels(method, path, str(status)).inc()
            await send(message)

        await self.app(scope, receive, send_and_time)
