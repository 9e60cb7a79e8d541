"""Report figures that need no run: Fleiss' kappa of judges' yes/no votes."""
import pytest

from sportlens.benchmarks.report import fleiss_kappa


def test_fleiss_kappa_by_hand():
    # 3 judges, 4 answers: agreement per answer 1, 1/3, 1, 1/3 (mean 2/3); half the votes yes, so chance is 1/2.
    votes = [[True, True, True], [True, True, False], [False, False, False], [True, False, False]]
    assert fleiss_kappa(votes) == pytest.approx((2 / 3 - 1 / 2) / (1 - 1 / 2), abs=1e-4)
    assert fleiss_kappa([[True, False], [False, True]]) == -1.0  # always split: worse than chance


def test_fleiss_kappa_is_undefined_when_every_vote_is_the_same():
    assert fleiss_kappa([[True, True, True], [True, True, True]]) is None
