"""The evidence table of a training run, in DeepSport's shape, and the verdict on what the run had to show.

One row per model (or per model answering without its tool); columns: accuracy per dimension, overall, on event
questions and per event type, average frames used, tool-call rate, format-error rate. Written as JSON, Markdown and
one PNG. The verdict says whether a trained agent beats the untrained model and the no-tool baseline of its own
weights on event questions while using fewer frames on average than that baseline shows.

Rows are read from ``benchmarks.runner`` results files and compared on the questions every row answered (a run cut
short by its deadline answers fewer), so each column counts the same questions. The numbers are
``benchmarks.report.summarize``'s; this module adds the grouping by event type, the frames of event questions and
the verdict, with an exact sign test on the questions the two compared rows answered differently.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from sportlens.benchmarks.report import accuracy, summarize
from sportlens.benchmarks.runner import RESULTS_FILE, BenchRecord, latest, read_records

matplotlib.use("Agg")  # the figures only go to files


@dataclass(frozen=True)
class Row:
    """One row of the table: the run ``run`` of the results in ``folder``, named ``label``."""

    key: str
    label: str
    folder: Path
    run: str = "agent"


@dataclass(frozen=True)
class Comparison:
    """The criterion for one trained agent: the rows it must beat on event questions, and its frame budget."""

    agent: str
    untrained: str
    no_tool: str
    max_frames: float = 16


def answered(row: Row) -> dict[str, BenchRecord]:
    """The latest record of every question ``row`` answered, by item id (questions that ended in an error are left out)."""
    records = latest(read_records(row.folder / RESULTS_FILE))
    return {item: r for (run, item), r in records.items() if run == row.run and r.result is not None}


def build(rows: list[Row], *, event_type: Callable[[BenchRecord], str], comparisons: list[Comparison],
          dimensions: list[str] = (), event_types: list[str] = ()) -> dict:
    """The table's numbers on the questions every row answered, and one verdict per comparison.

    ``dimensions`` and ``event_types`` are the columns in their order (others found are added after them).
    """
    by_row = {row.key: answered(row) for row in rows}
    order = sorted(set.intersection(*(set(records) for records in by_row.values()))) if by_row else []
    relabelled = [by_row[row.key][item].model_copy(update={"run": row.key}) for row in rows for item in order]
    summary = summarize(relabelled, [row.key for row in rows])["runs"]
    found = [by_row[rows[0].key][item] for item in order] if rows else []
    kinds = list(event_types) + sorted({event_type(r) for r in found} - set(event_types))
    table: dict = {
        "questions": len(order), "event_questions": sum(1 for r in found if r.event),
        "dimensions": list(dimensions) + sorted({r.dimension for r in found if r.dimension} - set(dimensions)),
        "event_types": kinds, "rows": {}, "verdicts": [],
    }
    for row in rows:
        records = [by_row[row.key][item] for item in order]
        events = [r for r in records if r.event]
        numbers = summary.get(row.key, {})
        table["rows"][row.key] = {
            "label": row.label,
            "accuracy": numbers.get("overall"),
            "event_accuracy": numbers.get("event_questions"),
            "other_accuracy": numbers.get("other_questions"),
            "by_dimension": {d: accuracy([r for r in records if r.dimension == d]) for d in table["dimensions"]},
            "by_event_type": {kind: accuracy([r for r in records if event_type(r) == kind]) for kind in kinds},
            "avg_frames_used": numbers.get("avg_frames_used"),
            "avg_frames_event": _mean([r.result.trajectory.frames_used for r in events]),
            "tool_call_rate": numbers.get("tool_call_rate"),
            "format_error_rate": numbers.get("format_error_rate"),
            "no_answer_rate": numbers.get("no_answer_rate"),
            "tokens_out_mean": (numbers.get("tokens") or {}).get("out_mean"),
        }
    for comparison in comparisons:
        if {comparison.agent, comparison.untrained, comparison.no_tool} <= set(by_row):
            table["verdicts"].append(_verdict(table, by_row, order, comparison))
    return table


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def _verdict(table: dict, by_row: dict[str, dict[str, BenchRecord]], order: list[str], c: Comparison) -> dict:
    rows = table["rows"]
    event_ids = [item for item in order if by_row[c.agent][item].event]

    def right(key: str, item: str) -> bool:
        return bool(by_row[key][item].score and by_row[key][item].score.correct)

    agent_only = sum(1 for i in event_ids if right(c.agent, i) and not right(c.no_tool, i))
    baseline_only = sum(1 for i in event_ids if right(c.no_tool, i) and not right(c.agent, i))
    accuracy_of = {key: (rows[key]["event_accuracy"] or {}).get("accuracy") for key in (c.agent, c.untrained, c.no_tool)}
    frames = rows[c.agent]["avg_frames_event"]
    beats = {key: accuracy_of[c.agent] is not None and accuracy_of[key] is not None
             and accuracy_of[c.agent] > accuracy_of[key] for key in (c.untrained, c.no_tool)}
    fewer = frames is not None and frames < c.max_frames
    return {
        "agent": c.agent, "untrained": c.untrained, "no_tool": c.no_tool,
        "event_questions": len(event_ids),
        "event_accuracy": accuracy_of,
        "avg_frames_event": frames,
        "max_frames": c.max_frames,
        "beats_untrained": beats[c.untrained],
        "beats_no_tool": beats[c.no_tool],
        "fewer_frames": fewer,
        "met": beats[c.untrained] and beats[c.no_tool] and fewer,
        "paired_with_no_tool": {"agent_only_right": agent_only, "no_tool_only_right": baseline_only,
                                "sign_test_p": float(f"{sign_test_p(agent_only, baseline_only):.3g}")}  # 3 figures: never "0",
    }


def sign_test_p(b: int, c: int) -> float:
    """Two-sided exact sign (McNemar) test: the chance of a split at least as uneven as b:c if both were equally good.

    >>> round(sign_test_p(9, 1), 4)
    0.0215
    """
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _cell(numbers: dict | None) -> str:
    if not numbers or numbers.get("accuracy") is None:
        return "–"
    return f"{numbers['accuracy']:.1f} ({numbers['scored']})"


def _number(value) -> str:
    return "–" if value is None else f"{value:g}"


def markdown(table: dict, title: str) -> str:
    """The table as Markdown: DeepSport's per-dimension table, accuracy per event type, then the verdicts."""
    rows, dimensions, kinds = table["rows"], table["dimensions"], table["event_types"]
    text = (f"# {title}\n\n{table['questions']} questions ({table['event_questions']} event questions) answered by "
            "every row; accuracy in % of the scored answers, how many scored in brackets.\n\n")
    head = ["model", *dimensions, "overall", "event questions", "avg frames", "avg frames (event q.)",
            "tool-call rate", "format-error rate"]
    text += "## Accuracy per dimension\n\n| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n"
    for row in rows.values():
        cells = [row["label"], *(_cell(row["by_dimension"].get(d)) for d in dimensions), _cell(row["accuracy"]),
                 _cell(row["event_accuracy"]), _number(row["avg_frames_used"]), _number(row["avg_frames_event"]),
                 _number(row["tool_call_rate"]), _number(row["format_error_rate"])]
        text += "| " + " | ".join(cells) + " |\n"
    text += "\n## Accuracy per event type\n\n| model | " + " | ".join(kinds) + " |\n|" + "---|" * (len(kinds) + 1) + "\n"
    for row in rows.values():
        text += f"| {row['label']} | " + " | ".join(_cell(row["by_event_type"].get(k)) for k in kinds) + " |\n"
    text += "\n## Verdict\n\n"
    for verdict in table["verdicts"]:
        text += verdict_sentence(table, verdict) + "\n\n"
    return text


