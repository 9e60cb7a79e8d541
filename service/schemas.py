"""What the API takes and returns: pydantic models validated at the edge, so the inside sees only valid objects.

Like vLLM's protocol.py, unknown fields and out-of-range values are rejected with a message naming them.
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sportlens.agent.loop import AgentEvent
from sportlens.agent.records import Result

JobStatus = Literal["queued", "running", "retrying", "complete", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"complete", "failed", "cancelled"})


class VideoInfoOut(BaseModel):
    """What probing the upload found (the file's content decides, never its name or declared type)."""

    frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    codec: str


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
    question: str = Field(min_length=1, max_length=2000)
    options: list[str] | None = Field(None, min_length=2, max_length=26,
                                      description='closed question choices, e.g. ["A) foul", "B) no foul"]')
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
        if not value.strip():
            raise ValueError("the question is blank")
        return value

    @field_validator("options")
    @classmethod
    def _options_not_blank(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not option.strip() or len(option) > 500 for option in value):
            raise ValueError("each option must hold 1 to 500 characters")
        return value


class Progress(BaseModel):
    """How far the agent has got: the turn it is on out of its budget, and the frames it has seen."""

    turn: int = 0
    max_turns: int
    frames_seen: int = 0


class JobOut(BaseModel):
    """A question's job: its state, progress and, once complete, the Result (trajectory, answer, prediction set)."""

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
    result: Result | None = None


class JobEvent(BaseModel):
    """One server-sent event: a status change, or an agent step (AgentEvent from the loop) as it happens."""

    kind: Literal["status", "initial_frames", "turn_started", "step"]
    status: JobStatus | None = None
    attempt: int | None = None
    error: str | None = None
    agent: AgentEvent | None = None


class Problem(BaseModel):
    """Every 4xx/5xx body: what went wrong, in words a client can act on."""

    detail: str | list


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}
