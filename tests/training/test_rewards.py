"""Rewards are pure functions of trajectories: hand-computed values for every term, and each preset's weighted sum."""
import doctest
import logging

import pytest

from sportlens.benchmarks.judge import JudgeError, Verdict
from sportlens.training import rewards
from sportlens.training.rewards import (
    PRESETS,
    RememberingJudge,
    accuracy_reward,
    answer_overlap,
    format_reward,
    reward_preset,
    zero_variance,
)

from builders import example_trajectory


def test_the_docstring_examples_run():
    assert doctest.testmod(rewards, extraglobs={"example_trajectory": example_trajectory}).failed == 0


def test_accuracy_is_the_benchmark_score_and_iou_for_boxes():
    box_answer = example_trajectory("[0, 0, 10, 10]")
    half = example_trajectory("[0, 0, 10, 20]")  # IoU with [0,0,10,10] = 100/200
    assert accuracy_reward([box_answer, half], answer=["[0, 0, 10, 10]"] * 2, answer_type=["box"] * 2,
                           box=[(0, 0, 10, 10)] * 2) == [1.0, 0.5]
    assert accuracy_reward([example_trajectory("yes"), example_trajectory(None)], answer=["Yes", "no"],
                           answer_type=["yes_no", "yes_no"]) == [1.0, 0.0]


def test_a_box_in_the_shown_frames_pixels_of_a_larger_video_earns_full_reward():
    """A 1280×720 video is shown at 640×360: the model's box is halved, and the bench's mapping scores it whole."""
    shown = example_trajectory("[100, 50, 300, 250]", video_size=(1280, 720))
    truth = dict(answer=["[200, 100, 600, 500]"], answer_type=["box"], box=[(200, 100, 600, 500)])
    assert accuracy_reward([shown], **truth) == [1.0]
    assert PRESETS["v1"].total([shown], **truth) == [1.0]
    at_full_size = example_trajectory("[100, 50, 300, 250]")  # the same numbers about a 640×360 video miss
    assert accuracy_reward([at_full_size], **truth)[0] < 0.5


def test_an_unanswered_trajectory_fails_the_format_gate():
    assert format_reward([example_trajectory(None)]) == [0.0]


def test_v1_every_branch():
    cases = [  # (answer given, tool used, format error) -> R with truth "B"
        ("B", True, None, 1.0 + 0.5),  # right with the tool: acc + 0.5·acc
        ("B", False, None, 1.0),  # right without it
        ("C", True, None, 0.0 + 0.03),  # wrong with the tool: the consolation
        ("C", False, None, 0.0),
        ("B", True, "repeats an earlier call", -0.05),  # the gate closes whatever else happened
        (None, False, None, -0.05),
    ]
    trajectories = [example_trajectory(a, tool=t, format_error=e) for a, t, e, _ in cases]
    got = PRESETS["v1"].total(trajectories, answer=["B"] * len(cases), answer_type=["choice"] * len(cases))
    assert got == [expected for *_, expected in cases]


def test_v1_with_a_partial_box_uses_the_half_threshold():
    low = example_trajectory("[0, 0, 10, 40]", tool=True)  # IoU 0.25 < 0.5 -> 0.25 + 0.03
    high = example_trajectory("[0, 0, 10, 15]", tool=True)  # IoU 2/3 -> 2/3 · 1.5
    got = PRESETS["v1"].total([low, high], answer=["x"] * 2, answer_type=["box"] * 2, box=[(0, 0, 10, 10)] * 2)
    assert got == pytest.approx([0.28, 1.0])


def test_v2_rewards_looking_only_where_the_initial_frames_fail():
    batch = [
        example_trajectory("B", tool=True),  # needed the tool, used it, right: 1.5
        example_trajectory("B"),  # needed it, did not use it, right anyway: 1.0
        example_trajectory("C", tool=True),  # needed it, used it, wrong: 0.03
        example_trajectory("B", tool=True),  # solvable from the initial frames, looked anyway: 1.0
        example_trajectory("B"),  # solvable, did not look: 1.5
        example_trajectory("C", tool=True),  # solvable, looked, wrong: 0
        example_trajectory("C", format_error="bad"),  # broken format: -0.05
    ]
    solved = [False, False, False, True, True, True, True]
    got = PRESETS["v2"].total(batch, answer=["B"] * 7, answer_type=["choice"] * 7, solved_without_tool=solved)
    assert got == [1.5, 1.0, 0.03, 1.0, 1.5, 0.0, -0.05]
    assert PRESETS["v2"].probes_without_tool and not PRESETS["v1"].probes_without_tool


