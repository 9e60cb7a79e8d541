"""Builders of records for tests: many labelled results (conformal calibration, reports), hand-built trajectories (rewards)."""
import math

import numpy as np

from sportlens.agent.records import FrameRef, Result, Step, Trajectory, VideoSummary

LETTERS = "ABCD"


def make_result(probabilities=None, label=None, *, sport="soccer", task="foul", model="m1", samples=(), index=0):
    """A labelled Result whose trajectory carries the given option probabilities and answer samples.

    Answer samples without option probabilities make an open question (no options), as the agent records one."""
    open_question = probabilities is None and bool(samples)
    trajectory = Trajectory(
        question=f"q{index}", options=None if open_question else [f"{l}) x" for l in LETTERS], model=model,
        video=VideoSummary(path="v.mp4", frames=10, fps=1.0, duration_s=10.0, width=64, height=36, codec="h264",
                           rotation=0, reader="pyav"),
        initial_frames=[], steps=[], answer="A", tokens_in=0, tokens_out=0, latency_s=0.0, model_latency_s=0.0,
        frames_used=8, format_errors=0,
        option_logprobs=None if probabilities is None else {l: math.log(p) for l, p in zip(LETTERS, probabilities)},
        answer_samples=list(samples),
    )
    return Result(trajectory=trajectory, item_id=f"i{index}", sport=sport, task=task, label=label)


def synthetic(n, seed, *, calibrated=True):
    """Option probabilities from a Dirichlet and labels drawn from them (or from a shifted distribution)."""
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.full(4, 0.7), size=n)
    truth = probabilities if calibrated else rng.dirichlet(np.full(4, 0.7), size=n) * 0.5 + probabilities * 0.5
    labels = [LETTERS[rng.choice(4, p=row / row.sum())] for row in truth]
    return probabilities, labels


def example_trajectory(
    answer: str | None, *, tool: bool = False, format_error: str | None = None, video_size: tuple[int, int] = (640, 360)
) -> Trajectory:
    """A hand-built closed-question trajectory (options A to C): optionally one tool call, then ``answer``.

    The reward tests and the docstring examples of ``training/rewards.py`` score it.

    ``video_size`` is the (width, height) of the video asked about, whose frames were shown at most 640×360.
    """
    steps = []
    if tool:
        call = '<think>look closer</think>\n<tool_call>{"name": "choose_frames", "arguments": {"frame_range": [40, 60]}}</tool_call>'
        steps.append(Step(turn=1, thought="look closer", action="choose_frames", frame_range=(40, 60),
                          frames_shown=[FrameRef(index=41 + 2 * i, seconds=(41 + 2 * i) / 6) for i in range(8)],
                          raw_output=call, tokens_in=0, tokens_out=0, latency_s=0.0))
    text = f"<think>it is {answer}</think>\n<answer>{answer}</answer>"
    steps.append(Step(turn=len(steps) + 1, thought=f"it is {answer}", action="answer", answer=answer,
                      format_error=format_error, raw_output=text, tokens_in=0, tokens_out=0, latency_s=0.0))
    video = VideoSummary(path="clip.mp4", frames=120, fps=6.0, duration_s=20.0, width=video_size[0],
                         height=video_size[1], codec="h264", rotation=0, reader="pyav")
    return Trajectory(question="Which foul?", options=["A) a", "B) b", "C) c"], model="example", video=video,
                      initial_frames=[FrameRef(index=7 + 15 * i, seconds=(7 + 15 * i) / 6) for i in range(8)],
                      steps=steps, answer=answer, tokens_in=0, tokens_out=0, latency_s=0.0, model_latency_s=0.0,
                      frames_used=8 + 8 * tool, format_errors=int(format_error is not None))
