"""Scoring: normalized match for closed answers, IoU for boxes, exact match or the judge for open text."""
import pytest

from sportlens.agent.records import QAItem
from sportlens.benchmarks.judge import JudgeError, parse_verdict
from sportlens.benchmarks.scoring import iou, parse_box, score_answer


def item(answer_type, answer, **extra):
    return QAItem(id="x", video="v.mp4", question="q", answer=answer, answer_type=answer_type, sport="soccer",
                  task="t", **extra)


@pytest.mark.parametrize("said, right", [("B", True), ("b", True), ("A", False)])
def test_choice_by_letter(said, right):
    assert score_answer(item("choice", "B", options=["A) x", "B) y"]), said).correct is right


@pytest.mark.parametrize("said, right", [("Yes.", True), ("yes, a trip", True), ("No", False), ("maybe", False)])
def test_yes_no_by_first_word(said, right):
    assert score_answer(item("yes_no", "yes"), said).correct is right


def test_boxes_by_iou():
    box = item("box", "[0, 0, 10, 10]", box=(0, 0, 10, 10))
    assert score_answer(box, "[0, 0, 10, 10]").iou == 1.0
    half = score_answer(box, "from (0, 0) to (10, 5)")
    assert half.iou == pytest.approx(0.5) and half.correct
    assert score_answer(box, "[20, 20, 30, 30]").correct is False
    assert score_answer(box, "left side").iou == 0.0
    assert parse_box("[10, 10, 0, 0]") == (0, 0, 10, 10) and iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)


def test_open_answers_without_a_judge_are_unjudged_unless_exact():
    open_item = item("open", "Red #7 trips Blue #4.")
    assert score_answer(open_item, "red #7 trips blue #4").method == "exact"
    unjudged = score_answer(open_item, "A trip by number seven")
    assert unjudged.correct is None and unjudged.method == "unjudged"
    assert score_answer(open_item, None).correct is False


def test_judge_verdicts_must_follow_the_rubric():
    assert parse_verdict('Sure. {"verdict": "Correct", "reason": "same foul"}').correct
    assert not parse_verdict('{"verdict": "incorrect"}').correct
    with pytest.raises(JudgeError):
        parse_verdict('{"verdict": "mostly right"}')
