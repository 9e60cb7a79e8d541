"""The records the agent produces and the layers above store: pydantic models, JSON on the wire and on disk."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = "v1"


class FrameRef(BaseModel):
    """A frame the model was shown: its raw index in the full video and its time."""

    model_config = ConfigDict(extra="forbid")
    index: int
    seconds: float


class TokenLogprob(BaseModel):
    """One generated token and the log-probability the model gave it."""

    model_config = ConfigDict(extra="forbid")
    token: str
    logprob: float


class VideoSummary(BaseModel):
    """What the trajectory records about the video it was asked about."""

    model_config = ConfigDict(extra="forbid")
    path: str
    frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    codec: str
    reader: str


class Step(BaseModel):
    """One assistant turn: what it thought, what it did, what it was shown in return, and what it cost."""

    model_config = ConfigDict(extra="forbid")
    turn: int
    thought: str
    action: Literal["choose_frames", "answer", "invalid"]
    frame_range: tuple[int, int] | None = None
    frames_shown: list[FrameRef] = Field(default_factory=list)
    answer: str | None = None
    format_error: str | None = None
    raw_output: str
    tokens_in: int
    tokens_out: int
    latency_s: float


class Trajectory(BaseModel):
    """A whole question: the initial frames, every step, the final answer and the answer tokens' logprobs."""

    model_config = ConfigDict(extra="forbid")
    protocol_version: str = PROTOCOL_VERSION
    question: str
    options: list[str] | None = None
    model: str
    video: VideoSummary
    initial_frames: list[FrameRef]
    steps: list[Step]
    answer: str | None
    answer_logprobs: list[TokenLogprob] = Field(default_factory=list)
    tokens_in: int
    tokens_out: int
    latency_s: float
    model_latency_s: float
    frames_used: int
    format_errors: int


class Result(BaseModel):
    """A trajectory plus what is known about how sure its answer may be and whether it was right."""

    model_config = ConfigDict(extra="forbid")
    trajectory: Trajectory
    prediction_set: list[str] | None = None
    alpha: float | None = None
    set_size: int | None = None
    abstain: bool = False
    correct: bool | None = None
