"""Training fixtures: a few short SportSim clips and the oracle's distilled conversations about them."""
from __future__ import annotations

import json
import shutil
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


@pytest.fixture(scope="session")
def base_without_tool_call_tokens(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> Path:
    """A copy of the demo checkpoint whose tokenizer no longer has <tool_call> and </tool_call> as special tokens."""
    target = tmp_path_factory.mktemp("broken") / "sportlens-demo"
    shutil.copytree(demo_model_dir, target)
    tokenizer = json.loads((target / "tokenizer.json").read_text())
    tokenizer["added_tokens"] = [t for t in tokenizer["added_tokens"] if "tool_call" not in t["content"]]
    (target / "tokenizer.json").write_text(json.dumps(tokenizer))
    config = json.loads((target / "tokenizer_config.json").read_text())
    for key in ("additional_special_tokens", "extra_special_tokens"):
        if isinstance(config.get(key), list):
            config[key] = [t for t in config[key] if "tool_call" not in t]
    for token_id, token in list(config.get("added_tokens_decoder", {}).items()):
        if "tool_call" in token["content"]:
            del config["added_tokens_decoder"][token_id]
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    return target
