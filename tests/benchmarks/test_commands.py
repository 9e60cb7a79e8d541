"""`sportlens synth` and `sportlens bench` as a user runs them."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sportlens.tools.testclips import write_index_clip


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
                    "--baselines", "uniform8", "--concurrency", "2", "--write-lmms-eval", tmp_path / "lmms")
    assert ran.returncode == 0, ran.stderr
    assert "agent: accuracy 100.0%" in ran.stdout and "uniform8" in ran.stdout
    assert "questions" in ran.stderr  # the progress bar
    report = json.loads((tmp_path / "bench" / "report.json").read_text())
    assert list(report["runs"]) == ["agent", "uniform8"] and report["config"]["model"] == "oracle"
    check_lmms_eval_layout(tmp_path / "lmms", report)


def check_lmms_eval_layout(folder, report):
    """lmms-eval's --output_path layout: {model}/{date}_results.json and {date}_samples_{task}.jsonl per task."""
    [model] = list(folder.iterdir())
    [results_path] = list(model.glob("*_results.json"))
    date = results_path.name[: -len("_results.json")]
    assert model.name == "oracle" and re.fullmatch(r"\d{8}_\d{6}", date)
    results = json.loads(results_path.read_text())
    assert {"results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config",
            "git_hash", "date", "task_hashes", "model_name", "model_name_sanitized"} <= set(results)
    tasks = {"agent": "sportlens_qa_agent", "uniform8": "sportlens_qa_uniform8"}
    assert set(results["results"]) == set(tasks.values()) and results["date"] == date
    for run, task in tasks.items():
        figures = results["results"][task]
        assert figures["alias"] == task and {"accuracy,none", "accuracy_stderr,none", "iou,none"} <= set(figures)
        assert figures["accuracy,none"] == pytest.approx(report["runs"][run]["overall"]["accuracy"] / 100, abs=1e-4)
        samples = [json.loads(line) for line in (model / f"{date}_samples_{task}.jsonl").read_text().splitlines()]
        assert len(samples) == results["n-samples"][task]["effective"] == report["runs"][run]["questions"]
        assert [s["doc_id"] for s in samples] == list(range(len(samples)))
        for sample in samples:
            assert {"doc_id", "target", "input", "resps", "filtered_resps", "doc_hash", "accuracy"} <= set(sample)
            assert len(sample["doc_hash"]) == 64 and sample["accuracy"] in (0.0, 1.0, None)
        assert any("iou" in s for s in samples)


def test_the_oracle_answers_boxes_on_large_videos_and_stills_and_the_sampler_is_recorded(tmp_path):
    """A 1280×720 video and a 1280×720 SportR-style still, shown at 640×360: the oracle's boxes score IoU 1."""
    write_index_clip(tmp_path / "wide.mp4", frames=48, fps=12, size=(1280, 720))
    noise = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "still.png")
    items = [{"id": name, "video": name, "question": "Where is the evidence?", "answer": "[201, 99, 601, 500]",
              "answer_type": "box", "sport": "soccer", "task": "evidence_box", "box": [201, 99, 601, 500]}
             for name in ("wide.mp4", "still.png")]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    ran = sportlens("bench", tmp_path / "qa.jsonl", "--oracle", "--out", tmp_path / "bench", "--baselines", "uniform8",
                    "--sampler", "framethinker", "--no-progress")
    assert ran.returncode == 0, ran.stderr
    records = [json.loads(line) for line in (tmp_path / "bench" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["score"]["iou"] > 0.99 for r in records)
    agent = next(r for r in records if r["run"] == "agent" and r["item_id"] == "wide.mp4")["result"]["trajectory"]
    assert [f["index"] for f in agent["initial_frames"]][::7] == [0, 47]  # FrameThinker's: the first and the last
    for config in (json.loads((tmp_path / "bench" / "bench.json").read_text()),
                   json.loads((tmp_path / "bench" / "report.json").read_text())["config"]):
        assert config["sampler"] == "framethinker"
        assert {run["sampler"] for run in config["runs"].values()} == {"framethinker"}  # the baseline's frames too


@pytest.mark.parametrize(
    "args, message",
    [
        (["synth", "--out", "{tmp}", "--n", "1", "--sports", "chess"], "chess"),
        (["synth", "--out", "{tmp}", "--n", "1", "--seconds", "2"], "at least 6 s"),
        (["bench", "{tmp}/none.jsonl", "--oracle", "--out", "{tmp}/o"], "cannot read"),
        (["bench", "{qa}", "--oracle", "--model", "m", "--out", "{tmp}/o"], "not --model and --oracle"),
        (["bench", "{qa}", "--backend-url", "http://x", "--out", "{tmp}/o"], "--model-name"),
        (["bench", "{qa}", "--oracle", "--baselines", "random8", "--out", "{tmp}/o"], "uniformK"),
        (["bench", "{qa}", "--oracle", "--sampler", "random", "--out", "{tmp}/o"],
         "sampler must be one of centred, framethinker, not 'random'"),
        (["bench", "{qa}", "--oracle", "--judge-url", "http://j", "--out", "{tmp}/o"], "go together"),
        (["bench", "{qa}", "--oracle", "--judge-url", "http://j", "--judge-url", "http://k", "--judge-model", "a",
          "--judge-model", "b", "--judge-model", "c", "--out", "{tmp}/o"], "one --judge-model per --judge-url"),
        (["bench", "{qa}", "--oracle", "--judge-panel", "{tmp}/none.json", "--out", "{tmp}/o"], "cannot read the judge panel"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, sim_dataset, args, message):
    args = [a.format(tmp=tmp_path, qa=sim_dataset) for a in args]
    result = sportlens(*args, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("sportlens: error:") and message in result.stderr
    assert result.stderr.count("\n") == 1
