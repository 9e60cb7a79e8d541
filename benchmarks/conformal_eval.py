"""Evidence for the conformal sets: coverage and set size over many random calibration/test splits.

For each α and each of ``splits`` random halvings of labelled benchmark results, calibrate on one half and
measure, on the other, how often the set holds the label and how large it is. Valid methods (LAC, APS, their
Mondrian versions, sample-based) must cover 1−α on average. COPU (arXiv 2502.12601, withdrawn) is the
baseline that shows why: it inserts the true answer among the sampled candidates during calibration. Its
"oracle" coverage inserts the truth at test time too and looks fine; its real coverage, where the truth is
among the candidates only if the model sampled it, falls short.

    python -m sportlens.benchmarks.conformal_eval OUT/agent.results.jsonl [MORE.jsonl …] --out DIR
"""
from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

from sportlens.agent import conformal
from sportlens.agent.conformal import CalibrationError
from sportlens.agent.records import Result

matplotlib.use("Agg")  # the figures only go to files

ALPHAS = (0.05, 0.1, 0.2)
CLOSED_METHODS = ("lac", "aps", "lac-mondrian", "aps-mondrian")
OPEN_METHODS = ("sample", "copu-oracle", "copu-real")
VALID_METHODS = CLOSED_METHODS + ("sample",)


def copu_score(result: Result) -> float:
    """COPU's calibration score: 1 − the label's share of the candidates once the label is inserted among them."""
    samples = result.trajectory.answer_samples
    label = conformal.normalise_answer(result.label or "")
    hits = sum(1 for sample in samples if conformal.normalise_answer(sample) == label)
    return 1 - (hits + 1) / (len(samples) + 1)


def covered(result: Result, method: str, quantile: float) -> tuple[bool, int]:
    """Whether the set at ``quantile`` holds the label, and the set's size."""
    label = result.label or ""
    if method == "copu-oracle":  # the truth inserted at test time as well: impossible in deployment
        answers = set(conformal.prediction_set(result, quantile, "sample"))
        if copu_score(result) <= quantile:
            answers.add(conformal.normalise_answer(label))
        return conformal.normalise_answer(label) in answers, len(answers)
    base = {"copu-real": "sample", "lac-mondrian": "lac", "aps-mondrian": "aps"}.get(method, method)
    answers = conformal.prediction_set(result, quantile, base)
    target = conformal.normalise_answer(label) if base == "sample" else label
    return target in answers, len(answers)


def _quantiles(calibration: Sequence[Result], method: str, alpha: float):
    """A function from a test result to (its q̂, whether its own Mondrian group gave it), or None when this split
    cannot be calibrated at this α."""
    if method.startswith("copu"):
        quantile = conformal.conformal_quantile([copu_score(r) for r in calibration], alpha)
        return None if math.isinf(quantile) else (lambda result: (quantile, False))
    base, by = (method.split("-")[0], ("sport", "task")) if method.endswith("mondrian") else (method, ())
    try:
        artifact = conformal.calibrate(calibration, alpha=alpha, method=base, by=by)
    except CalibrationError:
        return None

    def quantile_of(result: Result) -> tuple[float, bool]:
        quantile, group = artifact.quantile_for(result)
        return quantile, group != conformal.POOLED

    return quantile_of


