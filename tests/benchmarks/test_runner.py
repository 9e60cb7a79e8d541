"""The batch runner: every question in every run, written as it goes, resumable after a kill, judged fairly."""
import json
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from sportlens.agent.records import QAItem
from sportlens.benchmarks.judge import OpenAIJudge
from sportlens.benchmarks.loaders import load_dataset
from sportlens.benchmarks.oracle import OraclePolicy
from sportlens.benchmarks.report import write_report
from sportlens.benchmarks.runner import BenchError, export_results, read_records, run_benchmark, standard_runs


def judge_replying(content=None, status=200):
    def handler(request):
        body = json.loads(request.content)
        assert body["temperature"] == 0.0 and "judge-v1" in body["messages"][0]["content"]
        if status != 200:
            return httpx.Response(status, text="overloaded")
        return httpx.Response(200, json={"choices": [{"message": {"content": content}}]})

    return OpenAIJudge("http://judge.test/v1", "judge", transport=httpx.MockTransport(handler))


def test_oracle_beats_uniform8_and_the_report_has_every_figure(sim_dataset, tmp_path):
    dataset = load_dataset(sim_dataset)
    runs = standard_runs([8], constrain=False)
    records = run_benchmark(dataset, tmp_path, runs=runs, backend_for=OraclePolicy, concurrency=2, progress=False)
    report = write_report(records, tmp_path, runs=["agent", "uniform8"])
    agent, uniform8 = report["runs"]["agent"], report["runs"]["uniform8"]
    assert agent["by_split"]["test"]["accuracy"] >= 95 and agent["overall"]["accuracy"] >= 95
    assert agent["mean_iou_x100"] == 100
    assert uniform8["event_questions"]["accuracy"] < agent["event_questions"]["accuracy"]
    assert agent["avg_frames_used"] > 8 and 0 < agent["tool_call_rate"] < 1 and uniform8["tool_call_rate"] == 0
    assert agent["format_error_rate"] == 0 and agent["latency_s"]["p95"] >= agent["latency_s"]["p50"] > 0
    assert set(agent["by_split"]) == {"train", "val", "test"} and len(agent["by_sport"]) == 3 and len(agent["by_dimension"]) == 4
    assert {"1", "2", "3", "4", "5", "6"} <= set(agent["by_level"])
    for name in ("report.json", "report.md", "accuracy_vs_frames.png", "accuracy_by_task.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "| accuracy, event questions |" in (tmp_path / "report.md").read_text()
    exported = export_results(records, tmp_path)
    assert {p.name for p in exported} == {"agent.results.jsonl", "uniform8.results.jsonl"}
    first = json.loads((tmp_path / "agent.results.jsonl").read_text().splitlines()[0])
    assert first["item_id"] and first["label"] and first["correct"] is True


def test_open_answers_go_to_the_judge_and_its_failures_are_counted_not_scored(sim_dataset, tmp_path):
    dataset = load_dataset(sim_dataset)
    runs = standard_runs([], constrain=False, agent=standard_runs([8], constrain=False)[1].settings)  # one turn: guesses
    open_items = [i for i in dataset.items if i.answer_type == "open"]
    dataset = type(dataset)(path=dataset.path, root=dataset.root, format="qa", items=open_items)
    verdicts = {}
    for name, judge in (("unjudged", None), ("good", judge_replying('```json\n{"verdict": "incorrect", "reason": "x"}\n```')),
                        ("down", judge_replying(status=503)), ("garbled", judge_replying("I think it is fine"))):
        records = run_benchmark(dataset, tmp_path / name, runs=runs, backend_for=OraclePolicy, judge=judge, progress=False)
        verdicts[name] = write_report(records, tmp_path / name)["runs"]["agent"]
    guessed = verdicts["good"]["score_methods"].get("judge", 0)
    assert guessed > 0  # the blind guesses were judged (incorrect); exact matches need no judge
    assert verdicts["unjudged"]["unjudged"] == guessed and verdicts["unjudged"]["judge_failures"] == 0
    for name in ("down", "garbled"):
        assert verdicts[name]["judge_failures"] == guessed
        assert verdicts[name]["overall"]["accuracy"] == 100  # the exact matches; failures are not zeros
        assert verdicts[name]["overall"]["scored"] == len(open_items) - guessed
    assert verdicts["good"]["overall"]["scored"] == len(open_items)


def test_split_and_limit_select_the_questions(sim_dataset, tmp_path):
    dataset = load_dataset(sim_dataset)
    records = run_benchmark(dataset, tmp_path, runs=standard_runs([], constrain=False), backend_for=OraclePolicy,
                            split="test", limit=4, progress=False)
    assert [r.item_id for r in records] == [i.id for i in dataset.items if i.split == "test"][:4]


def test_a_second_run_into_the_same_folder_needs_resume(sim_dataset, tmp_path):
    dataset = load_dataset(sim_dataset)
    runs = standard_runs([], constrain=False)
    run_benchmark(dataset, tmp_path, runs=runs, backend_for=OraclePolicy, limit=3, progress=False)
    with pytest.raises(BenchError, match="--resume"):
        run_benchmark(dataset, tmp_path, runs=runs, backend_for=OraclePolicy, limit=3, progress=False)
    records = run_benchmark(dataset, tmp_path, runs=runs, backend_for=OraclePolicy, limit=5, resume=True, progress=False)
    assert [r.item_id for r in records] == [i.id for i in dataset.items[:3]] + [i.id for i in dataset.items[3:5]]


def test_a_failed_question_is_recorded_and_retried_on_resume(sim_dataset, tmp_path):
    dataset = load_dataset(sim_dataset)
    item = dataset.items[0].model_copy(update={"video": "clips/missing.mp4"})
    broken = type(dataset)(path=dataset.path, root=dataset.root, format="qa", items=[item])
    runs = standard_runs([], constrain=False)
    [record] = run_benchmark(broken, tmp_path, runs=runs, backend_for=OraclePolicy, progress=False)
    assert record.result is None and "missing.mp4" in record.error
    assert write_report([record], tmp_path)["runs"]["agent"]["errors"] == 1
    fixed = type(dataset)(path=dataset.path, root=dataset.root, format="qa", items=[dataset.items[0]])
    records = run_benchmark(fixed, tmp_path, runs=runs, backend_for=OraclePolicy, resume=True, progress=False)
    assert len(records) == 2 and records[-1].score.correct


def test_an_image_question_is_asked_about_a_still_clip(tmp_path):
    picture = np.zeros((180, 320, 3), np.uint8)
    picture[40:100, 60:140] = (255, 220, 0)
    Image.fromarray(picture).save(tmp_path / "foul.png")
    item = QAItem(id="img-Q5", video="foul.png", question="Where is the card?", answer="[60, 40, 140, 100]",
                  answer_type="box", box=(60, 40, 140, 100), sport="soccer", task="evidence_box")
    (tmp_path / "sportr.jsonl").write_text(item.model_dump_json() + "\n")
    dataset = load_dataset(tmp_path / "sportr.jsonl")
    [record] = run_benchmark(dataset, tmp_path / "out", runs=standard_runs([], constrain=False),
                             backend_for=OraclePolicy, progress=False)
    assert record.error is None and record.score.iou == 1.0
    assert record.result.trajectory.video.frames == 16 and len(list((tmp_path / "out" / "stills").iterdir())) == 1


def test_a_killed_run_resumes_without_repeating_finished_questions(sim_dataset, tmp_path):
    """A real process, killed with SIGKILL while it works, then resumed by a second one."""
    out = tmp_path / "bench"
    command = [sys.executable, "-m", "sportlens.cli", "bench", str(sim_dataset), "--oracle", "--out", str(out),
               "--baselines", "uniform8", "--no-progress"]
    total = 2 * len(sim_dataset.read_text().splitlines())
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if results.exists() and results.read_text().count("\n") >= 20:
            break
        time.sleep(0.02)
    process.kill()
    process.wait()
    assert process.returncode == -9, "the run finished before it could be killed"
    before = {(r.run, r.item_id) for r in read_records(results)}
    assert 20 <= len(before) < total
    assert not (out / "report.json").exists()
    with open(results, "ab") as handle:  # as if the kill had cut a record in half
        handle.write(b'{"run": "agent", "item_id": "cut sho')
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    lines = results.read_text().splitlines()
    pairs = [(r.run, r.item_id) for r in read_records(results)]
    assert len(lines) == len(pairs) == total and len(set(pairs)) == total  # nothing asked twice
    assert set(pairs[: len(before)]) == before
    report = json.loads((out / "report.json").read_text())
    assert report["runs"]["agent"]["questions"] == total // 2
    assert report["runs"]["agent"]["overall"]["accuracy"] == 100
