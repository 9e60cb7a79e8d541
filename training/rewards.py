"""GRPO rewards: plain functions over the trajectories the agent loop produces, in TRL's style.

Each takes ``completions`` (a batch of :class:`~sportlens.agent.records.Trajectory`) and the dataset columns it
needs as keyword lists, ignores the others (``**kwargs``) and returns one float per completion, so TRL's
``GRPOTrainer`` calls them as they are and tests call them with hand-built trajectories.

The three signals every reward is built from:

- ``acc`` — how right the final answer is, scored as the benchmarks score it (``benchmarks.scoring``): 1 or 0 for
  option letters, yes/no and exact open answers; the IoU with the true box for box answers; 0 without an answer.
- ``g_fmt`` — the format gate: 1 when the trajectory answered and every turn kept the protocol (``parse_turn``
  found no error and the loop recorded no broken rule: a bad range, a repeated interval, a tool call on the last
  turn, an answer outside the options), else 0.
- tool use — whether any turn made a valid ``choose_frames`` call.
"""
from __future__ import annotations

from collections.abc import Sequence

from sportlens.agent.protocol import parse_turn
from sportlens.agent.records import QAItem, Trajectory
from sportlens.benchmarks.scoring import score_answer

FORMAT_PENALTY = 0.05
TOOL_BONUS = 0.5  # × acc, when the tool was used (v1) or the right choice about the tool was made (v2)
TOOL_CONSOLATION = 0.03  # a tool call that did not lead to a right answer still earns a little (v1, v2)

REWARDS = ("accuracy", "format", "v1", "v2")


def answer_accuracy(trajectory: Trajectory, answer: str, answer_type: str, box: Sequence[float] | None = None) -> float:
    """``acc`` of one trajectory: see the module docstring."""
    item = QAItem(id="-", video="-", question="-", answer=answer, answer_type=answer_type, sport="", task="",
                  box=tuple(box) if box is not None else None)
    score = score_answer(item, trajectory.answer)
    if score.iou is not None:
        return float(score.iou)
    return 1.0 if score.correct else 0.0


def format_ok(trajectory: Trajectory) -> bool:
    """``g_fmt`` of one trajectory: it answered and every turn kept the protocol."""
    return (
        trajectory.answer is not None
        and trajectory.format_errors == 0
        and all(step.format_error is None and parse_turn(step.raw_output).error is None for step in trajectory.steps)
    )


def used_tool(trajectory: Trajectory) -> bool:
    """Whether a valid ``choose_frames`` call was served in the trajectory."""
    return any(step.action == "choose_frames" for step in trajectory.steps)


def accuracy_reward(
    completions: list[Trajectory], answer: list[str], answer_type: list[str], box: list | None = None, **kwargs
) -> list[float]:
    """``acc`` per completion.

    >>> from sportlens.training.rewards import example_trajectory
    >>> accuracy_reward([example_trajectory("B"), example_trajectory("C")], answer=["B", "B"],
    ...                 answer_type=["choice", "choice"])
    [1.0, 0.0]
    """
    boxes = box if box is not None else [None] * len(completions)
    return [answer_accuracy(t, a, k, b) for t, a, k, b in zip(completions, answer, answer_type, boxes, strict=True)]


def format_reward(completions: list[Trajectory], **kwargs) -> list[float]:
    """``g_fmt`` per completion, as 1.0 or 0.0.

    >>> from sportlens.training.rewards import example_trajectory
    >>> format_reward([example_trajectory("B"), example_trajectory("B", format_error="missing <think>…</think>")])
    [1.0, 0.0]
    """
    return [1.0 if format_ok(t) else 0.0 for t in completions]


def gated_tool_reward_v1(
    completions: list[Trajectory], answer: list[str], answer_type: list[str], box: list | None = None, **kwargs
) -> list[float]:
    """DeepSport's gated tool-use reward: R = g_fmt·(acc + R_tool) − 0.05·(1 − g_fmt).

    R_tool = 0.5·acc when the tool was used and acc ≥ 0.5; 0.03 when it was used and acc < 0.5; 0 when unused.
    A right answer with the tool earns 1.5, without it 1.0; a wrong one with the tool 0.03; a broken format −0.05.

    >>> from sportlens.training.rewards import example_trajectory
    >>> gated_tool_reward_v1([example_trajectory("B", tool=True), example_trajectory("B"),
    ...                       example_trajectory("C", tool=True), example_trajectory("B", format_error="bad")],
    ...                      answer=["B"] * 4, answer_type=["choice"] * 4)
    [1.5, 1.0, 0.03, -0.05]
    """
    accs = accuracy_reward(completions, answer, answer_type, box)
    rewards = []
    for trajectory, acc in zip(completions, accs):
        tool = _tool_term(acc) if used_tool(trajectory) else 0.0
        rewards.append(_gated(format_ok(trajectory), acc, tool))
    return rewards