def verdict_sentence(table: dict, verdict: dict) -> str:
    """One paragraph: met or not, and the numbers it rests on."""
    rows = table["rows"]
    name = {key: rows[key]["label"] for key in (verdict["agent"], verdict["untrained"], verdict["no_tool"])}
    acc = verdict["event_accuracy"]
    paired = verdict["paired_with_no_tool"]
    misses = [what for what, ok in (("does not beat the untrained model", verdict["beats_untrained"]),
                                    ("does not beat the no-tool baseline", verdict["beats_no_tool"]),
                                    (f"uses {_number(verdict['avg_frames_event'])} frames, not fewer than "
                                     f"{verdict['max_frames']:g}", verdict["fewer_frames"])) if not ok]
    return (f"**{name[verdict['agent']]}: criterion {'met' if verdict['met'] else 'not met'}**"
            + (f" ({'; '.join(misses)})" if misses else "") + ". "
            f"On {verdict['event_questions']} event questions it scores {_number(acc[verdict['agent']])}% against "
            f"{_number(acc[verdict['untrained']])}% for {name[verdict['untrained']]} and "
            f"{_number(acc[verdict['no_tool']])}% for {name[verdict['no_tool']]}, with "
            f"{_number(verdict['avg_frames_event'])} frames on average. Paired with the no-tool baseline: "
            f"{paired['agent_only_right']} questions only the agent got right, {paired['no_tool_only_right']} only the "
            f"baseline; exact sign test p = {paired['sign_test_p']:g}.")


