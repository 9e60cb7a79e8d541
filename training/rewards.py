"""GRPO rewards: plain functions over the trajectories the agent loop produces, in TRL's style, and their presets.

Each takes ``completions`` (a batch of :class:`~sportlens.agent.records.Trajectory`) and the dataset columns it
needs as keyword lists, ignores the others (``**kwargs``) and returns one float per completion, so TRL's
``GRPOTrainer`` calls them as they are and tests call them with hand-built trajectories.

The three signals every reward is built from:

- ``acc`` — how right the final answer is, scored as the benchmarks score it (``benchmarks.scoring``): 1 or 0 for
  option letters, yes/no and exact open answers; the IoU with the true box for box answers (written in pixels of
  the frame shown, mapped into the video's as the bench maps them); for other open answers the judge's verdict
  when a judge is given, else Video-R1's overlap with the reference (:func:`answer_overlap`); 0 without an answer.
- ``g_fmt`` — the format gate: 1 when the trajectory answered and every turn kept the protocol (``parse_turn``
  found no error and the loop recorded no broken rule: a bad range, a repeated interval, a tool call on the last
  turn, an answer outside the options), else 0.
- tool use — whether any turn made a valid ``choose_frames`` call.

A reward the papers train with is a weighted sum of such terms, and a :class:`RewardPreset` names one: its terms go
to TRL as ``reward_funcs`` and its weights as ``GRPOConfig.reward_weights`` (TRL sums the weighted terms, then
normalises within each group), so TRL logs every term on its own. DeepSport's gated reward
R = g_fmt·(acc + R_tool) − 0.05·(1 − g_fmt) is the sum g_fmt·acc + g_fmt·R_tool + 0.05·(−(1 − g_fmt)).

The docstring examples build their trajectories with ``example_trajectory(answer, tool=…, format_error=…)`` from
tests/builders.py (a closed question with options A to C: optionally one tool call, then that answer);
tests/training/test_rewards.py runs them with it.
"""
from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sportlens.agent.protocol import parse_turn
from sportlens.agent.records import QAItem, Trajectory
from sportlens.benchmarks.judge import Verdict
from sportlens.benchmarks.scoring import BoxSpace, score_answer

log = logging.getLogger(__name__)

FORMAT_PENALTY = 0.05
TOOL_BONUS = 0.5  # × acc, when the tool was used (v1) or the right choice about the tool was made (v2)
TOOL_CONSOLATION = 0.03  # a tool call that did not lead to a right answer still earns a little (v1, v2)

RewardFunction = Callable[..., list[float]]


class Judge(Protocol):
    """What the rewards need of a judge (``benchmarks.judge.OpenAIJudge`` or :class:`RememberingJudge`)."""

    def judge(self, question: str, reference: str, answer: str) -> Verdict: ...


def answer_overlap(reference: str, answer: str) -> float:
    """Video-R1's reward for free-form answers: the mean F-measure of ROUGE-1, ROUGE-2 and ROUGE-L.

    Tokens are those of Google's ``rouge_score`` (lower case, runs of letters and digits) without its Porter
    stemmer, which would bring nltk in: "fouls" and "foul" do not match. As in Video-R1, a one-word reference has
    no bigram, so a one-word answer reaches 2/3 at most here; ``answer_accuracy`` gives an exact match 1.0 first.

    >>> round(answer_overlap("the cat sat on the mat", "the cat is on the mat"), 4)
    0.7556
    """
    ref, hyp = _tokens(reference), _tokens(answer)
    unigrams = _f_measure(_overlap(ref, hyp, 1), len(hyp), len(ref))
    bigrams = _f_measure(_overlap(ref, hyp, 2), len(hyp) - 1, len(ref) - 1)
    lcs = _f_measure(_longest_common_subsequence(ref, hyp), len(hyp), len(ref))
    return (unigrams + bigrams + lcs) / 3


