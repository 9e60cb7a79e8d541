"""The in-process transformers backend: frames in, text with its tags and logprobs out, regex constraints honoured."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from sportlens.agent.backends.base import BackendError, ChatMessage
from sportlens.agent.backends.transformers_local import TransformersBackend
from sportlens.tools.frames import Frame

TURN = (
    r'<think>[a-z ]{1,40}</think>\n(<tool_call>\{"name": "choose_frames", "arguments": '
    r'\{"frame_range": \[[0-9]{1,4}, [0-9]{1,4}\]\}\}</tool_call>|<answer>[A-D]</answer>)'
)


@pytest.fixture(scope="module")
def backend(demo_model_dir: Path) -> TransformersBackend:
    backend = TransformersBackend(demo_model_dir)
    yield backend
    backend.close()


def _frames(n: int = 8) -> list[Frame]:
    rng = np.random.default_rng(0)
    black = np.zeros((360, 640, 3), np.uint8)
    noise = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(n - 1)]
    return [Frame(index=30 * i, seconds=float(i), image=image) for i, image in enumerate([black, *noise][:n])]


def _question(frames: list[Frame]) -> list[ChatMessage]:
    parts: list[str | Frame] = ["Which foul is it? A. block B. charge C. travel D. none\n"]
    for frame in frames:
        parts += [frame.label(), frame]
    return [ChatMessage("system", ["You are a sports video analyst."]), ChatMessage("user", parts)]


def test_model_id_comes_from_the_manifest(backend: TransformersBackend, demo_model_dir: Path) -> None:
    assert backend.model_id == "sportlens-demo" == demo_model_dir.name


def test_generates_from_eight_frames_with_one_logprob_per_token(backend: TransformersBackend) -> None:
    generation = backend.generate(_question(_frames()), max_tokens=12)

    assert isinstance(generation.text, str) and generation.text
    assert generation.tokens_in > 8 * 299  # a 640×360 frame is 299 merged patches
    assert 0 < generation.tokens_out <= 12
    assert len(generation.logprobs) == generation.tokens_out
    assert all(lp.logprob <= 0 and math.isfinite(lp.logprob) for lp in generation.logprobs)
    assert not generation.text.endswith("<|im_end|>")


def test_greedy_generation_is_repeatable(backend: TransformersBackend) -> None:
    messages = _question(_frames(2))
    assert backend.generate(messages, max_tokens=10).text == backend.generate(messages, max_tokens=10).text


@pytest.mark.parametrize(("seed", "temperature"), [(0, 0.0), (1, 0.7), (2, 1.0), (3, 1.0), (4, 1.5)])
def test_a_random_model_still_obeys_the_regex_constraint(
    backend: TransformersBackend, seed: int, temperature: float
) -> None:
    torch.manual_seed(seed)
    generation = backend.generate(_question(_frames()), max_tokens=120, temperature=temperature, constraint=TURN)

    assert re.fullmatch(TURN, generation.text), generation.text
    assert len(generation.logprobs) == generation.tokens_out
    assert "".join(lp.token for lp in generation.logprobs) == generation.text
    assert all(lp.logprob <= 0 for lp in generation.logprobs)


def test_a_streamed_turn_grows_token_by_token_into_the_returned_text(backend: TransformersBackend) -> None:
    messages, seen = _question(_frames(2)), []
    streamed = backend.generate(messages, max_tokens=120, constraint=TURN, on_text=seen.append)
    whole = backend.generate(messages, max_tokens=120, constraint=TURN)

    assert streamed.text == whole.text and seen[-1] == streamed.text  # no stop token in what was streamed
    assert len(seen) == streamed.tokens_out
    assert all(later.startswith(earlier) for earlier, later in zip(seen, seen[1:]))


def test_special_tokens_are_kept_in_the_text(backend: TransformersBackend) -> None:
    call = '<tool_call>{"name": "choose_frames", "arguments": {"frame_range": [0, 60]}}</tool_call>'
    shown = [part for frame in _frames(2) for part in (frame.label(), frame)]
    history = _question(_frames(2)) + [
        ChatMessage("assistant", [f"<think>look</think>\n{call}"]),
        ChatMessage("user", ["<tool_response>\n", *shown, "</tool_response>"]),
    ]
    generation = backend.generate(history, max_tokens=20, constraint=r"<tool_call>[0-9]</tool_call>")

    assert re.fullmatch(r"<tool_call>[0-9]</tool_call>", generation.text)
    # The grammar also admits the tag spelled in pieces; greedy decoding picks the special token here.
    assert generation.logprobs[0].token == "<tool_call>"


def test_score_continuations_gives_distinct_finite_log_probabilities(backend: TransformersBackend) -> None:
    continuations = ["<think>a block</think>\n<answer>A</answer>", "<think>a block</think>\n<answer>B</answer>"]
    scores = backend.score_continuations(_question(_frames()), continuations)

    assert len(scores) == 2
    assert all(math.isfinite(s) and s < 0 for s in scores)
    assert scores[0] != scores[1]


def test_a_score_is_the_sum_of_the_logprobs_greedy_decoding_reported(backend: TransformersBackend) -> None:
    # Three frames: with them this random model's greedy text re-tokenizes to the same tokens, which scoring
    # needs (a random model may emit partial UTF-8 byte tokens that do not).
    messages = [ChatMessage("user", ["Which foul?", *_frames(3)])]
    generation = backend.generate(messages, max_tokens=6)
    [score] = backend.score_continuations(messages, [generation.text])
    assert score == pytest.approx(sum(lp.logprob for lp in generation.logprobs), abs=1e-3)


def test_a_missing_model_directory_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="make-demo-model"):
        TransformersBackend(tmp_path / "nowhere")
    with pytest.raises(BackendError, match="make-demo-model"):
        TransformersBackend(tmp_path)


def test_a_bad_constraint_is_a_backend_error(backend: TransformersBackend) -> None:
    with pytest.raises(BackendError, match="constraint"):
        backend.generate(_question([]), max_tokens=4, constraint="<answer>[A-D")
