"""`sportlens synth` and `sportlens bench` as a user runs them."""
import json
import subprocess
import sys

import pytest


def sportlens(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "sportlens.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_synth_then_bench_with_the_oracle(tmp_path):
    made = sportlens("synth", "--out", tmp_path / "sim", "--n", "3", "--seed", "4", "--seconds", "12", "--fps", "6",
                     "--sports", "tennis,soccer")
    assert made.returncode == 0, made.stderr
    meta = json.loads((tmp_path / "sim" / "sportsim.json").read_text())
    assert meta["sports"] == ["tennis", "soccer"] and meta["settings"]["fps"] == 6
    assert sorted(p.name for p in (tmp_path / "sim" / "clips").iterdir()) == [
        "soccer_00001.mp4", "tennis_00000.mp4", "tennis_00002.mp4"]
    ran = sportlens("bench", tmp_path / "sim" / "qa.jsonl", "--oracle", "--out", tmp_path / "bench",
                    "--baselines", "uniform8", "--concurrency", "2")
    assert ran.returncode == 0, ran.stderr
    assert "agent: accuracy 100.0%" in ran.stdout and "uniform8" in ran.stdout
    assert "questions" in ran.stderr  # the progress bar
    report = json.loads((tmp_path / "bench" / "report.json").read_text())
    assert list(report["runs"]) == ["agent", "uniform8"] and report["config"]["model"] == "oracle"


@pytest.mark.parametrize(
    "args, message",
    [
        (["synth", "--out", "{tmp}", "--n", "1", "--sports", "chess"], "chess"),
        (["synth", "--out", "{tmp}", "--n", "1", "--seconds", "2"], "at least 6 s"),
        (["bench", "{tmp}/none.jsonl", "--oracle", "--out", "{tmp}/o"], "cannot read"),
        (["bench", "{qa}", "--oracle", "--model", "m", "--out", "{tmp}/o"], "not --model and --oracle"),
        (["bench", "{qa}", "--backend-url", "http://x", "--out", "{tmp}/o"], "--model-name"),
        (["bench", "{qa}", "--oracle", "--baselines", "random8", "--out", "{tmp}/o"], "uniformK"),
        (["bench", "{qa}", "--oracle", "--judge-url", "http://j", "--out", "{tmp}/o"], "go together"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, sim_dataset, args, message):
    args = [a.format(tmp=tmp_path, qa=sim_dataset) for a in args]
    result = sportlens(*args, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("sportlens: error:") and message in result.stderr
    assert result.stderr.count("\n") == 1
