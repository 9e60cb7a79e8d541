"""Every knob of the service, read from the environment (and a .env file) through one pydantic-settings class."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sportlens.agent.conformal import CalibrationArtifact
from sportlens.agent.models import (carried_calibration, check_model_choice, default_model_dir,
                                    sportlens_home)


class ServiceSettings(BaseSettings):
    """The service's configuration. Every field is read from ``SPORTLENS_<NAME>`` (``REDIS_URL`` also works).

    With nothing set, ``sportlens serve`` is the embedded default: a private Redis under ``home``, one
    in-process worker, and the shipped model (trained on SportSim visual clips) with its calibration. With ``redis_url``
    and ``backend_url`` set, any number of API processes and workers share one Redis and one data
    directory (a shared filesystem when they run on several machines).
    """

    model_config = SettingsConfigDict(env_prefix="SPORTLENS_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=sportlens_home, description="models, the embedded Redis and, by default, data")
    data_dir: Path | None = Field(None, description="uploaded videos (content-addressed); default home/service")
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("SPORTLENS_REDIS_URL", "REDIS_URL"),
        description="shared Redis; unset starts a private redis-server under home (embedded mode)",
    )
    backend_url: str | None = Field(None, description="an OpenAI-compatible model server (vLLM); unset: in-process")
    model_name: str | None = Field(None, description="the model's name on backend_url")
    backend_api_key: str | None = Field(None, description="bearer token for backend_url")
    model_dir: Path | None = Field(None, description="checkpoint run in-process; default: the shipped model")
    in_process_worker: bool | None = Field(None, description="run a worker inside `serve`; default: when embedded")
    worker_concurrency: int | None = Field(None, ge=1, description="jobs one worker runs at once; default 1 "
                                                                    "in-process (the model is serialised), 8 over HTTP")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="sha256 hex digests of the accepted API keys (`sportlens serve --hash-key KEY` prints one); "
        "empty: no auth",
    )
    rate_limit_per_minute: int = Field(600, ge=1, description="requests per API key (without keys: per client "
                                       "address) in any 60 s")
    failed_auth_per_minute: int = Field(20, ge=1, description="requests without a valid key per client address in "
                                        "any 60 s before they get 429 instead of 401")
    max_upload_mb: float = Field(512.0, gt=0, description="largest accepted video upload")
    max_body_kb: float = Field(64.0, gt=0, description="largest request body other than an upload")
    header_timeout_s: float = Field(10.0, gt=0, description="time a connection has to send a request's headers")
    body_timeout_s: float = Field(30.0, gt=0, description="longest wait for the next piece of a request body")
    keep_alive_s: float = Field(75.0, gt=0, description="how long an idle connection stays open between requests")
    max_connections: int = Field(1000, ge=1, description="open connections (and requests in progress) before "
                                 "new requests get 503")
    max_live_jobs_per_key: int = Field(100, ge=1, description="queued or running jobs one key may have")
    max_streams_per_key: int = Field(16, ge=1, description="event streams one key may hold open (in all API "
                                     "processes together)")
    max_waits_per_key: int = Field(16, ge=1, description="POST /v1/questions?wait= one key may hold open (in all "
                                   "API processes together)")
    slot_lease_s: float = Field(30.0, ge=1, description="an open event stream or wait= request renews its slot in "
                                "Redis every third of this: the slots of an API process that died free after at "
                                "most this long")
    redis_max_connections: int = Field(128, ge=8, description="Redis connections of one API process; half at most "
                                       "go to event streams and waits, which hold theirs while they block")
    video_quota_mb_per_key: float = Field(8192.0, gt=0, description="stored videos one key may claim, in total")
    video_quota_mb: float = Field(65536.0, gt=0, description="stored videos of all keys together")
    min_free_disk_mb: float = Field(1024.0, ge=0, description="uploads are refused (507) when they would leave "
                                    "less free space than this on the data directory's disk")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"],
        description="Host header names accepted when no API keys are configured (against DNS rebinding); "
        "comma-separated",
    )
    max_wait_s: float = Field(60.0, ge=0, description="bound on POST /v1/questions?wait=")
    job_deadline_s: float = Field(600.0, gt=0, description="longest one try of a job may run")
    job_max_tries: int = Field(3, ge=1, description="tries of a job before it fails (a dead worker's try counts)")
    worker_lease_s: float = Field(10.0, ge=1, description="a worker renews the leases of its jobs and its heartbeat "
                                  "every third of this: a dead worker's jobs are taken up again after at most this "
                                  "long, and /readyz is 503 when no worker has beaten for this long")
    retry_backoff_s: float = Field(2.0, ge=0, description="delay before the 2nd try, doubling for each later one")
    result_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="how long jobs, their events and results are kept")
    cache_ttl_s: int = Field(7 * 24 * 3600, ge=0, description="how long the result cache keeps an answer; 0: off")
    video_ttl_s: int = Field(0, ge=0, description="remove a video this long after it was last uploaded or asked "
                             "about, unless a queued or running job needs it; 0: keep videos until deleted")
    video_sweep_s: int = Field(60, ge=1, le=60, description="how often workers look for videos past video_ttl_s "
                               "(rounded down to a divisor of 60)")
    worker_poll_s: float | None = Field(None, gt=0, description="how often an idle worker looks at the queue; "
                                        "default 5 ms over HTTP, 50 ms in-process (polling steals CPU from the model)")
    queue_name: str = Field("sportlens:queue", description="the arq queue")
    calibration: Path | None = Field(
        None, description="a calibration artifact (`sportlens calibrate`): answers come with conformal prediction sets"
    )
    answer_samples: int = Field(10, ge=1, le=64, description="answers sampled per question for a `sample` calibration")

    @field_validator("api_keys", "allowed_hosts", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):  # SPORTLENS_API_KEYS="digest1,digest2"
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _hex_digests(cls, value: list[str]) -> list[str]:
        for digest in value:
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
                raise ValueError("SPORTLENS_API_KEYS holds sha256 hex digests of keys, not keys: "
                                 "print one with `sportlens serve --hash-key KEY`")
        return [digest.lower() for digest in value]

    @model_validator(mode="after")
    def _one_model(self) -> ServiceSettings:
        check_model_choice(self.model_dir, self.backend_url, self.model_name)  # a half-named server stops the start
        return self

    @cached_property
    def storage_dir(self) -> Path:
        return self.data_dir or self.home / "service"

    @property
    def embedded(self) -> bool:
        return self.redis_url is None

    @property
    def runs_in_process_worker(self) -> bool:
        return self.embedded if self.in_process_worker is None else self.in_process_worker

    @property
    def concurrency(self) -> int:
        return self.worker_concurrency or (8 if self.backend_url else 1)

    @property
    def poll_s(self) -> float:
        return self.worker_poll_s or (0.005 if self.backend_url else 0.05)

    @property
    def resolved_model_dir(self) -> Path:
        return self.model_dir or default_model_dir()

    @property
    def model_key(self) -> str:
        """What names the model in cache keys: the served name over HTTP, the checkpoint path in-process."""
        if self.backend_url:
            return f"{self.backend_url.rstrip('/')}#{self.model_name}"
        return str(self.resolved_model_dir.resolve())

    @cached_property
    def calibration_artifact(self) -> CalibrationArtifact | None:
        """The loaded calibration, or None; loading fails with CalibrationError naming the file.

        Without ``calibration``, the shipped model (no ``model_dir``, no ``backend_url``) answers with its own.
        """
        path = self.calibration or carried_calibration(self.model_dir, self.backend_url)
        return CalibrationArtifact.load(path) if path else None
