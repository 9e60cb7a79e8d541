"""Scoring: normalized match for closed answers, IoU for boxes, exact match or the judges for open text."""
import json

import pytest
from judge_server import JudgeServer, graded_answer, verdict

from sportlens.agent.records import QAItem
from sportlens.benchmarks.judge import JudgeError, JudgePanel, OpenAIJudge, panel_from_flags, parse_verdict
from sportlens.benchmarks.scoring import BoxSpace, iou, parse_box, score_answer


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


def test_a_box_on_a_1280x720_image_is_compared_in_its_original_pixels():
    """The model saw 640×360: its box in those pixels, or in 0–1000, is the truth's box in the original."""
    truth = item("box", "[200, 144, 600, 504]", box=(200, 144, 600, 504))
    pixels, norm = BoxSpace.for_video(1280, 720), BoxSpace.for_video(1280, 720, "norm1000")
    assert pixels.shown == (640, 360)
    assert score_answer(truth, "[100, 72, 300, 252]", box_space=pixels).iou == pytest.approx(1.0)
    assert score_answer(truth, "[156.25, 200, 468.75, 700]", box_space=norm).iou == pytest.approx(1.0)
    assert score_answer(truth, "[100, 72, 300, 252]").iou < 0.1  # compared unscaled, as before
    assert pixels.to_shown((200, 144, 600, 504)) == (100, 72, 300, 252)  # what a right model writes (the oracle)
    assert norm.to_shown((200, 144, 600, 504)) == pytest.approx((156.25, 200, 468.75, 700))
    small = BoxSpace.for_video(320, 180)  # never enlarged: shown as it is
    assert small.shown == (320, 180) and small.to_original((1, 2, 3, 4)) == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="norm1000"):
        BoxSpace.for_video(1280, 720, "percent")


def test_an_unanswered_box_question_scores_iou_0():
    unanswered = score_answer(item("box", "[0, 0, 10, 10]", box=(0, 0, 10, 10)), None)
    assert unanswered.iou == 0.0 and unanswered.correct is False and unanswered.method == "no_answer"


def test_a_panel_takes_the_majority_and_keeps_every_vote():
    open_item = item("open", "Red #7 trips Blue #4.")
    says_trip = lambda body: verdict("trip" in graded_answer(body), "mentions the trip")  # noqa: E731
    with JudgeServer(lambda body: verdict(True)) as a, JudgeServer(says_trip) as b, \
            JudgeServer(lambda body: verdict(False, "no player")) as c:
        panel = JudgePanel([OpenAIJudge(a.url, "a"), OpenAIJudge(b.url, "b"), OpenAIJudge(c.url, "c")])
        two_of_three = score_answer(open_item, "A trip by number seven", panel)
        one_of_three = score_answer(open_item, "A push", panel)
    assert two_of_three.correct is True and two_of_three.judge_share == pytest.approx(2 / 3, abs=1e-4)
    assert [(v.judge, v.correct) for v in two_of_three.judge_votes] == [
        (f"a@{a.url[:-3]}", True), (f"b@{b.url[:-3]}", True), (f"c@{c.url[:-3]}", False)]
    assert two_of_three.judge_reason == "as the reference"
    assert one_of_three.correct is False and one_of_three.judge_reason == "mentions the trip"


def test_a_panel_fails_as_a_whole_when_one_judge_fails():
    with JudgeServer(lambda body: verdict(True)) as good, JudgeServer(lambda body: (200, "fine by me")) as garbled:
        panel = JudgePanel([OpenAIJudge(good.url, "good"), OpenAIJudge(garbled.url, "garbled")])
        score = score_answer(item("open", "a trip"), "a push", panel)
    assert score.correct is None and score.method == "judge_error" and "garbled@" in score.judge_error


def test_judge_flags_and_panel_files_make_one_panel(tmp_path, monkeypatch):
    monkeypatch.setenv("PANEL_KEY", "secret")
    (tmp_path / "panel.json").write_text(json.dumps([{"url": "http://127.0.0.1:9/v1", "model": "c", "api_key_env": "PANEL_KEY"}]))
    panel = panel_from_flags(["http://127.0.0.1:7", "http://127.0.0.1:8"], ["m"], None, tmp_path / "panel.json")
    assert panel.names == ["m@http://127.0.0.1:7", "m@http://127.0.0.1:8", "c@http://127.0.0.1:9"]
    assert panel_from_flags([], [], None, None) is None
    with pytest.raises(ValueError, match="go together"):
        panel_from_flags(["http://a", "http://b"], ["x", "y", "z"], None, None)
    with pytest.raises(ValueError, match="once"):
        panel_from_flags(["http://a", "http://a"], ["x"], None, None)
    (tmp_path / "bad.json").write_text(json.dumps([{"url": "http://a", "model": "x", "api_key_env": "NOT_SET_ANYWHERE"}]))
    with pytest.raises(ValueError, match="NOT_SET_ANYWHERE is not set"):
        panel_from_flags([], [], None, tmp_path / "bad.json")
