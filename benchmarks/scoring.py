"""Scoring one answer against one item: normalized match for closed answers, IoU for boxes, the judges for open text.

Every score says how it was reached (``method``), so a report can tell a wrong answer from one that could
not be judged: a judge failure and an open answer with no judge are ``correct=None``, never 0. A box question
left unanswered scores IoU 0, as lmms-eval counts it, so the mean IoU is over every box question asked.

Boxes live in two coordinate spaces. The model sees frames shrunk to fit ``SHOWN_SIZE`` and writes its box in
the frame it saw (``"pixels"``, what Qwen2.5-VL writes: absolute pixels of its input) or normalised to 0–1000
(``"norm1000"``, what Qwen2-VL and Qwen3-VL write); the ground truth is in pixels of the original image or
video. :class:`BoxSpace` maps the answer into the truth's pixels before the IoU.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from sportlens.agent.records import QAItem
from sportlens.benchmarks.judge import JudgeError, JudgePanel, OpenAIJudge, Verdict
from sportlens.tools.video import fit_size

BOX_HIT_IOU = 0.5
SHOWN_SIZE = (640, 360)  # (width, height) the agent protocol shows frames at; the runner opens videos with it
NORM_RANGE = 1000.0

Method = Literal["match", "iou", "exact", "judge", "unjudged", "judge_error", "no_answer"]
BoxUnits = Literal["pixels", "norm1000"]
BOX_UNITS: tuple[BoxUnits, ...] = ("pixels", "norm1000")


class JudgeVote(BaseModel):
    """One judge's verdict on one answer."""

    judge: str
    correct: bool
    reason: str


class Score(BaseModel):
    """How one answer scored. ``correct`` is None when it could not be scored (no judge, judge failure).

    A judged answer keeps every judge's vote; ``judge_share`` is the share of judges that said correct
    (SportR averages its judges), and ``correct`` is a strict majority of them.
    """

    correct: bool | None
    method: Method
    iou: float | None = None
    box_units: BoxUnits | None = None
    judge_version: str | None = None
    judge_reason: str | None = None
    judge_error: str | None = None
    judge_votes: list[JudgeVote] | None = None
    judge_share: float | None = None


@dataclass(frozen=True)
class BoxSpace:
    """The frame a model saw and the original it was shrunk from, each (width, height) in pixels.

    ``units`` says how the model's numbers are written: ``"pixels"`` of the shown frame, or ``"norm1000"``
    (0–1000 over each side, whatever the frame's size).
    """

    shown: tuple[int, int]
    original: tuple[int, int]
    units: BoxUnits = "pixels"

    @classmethod
    def for_video(cls, width: int, height: int, units: BoxUnits = "pixels") -> BoxSpace:
        """The space of a video (or still) of ``width``×``height`` shown to the model at ``SHOWN_SIZE``."""
        if units not in BOX_UNITS:
            raise ValueError(f"box units must be one of {', '.join(BOX_UNITS)}, not {units!r}")
        return cls(shown=fit_size(width, height, SHOWN_SIZE), original=(width, height), units=units)

    def to_original(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """``box`` as the model wrote it, in pixels of the original."""
        sx, sy = self._scale()
        return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy

    def to_shown(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """``box`` in pixels of the original, as the model should write it (what the oracle answers)."""
        sx, sy = self._scale()
        return box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy

    def _scale(self) -> tuple[float, float]:
        """Pixels of the original per unit the model writes, across and down."""
        across, down = (NORM_RANGE, NORM_RANGE) if self.units == "norm1000" else self.shown
        return self.original[0] / across, self.original[1] / down


def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces: what a normalized match compares."""
    text = text.lower().translate(str.maketrans(string.punctuation, " " * len(string.punctuation)))
    return " ".join(text.split())


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    """The first four numbers of an answer, as a box [x0, y0, x1, y1] (corners put in order), or None."""
    numbers = re.findall(r"-?\d+(?:\.\d+)?", text)
    if len(numbers) < 4:
        return None
    x0, y0, x1, y1 = (float(v) for v in numbers[:4])
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two [x0, y0, x1, y1] boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def score_answer(
    item: QAItem, answer: str | None, judge: OpenAIJudge | JudgePanel | None = None, *, box_space: BoxSpace | None = None
) -> Score:
    """Score ``answer`` (as the agent loop returns it: a letter for closed questions) against ``item``.

    ``box_space`` maps a box answer into the truth's pixels; without it the two are taken to be the same.
    ``judge`` is a panel, or one judge (anything with :meth:`OpenAIJudge.judge`), which is a panel of one.
    """
    if item.answer_type == "box":
        return _score_box(item, answer, box_space)
    if answer is None:
        return Score(correct=False, method="no_answer")
    if item.answer_type == "choice":
        return Score(correct=answer.strip().upper()[:1] == item.answer.strip().upper()[:1], method="match")
    if item.answer_type == "yes_no":
        said = normalize(answer).split()[:1]
        return Score(correct=said == normalize(item.answer).split()[:1], method="match")
    if normalize(answer) == normalize(item.answer):
        return Score(correct=True, method="exact")
    if judge is None:
        return Score(correct=None, method="unjudged")
    try:
        verdicts = _verdicts(judge, item, answer)
    except JudgeError as error:
        return Score(correct=None, method="judge_error", judge_error=str(error))
    share = sum(v.correct for v in verdicts) / len(verdicts)
    correct = share > 0.5
    return Score(
        correct=correct, method="judge", judge_version=verdicts[0].version, judge_share=round(share, 4),
        judge_reason=next(v.reason for v in verdicts if v.correct == correct),
        judge_votes=[JudgeVote(judge=v.judge, correct=v.correct, reason=v.reason) for v in verdicts],
    )


def _verdicts(judge: OpenAIJudge | JudgePanel, item: QAItem, answer: str) -> list[Verdict]:
    if isinstance(judge, JudgePanel):
        return judge.judge(item.question, item.answer, answer)
    return [judge.judge(item.question, item.answer, answer)]


def _score_box(item: QAItem, answer: str | None, space: BoxSpace | None) -> Score:
    units = space.units if space is not None else None
    if answer is None:
        return Score(correct=False, method="no_answer", iou=0.0, box_units=units)
    truth = item.box or parse_box(item.answer)
    guess = parse_box(answer)
    if guess is not None and space is not None:
        guess = space.to_original(guess)
    overlap = iou(guess, truth) if guess is not None and truth is not None else 0.0
    return Score(correct=overlap >= BOX_HIT_IOU, method="iou", iou=overlap, box_units=units)