def plot(table: dict, path: Path) -> Path:
    """Two panels: accuracy on event questions per row (average frames above each bar), accuracy per event type."""
    rows, kinds = list(table["rows"].values()), table["event_types"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    values = [(row["event_accuracy"] or {}).get("accuracy") or 0 for row in rows]
    bars = left.bar(range(len(rows)), values, color=[f"C{i}" for i in range(len(rows))])
    for bar, row in zip(bars, rows):
        left.annotate(f"{_number(row['avg_frames_event'])} fr.", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom", fontsize=8)
    left.set_xticks(range(len(rows)), [row["label"] for row in rows], rotation=25, ha="right", fontsize=8)
    left.set_ylabel("accuracy on event questions (%)")
    left.set_ylim(0, 105)
    left.set_title(f"Event questions (n={table['event_questions']}); frames used above bars", fontsize=10)
    width = 0.8 / max(1, len(rows))
    for position, row in enumerate(rows):
        heights = [(row["by_event_type"].get(k) or {}).get("accuracy") or 0 for k in kinds]
        right.bar(np.arange(len(kinds)) + position * width, heights, width, label=row["label"], color=f"C{position}")
    right.set_xticks(np.arange(len(kinds)) + width * (len(rows) - 1) / 2, kinds)
    right.set_ylabel("accuracy (%)")
    right.set_ylim(0, 105)
    right.set_title("Accuracy per event type", fontsize=10)
    right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write(table: dict, out: Path, *, title: str, appendix: str = "") -> list[Path]:
    """evidence.json, evidence.md (with ``appendix`` after the verdicts) and evidence.png under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "evidence.json", out / "evidence.md", out / "evidence.png"]
    paths[0].write_text(json.dumps(table, indent=2) + "\n")
    paths[1].write_text(markdown(table, title) + appendix)
    plot(table, paths[2])
    return paths


def main(argv: list[str] | None = None) -> int:
    """The table for results written by `sportlens bench` runs, each row one run of one folder."""
    parser = argparse.ArgumentParser(prog="python -m sportlens.benchmarks.evidence", description=main.__doc__)
    parser.add_argument("--row", action="append", required=True, metavar="KEY=LABEL=FOLDER[=RUN]",
                        help="a row: the run RUN (default: agent) of the bench results in FOLDER")
    parser.add_argument("--compare", action="append", default=[], metavar="AGENT,UNTRAINED,NO_TOOL[,MAX_FRAMES]",
                        help="a verdict: the agent row against the untrained and the no-tool rows")
    parser.add_argument("--title", default="Evidence")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rows, comparisons = [], []
    for spec in args.row:
        parts = spec.split("=")
        if len(parts) not in (3, 4) or not (Path(parts[2]) / RESULTS_FILE).is_file():
            print(f"evidence: error: --row {spec!r} is not KEY=LABEL=FOLDER[=RUN] with bench results in FOLDER",
                  file=sys.stderr)
            return 2
        rows.append(Row(parts[0], parts[1], Path(parts[2]), parts[3] if len(parts) == 4 else "agent"))
    for spec in args.compare:
        parts = spec.split(",")
        if len(parts) not in (3, 4) or not set(parts[:3]) <= {row.key for row in rows}:
            print(f"evidence: error: --compare {spec!r} is not AGENT,UNTRAINED,NO_TOOL[,MAX_FRAMES] of row keys",
                  file=sys.stderr)
            return 2
        comparisons.append(Comparison(*parts[:3], max_frames=float(parts[3]) if len(parts) == 4 else 16))
    table = build(rows, event_type=lambda record: record.task or "other", comparisons=comparisons)
    for path in write(table, args.out, title=args.title):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
