"""The benchmark report: per-run accuracy by task, level, sport and dimension, cost figures, JSON + Markdown + plots.

Accuracy counts only scored answers: an open answer with no judge (``unjudged``) or whose judge failed
(``judge_error``) and a question that ended in an error are counted apart and reported, never scored 0.
Box questions are reported both ways, as SportR reports Q5 (mean IoU ×100, an unanswered box counting 0) and
as accuracy at IoU ≥ 0.5; frames used both ways, distinct frames and FrameThinker's n·(1 + tool calls).
The judges' settings (rubric version, temperature, prompt hash) and, for a panel, their agreement are pinned in
the report. :func:`write_lmms_eval` writes the same results in lmms-eval's layout.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from datetime import datetime
from itertools import combinations
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from sportlens.agent.records import PROTOCOL_VERSION, Trajectory
from sportlens.benchmarks.judge import JUDGE_VERSION, judge_settings
from sportlens.benchmarks.runner import BenchRecord, latest
from sportlens.benchmarks.scoring import BOX_HIT_IOU

matplotlib.use("Agg")  # the figures only go to files

GROUPS = ("task", "level", "sport", "dimension", "split")


def accuracy(records: list[BenchRecord]) -> dict:
    """Accuracy in % of the scored answers among ``records``, with how many were scored and how many asked.

    Where box questions are among them, their mean IoU ×100 (SportR's Q5 figure) comes too.
    """
    scored = [r for r in records if r.score is not None and r.score.correct is not None]
    hits = sum(1 for r in scored if r.score.correct)
    figures = {"accuracy": round(100 * hits / len(scored), 2) if scored else None, "scored": len(scored), "n": len(records)}
    ious = _ious(records)
    if ious:
        figures |= {"boxes": len(ious), "mean_iou_x100": round(100 * float(np.mean(ious)), 2)}
    return figures


def _ious(records: list[BenchRecord]) -> list[float]:
    """The IoU of every scored box answer; an unanswered box question has IoU 0 (lmms-eval's rule)."""
    return [r.score.iou for r in records if r.score is not None and r.score.iou is not None]


def boxes(records: list[BenchRecord]) -> dict | None:
    """Box questions both ways: mean IoU ×100 (SportR) and accuracy at IoU ≥ 0.5 in %; None without boxes."""
    ious = _ious(records)
    if not ious:
        return None
    return {"n": len(ious), "mean_iou_x100": round(100 * float(np.mean(ious)), 2),
            "accuracy_at_iou50": round(100 * sum(v >= BOX_HIT_IOU for v in ious) / len(ious), 2)}


def frames_shown(trajectory: Trajectory) -> int:
    """Frames shown counting repeats: the initial frames plus those of each tool call that ran.

    With k initial frames and n per call this is FrameThinker's n·(1 + tool calls) when k = n.
    """
    return len(trajectory.initial_frames) + sum(len(step.frames_shown) for step in trajectory.steps)


def judge_agreement(records: list[BenchRecord]) -> dict | None:
    """How a panel's judges agreed on the answers they all judged; None with fewer than two judges.

    Figures: ``percent_agreement`` (items where every judge said the same), ``pairwise`` agreement of each
    pair of judges and its mean, and Fleiss' kappa (agreement beyond chance; None when every vote was the same).
    """
    panels = [r.score.judge_votes for r in records if r.score is not None and r.score.judge_votes and len(r.score.judge_votes) > 1]
    if not panels:
        return None
    raters = {len(votes) for votes in panels}
    names = sorted({vote.judge for votes in panels for vote in votes})
    said = [{v.judge: v.correct for v in votes} for votes in panels]
    pairwise = {}
    for a, b in combinations(names, 2):
        both = [item for item in said if a in item and b in item]
        if both:
            pairwise[f"{a} | {b}"] = round(sum(item[a] == item[b] for item in both) / len(both), 4)
    unanimous = sum(len({v.correct for v in votes}) == 1 for votes in panels)
    return {
        "items": len(panels),
        "judges": names,
        "percent_agreement": round(100 * unanimous / len(panels), 2),
        "pairwise": pairwise,
        "pairwise_mean": round(float(np.mean(list(pairwise.values()))), 4) if pairwise else None,
        "fleiss_kappa": fleiss_kappa([[v.correct for v in votes] for votes in panels]) if len(raters) == 1 else None,
    }


def fleiss_kappa(votes: list[list[bool]]) -> float | None:
    """Fleiss' kappa of yes/no votes, the same number of raters (two or more) per item; None if chance agreement is 1."""
    raters = len(votes[0])
    yes = np.array([sum(item) for item in votes], dtype=float)
    per_item = (yes**2 + (raters - yes) ** 2 - raters) / (raters * (raters - 1))
    share = yes.sum() / (len(votes) * raters)
    chance = share**2 + (1 - share) ** 2
    if chance >= 1:
        return None
    return round(float((per_item.mean() - chance) / (1 - chance)), 4)


def summarize(records: list[BenchRecord], runs: list[str] | None = None) -> dict:
    """The report's numbers, per run (in ``runs`` order, else first seen), from the latest record per question."""
    by_run: dict[str, list[BenchRecord]] = defaultdict(list)
    for record in latest(records).values():
        by_run[record.run].append(record)
    order = [r for r in (runs or []) if r in by_run] + [r for r in by_run if r not in (runs or [])]
    everything = list(latest(records).values())
    judges = judge_settings() | {
        "judges": sorted({v.judge for r in everything if r.score and r.score.judge_votes for v in r.score.judge_votes}),
        "agreement": judge_agreement(everything),
    }
    report: dict = {"judge_version": JUDGE_VERSION, "judge": judges, "runs": {}}
    for name in order:
        rows = by_run[name]
        done = [r for r in rows if r.result is not None]
        trajectories = [r.result.trajectory for r in done]
        latencies = np.array([t.latency_s for t in trajectories]) if trajectories else np.array([0.0])
        box_figures = boxes(done)
        methods = defaultdict(int)
        for r in done:
            methods[r.score.method] += 1
        run: dict = {
            "overall": accuracy(rows),
            "accuracy_judges_averaged": _judges_averaged(rows),
            "event_questions": accuracy([r for r in rows if r.event]),
            "other_questions": accuracy([r for r in rows if not r.event]),
            "boxes": box_figures,
            "mean_iou_x100": box_figures["mean_iou_x100"] if box_figures else None,
            "avg_frames_used": _mean([t.frames_used for t in trajectories]),
            "frames_used": {"distinct": _mean([t.frames_used for t in trajectories]),
                            "framethinker": _mean([frames_shown(t) for t in trajectories])},
            "tool_call_rate": _rate(sum(1 for t in trajectories if any(s.action == "choose_frames" for s in t.steps)), len(done)),
            "format_error_rate": _rate(sum(1 for t in trajectories if t.format_errors), len(done)),
            "no_answer_rate": _rate(sum(1 for t in trajectories if t.answer is None), len(done)),
            "latency_s": {"p50": round(float(np.percentile(latencies, 50)), 3), "p95": round(float(np.percentile(latencies, 95)), 3)},
            "tokens": {
                "in_mean": round(float(np.mean([t.tokens_in for t in trajectories])), 1) if trajectories else 0,
                "out_mean": round(float(np.mean([t.tokens_out for t in trajectories])), 1) if trajectories else 0,
                "in_total": sum(t.tokens_in for t in trajectories),
                "out_total": sum(t.tokens_out for t in trajectories),
            },
            "questions": len(rows),
            "errors": sum(1 for r in rows if r.error is not None),
            "unjudged": methods["unjudged"],
            "judge_failures": methods["judge_error"],
            "score_methods": dict(methods),
        }
        for group in GROUPS:
            buckets: dict[str, list[BenchRecord]] = defaultdict(list)
            for r in rows:
                buckets[str(getattr(r, group))].append(r)
            run[f"by_{group}"] = {key: accuracy(value) for key, value in sorted(buckets.items())}
        report["runs"][name] = run
    return report


def _judges_averaged(records: list[BenchRecord]) -> float | None:
    """Accuracy in % where a judged answer counts the share of judges that said correct (SportR's averaging)."""
    scored = [r.score for r in records if r.score is not None and r.score.correct is not None]
    if not scored:
        return None
    credit = [s.judge_share if s.judge_share is not None else float(s.correct) for s in scored]
    return round(100 * sum(credit) / len(scored), 2)


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 2) if values else None


def _rate(count: int, total: int) -> float | None:
    return round(count / total, 4) if total else None


def _cell(value) -> str:
    return "–" if value is None else f"{value:g}" if isinstance(value, (int, float)) else str(value)


def markdown(report: dict, title: str = "Benchmark report") -> str:
    """The report as Markdown tables, runs side by side."""
    runs = list(report["runs"])
    head = "| | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs) + "\n"

    def row(label: str, values) -> str:
        return f"| {label} | " + " | ".join(_cell(v) for v in values) + " |\n"

    def get(name: str, *path):
        value = report["runs"][name]
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    judge = report["judge"]
    text = (f"# {title}\n\nAccuracy in % of scored answers (n scored in brackets); a row of box questions alone "
            f"shows their mean IoU ×100 (SportR's Q5 figure). Judge rubric {judge['version']}, temperature "
            f"{judge['temperature']:g}, prompt sha256 {judge['prompt_sha256'][:12]}.\n\n")
    text += "## Summary\n\n" + head
    for label, path in (
        ("accuracy, all", ("overall", "accuracy")),
        ("accuracy, judges averaged (SportR)", ("accuracy_judges_averaged",)),
        ("accuracy, event questions", ("event_questions", "accuracy")),
        ("accuracy, other questions", ("other_questions", "accuracy")),
        ("boxes: mean IoU ×100 (SportR Q5)", ("boxes", "mean_iou_x100")),
        ("boxes: accuracy at IoU ≥ 0.5", ("boxes", "accuracy_at_iou50")),
        ("frames used, distinct", ("frames_used", "distinct")),
        ("frames shown, n·(1 + tool calls) (FrameThinker)", ("frames_used", "framethinker")),
        ("tool-call rate", ("tool_call_rate",)),
        ("format-error rate", ("format_error_rate",)),
        ("no-answer rate", ("no_answer_rate",)),
        ("latency p50 (s)", ("latency_s", "p50")),
        ("latency p95 (s)", ("latency_s", "p95")),
        ("tokens in / question", ("tokens", "in_mean")),
        ("tokens out / question", ("tokens", "out_mean")),
        ("questions", ("questions",)),
        ("errors (not scored)", ("errors",)),
        ("open answers unjudged (no judge)", ("unjudged",)),
        ("judge failures (not scored)", ("judge_failures",)),
    ):
        text += row(label, [get(name, *path) for name in runs])
    for group in GROUPS:
        keys = sorted({key for name in runs for key in report["runs"][name][f"by_{group}"]})
        text += f"\n## Accuracy by {group}\n\n" + head
        for key in keys:
            cells = []
            cells = [_group_cell(report["runs"][name][f"by_{group}"].get(key)) for name in runs]
            text += row(key, cells)
    return text + _judges_markdown(judge)


def _group_cell(cell: dict | None) -> str | None:
    """Accuracy (scored), or for a bucket of box questions alone their mean IoU ×100, as SportR's tables show Q5."""
    if cell is None:
        return None
    if cell.get("boxes") == cell["n"]:
        return f"IoU {cell['mean_iou_x100']:g} ({cell['boxes']})"
    return None if cell["accuracy"] is None else f"{cell['accuracy']:g} ({cell['scored']})"


def _judges_markdown(judge: dict) -> str:
    agreement = judge["agreement"]
    if agreement is None:
        return ""
    text = (f"\n## Judge panel\n\n{len(agreement['judges'])} judges on {agreement['items']} answers: all agree on "
            f"{agreement['percent_agreement']:g} %, Fleiss' kappa {_cell(agreement['fleiss_kappa'])}, mean pairwise "
            f"agreement {_cell(agreement['pairwise_mean'])}.\n\n| judges | agreement |\n|---|---|\n")
    return text + "".join(f"| {pair} | {value:g} |\n" for pair, value in agreement["pairwise"].items())


def plot(report: dict, out: Path) -> list[Path]:
    """accuracy_vs_frames.png (one point per run) and accuracy_by_task.png (bars per task, a colour per run)."""
    runs = list(report["runs"])
    paths = []
    figure, axes = plt.subplots(figsize=(6, 4))
    for name in runs:
        run = report["runs"][name]
        frames, accuracy = run["avg_frames_used"], run["overall"]["accuracy"]
        if frames is not None and accuracy is not None:
            axes.scatter([frames], [accuracy], s=60)
            axes.annotate(name, (frames, accuracy), textcoords="offset points", xytext=(6, 4))
    axes.set_xlabel("average frames used")
    axes.grid(alpha=0.3)
    paths.append(_save_accuracy_plot(figure, axes, "Accuracy against frames used", out / "accuracy_vs_frames.png"))

    tasks = sorted({task for name in runs for task in report["runs"][name]["by_task"]})
    figure, axes = plt.subplots(figsize=(max(6, 0.9 * len(tasks) + 2), 4))
    width = 0.8 / max(1, len(runs))
    for position, name in enumerate(runs):
        values = [(report["runs"][name]["by_task"].get(task) or {}).get("accuracy") for task in tasks]
        axes.bar(np.arange(len(tasks)) + position * width, [v or 0 for v in values], width, label=name)
    axes.set_xticks(np.arange(len(tasks)) + width * (len(runs) - 1) / 2, tasks, rotation=35, ha="right")
    axes.legend(fontsize=8)
    paths.append(_save_accuracy_plot(figure, axes, "Accuracy per task", out / "accuracy_by_task.png"))
    return paths


def _save_accuracy_plot(figure, axes, title: str, path: Path) -> Path:
    """The accuracy axis (0–105 %), the title, and the PNG written; the figure is closed."""
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 105)
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_report(records: list[BenchRecord], out: Path, *, runs: list[str] | None = None, config: dict | None = None) -> dict:
    """Write report.json, report.md and the two plots under ``out``; return the report."""
    report = summarize(records, runs)
    if config is not None:
        report["config"] = config
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    report["plots"] = [str(p) for p in plot(report, out)]
    return report


