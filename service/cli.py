"""`sportlens serve` and `sportlens worker`: thin commands over the settings, the app and the arq worker."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from pydantic import ValidationError

from sportlens.agent.conformal import CalibrationError
from sportlens.tools.usage import UsageError

# The settings, the app (FastAPI, uvicorn), the embedded Redis and the worker (arq) are imported when `serve` or
# `worker` runs: `sportlens --help` takes 0.6 s so, 0.8 to 1.2 s with them here (medians of 5 runs, twice, on a shared
# 2-core CPU).


def register(commands: argparse._SubParsersAction) -> None:
    """Adds the two service subcommands to the `sportlens` parser."""
    serve = commands.add_parser("serve", help="run the REST API and web page (embedded default: Redis, a worker "
                                              "and the demo model on this machine)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--hash-key", metavar="KEY", help="print the digest of an API key for SPORTLENS_API_KEYS "
                                                         "and exit")
    serve.set_defaults(run=_serve)
    worker = commands.add_parser("worker", help="take question jobs from the shared Redis (REDIS_URL)")
    worker.set_defaults(run=_worker)


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: easy for a log collector, still readable."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _logging() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def _settings():
    """The settings; a UsageError saying which variable is wrong when they are bad."""
    from pydantic_settings import SettingsError

    from sportlens.service.settings import ServiceSettings

    try:
        settings = ServiceSettings()
        settings.calibration_artifact  # a bad artifact stops the start, not a later request
        return settings
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors())
    except (SettingsError, CalibrationError) as error:
        problems = str(error)
    raise UsageError(f"bad service settings (SPORTLENS_*): {problems}")


def _serve(args: argparse.Namespace) -> int:
    if args.hash_key is not None:
        from sportlens.service.auth import hash_key

        print(hash_key(args.hash_key))
        return 0
    import uvicorn

    from sportlens.service.app import create_app
    from sportlens.service.edge import server_options
    from sportlens.service.embedded_redis import EmbeddedRedis

    settings = _settings()
    if not settings.api_keys and args.host not in {"127.0.0.1", "localhost", "::1"}:
        raise UsageError(f"without API keys `serve` binds loopback only (not {args.host}): set SPORTLENS_API_KEYS "
                         f"(`sportlens serve --hash-key KEY` prints one) to serve other machines")
    _logging()  # before the embedded Redis, whose supervisor logs a stale lock it takes over and restarts
    embedded = None
    if settings.embedded:  # started here, so that a Redis that cannot start stops `serve` with one line
        try:
            embedded = EmbeddedRedis(settings.home / "redis").start()
        except RuntimeError as error:
            print(f"sportlens: error: {error}", file=sys.stderr)
            return 1
    try:  # the app's lifespan stops the embedded Redis; uvicorn re-raises SIGTERM after it, so no code runs later
        uvicorn.run(create_app(settings, embedded_redis=embedded), host=args.host, port=args.port, log_config=None,
                    timeout_graceful_shutdown=10, **server_options(settings))
    finally:
        if embedded is not None:  # when uvicorn stopped before the lifespan could (a port in use)
            embedded.stop()
    return 0


def _worker(args: argparse.Namespace) -> int:
    from sportlens.service.worker import run_worker

    settings = _settings()
    if settings.redis_url is None:
        raise UsageError("`sportlens worker` joins a shared Redis: set REDIS_URL (and SPORTLENS_BACKEND_URL)")
    _logging()
    asyncio.run(run_worker(settings))
    return 0
