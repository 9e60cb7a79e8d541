"""Conformal sets: the quantile, the scores, Mondrian groups, the artifact, and agreement with crepes."""
import math

import numpy as np
import pytest
from crepes import ConformalClassifier

from sportlens.agent import conformal
from sportlens.agent.conformal import CalibrationArtifact, CalibrationError, apply_calibration, calibrate

from builders import LETTERS, make_result, synthetic


def test_quantile_is_the_finite_sample_rank():
    scores = [0.1 * i for i in range(1, 10)]  # n = 9
    assert conformal.conformal_quantile(scores, 0.1) == pytest.approx(0.9)  # rank ⌈10·0.9⌉ = 9
    assert conformal.conformal_quantile(scores, 0.5) == pytest.approx(0.5)  # rank ⌈10·0.5⌉ = 5
    assert math.isinf(conformal.conformal_quantile(scores[:8], 0.1))  # rank 9 > n = 8
    assert conformal.min_points(0.1) == 9 and conformal.min_points(0.05) == 19


def test_scores_follow_their_definitions():
    result = make_result([0.5, 0.3, 0.15, 0.05])
    assert conformal.option_scores(result, "lac") == pytest.approx({"A": 0.5, "B": 0.7, "C": 0.85, "D": 0.95})
    u = conformal.tie_breaker(result)
    assert 0 <= u < 1 and u == conformal.tie_breaker(make_result([0.1, 0.2, 0.3, 0.4]))  # same question, same u
    assert u != conformal.tie_breaker(make_result([0.5, 0.3, 0.15, 0.05], index=1))
    expected = {"A": u * 0.5, "B": 0.5 + u * 0.3, "C": 0.8 + u * 0.15, "D": 0.95 + u * 0.05}
    assert conformal.option_scores(result, "aps") == pytest.approx(expected)
    assert conformal.softmax({"A": math.log(2), "B": 0.0}) == pytest.approx({"A": 2 / 3, "B": 1 / 3})


@pytest.mark.parametrize("method", ["lac", "aps"])
@pytest.mark.parametrize("mondrian", [False, True])
def test_sets_equal_those_of_crepes(method, mondrian):
    probabilities, labels = synthetic(900, seed=3)
    sports = ["soccer", "tennis", "basketball"]
    results = [make_result(p, l, sport=sports[i % 3], index=i) for i, (p, l) in enumerate(zip(probabilities, labels))]
    calibration, test = results[:500], results[500:]  # (n+1)·α is not an integer, where the two rank rules agree
    alpha = 0.1
    artifact = calibrate(calibration, alpha=alpha, method=method, by=("sport",) if mondrian else ())

    cal_alphas = np.array([conformal.option_scores(r, method)[r.label] for r in calibration])
    test_alphas = np.array([[conformal.option_scores(r, method)[l] for l in LETTERS] for r in test])
    reference = ConformalClassifier()
    if mondrian:
        reference.fit(cal_alphas, bins=np.array([r.sport for r in calibration]))
        crepes_sets = reference.predict_set(test_alphas, bins=np.array([r.sport for r in test]),
                                            confidence=1 - alpha, smoothing=False)
    else:
        reference.fit(cal_alphas)
        crepes_sets = reference.predict_set(test_alphas, confidence=1 - alpha, smoothing=False)
    ours = [apply_calibration(r, artifact).prediction_set for r in test]
    theirs = [[LETTERS[j] for j in np.flatnonzero(row)] for row in crepes_sets]
    assert ours == theirs
    if mondrian:
        assert set(artifact.quantiles) == {"soccer", "tennis", "basketball"}


