"""Builders of records for tests that need many of them (conformal calibration, reports)."""
import math

import numpy as np

from sportlens.agent.records import Result, Trajectory, VideoSummary

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
