"""Scoring one answer against one item: normalized match for closed answers, IoU for boxes, the judge for open text.

Every score says how it was reached (``method``), so a report can tell a wrong answer from one that could
not be judged: a judge failure and an open answer with no judge are ``correct=None``, never 0.
"""
from __future__ import annotations

import re
import string
from typing import Literal

from pydantic import BaseModel

from sportlens.agent.records import QAItem
from sportlens.benchmarks.judge import JudgeError, OpenAIJudge

BOX_HIT_IOU = 0.5

Method = Literal["match", "iou", "exact", "judge", "unjudged", "judge_error", "no_answer"]


class Score(BaseModel):
    """How one answer scored. ``correct`` is None when it could not be scored (no judge, judge failure)."""

    correct: bool | None
    method: Method
    iou: float | None = None
    judge_version: str | None = None
    judge_reason: str | None = None
    judge_error: str | None = None


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


def score_answer(item: QAItem, answer: str | None, judge: OpenAIJudge | None = None) -> Score:
    """Score ``answer`` (as the agent loop returns it: a letter for closed questions) against ``item``."""
    if answer is None:
        return Score(correct=False, method="no_answer")
    if item.answer_type == "choice":
        return Score(correct=answer.strip().upper()[:1] == item.answer.strip().upper()[:1], method="match")
    if item.answer_type == "yes_no":
        said = normalize(answer).split()[:1]
        return Score(correct=said == normalize(item.answer).split()[:1], method="match")
    if item.answer_type == "box":
        truth = item.box or parse_box(item.answer)
        guess = parse_box(answer)
        overlap = iou(guess, truth) if guess is not None and truth is not None else 0.0
        return Score(correct=overlap >= BOX_HIT_IOU, method="iou", iou=overlap)
    if normalize(answer) == normalize(item.answer):
        return Score(correct=True, method="exact")
    if judge is None:
        return Score(correct=None, method="unjudged")
    try:
        verdict = judge.judge(item.question, item.answer, answer)
    except JudgeError as error:
        return Score(correct=None, method="judge_error", judge_error=str(error))
    return Score(correct=verdict.correct, method="judge", judge_version=verdict.version, judge_reason=verdict.reason)

