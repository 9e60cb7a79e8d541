"""The conformal evidence: valid methods cover 1−α over random splits; COPU's real coverage falls short."""
import random

import numpy as np
import pytest

from sportlens.benchmarks import conformal_eval

from builders import LETTERS, make_result, synthetic


def open_results(n, seed):
    """Open questions where the model samples the right answer for only 60% of them, sometimes once in five."""
    rng = random.Random(seed)
    results = []
    for i in range(n):
        if rng.random() < 0.6:
            samples = ["red team"] * rng.randint(1, 5) + ["blue team"] * rng.randint(0, 4)
        else:
            samples = ["blue team"] * 3 + ["nobody"] * 2
        results.append(make_result(label="The red team", samples=samples, index=1000 + i))
    return results


@pytest.fixture(scope="module")
def rows():
    probabilities, labels = synthetic(400, seed=7)
    sports = ["soccer", "basketball"]
    closed = [make_result(p, l, sport=sports[i % 2], index=i) for i, (p, l) in enumerate(zip(probabilities, labels))]
    return conformal_eval.evaluate(closed + open_results(300, seed=1), alphas=(0.1, 0.2, 0.5), splits=60)


def row(rows, method, alpha):
    return next(r for r in rows if r["method"] == method and r["alpha"] == alpha)


@pytest.mark.parametrize("method", ["lac", "aps", "lac-mondrian", "aps-mondrian"])
@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_valid_closed_methods_cover_one_minus_alpha(rows, method, alpha):
    result = row(rows, method, alpha)
    assert result["splits_run"] == 60 and abs(result["coverage"] - (1 - alpha)) <= 0.02, result
    assert 0 < result["set_size"] <= len(LETTERS)
    if method.endswith("mondrian"):  # 100 calibration points per sport: every test question gets its own group's q̂
        assert result["own_group_share"] == 1.0


def test_sample_method_is_unreachable_below_its_floor_and_valid_above(rows):
    # 40% of questions never sample the truth: α must exceed ≈0.4 for a finite q̂.
    assert row(rows, "sample", 0.1)["coverage"] is None and row(rows, "sample", 0.2)["coverage"] is None
    sample = row(rows, "sample", 0.5)
    assert sample["coverage"] >= 0.5 - 0.02
    assert 0.35 < sample["smallest_reachable_alpha"] < 0.45  # (n_∞+1)/(n+1) with n_∞ ≈ 40% of 150


def test_copu_looks_valid_with_the_truth_inserted_and_is_not(rows):
    for alpha in (0.1, 0.2):
        oracle, real = row(rows, "copu-oracle", alpha), row(rows, "copu-real", alpha)
        assert oracle["coverage"] >= 1 - alpha - 0.02
        assert real["coverage"] < 1 - alpha - 0.2  # the truth is missing from 40% of the candidate sets
        assert not real["valid"]


def test_report_files(rows, tmp_path):
    table = conformal_eval.markdown_table(rows)
    assert "| copu-real | 0.1 |" in table and "smallest reachable α ≈ 0.4" in table and "own group q̂ for 100%" in table
    conformal_eval.plot(rows, tmp_path / "conformal.png")
    assert (tmp_path / "conformal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
