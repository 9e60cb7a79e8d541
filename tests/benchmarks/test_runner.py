"""The batch runner: every question in every run, written as it goes, resumable after a kill, judged fairly."""
import json
import subprocess
import sys
import time

from contextlib import ExitStack

import numpy as np
import pytest
from judge_server import JudgeServer, verdict
from PIL import Image

from sportlens.agent.backends.base import Generation
from sportlens.agent.records import QAItem
from sportlens.benchmarks.judge import JudgePanel, OpenAIJudge
from sportlens.benchmarks.loaders import load_dataset
from sportlens.benchmarks.oracle import OraclePolicy
from sportlens.benchmarks.report import summarize, write_report
from sportlens.benchmarks.runner import BenchError, export_results, read_records, run_benchmark, standard_runs
from sportlens.benchmarks.scoring import score_answer


def open_questions(dataset):
    return type(dataset)(path=dataset.path, root=dataset.root, format="qa",
                         items=[i for i in dataset.items if i.answer_type == "open"])


def guessing_runs():
    """The agent with one turn and 8 frames: the oracle guesses on most open questions, so the judges have work."""
    return standard_runs([], constrain=False, agent=standard_runs([8], constrain=False)[1].settings)


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
    for name in ("agent", "uniform8"):  # frames used both ways: distinct, and FrameThinker's n·(1 + tool calls)
        trajectories = [r.result.trajectory for r in records if r.run == name]
        calls = [sum(s.action == "choose_frames" and s.format_error is None for s in t.steps) for t in trajectories]
        frames = report["runs"][name]["frames_used"]
        assert frames["framethinker"] == round(float(np.mean([8 * (1 + c) for c in calls])), 2)
        assert frames["distinct"] == report["runs"][name]["avg_frames_used"] <= frames["framethinker"]
    assert uniform8["frames_used"] == {"distinct": 8, "framethinker": 8} and agent["frames_used"]["framethinker"] > 8
    assert agent["boxes"]["mean_iou_x100"] == agent["boxes"]["accuracy_at_iou50"] == 100
    assert uniform8["boxes"]["n"] == agent["boxes"]["n"] and uniform8["boxes"]["accuracy_at_iou50"] is not None
    assert f"| 5 | IoU 100 ({agent['boxes']['n']}) |" in (tmp_path / "report.md").read_text().split("by level")[1]
    box = next(r for r in records if r.run == "agent" and r.answer_type == "box")
    unanswered = box.model_copy(update={"score": score_answer(next(i for i in dataset.items if i.id == box.item_id), None)})
    boxes = summarize([*records, unanswered])["runs"]["agent"]["boxes"]  # the last record of a question counts
    assert boxes["mean_iou_x100"] == round(100 * (boxes["n"] - 1) / boxes["n"], 2)  # IoU 0, not left out
    exported = export_results(records, tmp_path)
    assert {p.name for p in exported} == {"agent.results.jsonl", "uniform8.results.jsonl"}
    first = json.loads((tmp_path / "agent.results.jsonl").read_text().splitlines()[0])
    assert first["item_id"] and first["label"] and first["correct"] is True


def test_open_answers_go_to_the_judge_and_its_failures_are_counted_not_scored(sim_dataset, tmp_path):
    dataset = open_questions(load_dataset(sim_dataset))
    verdicts, servers = {}, {}
    rules = {"good": lambda body: (200, '```json\n{"verdict": "incorrect", "reason": "x"}\n```'),
             "down": lambda body: (503, ""), "garbled": lambda body: (200, "I think it is fine")}
    with ExitStack() as stack:
        for name, rule in [("unjudged", None), *rules.items()]:
            server = servers[name] = stack.enter_context(JudgeServer(rule)) if rule else None
            judge = JudgePanel([OpenAIJudge(server.url, "judge")]) if server else None
            records = run_benchmark(dataset, tmp_path / name, runs=guessing_runs(), backend_for=OraclePolicy,
                                    judge=judge, progress=False)
            verdicts[name] = write_report(records, tmp_path / name)["runs"]["agent"]
    guessed = verdicts["good"]["score_methods"].get("judge", 0)
    assert guessed > 0  # the blind guesses were judged (incorrect); exact matches need no judge
    assert all(b["temperature"] == 0.0 and "judge-v1" in b["messages"][0]["content"] for b in servers["good"].bodies)
    assert verdicts["unjudged"]["unjudged"] == guessed and verdicts["unjudged"]["judge_failures"] == 0
    for name in ("down", "garbled"):
        assert verdicts[name]["judge_failures"] == guessed
        assert verdicts[name]["overall"]["accuracy"] == 100  # the exact matches; failures are not zeros
        assert verdicts[name]["overall"]["scored"] == len(dataset.items) - guessed
    assert verdicts["good"]["overall"]["scored"] == len(dataset.items)