def write_lmms_eval(
    records: list[BenchRecord], folder: Path, *, model: str, dataset: str, config: dict | None = None,
    wall_s: float | None = None, now: datetime | None = None,
) -> list[Path]:
    """Write the results as lmms-eval's ``--output_path`` holds them, beside lmms-eval's own runs.

    ``{folder}/{model}/{date}_results.json`` (aggregated, one task per run: ``sportlens_{dataset}_{run}``) and
    one ``{date}_samples_{task}.jsonl`` per task, with lmms-eval's keys (``doc_id``, ``target``, ``input``,
    ``resps``, ``filtered_resps``, ``doc_hash``, then the metrics). Metrics are ``accuracy`` (1/0; null when not
    scored, left out of the mean) and, for box questions, ``iou``. Questions that ended in an error have no
    sample: ``n-samples`` tells ``original`` (asked) from ``effective`` (answered).
    """
    date = (now or datetime.now()).strftime("%Y%m%d_%H%M%S")
    model_folder = re.sub(r"[\"<>:/\|\\?\*\[\]]+", "__", "/".join(model.split("/")[-2:]))
    out = folder / model_folder
    out.mkdir(parents=True, exist_ok=True)
    by_run: dict[str, list[BenchRecord]] = defaultdict(list)
    for record in latest(records).values():
        by_run[record.run].append(record)
    results: dict = {key: {} for key in ("results", "group_subtasks", "configs", "versions", "n-shot",
                                         "higher_is_better", "n-samples", "task_hashes")}
    paths = []
    for run, rows in by_run.items():
        task = re.sub(r"\W", "_", f"sportlens_{Path(dataset).stem}_{run}")
        samples = [_lmms_sample(index, record) for index, record in enumerate(r for r in rows if r.result is not None)]
        paths.append(out / f"{date}_samples_{task}.jsonl")
        paths[-1].write_text("".join(json.dumps(sample, ensure_ascii=False) + "\n" for sample in samples))
        metrics = {"alias": task}
        for metric in ("accuracy", "iou"):
            values = [s[metric] for s in samples if s.get(metric) is not None]
            if values:
                metrics[f"{metric},none"] = float(np.mean(values))
                metrics[f"{metric}_stderr,none"] = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else "N/A"
        results["results"][task] = metrics
        results["group_subtasks"][task] = []
        results["configs"][task] = {
            "task": task, "dataset_path": dataset, "output_type": "generate_until",
            "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("accuracy", "iou")],
            "metadata": {"sportlens_run": run, "protocol_version": PROTOCOL_VERSION, "judge": judge_settings()},
        }
        results["versions"][task] = PROTOCOL_VERSION
        results["n-shot"][task] = 0
        results["higher_is_better"][task] = {"accuracy": True, "iou": True}
        results["n-samples"][task] = {"original": len(rows), "effective": len(samples)}
        results["task_hashes"][task] = hashlib.sha256(
            "".join(f"sample_{i}" + s["doc_hash"] for i, s in enumerate(samples)).encode()).hexdigest()
    results |= {
        "config": {"model": "sportlens", "model_args": f"model={model}", "limit": (config or {}).get("limit"),
                   "resolved_cli_args": config or {}},
        "git_hash": None, "date": date, "model_source": "sportlens", "model_name": model,
        "model_name_sanitized": model_folder, "total_evaluation_time_seconds": None if wall_s is None else str(wall_s),
    }
    paths.append(out / f"{date}_results.json")
    paths[-1].write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return paths


def _lmms_sample(index: int, record: BenchRecord) -> dict:
    """One line of a samples file: lmms-eval's keys, the metrics, and sportlens' own figures under "sportlens"."""
    trajectory = record.result.trajectory
    doc = {"id": record.item_id, "question": trajectory.question, "options": trajectory.options,
           "answer": record.reference, "answer_type": record.answer_type, "sport": record.sport, "task": record.task}
    score = record.score
    sample = {
        "doc_id": index,
        "target": record.reference,
        "input": "\n".join([trajectory.question, *(trajectory.options or [])]),
        "resps": [step.raw_output for step in trajectory.steps],
        "filtered_resps": trajectory.answer,
        "token_counts": [{"input_tokens": trajectory.tokens_in, "output_tokens": trajectory.tokens_out}],
        "doc_hash": hashlib.sha256(json.dumps(doc, indent=2, ensure_ascii=False).encode()).hexdigest(),
        "accuracy": None if score is None or score.correct is None else float(score.correct),
    }
    if score is not None and score.iou is not None:
        sample["iou"] = score.iou
    sample["sportlens"] = {"item_id": record.item_id, "method": score.method if score else None,
                           "frames_distinct": trajectory.frames_used, "frames_framethinker": frames_shown(trajectory)}
    return sample
