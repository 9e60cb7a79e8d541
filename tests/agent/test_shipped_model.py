"""The shipped default model: its files are the ones its manifest names, and it answers SportSim visual questions of
clips it never saw (a seed it was not trained on) far above chance, calling the tool where the new mark appears."""
import json
import shutil

import pytest

from sportlens.agent.checkpoint_files import SHIPPED_MODEL_DIR, ModelFilesError, verify_weights, weights_sha256
from sportlens.agent.loop import AgentSettings, answer_question
from sportlens.agent.records import QAItem
from sportlens.benchmarks import sportsim_visual
from sportlens.agent.models import default_model_dir, open_backend
from sportlens.tools.video import Video
from cli_runner import run_sportlens

HELD_OUT_SEED = 4242  # the shipped model trained on seed 0


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """Questions about 6 visual clips of an unseen seed."""
    qa = sportsim_visual.generate(tmp_path_factory.mktemp("held-out"), n=6, seed=HELD_OUT_SEED, workers=2)
    return qa, [QAItem.model_validate_json(line) for line in qa.read_text().splitlines()]


def test_the_default_model_is_the_shipped_checkpoint_and_its_weights_match_the_manifest():
    assert default_model_dir() == SHIPPED_MODEL_DIR
    manifest = json.loads((SHIPPED_MODEL_DIR / "manifest.json").read_text())
    assert manifest["weights_sha256"] == weights_sha256(SHIPPED_MODEL_DIR)
    assert (SHIPPED_MODEL_DIR / "model.safetensors").stat().st_size <= 25 * 2**20
    assert manifest["protocol_version"] and manifest["stages"][-1]["stage"] in ("sft", "grpo")
    assert (SHIPPED_MODEL_DIR / manifest["calibration_artifact"]).is_file()
    verify_weights(SHIPPED_MODEL_DIR)


def test_a_corrupted_checkpoint_is_refused_in_one_line_with_exit_2(tmp_path, held_out):
    qa, items = held_out
    broken = tmp_path / "broken"
    shutil.copytree(SHIPPED_MODEL_DIR, broken)
    with open(broken / "model.safetensors", "r+b") as weights:
        weights.seek(-16, 2)
        weights.write(b"\0" * 16)
    with pytest.raises(ModelFilesError, match="does not match"):
        verify_weights(broken)
    run = run_sportlens("ask", qa.parent / items[0].video, items[0].question, "--options", ";".join(items[0].options),
                        "--model", broken)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "does not match the SHA-256" in run.stderr


def test_it_answers_unseen_clips_far_above_chance_and_looks_where_the_mark_appeared(held_out):
    qa, items = held_out
    backend = open_backend()
    right, tool_right, calls = [], 0, 0
    try:
        for item in items:
            with Video(qa.parent / item.video) as clip:
                trajectory = answer_question(clip, item.question, backend, options=item.options,
                                             settings=AgentSettings(max_tokens_per_turn=192))
            right.append(trajectory.answer == item.answer)
            call = next((s for s in trajectory.steps if s.action == "choose_frames"), None)
            if call is not None:
                calls += 1
                start, end = item.event_window
                tool_right += any(start <= f.index <= end for f in call.frames_shown)
    finally:
        backend.close()
    accuracy = sum(right) / len(right)
    print(f"shipped model on {len(items)} unseen questions: {accuracy:.0%} right (chance 25%), "
          f"{calls} tool calls, {tool_right} of them showed the incident")
    assert accuracy >= 0.6
    assert calls and tool_right / calls >= 0.6
