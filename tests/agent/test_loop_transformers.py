"""The loop end to end with the in-process transformers backend and the offline-built demo model."""
import pytest

from sportlens.agent.backends.transformers_local import TransformersBackend
from sportlens.agent.loop import AgentSettings, answer_question
from sportlens.agent.protocol import parse_turn
from sportlens.tools.testclips import write_index_clip
from sportlens.tools.video import Video


@pytest.fixture(scope="module")
def backend(demo_model_dir):
    model = TransformersBackend(demo_model_dir)
    yield model
    model.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_index_clip(tmp_path_factory.mktemp("e2e") / "clip.mp4", frames=240, size=(640, 360), gop=48)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_constrained_demo_model_completes_the_protocol(backend, clip, temperature):
    options = ["A) red", "B) blue", "C) nobody"]
    with Video(clip) as video:
        trajectory = answer_question(
            video, "Which team commits the foul?", backend, options=options,
            settings=AgentSettings(max_turns=4, temperature=temperature, constrain=True, max_tokens_per_turn=300),
        )
    assert trajectory.answer in {"A", "B", "C"}
    assert 1 <= len(trajectory.steps) <= 4
    for step in trajectory.steps:
        # Constrained turns always parse; what can still fail is a range the video cannot serve.
        assert parse_turn(step.raw_output).action in ("choose_frames", "answer")
        assert step.tokens_in > 8 * 200 and step.tokens_out > 0 and step.latency_s > 0
        if step.action == "choose_frames":
            start, end = step.frame_range
            assert [f.index for f in step.frames_shown] and all(start <= f.index <= end for f in step.frames_shown)
    assert trajectory.answer_logprobs and all(lp.logprob <= 0 for lp in trajectory.answer_logprobs)
    # The tokens that spell the answer; a token may also carry a neighbouring tag character (">A").
    spelled = "".join(lp.token for lp in trajectory.answer_logprobs)
    assert trajectory.answer in spelled and spelled in trajectory.steps[-1].raw_output
    assert len(spelled) <= len(trajectory.answer) + len("<answer></answer>")
    assert trajectory.model == backend.model_id
    assert trajectory.frames_used >= 8