def evaluate(results: Sequence[Result], *, alphas: Sequence[float] = ALPHAS, splits: int = 100, seed: int = 0) -> list[dict]:
    """One row per (method, α): mean coverage, mean set size, and in how many splits the method could run."""
    closed = [r for r in results if r.label is not None and r.trajectory.option_logprobs]
    open_ = [r for r in results if r.label is not None and r.trajectory.answer_samples and not r.trajectory.options]
    rows = []
    for pool, methods in ((closed, CLOSED_METHODS), (open_, OPEN_METHODS)):
        if len(pool) < 4:
            continue
        for alpha in alphas:
            rng = random.Random(seed)
            tallies = {method: ([], [], []) for method in methods}
            reachable = []
            for _ in range(splits):
                shuffled = rng.sample(pool, len(pool))
                calibration, test = shuffled[: len(pool) // 2], shuffled[len(pool) // 2 :]
                if "sample" in methods:
                    reachable.append(conformal.smallest_reachable_alpha(
                        [conformal.calibration_score(result, "sample") for result in calibration]))
                for method in methods:
                    quantile_of = _quantiles(calibration, method, alpha)
                    if quantile_of is None:
                        continue
                    quantiles = [quantile_of(result) for result in test]
                    outcomes = [covered(result, method, q) for result, (q, _) in zip(test, quantiles)]
                    tallies[method][0].append(sum(hit for hit, _ in outcomes) / len(outcomes))
                    tallies[method][1].append(sum(size for _, size in outcomes) / len(outcomes))
                    tallies[method][2].append(sum(own for _, own in quantiles) / len(quantiles))
            for method, (coverages, sizes, own_group) in tallies.items():
                rows.append({
                    "method": method,
                    "alpha": alpha,
                    "target": 1 - alpha,
                    "n": len(pool),
                    "splits_run": len(coverages),
                    "coverage": sum(coverages) / len(coverages) if coverages else None,
                    "set_size": sum(sizes) / len(sizes) if sizes else None,
                    "valid": method in VALID_METHODS,
                    # Mondrian: the share of test questions served their own group's q̂ (the rest got the pooled one)
                    "own_group_share": sum(own_group) / len(own_group) if own_group and "mondrian" in method else None,
                    "smallest_reachable_alpha": sum(reachable) / len(reachable) if method == "sample" else None,
                })
    return rows


def markdown_table(rows: Sequence[dict]) -> str:
    lines = [
        "| method | α | target | coverage | mean set size | splits run | n | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        coverage = "unreachable" if row["coverage"] is None else f"{row['coverage']:.3f}"
        size = "—" if row["set_size"] is None else f"{row['set_size']:.2f}"
        notes = []
        if row.get("own_group_share") is not None:
            notes.append(f"own group q̂ for {100 * row['own_group_share']:.0f}% (pooled for the rest)")
        if row.get("smallest_reachable_alpha") is not None:
            notes.append(f"smallest reachable α ≈ {row['smallest_reachable_alpha']:.3f}")
        lines.append(
            f"| {row['method']} | {row['alpha']} | {row['target']:.2f} | {coverage} | {size} | {row['splits_run']} "
            f"| {row['n']} | {'; '.join(notes)} |"
        )
    return "\n".join(lines)


def plot(rows: Sequence[dict], path: Path) -> None:
    """Calibration plot: empirical coverage against the 1−α target, one line per method."""
    figure, axis = plt.subplots(figsize=(6, 5))
    axis.plot([0.75, 1.0], [0.75, 1.0], color="grey", linestyle="--", label="coverage = 1−α")
    for method in dict.fromkeys(row["method"] for row in rows):
        points = [(row["target"], row["coverage"]) for row in rows if row["method"] == method and row["coverage"] is not None]
        if points:
            axis.plot(*zip(*points), marker="o", label=method)
    axis.set_xlabel("target coverage 1−α")
    axis.set_ylabel("mean empirical coverage over splits")
    axis.set_title("Conformal coverage on held-out halves")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def read_results(path: Path) -> list[Result]:
    results = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                results.append(Result.model_validate_json(line))
            except ValueError as error:
                raise SystemExit(f"{path}:{number}: not a Result record: {error}") from error
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="agent.results.jsonl files of `sportlens bench`")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--splits", type=int, default=100)
    args = parser.parse_args(argv)
    rows = evaluate([result for path in args.results for result in read_results(path)], splits=args.splits)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "conformal.json").write_text(json.dumps(rows, indent=2))
    table = markdown_table(rows)
    (args.out / "conformal.md").write_text(table + "\n")
    plot(rows, args.out / "conformal.png")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
