"""A small SportSim dataset, written once per session: short, slow clips keep the suite quick on 2 cores."""
from __future__ import annotations

from pathlib import Path

import pytest

from sportlens.benchmarks.sportsim import SimSettings, generate

SMALL = SimSettings(seconds=20, fps=6)  # 120 frames a clip; an event lasts 9 frames


@pytest.fixture(scope="session")
def sim_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """qa.jsonl of 10 clips (all three sports, splits 60/20/20), seed 3."""
    return generate(tmp_path_factory.mktemp("sportsim"), n=10, seed=3, settings=SMALL, workers=2)