def answer_accuracy(
    trajectory: Trajectory, answer: str, answer_type: str, box: Sequence[float] | None = None,
    judge: Judge | None = None,
) -> float:
    """``acc`` of one trajectory: see the module docstring.

    A judge that fails on an answer is not a wrong answer: that answer gets the overlap score instead, and a warning.
    """
    item = QAItem(id="-", video="-", question=trajectory.question, answer=answer, answer_type=answer_type, sport="",
                  task="", box=tuple(box) if box is not None else None)
    space = BoxSpace.for_video(trajectory.video.width, trajectory.video.height)  # as the bench maps a box
    score = score_answer(item, trajectory.answer, judge, box_space=space)
    if score.iou is not None:
        return float(score.iou)
    if score.correct is None:  # an open answer (so answered) without a judge, or the judge failed on it
        if score.method == "judge_error":
            log.warning("judge failed, the answer is scored by its overlap instead: %s", score.judge_error)
        return answer_overlap(answer, trajectory.answer)
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
    completions: list[Trajectory], answer: list[str], answer_type: list[str], box: list | None = None,
    judge: Judge | None = None, **kwargs,
) -> list[float]:
    """``acc`` per completion: the "correct" term of SportR and Video-R1.

    >>> accuracy_reward([example_trajectory("B"), example_trajectory("C")], answer=["B", "B"],
    ...                 answer_type=["choice", "choice"])
    [1.0, 0.0]
    >>> [round(r, 4) for r in accuracy_reward([example_trajectory("the cat is on the mat")],
    ...                                       answer=["The cat sat on the mat."], answer_type=["open"])]
    [0.7556]
    """
    boxes = box if box is not None else [None] * len(completions)
    return [answer_accuracy(t, a, k, b, judge)
            for t, a, k, b in zip(completions, answer, answer_type, boxes, strict=True)]


def format_reward(completions: list[Trajectory], **kwargs) -> list[float]:
    """``g_fmt`` per completion, as 1.0 or 0.0: the format term of SportR and Video-R1.

    >>> format_reward([example_trajectory("B"), example_trajectory("B", format_error="missing <think>…</think>")])
    [1.0, 0.0]
    """
    return [1.0 if format_ok(t) else 0.0 for t in completions]


def gated_accuracy_reward(
    completions: list[Trajectory], answer: list[str], answer_type: list[str], box: list | None = None,
    judge: Judge | None = None, **kwargs,
) -> list[float]:
    """g_fmt·acc per completion: DeepSport's accuracy term, earned only by a trajectory that kept the protocol.

    >>> gated_accuracy_reward([example_trajectory("B"), example_trajectory("B", format_error="bad")],
    ...                       answer=["B", "B"], answer_type=["choice", "choice"])
    [1.0, 0.0]
    """
    accs = accuracy_reward(completions, answer, answer_type, box, judge)
    return [acc if format_ok(t) else 0.0 for t, acc in zip(completions, accs)]


def tool_reward_v1(
    completions: list[Trajectory], answer: list[str], answer_type: list[str], box: list | None = None,
    judge: Judge | None = None, **kwargs,
) -> list[float]:
    """g_fmt·R_tool per completion, DeepSport's v1 tool term.

    R_tool = 0.5·acc when the tool was used and acc ≥ 0.5; 0.03 when it was used and acc < 0.5; 0 when unused.

    >>> tool_reward_v1([example_trajectory("B", tool=True), example_trajectory("B"),
    ...                 example_trajectory("C", tool=True), example_trajectory("B", tool=True, format_error="bad")],
    ...                answer=["B"] * 4, answer_type=["choice"] * 4)
    [0.5, 0.0, 0.03, 0.0]
    """
    accs = accuracy_reward(completions, answer, answer_type, box, judge)
    return [_tool_term(acc) if format_ok(t) and used_tool(t) else 0.0 for t, acc in zip(completions, accs)]


