"""What a full run is: its profiles, its stages, :class:`FullRunConfig` read and checked by :func:`load_full_run`, and
the questions a stage takes. ``python -m sportlens.training.full_run --help`` lists the config's keys; the module
``full_run`` says what each stage does.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, fields
from pathlib import Path

from sportlens.benchmarks.loaders import Dataset, load_dataset
from sportlens.training.checkpoint import CheckpointError, check_base_model
from sportlens.training.config import (
    ConfigError,
    DistillSettings,
    EvalSettings,
    GRPOStageConfig,
    SFTStageConfig,
    SynthSettings,
    VisionSettings,
    config_from_dict,
    read_mapping,
)

PROFILES = ("cpu-smoke", "cpu", "gpu", "visual-cpu")
CONFIGS = Path(__file__).with_name("configs")
STAGES = ("synth", "base", "distill", "vision", "sft", "anneal", "grpo-v1", "grpo-v2", "evaluate", "export")
LABELS = {"base": "untrained demo model", "sft": "SFT", "grpo-v1": "SFT+GRPO (v1)", "grpo-v2": "SFT+GRPO (v2)"}
TOP_KEYS = {
    "base_model": "a Qwen-VL-style checkpoint folder to start from (a pretrained VLM); null: the random-init demo model",
    "cpu_threads": "torch threads per process (1 keeps a shared CPU from thrashing); null: torch's default",
    "parallel": "train GRPO v1 and v2 side by side and evaluate each model in its own process (many cores)",
    "synth": "SportSim data: " + ", ".join(f.name for f in fields(SynthSettings)),
    "distill": "the oracle teacher: " + ", ".join(f.name for f in fields(DistillSettings)),
    "vision": "the vision tower's auxiliary training before SFT: " + ", ".join(f.name for f in fields(VisionSettings)),
    "sft": "`sportlens train sft` keys but model, data and output_dir, which the run sets",
    "anneal": "a second SFT phase from sft/ (keys as sft), e.g. at a lower, decaying rate; GRPO and the SFT row "
              "take its weights; absent or null: none",
    "grpo": "`sportlens train grpo` keys but model, data, output_dir and reward: one section for v1 and v2",
    "eval": "the evaluation: " + ", ".join(f.name for f in fields(EvalSettings)),
}


@dataclass
class FullRunConfig:
    """Everything a full run does, with every path inside its output folder set."""

    out: Path
    synth: SynthSettings
    distill: DistillSettings
    vision: VisionSettings
    sft: SFTStageConfig
    grpo_v1: GRPOStageConfig
    grpo_v2: GRPOStageConfig
    eval: EvalSettings
    anneal: SFTStageConfig | None = None
    cpu_threads: int | None = None
    parallel: bool = False
    base_model: Path | None = None

    def label(self, stage: str) -> str:
        """The table's name for a stage's checkpoint; the untrained row names the base it is."""
        if stage == "base" and self.base_model is not None:
            return f"untrained base ({self.base_model.name})"
        return LABELS[stage]

    @property
    def qa(self) -> Path:
        return self.out / "sportsim" / "qa.jsonl"

    def checkpoint(self, stage: str) -> Path:
        """A stage's folder; "sft" is the model SFT ended with: the anneal phase's, when the run has one."""
        if stage == "sft" and self.anneal is not None:
            return self.out / "anneal"
        return self.out / stage


def load_full_run(path: Path, out: Path, base_model: Path | None = None) -> FullRunConfig:
    """Read and check a full-run config; its stage configs get their paths inside ``out``.

    ``base_model`` (the command line's) wins over the file's; a relative path in the file is read from the file's
    folder. The checkpoint is checked here, so a base the protocol cannot be trained on stops the run at once.
    """
    raw = read_mapping(path)
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; a full run takes {', '.join(TOP_KEYS)}")
    out = out.resolve()

    def section(name: str, kind: type, **fixed):
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: {name} is a mapping of keys to values")
        taken = sorted(set(values) & set(fixed))
        if taken:
            raise ConfigError(f"{path}: {name}: the run sets {', '.join(taken)} itself")
        return config_from_dict({**values, **fixed}, kind, source=f"{path} [{name}]")

    qa = str(out / "sportsim" / "qa.jsonl")
    anneal = None
    if raw.get("anneal") is not None:
        anneal = section("anneal", SFTStageConfig, model=str(out / "sft"), data=str(out / "distilled"),
                         output_dir=str(out / "anneal"))
    grpo = {"model": str(out / ("sft" if anneal is None else "anneal")), "data": qa}
    threads = raw.get("cpu_threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"{path}: cpu_threads must be a whole number ≥ 1 or null, not {threads!r}")
    if not isinstance(raw.get("parallel", False), bool):
        raise ConfigError(f"{path}: parallel must be true or false")
    if base_model is None and raw.get("base_model") is not None:
        if not isinstance(raw["base_model"], str):
            raise ConfigError(f"{path}: base_model is a checkpoint folder's path, not {raw['base_model']!r}")
        base_model = path.parent / raw["base_model"]
    if base_model is not None:
        base_model = base_model.expanduser().resolve()
        try:
            check_base_model(base_model)
        except CheckpointError as error:
            raise ConfigError(f"base_model: {error}") from None
    synth, vision = section("synth", SynthSettings), section("vision", VisionSettings)
    if vision.steps and synth.preset != "visual":
        raise ConfigError(f"{path}: vision.steps needs synth.preset visual (its targets are that preset's marks)")
    return FullRunConfig(
        out=out,
        synth=synth,
        distill=section("distill", DistillSettings),
        vision=vision,
        sft=section("sft", SFTStageConfig, model=str(out / ("vision" if vision.steps else "base")),
                    data=str(out / "distilled"), output_dir=str(out / "sft")),
        grpo_v1=section("grpo", GRPOStageConfig, **grpo, output_dir=str(out / "grpo-v1"), reward="v1"),
        grpo_v2=section("grpo", GRPOStageConfig, **grpo, output_dir=str(out / "grpo-v2"), reward="v2"),
        eval=section("eval", EvalSettings),
        anneal=anneal,
        cpu_threads=threads,
        parallel=raw.get("parallel", False),
        base_model=base_model,
    )


def questions(qa: Path, split: str, answer_types: list[str], max_items: int | None, *,
              shuffle_seed: int | None = None) -> Dataset:
    """The first ``max_items`` questions of ``split`` whose answer type is one of ``answer_types`` (shuffled first with
    ``shuffle_seed``): what the distill stage and the evaluation ask."""
    dataset = load_dataset(qa)
    items = [item for item in dataset.items if item.split == split and item.answer_type in answer_types]
    if shuffle_seed is not None:  # a prefix of a shuffled list spans every task and clip
        random.Random(shuffle_seed).shuffle(items)
    return Dataset(path=dataset.path, root=dataset.root, format=dataset.format, items=items[:max_items])
