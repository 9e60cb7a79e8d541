"""`sportlens calibrate` and `sportlens ask --calibration`: conformal sets from the command line."""
import json
import random

import pytest

from sportlens.agent.backends.transformers_local import TransformersBackend
from sportlens.agent.loop import AgentSettings, answer_question
from sportlens.agent.records import Result
from sportlens.tools.testclips import write_index_clip
from sportlens.tools.video import Video

OPTIONS = ["A) red", "B) blue", "C) nobody"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_index_clip(tmp_path_factory.mktemp("calib") / "clip.mp4", frames=120, size=(320, 180), gop=30)


@pytest.fixture(scope="module")
def results_file(clip, demo_model_dir, tmp_path_factory):
    """Twelve labelled results of the demo model with option scores, as `sportlens bench` writes them."""
    backend = TransformersBackend(demo_model_dir)
    settings = AgentSettings(max_turns=1, constrain=True, score_options=True, max_tokens_per_turn=120)
    labels = random.Random(0)
    path = tmp_path_factory.mktemp("results") / "results.jsonl"
    with Video(clip) as video, path.open("w") as out:
        for i in range(12):
            trajectory = answer_question(video, f"Which team fouled in play {i}?", backend, options=OPTIONS, settings=settings)
            result = Result(trajectory=trajectory, item_id=f"q{i}", sport="soccer", task="foul",
                            label=labels.choice("ABC"))
            out.write(result.model_dump_json() + "\n")
    backend.close()
    return path


def test_option_scores_are_recorded_for_every_option(results_file):
    first = Result.model_validate_json(results_file.read_text().splitlines()[0])
    scores = first.trajectory.option_logprobs
    assert set(scores) == {"A", "B", "C"} and all(value < 0 for value in scores.values())


def test_calibrate_then_ask_returns_a_prediction_set(results_file, clip, demo_model_dir, tmp_path, sportlens):
    artifact = tmp_path / "calib.json"
    run = sportlens("calibrate", results_file, "--alpha", "0.2", "--method", "aps", "--model", demo_model_dir,
                    "--out", artifact)
    assert run.returncode == 0, run.stderr
    assert "pooled over 12" in run.stdout
    saved = json.loads(artifact.read_text())
    assert saved["method"] == "aps" and saved["n"] == 12 and saved["model"] == "sportlens-demo"
    assert len(saved["model_sha256"]) == 64

    run = sportlens("ask", clip, "Which team fouled?", "--options", ";".join(OPTIONS), "--model", demo_model_dir,
                    "--max-turns", "1", "--calibration", artifact, "--selective", "--json")
    assert run.returncode == 0, run.stderr
    result = Result.model_validate_json(run.stdout)
    assert result.alpha == 0.2 and result.coverage_target == pytest.approx(0.8)
    assert set(result.prediction_set) <= {"A", "B", "C"} and result.set_size == len(result.prediction_set)
    assert result.abstain == (result.set_size != 1)

    run = sportlens("ask", clip, "Which team fouled?", "--options", ";".join(OPTIONS), "--model", demo_model_dir,
                    "--max-turns", "1", "--calibration", artifact)
    assert run.returncode == 0 and "prediction set at 80% coverage (pooled)" in run.stdout


def test_bad_calibration_input_is_one_clear_line(results_file, clip, demo_model_dir, tmp_path, sportlens):
    broken = tmp_path / "broken.jsonl"
    broken.write_text(results_file.read_text().splitlines()[0] + "\n{not json}\n")
    artifact = tmp_path / "calib.json"
    assert sportlens("calibrate", results_file, "--alpha", "0.2", "--out", artifact).returncode == 0
    other_model = tmp_path / "other-model"
    from sportlens.training.demo_model import build_demo_model

    build_demo_model(other_model, seed=1)
    cases = {
        "alpha out of range": (["calibrate", results_file, "--alpha", "1.5", "--out", tmp_path / "x.json"], "between 0 and 1"),
        "too few for alpha": (["calibrate", results_file, "--alpha", "0.05", "--out", tmp_path / "x.json"], "at least 19 points"),
        "malformed line": (["calibrate", broken, "--out", tmp_path / "x.json"], "broken.jsonl:2"),
        "missing file": (["calibrate", tmp_path / "none.jsonl", "--out", tmp_path / "x.json"], "cannot read"),
        "sample without samples": (["calibrate", results_file, "--method", "sample", "--alpha", "0.2", "--out", tmp_path / "x.json"], "holds no open questions"),
        "another model": (["ask", clip, "q?", "--options", ";".join(OPTIONS), "--model", other_model, "--max-turns", "1",
                           "--calibration", artifact], "made for model"),
        "open question, closed calibration": (["ask", clip, "q?", "--calibration", artifact], "needs a closed question"),
        "not an artifact": (["ask", clip, "q?", "--options", ";".join(OPTIONS), "--calibration", results_file], "not a calibration artifact"),
    }
    for name, (args, words) in cases.items():
        run = sportlens(*args)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1, (name, run.stderr)
        assert words in lines[0], (name, lines[0])
    assert not (tmp_path / "x.json").exists()
