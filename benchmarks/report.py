"""The benchmark report: per-run accuracy by task, level, sport and dimension, cost figures, JSON + Markdown + plots.

Accuracy counts only scored answers: an open answer with no judge (``unjudged``) or whose judge failed
(``judge_error``) and a question that ended in an error are counted apart and reported, never scored 0.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from sportlens.benchmarks.judge import JUDGE_VERSION
from sportlens.benchmarks.runner import BenchRecord, latest

GROUPS = ("task", "level", "sport", "dimension", "split")


def accuracy(records: list[BenchRecord]) -> dict:
    """Accuracy in % of the scored answers among ``records``, with how many were scored and how many asked."""
    scored = [r for r in records if r.score is not None and r.score.correct is not None]
    hits = sum(1 for r in scored if r.score.correct)
    return {"accuracy": round(100 * hits / len(scored), 2) if scored else None, "scored": len(scored), "n": len(records)}


def summarize(records: list[BenchRecord], runs: list[str] | None = None) -> dict:
    """The report's numbers, per run (in ``runs`` order, else first seen), from the latest record per question."""
    by_run: dict[str, list[BenchRecord]] = defaultdict(list)
    for record in latest(records).values():
        by_run[record.run].append(record)
    order = [r for r in (runs or []) if r in by_run] + [r for r in by_run if r not in (runs or [])]
    report: dict = {"judge_version": JUDGE_VERSION, "runs": {}}
    for name in order:
        rows = by_run[name]
        done = [r for r in rows if r.result is not None]
        trajectories = [r.result.trajectory for r in done]
        latencies = np.array([t.latency_s for t in trajectories]) if trajectories else np.array([0.0])
        ious = [r.score.iou for r in done if r.score is not None and r.score.iou is not None]
        methods = defaultdict(int)
        for r in done:
            methods[r.score.method] += 1
        run: dict = {
            "overall": accuracy(rows),
            "event_questions": accuracy([r for r in rows if r.event]),
            "other_questions": accuracy([r for r in rows if not r.event]),
            "mean_iou_x100": round(100 * float(np.mean(ious)), 2) if ious else None,
            "avg_frames_used": round(float(np.mean([t.frames_used for t in trajectories])), 2) if trajectories else None,
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

    text = f"# {title}\n\nAccuracy in % of scored answers (n scored in brackets); judge rubric {report['judge_version']}.\n\n"
    text += "## Summary\n\n" + head
    for label, path in (
        ("accuracy, all", ("overall", "accuracy")),
        ("accuracy, event questions", ("event_questions", "accuracy")),
        ("accuracy, other questions", ("other_questions", "accuracy")),
        ("mean IoU ×100 (boxes)", ("mean_iou_x100",)),
        ("avg frames used", ("avg_frames_used",)),
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
            for name in runs:
                cell = report["runs"][name][f"by_{group}"].get(key)
                cells.append(None if cell is None or cell["accuracy"] is None else f"{cell['accuracy']:g} ({cell['scored']})")
            text += row(key, cells)
    return text


def plot(report: dict, out: Path) -> list[Path]:
    """accuracy_vs_frames.png (one point per run) and accuracy_by_task.png (bars per task, a colour per run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    import matplotlib.pyplot as plt

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
