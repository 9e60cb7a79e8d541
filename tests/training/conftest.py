"""Training fixtures: a few short SportSim clips and the oracle's distilled conversations about them."""
from __future__ import annotations

from pathlib import Path

import pytest

from sportlens.benchmarks.sportsim import SimSettings, generate

SMALL = SimSettings(seconds=24, fps=6, size=(320, 180))  # 144 frames a clip: 8 uniform frames miss many events; small frames keep steps fast


@pytest.fixture(scope="session")
def sim_qa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """qa.jsonl of 3 clips (one per sport), seed 3."""
    return generate(tmp_path_factory.mktemp("sportsim"), n=3, seed=3, settings=SMALL, workers=1)


@pytest.fixture(scope="session")
def distilled(tmp_path_factory: pytest.TempPathFactory, sim_qa: Path) -> Path:
    """The oracle's judged conversations about six closed event questions of the training split."""
    from sportlens.benchmarks.loaders import load_dataset
    from sportlens.benchmarks.oracle import OraclePolicy
    from sportlens.training.distill import distill

    dataset = load_dataset(sim_qa)
    events = [item for item in dataset.items if item.answer_type == "choice" and item.split == "train" and "tactic" not in item.task]
    items = events[:6]  # basketball's foul seen in the initial frames, tennis's foul only through the tool
    out = tmp_path_factory.mktemp("distilled")
    distill(items, dataset.video_path, OraclePolicy, out, source=sim_qa, teacher_name="sportsim-oracle")
    return out
