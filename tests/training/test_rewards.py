"""Rewards are pure functions of trajectories: hand-computed values for every branch of DeepSport's gated reward."""
import doctest

import pytest

from sportlens.training import rewards
from sportlens.training.rewards import (
    accuracy_reward,
    example_trajectory,
    format_reward,
    gated_tool_reward_v1,
    gated_tool_reward_v2,
    reward_function,
)


def test_the_docstring_examples_run():
    assert doctest.testmod(rewards).failed == 0


def test_accuracy_is_the_benchmark_score_and_iou_for_boxes():
    box_answer = example_trajectory("[0, 0, 10, 10]")
    half = example_trajectory("[0, 0, 10, 20]")  # IoU with [0,0,10,10] = 100/200
    assert accuracy_reward([box_answer, half], answer=["[0, 0, 10, 10]"] * 2, answer_type=["box"] * 2,
                           box=[(0, 0, 10, 10)] * 2) == [1.0, 0.5]
    assert accuracy_reward([example_trajectory("yes"), example_trajectory(None)], answer=["Yes", "no"],
                           answer_type=["yes_no", "yes_no"]) == [1.0, 0.0]


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
    got = gated_tool_reward_v1(trajectories, answer=["B"] * len(cases), answer_type=["choice"] * len(cases))
    assert got == [expected for *_, expected in cases]


def test_v1_with_a_partial_box_uses_the_half_threshold():
    low = example_trajectory("[0, 0, 10, 40]", tool=True)  # IoU 0.25 < 0.5 -> 0.25 + 0.03
    high = example_trajectory("[0, 0, 10, 15]", tool=True)  # IoU 2/3 -> 2/3 · 1.5
    got = gated_tool_reward_v1([low, high], answer=["x"] * 2, answer_type=["box"] * 2, box=[(0, 0, 10, 10)] * 2)
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
    got = gated_tool_reward_v2(batch, answer=["B"] * 7, answer_type=["choice"] * 7, solved_without_tool=solved)
    assert got == [1.5, 1.0, 0.03, 1.0, 1.5, 0.0, -0.05]


def test_extra_dataset_columns_are_ignored_and_names_resolve():
    assert reward_function("v1")([example_trajectory("B")], answer=["B"], answer_type=["choice"], sport=["x"]) == [1.0]
    with pytest.raises(ValueError, match="unknown reward 'v3'"):
        reward_function("v3")