def tool_reward_v2(
    completions: list[Trajectory],
    answer: list[str],
    answer_type: list[str],
    solved_without_tool: list[bool],
    box: list | None = None,
    judge: Judge | None = None,
    **kwargs,
) -> list[float]:
    """g_fmt·R_tool per completion with the v2 R_tool: reward the tool where the initial frames are not enough, and
    restraint where they are.

    ``solved_without_tool`` says, per item, whether the current policy answers it right from the initial frames
    alone (the GRPO rollout measures it with one greedy single-turn run per item and step). Then

    - item not solved without the tool: R_tool is v1's (0.5·acc if used with acc ≥ 0.5, 0.03 if used with
      acc < 0.5, 0 if unused) — looking closer is what the item needs;
    - item solved without the tool: R_tool = 0.5·acc when the tool was *not* used, 0 when it was — the frames
      were wasted, so a tool-using right answer earns no bonus and no consolation.

    >>> tool_reward_v2([example_trajectory("B", tool=True), example_trajectory("B")] * 2,
    ...                answer=["B"] * 4, answer_type=["choice"] * 4, solved_without_tool=[False, False, True, True])
    [0.5, 0.0, 0.0, 0.5]
    """
    accs = accuracy_reward(completions, answer, answer_type, box, judge)
    rewards = []
    for trajectory, acc, solved in zip(completions, accs, solved_without_tool, strict=True):
        if not format_ok(trajectory):
            rewards.append(0.0)
        elif solved:
            rewards.append(0.0 if used_tool(trajectory) else TOOL_BONUS * acc)
        else:
            rewards.append(_tool_term(acc) if used_tool(trajectory) else 0.0)
    return rewards


def format_penalty_reward(completions: list[Trajectory], **kwargs) -> list[float]:
    """−(1 − g_fmt) per completion: −1.0 for a trajectory that broke the protocol or never answered, else 0.0.

    DeepSport weighs it 0.05, so that a broken format scores below every kept one.

    >>> format_penalty_reward([example_trajectory("B"), example_trajectory(None)])
    [0.0, -1.0]
    """
    return [0.0 if format_ok(t) else -1.0 for t in completions]


@dataclass(frozen=True)
class RewardPreset:
    """A reward as a paper writes it: terms (reward functions) and their weights, summed.

    ``reward_funcs`` and ``weights`` are what ``GRPOTrainer(reward_funcs=…)`` and ``GRPOConfig(reward_weights=…)``
    take; ``total`` is the sum TRL forms from them before it normalises rewards within each group.
    """

    name: str
    functions: tuple[RewardFunction, ...]
    weights: tuple[float, ...]

    def reward_funcs(self, judge: Judge | None = None) -> list[RewardFunction]:
        """The terms, each given ``judge`` for open answers (a ``functools.partial`` keeps TRL's per-term names)."""
        return [functools.partial(f, judge=judge) if judge is not None else f for f in self.functions]

    @property
    def probes_without_tool(self) -> bool:
        """Whether a term needs the ``solved_without_tool`` column (the v2 tool term)."""
        return tool_reward_v2 in self.functions

    def total(self, completions: list[Trajectory], judge: Judge | None = None, **columns) -> list[float]:
        """The weighted sum of the terms per completion.

        >>> from sportlens.training.rewards import PRESETS
        >>> PRESETS["sportr"].total([example_trajectory("B"), example_trajectory("C"), example_trajectory(None)],
        ...                         answer=["B"] * 3, answer_type=["choice"] * 3)
        [1.5, 0.5, 0.0]
        """
        terms = [f(completions, judge=judge, **columns) for f in self.functions]
        return [sum(w * r for w, r in zip(self.weights, rewards)) for rewards in zip(*terms, strict=True)]