@pytest.mark.parametrize("method", ["lac", "aps"])
@pytest.mark.parametrize("calibrated", [True, False])
def test_coverage_holds_over_random_splits(method, calibrated):
    probabilities, labels = synthetic(600, seed=11, calibrated=calibrated)
    results = [make_result(p, l, index=i) for i, (p, l) in enumerate(zip(probabilities, labels))]
    rng = np.random.default_rng(0)
    for alpha in (0.1, 0.2):
        coverages = []
        for _ in range(100):
            order = rng.permutation(len(results))
            calibration = [results[i] for i in order[:300]]
            test = [results[i] for i in order[300:]]
            artifact = calibrate(calibration, alpha=alpha, method=method, by=())
            coverages.append(np.mean([r.label in apply_calibration(r, artifact).prediction_set for r in test]))
        assert abs(np.mean(coverages) - (1 - alpha)) <= 0.02, (alpha, np.mean(coverages))


def test_small_groups_fall_back_to_the_pooled_quantile():
    probabilities, labels = synthetic(120, seed=5)
    results = [make_result(p, l, sport="soccer" if i < 115 else "tennis", index=i)
               for i, (p, l) in enumerate(zip(probabilities, labels))]
    artifact = calibrate(results, alpha=0.1, method="lac", by=("sport", "task"))
    assert set(artifact.quantiles) == {"soccer|foul"} and artifact.counts == {"soccer|foul": 115, "tennis|foul": 5}
    soccer = apply_calibration(results[0], artifact)
    tennis = apply_calibration(results[-1], artifact)
    assert soccer.calibration_group == "soccer|foul" and tennis.calibration_group == "pooled"
    assert tennis.coverage_target == pytest.approx(0.9) and tennis.set_size == len(tennis.prediction_set)


def test_a_group_under_the_minimum_is_served_the_pooled_quantile():
    # 30 points give a finite q̂ at α = 0.2, but a group that small over-covers by up to 1/31: it gets the pool.
    probabilities, labels = synthetic(150, seed=9)
    results = [make_result(p, l, sport="soccer" if i < 120 else "tennis", index=i)
               for i, (p, l) in enumerate(zip(probabilities, labels))]
    artifact = calibrate(results, alpha=0.2, method="lac", by=("sport",))
    assert artifact.min_group_points == conformal.MIN_GROUP_POINTS == 50
    assert set(artifact.quantiles) == {"soccer"} and artifact.counts["tennis"] == 30
    assert apply_calibration(results[-1], artifact).calibration_group == "pooled"
    smaller = calibrate(results, alpha=0.2, method="lac", by=("sport",), min_group_points=30)
    assert set(smaller.quantiles) == {"soccer", "tennis"}
    assert set(smaller.at_alpha(0.3).quantiles) == {"soccer", "tennis"}  # another α keeps the same rule
    with pytest.raises(CalibrationError, match="at least 1 point"):
        calibrate(results, alpha=0.2, method="lac", min_group_points=0)


def test_selective_answers_abstain_on_sets_of_several_answers():
    results = [make_result([0.97, 0.01, 0.01, 0.01], "A", index=i) for i in range(30)]
    results += [make_result([0.3, 0.3, 0.2, 0.2], "B", index=30 + i) for i in range(3)]
    artifact = calibrate(results, alpha=0.05, method="lac", by=())  # q̂ = 0.7, the 33rd smallest of 33
    sure = apply_calibration(make_result([0.98, 0.01, 0.005, 0.005], "A"), artifact, selective=True)
    unsure = apply_calibration(make_result([0.4, 0.35, 0.15, 0.1], "A"), artifact, selective=True)
    assert sure.prediction_set == ["A"] and not sure.abstain
    assert unsure.set_size > 1 and unsure.abstain
    assert not apply_calibration(make_result([0.4, 0.35, 0.15, 0.1], "A"), artifact).abstain