@pytest.mark.parametrize(
    ("preset", "right_with_tool", "wrong", "broken"),
    [
        ("v1", 1.5, 0.03, -0.05),  # DeepSport: g·(acc + R_tool) − 0.05·(1 − g)
        ("sportr", 1.5, 0.5, 0.0),  # SportR: 1.0·correct + 0.5·format; the tool earns nothing
        ("video-r1", 2.0, 1.0, 0.0),  # Video-R1: accuracy + format
        ("accuracy", 1.0, 0.0, 0.0),
        ("format", 1.0, 1.0, 0.0),
    ],
)
def test_each_preset_sums_its_weighted_terms(preset, right_with_tool, wrong, broken):
    batch = [example_trajectory("B", tool=True), example_trajectory("C", tool=True), example_trajectory(None)]
    got = PRESETS[preset].total(batch, answer=["B"] * 3, answer_type=["choice"] * 3)
    assert got == [right_with_tool, wrong, broken]


def test_presets_hand_trl_their_terms_and_weights():
    v1 = PRESETS["v1"]
    assert [f.__name__ for f in v1.functions] == ["gated_accuracy_reward", "tool_reward_v1", "format_penalty_reward"]
    assert v1.weights == (1.0, 1.0, 0.05)
    assert PRESETS["sportr"].weights == (1.0, 0.5) and PRESETS["video-r1"].weights == (1.0, 1.0)
    assert v1.reward_funcs() == list(v1.functions)
    judge = object()
    assert all(f.keywords == {"judge": judge} for f in v1.reward_funcs(judge))


def test_a_preset_takes_other_weights_one_per_term():
    heavier_format = reward_preset("sportr", [1.0, 2.0])
    assert heavier_format.total([example_trajectory("C")], answer=["B"], answer_type=["choice"]) == [2.0]
    with pytest.raises(ValueError, match="'sportr' sums 2 terms .accuracy_reward, format_reward., not 3"):
        reward_preset("sportr", [1.0, 0.5, 0.1])
    with pytest.raises(ValueError, match="unknown reward preset 'v3'"):
        reward_preset("v3")


def test_extra_dataset_columns_are_ignored():
    assert reward_preset("v1").total([example_trajectory("B")], answer=["B"], answer_type=["choice"],
                                     sport=["x"]) == [1.0]


@pytest.mark.parametrize(
    ("reference", "answer", "expected"),
    [  # expected: Google's rouge_score (use_stemmer=False), mean F of rouge1, rouge2, rougeL
        ("the cat sat on the mat", "the cat is on the mat", 0.7555556),
        ("Blocking foul by number 23, free throws.", "A blocking foul by #23; two free throws", 0.6871795),
        ("Player 7 fouls the keeper", "the keeper was fouled by player 7", 0.4666667),
        ("the offside", "offside", 0.4444444),
        ("offside", "offside", 2 / 3),  # a one-word reference has no bigram, as in Video-R1
        ("yes", "no", 0.0),
        ("offside", "", 0.0),
    ],
)
def test_overlap_is_video_r1s_rouge_mean(reference, answer, expected):
    assert answer_overlap(reference, answer) == pytest.approx(expected, abs=1e-6)


def test_open_answers_score_exact_then_overlap_without_a_judge():
    got = accuracy_reward([example_trajectory("Offside."), example_trajectory("the offside"), example_trajectory(None)],
                          answer=["offside"] * 3, answer_type=["open"] * 3)
    assert got == pytest.approx([1.0, 4 / 9, 0.0])


class ScriptedJudge:
    """Says "correct" when the answer holds the word it was given; counts its verdicts; can fail."""

    def __init__(self, word: str, fail: bool = False) -> None:
        self.word, self.fail, self.asked = word, fail, []

    def judge(self, question, reference, answer):
        self.asked.append((question, reference, answer))
        if self.fail:
            raise JudgeError("judge unreachable")
        return Verdict(correct=self.word in answer, reason="scripted")


def test_open_answers_go_to_the_judge_once_per_distinct_answer():
    scripted = ScriptedJudge("blocking")
    batch = [example_trajectory("a blocking foul", tool=True), example_trajectory("a blocking foul"),
             example_trajectory("a charge")]
    got = PRESETS["v1"].total(batch, judge=RememberingJudge(scripted), answer=["blocking foul on 23"] * 3,
                              answer_type=["open"] * 3)
    assert got == [1.5, 1.0, 0.0]
    assert len(scripted.asked) == 2  # 3 rollouts, 2 terms needing acc each, 2 distinct answers: 2 verdicts
    assert scripted.asked[0] == ("Which foul?", "blocking foul on 23", "a blocking foul")


def test_a_failing_judge_falls_back_to_the_overlap_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        got = accuracy_reward([example_trajectory("the offside")], answer=["offside"], answer_type=["open"],
                              judge=ScriptedJudge("x", fail=True))
    assert got == pytest.approx([4 / 9]) and "judge unreachable" in caplog.text


def test_zero_variance_finds_groups_without_learning_signal():
    check = zero_variance({"a": [1.5, 1.5], "b": [1.5, 1.0], "c": [0.0, 1e-9], "d": [-0.05, 0.03]})
    assert check.same_reward == ("a", "c") and check.prompts == 4 and check.share == 0.5
    assert zero_variance({}).share == 0.0
