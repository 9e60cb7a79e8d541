"""Every `sportlens` command shares its cores: torch's OpenMP threads sleep instead of spinning."""
from __future__ import annotations

import os

from sportlens.cli import share_cores


def test_openmp_threads_wait_passively_unless_the_operator_says_otherwise(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    share_cores()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    share_cores()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
