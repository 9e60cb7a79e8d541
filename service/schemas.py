"""What the API takes and returns: pydantic models validated at the edge, so the inside sees only valid objects.

Like vLLM's protocol.py, unknown fields and out-of-range values are rejected with a message naming them.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sportlens.service.records_out import AgentEventOut, ResultOut, VideoInfoOut

# Holds a character that is not white space. Spelled out, because engines disagree on \s (Python counts \x1c-\x1f,
# JSON Schema's ECMA regex does not); the validators apply the same pattern, so that the message says "blank".
_NOT_BLANK = r"[^\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
NOT_BLANK = {"pattern": _NOT_BLANK}
JobStatus = Literal["queued", "running", "retrying", "complete", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"complete", "failed", "cancelled"})


class VideoOut(BaseModel):
    """A stored video: its id is the sha256 of its bytes."""

    id: str = Field(description="sha256 hex digest of the file")
    size_bytes: int
    info: VideoInfoOut
    created_at: datetime


class QuestionRequest(BaseModel):
    """A question about an uploaded video, with the agent's knobs a client may turn."""

    model_config = ConfigDict(extra="forbid")

    video_id: str = Field(pattern=r"^[0-9a-f]{64}$", description="the id POST /v1/videos returned")
    question: str = Field(min_length=1, max_length=2000, json_schema_extra=NOT_BLANK)
    options: list[Annotated[str, Field(min_length=1, max_length=500, json_schema_extra=NOT_BLANK)]] | None = Field(
        None, min_length=2, max_length=26, description='closed question choices, e.g. ["A) foul", "B) no foul"]')
    sport: str | None = Field(None, max_length=64)
    task: str | None = Field(None, max_length=64)
    alpha: float | None = Field(None, gt=0, lt=1, description="miscoverage level of the prediction set; "
                                "default: the service's calibration's")
    selective: bool = Field(False, description="abstain unless the prediction set holds exactly one answer")
    max_turns: int = Field(5, ge=1, le=10)
    frames_per_call: int = Field(8, ge=1, le=32)
    cache: bool = Field(True, description="false runs the agent even when an identical question was answered")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not re.search(_NOT_BLANK, value):
            raise ValueError("the question is blank")
        return value

    @field_validator("options")
    @classmethod
    def _options_not_blank(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not re.search(_NOT_BLANK, option) for option in value):
            raise ValueError("an option is blank")
        return value


class Progress(BaseModel):
    """How far the agent has got: the turn it is on out of its budget, and the frames it has seen."""

    turn: int = 0
    max_turns: int
    frames_seen: int = 0


class JobOut(BaseModel):
    """A question's job: its state, progress and, once complete, the Result (trajectory, answer, prediction set),
    less what stays on the server: where it keeps the video, and the model's raw output."""

    id: str
    status: JobStatus
    video_id: str
    request: QuestionRequest
    progress: Progress
    attempts: int = Field(0, description="tries started; more than 1 after a retry or a lost worker")
    cached: bool = Field(False, description="the result came from the cache")
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
    result: ResultOut | None = None


class JobEvent(BaseModel):
    """One server-sent event: a status change, or an agent step (AgentEvent from the loop) as it happens.

    A `running` status with ``attempt`` > 1 starts a retry: the steps shown so far belong to an earlier try and
    are void (its ``error`` says why that try ended). Read from the start, the stream holds the latest try only.
    """

    kind: Literal["status", "initial_frames", "turn_started", "step"]
    status: JobStatus | None = None
    attempt: int | None = Field(None, description="the try the event belongs to (1 for the first)")
    error: str | None = Field(None, description="why the job failed or is retrying; on a retry's `running`, "
                                                "why the earlier try ended")
    agent: AgentEventOut | None = None


class Problem(BaseModel):
    """Every 4xx/5xx body: what went wrong, in words a client can act on."""

    detail: str | list


# What any /v1 route may answer besides its own responses.
V1_PROBLEMS: dict[int | str, dict] = {
    401: {"model": Problem, "description": "no API key, or not a valid one (when the service has keys configured)",
          "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}},
    408: {"model": Problem, "description": "the request body stopped arriving"},
    413: {"model": Problem, "description": "the request body is over its limit"},
    429: {"model": Problem, "description": "a rate limit (this key's, or this address's without a valid key) or a "
                                           "limit on what one key may hold (jobs, streams, waits) is reached",
          "headers": {"Retry-After": {"description": "seconds until a request may succeed",
                                      "schema": {"type": "integer"}}}},
    503: {"model": Problem, "description": "the job store (Redis) is unavailable, or the server is at its limit"},
}


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}