def test_sample_method_scores_and_reachable_alpha():
    results = [make_result(label="red team", samples=["Red team.", "red team", "blue"], index=i) for i in range(15)]
    results += [make_result(label="red", samples=["blue", "blue"], index=15 + i) for i in range(4)]  # never right
    scores = [conformal.calibration_score(r, "sample") for r in results]
    assert scores[0] == pytest.approx(1 / 3) and math.isinf(scores[-1])
    artifact = calibrate(results, alpha=0.3, method="sample", by=())
    assert artifact.infinite_scores == 4 and artifact.smallest_reachable_alpha == pytest.approx(5 / 20)
    assert apply_calibration(results[0], artifact).prediction_set == ["red team"]
    with pytest.raises(CalibrationError, match="α ≥ 0.250"):
        calibrate(results, alpha=0.2, method="sample", by=())


def test_artifact_round_trips_and_refuses_another_model(tmp_path):
    probabilities, labels = synthetic(50, seed=2)
    results = [make_result(p, l, index=i) for i, (p, l) in enumerate(zip(probabilities, labels))]
    artifact = calibrate(results, alpha=0.1, method="aps", model_sha256="abc")
    artifact.save(tmp_path / "calib.json")
    loaded = CalibrationArtifact.load(tmp_path / "calib.json")
    assert loaded == artifact and loaded.data_sha256 == conformal.results_sha256(results)
    with pytest.raises(CalibrationError, match="made for model 'm1'"):
        apply_calibration(make_result(probabilities[0], model="m2"), loaded)
    with pytest.raises(CalibrationError, match="not 'm1'"):
        loaded.check_model("m1", "def")


@pytest.mark.parametrize(
    ("make", "alpha", "method", "words"),
    [
        (lambda: [make_result([0.7, 0.1, 0.1, 0.1], "A")] * 20, 0.0, "lac", "strictly between 0 and 1"),
        (lambda: [make_result([0.7, 0.1, 0.1, 0.1], "A")] * 20, 1.0, "lac", "strictly between 0 and 1"),
        (lambda: [], 0.1, "lac", "empty"),
        (lambda: [make_result([0.7, 0.1, 0.1, 0.1], "A")] * 5, 0.1, "lac", "at least 9 points"),
        (lambda: [make_result(None, "A")] * 20, 0.1, "aps", "no option scores"),
        (lambda: [make_result([0.7, 0.1, 0.1, 0.1], None)] * 20, 0.1, "lac", "no label"),
        (lambda: [make_result([0.7, 0.1, 0.1, 0.1], "A")] * 20, 0.1, "sample", "no answer samples"),
        (lambda: [make_result([0.7, 0.1, 0.1, 0.1], "A", model=f"m{i % 2}") for i in range(20)], 0.1, "lac", "several models"),
        (lambda: [make_result([0.7, 0.1, 0.1, 0.1], "Z")] * 20, 0.1, "lac", "not one of its options"),
    ],
)
def test_bad_calibration_input_names_the_cause(make, alpha, method, words):
    with pytest.raises(CalibrationError, match=words):
        calibrate(make(), alpha=alpha, method=method)


def test_loading_a_file_that_is_not_an_artifact_is_a_clear_error(tmp_path):
    (tmp_path / "x.json").write_text('{"method": "lac"}')
    with pytest.raises(CalibrationError, match="not a calibration artifact"):
        CalibrationArtifact.load(tmp_path / "x.json")
    with pytest.raises(CalibrationError, match="no calibration artifact"):
        CalibrationArtifact.load(tmp_path / "none.json")


def test_another_alpha_is_served_from_the_kept_scores():
    probabilities, labels = synthetic(300, seed=4)
    sports = ["soccer", "tennis"]
    results = [make_result(p, l, sport=sports[i % 2], index=i) for i, (p, l) in enumerate(zip(probabilities, labels))]
    at_10 = calibrate(results, alpha=0.1, method="lac")
    direct = calibrate(results, alpha=0.2, method="lac")
    assert at_10.at_alpha(0.2) == direct and at_10.at_alpha(0.1) is at_10
    with pytest.raises(CalibrationError, match="too few for α = 0.001"):
        at_10.at_alpha(0.001)
    with pytest.raises(CalibrationError, match="strictly between"):
        at_10.at_alpha(1.0)
