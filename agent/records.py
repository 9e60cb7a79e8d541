"""The records the agent produces and the layers above store: pydantic models, JSON on the wire and on disk."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from sportlens.tools.video_info import VideoInfo

PROTOCOL_VERSION = "v2"  # v1 -> v2: FrameThinker's range checks (agent/protocol.py says what changed)


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


def _fields_of(info: type) -> dict[str, Any]:
    """A dataclass's fields as pydantic field definitions: its types, no defaults, its ``description`` metadata."""
    types = typing.get_type_hints(info)
    return {f.name: (types[f.name], Field(description=f.metadata.get("description"))) for f in dataclasses.fields(info)}


VideoSummary = create_model(
    "VideoSummary",
    __config__=ConfigDict(extra="forbid"),
    __doc__="What the trajectory records about the video it was asked about: the tools' VideoInfo, field for field.",
    __module__=__name__,
    **_fields_of(VideoInfo),
)


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
    option_logprobs: dict[str, float] | None = None
    answer_samples: list[str] = Field(default_factory=list)


class Result(BaseModel):
    """A trajectory plus what is known about how sure its answer may be and whether it was right.

    ``item_id``, ``sport``, ``task`` and ``label`` come from the question set when there is one: calibration
    groups by sport × task and scores against the label.
    """

    model_config = ConfigDict(extra="forbid")
    trajectory: Trajectory
    item_id: str | None = None
    sport: str | None = None
    task: str | None = None
    label: str | None = None
    prediction_set: list[str] | None = None
    alpha: float | None = None
    coverage_target: float | None = None
    calibration_group: str | None = None
    set_size: int | None = None
    abstain: bool = False
    correct: bool | None = None


class QAItem(BaseModel):
    """One benchmark or training question about one video (a line of our QA JSONL, docs/records.md).

    ``answer`` is an option letter for ``choice``, "yes"/"no" for ``yes_no``, free text for ``open`` and
    "[x0, y0, x1, y1]" for ``box``; ``box`` holds the same box in pixels of the event frame.
    ``event_window`` is the inclusive [start_frame, end_frame] of the moment that answers it.
    """

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    video: str = Field(min_length=1)
    question: str = Field(min_length=1)
    options: list[str] | None = None
    answer: str
    answer_type: Literal["choice", "yes_no", "open", "box"]
    sport: str
    task: str
    level: int | None = None
    dimension: str | None = None
    event_window: tuple[int, int] | None = None
    box: tuple[float, float, float, float] | None = None
    explanation: str | None = None
    split: str | None = None
