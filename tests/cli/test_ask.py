"""`sportlens ask` as a user runs it: a real process, its stdout, stderr and exit code."""
import json
from pathlib import Path

import pytest

from sportlens.agent.checkpoint_files import SHIPPED_MODEL_DIR
from sportlens.agent.records import Result
from sportlens.tools.testclips import write_audio_only, write_index_clip, write_truncated


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_index_clip(tmp_path_factory.mktemp("cli") / "clip.mp4", frames=300, size=(640, 360), gop=60)


def test_ask_json_prints_a_result_with_steps_and_an_answer(clip, demo_model_dir, sportlens):
    run = sportlens("ask", clip, "Which team commits the foul?", "--options", "A) red;B) blue",
                    "--model", demo_model_dir, "--max-turns", "3", "--json")
    assert run.returncode == 0, run.stderr
    result = Result.model_validate_json(run.stdout)
    trajectory = result.trajectory
    assert trajectory.answer in {"A", "B"} and 1 <= len(trajectory.steps) <= 3
    assert trajectory.video.frames == 300 and len(trajectory.initial_frames) == 8
    assert "Traceback" not in run.stderr


def test_ask_prints_a_readable_trace(clip, demo_model_dir, sportlens):
    run = sportlens("ask", clip, "What happened?", "--model", demo_model_dir, "--max-turns", "2")
    assert run.returncode in (0, 1), run.stderr  # 1: the random model may never answer an open question
    out = run.stdout
    assert "video: " in out and "300 frames at 30.00 fps" in out
    assert "looked at 8 frames" in out and "turn 1 (" in out and "answer: " in out


def test_the_default_model_is_the_shipped_one_and_nothing_is_built(clip, tmp_path, sportlens):
    run = sportlens("ask", clip, "Who scored?", "--options", "A) red;B) blue", "--max-turns", "1", "--json",
                    env_home=tmp_path)
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "models").exists()  # the random-weight demo model is a test fixture now, built on request
    result = json.loads(run.stdout)
    shipped = json.loads((SHIPPED_MODEL_DIR / "manifest.json").read_text())["name"]
    assert result["trajectory"]["model"] == shipped and result["trajectory"]["answer"] in {"A", "B"}
    assert result["prediction_set"], "the shipped model answers with the calibration it carries"


def test_make_demo_model_refuses_a_non_empty_directory(tmp_path, sportlens):
    (tmp_path / "keep.txt").write_text("mine")
    run = sportlens("make-demo-model", tmp_path)
    assert run.returncode == 2 and "not empty" in run.stderr and (tmp_path / "keep.txt").read_text() == "mine"


def bad_inputs(tmp: Path, clip: Path) -> dict[str, tuple[list[str], str]]:
    text_file = tmp / "notes.mp4"
    text_file.write_text("these are not frames\n" * 100)
    return {
        "missing file": ([str(tmp / "nope.mp4"), "q?"], "no such file"),
        "not a video": ([str(text_file), "q?"], "not a video"),
        "truncated mp4": ([str(write_truncated(clip, tmp / "cut.mp4", keep=0.4)), "q?"], ""),
        "audio only": ([str(write_audio_only(tmp / "tone.m4a")), "q?"], "no video frames"),
        "absurd resolution": ([str(write_index_clip(tmp / "wide.mp4", frames=2, size=(8320, 32), gop=1)), "q?"], "8320×32"),
        "empty question": ([str(clip), "   "], "question is empty"),
        "one option": ([str(clip), "q?", "--options", "A) only"], "at least two"),
        "bad letters": ([str(clip), "q?", "--options", "A) x;C) y"], "lettered B"),
        "zero turns": ([str(clip), "q?", "--max-turns", "0"], "max_turns"),
        "url without name": ([str(clip), "q?", "--backend-url", "http://127.0.0.1:9"], "--model-name"),
        "backend down": ([str(clip), "q?", "--backend-url", "http://127.0.0.1:9", "--model-name", "m"], "cannot reach"),
        "model dir missing": ([str(clip), "q?", "--model", str(tmp / "no-model")], "make-demo-model"),
    }


def test_every_bad_input_is_one_clear_line_and_a_nonzero_exit(clip, tmp_path, sportlens):
    for name, (args, words) in bad_inputs(tmp_path, clip).items():
        run = sportlens("ask", *args)
        assert run.returncode == 2, (name, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sportlens: error: "), (name, run.stderr)
        assert words.lower() in lines[0].lower(), (name, lines[0])
        assert "Traceback" not in run.stdout, name


def test_the_sampler_chooses_the_initial_frames(clip, demo_model_dir, sportlens):
    run = sportlens("ask", clip, "Who scored?", "--options", "A) red;B) blue", "--model", demo_model_dir,
                    "--max-turns", "1", "--json", "--sampler", "framethinker")
    assert run.returncode == 0, run.stderr
    shown = [frame.index for frame in Result.model_validate_json(run.stdout).trajectory.initial_frames]
    assert shown == [0, 42, 85, 128, 170, 213, 256, 299]  # FrameThinker's linspace: the first and the last frame


def test_an_unknown_sampler_is_one_line_and_exit_2(clip, sportlens):
    run = sportlens("ask", clip, "q?", "--sampler", "random")
    assert run.returncode == 2
    assert run.stderr.strip() == "sportlens: error: sampler must be one of centred, framethinker, not 'random'"
