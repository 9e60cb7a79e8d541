"""The full run's stages in order, each skipped when ``timings.json`` records it as done: synth → base → distill →
vision → SFT → anneal → GRPO v1 and v2 → evaluation (``full_run_eval``) → export. ``full_run``'s docstring says what each
does.
"""
from __future__ import annotations

import json
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import torch

from sportlens.agent.loop import AgentSettings
from sportlens.benchmarks import sportsim, sportsim_visual
from sportlens.benchmarks.evidence import verdict_sentence
from sportlens.benchmarks.visual_oracle import oracle_for
from sportlens.training.checkpoint import export
from sportlens.training.config import GRPOStageConfig, SFTStageConfig
from sportlens.training.demo_model import DEMO_SHAPE, VISUAL_SHAPE, build_demo_model
from sportlens.training.distill import distill
from sportlens.training.full_run_config import FullRunConfig, questions
from sportlens.training.full_run_eval import evaluate, write_evidence
from sportlens.training.full_run_progress import Progress, use_threads
from sportlens.training.grpo import train_grpo
from sportlens.training.sft import train_sft
from sportlens.training.visual_drills import write_drills
from sportlens.training.visual_pretrain import pretrain


def run(config: FullRunConfig, publish: Path | None = None, stop_after: str | None = None) -> dict | None:
    """Every stage in order (``full_run``'s docstring says what each does); returns the evidence table.

    Stages that ``timings.json`` records as done are skipped, so a run killed (or stopped with ``stop_after``) is
    resumed by running it again on the same folder; an SFT stage with ``save_steps`` continues from its last
    checkpoint. Returns None when it stops before the evaluation: after ``stop_after``, or when SFT ran out of its
    ``max_seconds`` (not recorded as done, so the next ``--resume`` continues it).
    """
    out = config.out
    for folder in (out, out / "configs", *([publish] if publish else [])):
        folder.mkdir(parents=True, exist_ok=True)
    use_threads(config.cpu_threads)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    (out / "run.json").write_text(json.dumps({"device": device, "torch": torch.__version__,
                                              "config": asdict(config)}, indent=2, default=str) + "\n")
    print(f"full run on {device} into {out}", flush=True)
    progress = Progress(out, publish)
    steps = (("synth", _synth), ("base", _base), ("distill", _distill), ("vision", _vision), ("sft", _sft),
             ("anneal", _anneal), ("grpo-v2", _grpo))
    for stage, step in steps:
        if stage not in progress.timings:
            try:
                step(config, progress)
            except StageUnfinished as stopped:
                progress.stopped(stage)
                print(f"full_run: {stopped}; run again with --resume to continue it", flush=True)
                return None
        if stop_after == stage:
            return None
    table = evaluate(config, progress, publish)
    _export(config, progress, table)
    for verdict in table["verdicts"]:
        print(verdict_sentence(table, verdict).replace("**", ""), flush=True)
    write_evidence(config, table, progress, publish)
    return table


class StageUnfinished(Exception):
    """A stage stopped on its ``max_seconds`` before its last step: it is not recorded as done, so ``--resume``
    continues it from its checkpoint instead of training the next stage on a half-trained model."""


def _synth(config: FullRunConfig, progress: Progress) -> None:
    s = config.synth
    if s.preset == "visual":
        progress.start("synth", f"{s.clips} SportSim visual clips")
        sportsim_visual.generate(config.qa.parent, n=s.clips, seed=s.seed, workers=s.workers, progress=True)
    else:
        progress.start("synth", f"{s.clips} SportSim clips of {s.seconds:g} s at {s.fps} fps, {s.size}")
        settings = sportsim.SimSettings(seconds=s.seconds, fps=s.fps, size=s.frame_size)
        sportsim.generate(config.qa.parent, n=s.clips, seed=s.seed, settings=settings, workers=s.workers)
    questions = sum(1 for line in config.qa.read_text().splitlines() if line.strip())
    progress.done("synth", clips=s.clips, questions=questions, clips_per_s=round(s.clips / progress.elapsed("synth"), 2))


def _base(config: FullRunConfig, progress: Progress) -> None:
    folder = config.checkpoint("base")
    if config.base_model is not None:
        progress.start("base", f"{config.base_model}, linked as {folder.name}/")
        folder.symlink_to(config.base_model, target_is_directory=True)  # a 7B checkpoint is not copied
    else:
        shape = VISUAL_SHAPE if config.synth.preset == "visual" else DEMO_SHAPE
        progress.start("base", f"an untrained model of the demo architecture (random weights; {shape})")
        build_demo_model(folder, seed=config.synth.seed, shape=shape)
    weights = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    progress.done("base", weights_mb=round(weights / 2**20, 2))