PRESETS = {
    preset.name: preset
    for preset in (
        # DeepSport's gated tool reward, R = g_fmt·(acc + R_tool) − 0.05·(1 − g_fmt), and its v2 tool term.
        RewardPreset("v1", (gated_accuracy_reward, tool_reward_v1, format_penalty_reward), (1.0, 1.0, FORMAT_PENALTY)),
        RewardPreset("v2", (gated_accuracy_reward, tool_reward_v2, format_penalty_reward), (1.0, 1.0, FORMAT_PENALTY)),
        RewardPreset("sportr", (accuracy_reward, format_reward), (1.0, 0.5)),  # 1.0·correct + 0.5·format
        RewardPreset("video-r1", (accuracy_reward, format_reward), (1.0, 1.0)),  # accuracy + format (T-GRPO aside)
        RewardPreset("accuracy", (accuracy_reward,), (1.0,)),
        RewardPreset("format", (format_reward,), (1.0,)),
    )
}
REWARDS = tuple(PRESETS)


def reward_preset(name: str, weights: Sequence[float] | None = None) -> RewardPreset:
    """The preset a GRPO config names, with its own weights or ``weights`` (one per term, in the preset's order)."""
    if name not in PRESETS:
        raise ValueError(f"unknown reward preset {name!r}; choose one of {', '.join(REWARDS)}")
    preset = PRESETS[name]
    if weights is None:
        return preset
    if len(weights) != len(preset.functions):
        raise ValueError(f"reward preset {name!r} sums {len(preset.functions)} terms "
                         f"({', '.join(f.__name__ for f in preset.functions)}), not {len(weights)}")
    return RewardPreset(name, preset.functions, tuple(float(w) for w in weights))


class RememberingJudge:
    """A judge that gives each (question, reference, answer) one verdict, however often it is asked.

    Several terms of a preset need ``acc``, and the rollouts of one question often give the same answer, so GRPO
    would otherwise ask for the same verdict many times. A failure is not remembered: the next ask tries again.
    """

    def __init__(self, judge: Judge, size: int = 65536) -> None:
        self._verdict = functools.lru_cache(maxsize=size)(judge.judge)

    def judge(self, question: str, reference: str, answer: str) -> Verdict:
        return self._verdict(question, reference, answer)


@dataclass(frozen=True)
class ZeroVariance:
    """The prompts whose rollouts all earned the same reward, out of ``prompts`` prompts."""

    same_reward: tuple[str, ...]
    prompts: int

    @property
    def share(self) -> float:
        return len(self.same_reward) / self.prompts if self.prompts else 0.0


def zero_variance(rewards_by_prompt: Mapping[str, Sequence[float]], tolerance: float = 1e-6) -> ZeroVariance:
    """Which prompts give GRPO no learning signal: every rollout earned the same reward (within ``tolerance``).

    A rollout's advantage is its reward less its group's mean, so such a group adds nothing to the gradient and
    still costs its rollouts (a common complaint of Video-R1's users).

    >>> check = zero_variance({"q1": [1.0, 1.0, 1.0], "q2": [1.5, 0.0, 1.0], "q3": [-0.05, -0.05, -0.05]})
    >>> check.same_reward, check.share
    (('q1', 'q3'), 0.6666666666666666)
    """
    same = tuple(prompt for prompt, rewards in rewards_by_prompt.items() if max(rewards) - min(rewards) <= tolerance)
    return ZeroVariance(same_reward=same, prompts=len(rewards_by_prompt))


def _tool_term(acc: float) -> float:
    return TOOL_BONUS * acc if acc >= 0.5 else TOOL_CONSOLATION


def _tokens(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _overlap(reference: list[str], answer: list[str], n: int) -> int:
    return sum((_ngrams(reference, n) & _ngrams(answer, n)).values())


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _longest_common_subsequence(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0
        for j, y in enumerate(b, start=1):
            diagonal, row[j] = row[j], (diagonal + 1 if x == y else max(row[j], row[j - 1]))
    return row[-1]


def _f_measure(matches: int, answer_count: int, reference_count: int) -> float:
    precision, recall = matches / max(answer_count, 1), matches / max(reference_count, 1)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