def gated_tool_reward_v2(
    completions: list[Trajectory],
    answer: list[str],
    answer_type: list[str],
    solved_without_tool: list[bool],
    box: list | None = None,
    **kwargs,
) -> list[float]:
    """The v2 gate: reward the tool where the initial frames are not enough, and restraint where they are.

    ``solved_without_tool`` says, per item, whether the current policy answers it right from the initial frames
    alone (the GRPO rollout measures it with one greedy single-turn run per item and step). Then, with ``acc`` and
    ``g_fmt`` as in v1, R = g_fmt·(acc + R_tool) − 0.05·(1 − g_fmt) where

    - item not solved without the tool: R_tool is v1's (0.5·acc if used with acc ≥ 0.5, 0.03 if used with
      acc < 0.5, 0 if unused) — looking closer is what the item needs;
    - item solved without the tool: R_tool = 0.5·acc when the tool was *not* used, 0 when it was — the frames
      were wasted, so a tool-using right answer earns only the plain 1.0 and no consolation.

    >>> from sportlens.training.rewards import example_trajectory
    >>> gated_tool_reward_v2([example_trajectory("B", tool=True), example_trajectory("B")] * 2,
    ...                      answer=["B"] * 4, answer_type=["choice"] * 4,
    ...                      solved_without_tool=[False, False, True, True])
    [1.5, 1.0, 1.0, 1.5]
    """
    accs = accuracy_reward(completions, answer, answer_type, box)
    rewards = []
    for trajectory, acc, solved in zip(completions, accs, solved_without_tool, strict=True):
        if solved:
            tool = 0.0 if used_tool(trajectory) else TOOL_BONUS * acc
        else:
            tool = _tool_term(acc) if used_tool(trajectory) else 0.0
        rewards.append(_gated(format_ok(trajectory), acc, tool))
    return rewards


def reward_function(name: str):
    """The reward a GRPO config names: "accuracy", "format", "v1" or "v2"."""
    functions = {"accuracy": accuracy_reward, "format": format_reward, "v1": gated_tool_reward_v1,
                 "v2": gated_tool_reward_v2}
    if name not in functions:
        raise ValueError(f"unknown reward {name!r}; choose one of {', '.join(REWARDS)}")
    return functions[name]


def _tool_term(acc: float) -> float:
    return TOOL_BONUS * acc if acc >= 0.5 else TOOL_CONSOLATION


def _gated(format_ok: bool, acc: float, tool: float) -> float:
    gate = 1.0 if format_ok else 0.0
    return round(gate * (acc + tool) - FORMAT_PENALTY * (1.0 - gate), 10)


def example_trajectory(answer: str | None, *, tool: bool = False, format_error: str | None = None) -> Trajectory:
    """A hand-built closed-question trajectory for docstrings and tests: optionally one tool call, then an answer."""
    from sportlens.agent.records import FrameRef, Step, VideoSummary

    steps = []
    if tool:
        call = '<think>look closer</think>\n<tool_call>{"name": "choose_frames", "arguments": {"frame_range": [40, 60]}}</tool_call>'
        steps.append(Step(turn=1, thought="look closer", action="choose_frames", frame_range=(40, 60),
                          frames_shown=[FrameRef(index=41 + 2 * i, seconds=(41 + 2 * i) / 6) for i in range(8)],
                          raw_output=call, tokens_in=0, tokens_out=0, latency_s=0.0))
    text = f"<think>it is {answer}</think>\n<answer>{answer}</answer>"
    steps.append(Step(turn=len(steps) + 1, thought=f"it is {answer}", action="answer", answer=answer,
                      format_error=format_error, raw_output=text, tokens_in=0, tokens_out=0, latency_s=0.0))
    video = VideoSummary(path="clip.mp4", frames=120, fps=6.0, duration_s=20.0, width=640, height=360, codec="h264",
                         rotation=0, reader="pyav")
    return Trajectory(question="Which foul?", options=["A) a", "B) b", "C) c"], model="example", video=video,
                      initial_frames=[FrameRef(index=7 + 15 * i, seconds=(7 + 15 * i) / 6) for i in range(8)],
                      steps=steps, answer=answer, tokens_in=0, tokens_out=0, latency_s=0.0, model_latency_s=0.0,
                      frames_used=8 + 8 * tool, format_errors=int(format_error is not None))