def _distill(config: FullRunConfig, progress: Progress) -> None:
    d = config.distill
    dataset = questions(config.qa, "train", d.answer_types, d.max_items)
    progress.start("distill", f"the oracle answers {len(dataset.items)} training questions through the agent loop")
    policy, name = oracle_for(config.qa)
    summary = distill(dataset.items, dataset.video_path, policy, Path(config.sft.data),
                      settings=AgentSettings(max_turns=d.max_turns), source=config.qa, teacher_name=name)
    if not summary["kept"]:
        raise RuntimeError(f"the judge kept none of {summary['rejected']} trajectories: {summary['rejected_by_reason']}")
    kept = [json.loads(line)["provenance"]["trajectory"] for line in
            (Path(config.sft.data) / "conversations.jsonl").read_text().splitlines()]
    looked = sum(any(step["action"] == "choose_frames" for step in t["steps"]) for t in kept)
    drills = write_drills(config.qa.parent, Path(config.sft.data), per_clip=d.drills_per_clip) if d.drills_per_clip else 0
    progress.done("distill", kept=summary["kept"], rejected=summary["rejected"], drills=drills,
                  teacher_tool_call_rate=round(looked / len(kept), 3),
                  items_per_s=round(len(dataset.items) / progress.elapsed("distill"), 2))


def _vision(config: FullRunConfig, progress: Progress) -> None:
    v = config.vision
    if not v.steps:
        return
    progress.start("vision", f"{v.steps} batches of {v.batch_size} rendered frames: the tower learns to read the "
                   "marks and the marker through auxiliary heads")
    summary = pretrain(config.checkpoint("base"), config.checkpoint("vision"), steps=v.steps, batch=v.batch_size,
                       lr=v.learning_rate, seed=config.synth.seed)
    progress.done("vision", **summary)


def _write_stage_config(config: FullRunConfig, name: str, stage) -> None:
    (config.out / "configs" / f"{name}.json").write_text(json.dumps(asdict(stage), indent=2) + "\n")


def _sft(config: FullRunConfig, progress: Progress) -> None:
    _train_sft(config, progress, "sft", config.sft, "")


def _anneal(config: FullRunConfig, progress: Progress) -> None:
    """A second SFT phase from the first one's weights: session 4's model went from 77 to 92 % of event questions in
    a phase whose rate fell from 3e-4 (benchmarks/results/visual-cpu/README.md)."""
    if config.anneal is not None:
        _train_sft(config, progress, "anneal", config.anneal,
                   f", a second SFT phase from sft/ at {config.anneal.learning_rate:g} ({config.anneal.lr_scheduler})")


def _train_sft(config: FullRunConfig, progress: Progress, name: str, stage: SFTStageConfig, what: str) -> None:
    _write_stage_config(config, name, stage)
    progress.start(name, f"`sportlens train sft {config.out / 'configs' / (name + '.json')}`{what}")
    throughput = train_sft(stage)
    if throughput["steps"] < throughput["planned_steps"]:
        raise StageUnfinished(f"{name} stopped after {stage.max_seconds:g} s at step {throughput['steps']} of "
                              f"{throughput['planned_steps']}")
    progress.done(name, **throughput)


def _grpo(config: FullRunConfig, progress: Progress) -> None:
    stages = {name: stage for name, stage in (("grpo-v1", config.grpo_v1), ("grpo-v2", config.grpo_v2))
              if name not in progress.timings}  # a resumed run does not train a finished reward again
    for name, stage in stages.items():
        _write_stage_config(config, name, stage)
        progress.start(name, f"`sportlens train grpo {config.out / 'configs' / (name + '.json')}`"
                       + (" (beside the other reward)" if config.parallel else ""))
        if not config.parallel:
            progress.done(name, **_train_grpo(stage, config.cpu_threads))
    if config.parallel:
        with ProcessPoolExecutor(len(stages), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_train_grpo, stage, config.cpu_threads): name for name, stage in stages.items()}
            for future in as_completed(futures):
                progress.done(futures[future], **future.result())


def _train_grpo(stage: GRPOStageConfig, threads: int | None) -> dict:
    use_threads(threads)
    return train_grpo(stage)


def _export(config: FullRunConfig, progress: Progress, table: dict) -> None:
    progress.start("export", "`sportlens models export` of both GRPO checkpoints, their evaluation in the manifest")
    exported = []
    for stage in ("grpo-v1", "grpo-v2"):
        shutil.rmtree(config.out / "export" / stage, ignore_errors=True)  # a resumed run exports its newest evaluation
        summary = config.out / "eval" / f"summary-{stage}.json"
        summary.parent.mkdir(parents=True, exist_ok=True)
        verdicts = [v for v in table["verdicts"] if v["agent"] == stage]
        summary.write_text(json.dumps({"dataset": "SportSim test split", "questions": table["questions"],
                                       "row": table["rows"].get(stage), "verdict": verdicts[0] if verdicts else None},
                                      indent=2) + "\n")
        exported.append(str(export(config.checkpoint(stage), config.out / "export" / stage, eval_summary=summary,
                                   name=f"sportlens-sportsim-{stage}")))
    progress.done("export", checkpoints=len(exported), folders=exported)