def test_a_panel_of_three_judges_reports_majority_average_and_agreement(sim_dataset, tmp_path):
    """Judge A always says correct, C never, B when the question has an even length: the figures follow."""
    dataset = open_questions(load_dataset(sim_dataset))
    b_says = lambda body: len(body["messages"][-1]["content"].split("\n")[0]) % 2 == 0  # noqa: E731
    with JudgeServer(lambda body: verdict(True)) as a, JudgeServer(lambda body: verdict(b_says(body))) as b, \
            JudgeServer(lambda body: verdict(False)) as c:
        panel = JudgePanel([OpenAIJudge(server.url, name) for server, name in ((a, "a"), (b, "b"), (c, "c"))])
        records = run_benchmark(dataset, tmp_path, runs=guessing_runs(), backend_for=OraclePolicy, judge=panel,
                                progress=False)
        report = write_report(records, tmp_path)
    judged = [r for r in records if r.score.method == "judge"]
    b_yes = sum(vote.correct for r in judged for vote in r.score.judge_votes if vote.judge.startswith("b@"))
    assert judged and 0 < b_yes < len(judged), "the questions must split judge B"
    for record in judged:
        assert [v.judge.split("@")[0] for v in record.score.judge_votes] == ["a", "b", "c"]
        assert record.score.correct is (record.score.judge_share > 0.5)  # two of three
    n, exact = len(judged), len(dataset.items) - len(judged)
    run = report["runs"]["agent"]
    assert run["overall"]["accuracy"] == round(100 * (exact + b_yes) / len(dataset.items), 2)
    assert run["accuracy_judges_averaged"] == round(100 * (exact + (n + b_yes) / 3) / len(dataset.items), 2)
    agreement = report["judge"]["agreement"]
    names = agreement["judges"]
    assert agreement["items"] == n and agreement["percent_agreement"] == 0  # A and C never agree
    assert agreement["pairwise"] == {f"{names[0]} | {names[1]}": round(b_yes / n, 4),
                                     f"{names[0]} | {names[2]}": 0.0,
                                     f"{names[1]} | {names[2]}": round(1 - b_yes / n, 4)}
    share = (n + b_yes) / (3 * n)  # Fleiss: every item splits 2–1, so each item's agreement is 1/3
    chance = share**2 + (1 - share) ** 2
    assert agreement["fleiss_kappa"] == pytest.approx((1 / 3 - chance) / (1 - chance), abs=1e-4)
    assert report["judge"]["temperature"] == 0.0 and report["judge"]["version"] == "judge-v1"
    assert len(report["judge"]["prompt_sha256"]) == 64 and report["judge"]["judges"] == names
    markdown = (tmp_path / "report.md").read_text()
    assert "## Judge panel" in markdown and "temperature 0" in markdown


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


def box_question(folder, size, box):
    """A SportR-style Q5 about a black image of ``size`` (width, height) with a yellow patch at ``box``."""
    picture = np.zeros((size[1], size[0], 3), np.uint8)
    picture[box[1]:box[3], box[0]:box[2]] = (255, 220, 0)
    Image.fromarray(picture).save(folder / "foul.png")
    item = QAItem(id="img-Q5", video="foul.png", question="Where is the card?", answer=json.dumps(list(box)),
                  answer_type="box", box=box, sport="soccer", task="evidence_box")
    (folder / "sportr.jsonl").write_text(item.model_dump_json() + "\n")
    return load_dataset(folder / "sportr.jsonl")


def test_an_image_question_is_asked_about_a_still_clip(tmp_path):
    dataset = box_question(tmp_path, (320, 180), (60, 40, 140, 100))
    [record] = run_benchmark(dataset, tmp_path / "out", runs=standard_runs([], constrain=False),
                             backend_for=OraclePolicy, progress=False)
    assert record.error is None and record.score.iou == 1.0
    assert record.result.trajectory.video.frames == 16 and len(list((tmp_path / "out" / "stills").iterdir())) == 1


class BoxReader:
    """A model that finds the yellow patch in the first frame it is shown and answers its box there,
    in pixels of that frame or normalised to 0–1000."""

    model_id = "box-reader"

    def __init__(self, units):
        self.units = units

    def generate(self, messages, **kwargs):
        image = next(part for part in messages[1].parts if not isinstance(part, str)).image
        ys, xs = np.nonzero((image[..., 0] > 160) & (image[..., 1] > 140) & (image[..., 2] < 100))
        box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        if self.units == "norm1000":
            height, width = image.shape[:2]
            box = [1000 * box[0] / width, 1000 * box[1] / height, 1000 * box[2] / width, 1000 * box[3] / height]
        return Generation(text=f"<think>The patch.</think><answer>{[round(float(v), 2) for v in box]}</answer>",
                          tokens_in=0, tokens_out=0)

    def close(self):
        pass


@pytest.mark.parametrize("units", ["pixels", "norm1000"])
def test_a_box_on_a_large_image_is_compared_in_the_original_pixels(tmp_path, units):
    """A 1280×720 image is shown at 640×360: the model's box is mapped back before the IoU."""
    dataset = box_question(tmp_path, (1280, 720), (200, 144, 600, 504))
    [record] = run_benchmark(dataset, tmp_path / "out", box_units=units,
                             runs=standard_runs([], constrain=False), backend_for=lambda item: BoxReader(units),
                             progress=False)
    shown = {"pixels": "[100.0, 72.0, 300.0, 252.0]", "norm1000": "[156.25, 200.0, 468.75, 700.0]"}[units]
    assert record.result.trajectory.answer == shown  # half the original's pixels, or 0–1000
    assert record.score.box_units == units and record.score.iou == pytest.approx(1.0)


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
