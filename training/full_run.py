"""The whole recipe in one run, and the evidence it produced: synth → distill → SFT → GRPO v1 and v2 → evaluation → export.

    python -m sportlens.training.full_run --profile cpu-smoke|cpu|gpu --out DIR [--publish DIR]
    python -m sportlens.training.full_run --config RUN.yaml --out DIR
    python -m sportlens.training.full_run --profile gpu --base-model QWEN_VL_DIR --out DIR

A profile is ``training/configs/full-run-<profile>.yaml``; ``--config`` takes any file with the same keys
(:class:`FullRunConfig`; `--help` lists them). The whole config is checked before anything runs. The profiles:

- ``cpu-smoke``: a few clips and a step or two of each stage; the end-to-end test runs it (about a minute).
- ``cpu``: 60-s clips with small frames (320×180, 6 fps), ~150 distilled conversations, 8 GRPO steps per reward,
  40 test questions per row, one torch thread per process; 12 to 19 minutes on a shared 2-core CPU.
- ``gpu``: sized for one H100 machine (16 cores): GRPO v1 and v2 train side by side and every row is evaluated in
  its own process; stages stop on time limits so the Python ends in about 6 minutes whatever the machine's speed.
  ``benchmarks/gpu/run_full.sh`` runs it on the device machine.

Stages, each announced by a progress line when it starts and when it ends (its seconds and throughput):

1. ``synth``: SportSim clips and questions (``sportsim/qa.jsonl``).
2. ``base``: the untrained demo model (``base/``), the starting point and the table's untrained row; or, with
   ``base_model`` (``--base-model``), a Qwen-VL-style checkpoint of your own, linked as ``base/``. The demo model is
   blind — random weights — and cannot learn to read SportSim's frames in minutes; a pretrained VLM can. The
   checkpoint is checked (special tokens, image token, chat template) before anything runs.
3. ``distill``: the SportSim oracle answers the closed training questions through the agent loop; judged
   conversations in ``distilled/`` (with ``drills_per_clip``, look drills beside them: ``visual_drills.py``).
4. ``vision`` (SportSim visual, ``vision.steps`` > 0): the tower learns to read rendered frames through auxiliary
   read-out heads (``visual_pretrain.py``), into ``vision/``, which SFT then starts from; skipped otherwise.
5. ``sft``, 6. ``grpo-v1``, 7. ``grpo-v2``: ``sportlens train sft|grpo`` on those, from ``base/`` and then from
   ``sft/`` with DeepSport's gated tool reward v1 and v2; each writes a full checkpoint with its manifest, and its
   stage config under ``configs/`` (``sportlens train grpo configs/grpo-v1.json`` repeats the stage alone).
8. ``evaluate``: the held-out test questions through ``benchmarks.runner.run_benchmark`` for every row — the
   untrained model, SFT, SFT+GRPO v1 and v2 as agents, and trained weights answering once from 16 uniform frames
   without the tool — a chunk of questions at a time, the rows in turn (or side by side, a process each, with
   ``parallel``); when ``eval.max_seconds`` runs out, the table compares the rows on the questions all of them
   answered. Results in ``eval/<row>/results.jsonl``; the evidence table (``benchmarks.evidence``:
   ``evidence.json``, ``evidence.md``, ``evidence.png``) is rewritten after every chunk, and copied to
   ``--publish`` with ``timings.json`` each time.
9. ``export``: ``sportlens models export`` of both GRPO checkpoints to ``export/``, their evaluation in the
   manifest — last, because the manifest records the evaluation; the weights are those evaluated.

``timings.json`` holds every stage's seconds and figures: clips/s, items/s, samples/s and tokens/s for SFT and
GRPO, rollout and update seconds for every GRPO step, questions/s for every evaluated row.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import queue
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sportlens.training.config import (
    ConfigError,
    DistillSettings,
    EvalSettings,
    GRPOStageConfig,
    SFTStageConfig,
    SynthSettings,
    VisionSettings,
    config_from_dict,
    describe,
    read_mapping,
)

if TYPE_CHECKING:
    from sportlens.benchmarks.runner import RunSpec

PROFILES = ("cpu-smoke", "cpu", "gpu", "visual-cpu")
CONFIGS = Path(__file__).with_name("configs")
STAGES = ("synth", "base", "distill", "vision", "sft", "grpo-v1", "grpo-v2", "evaluate", "export")
LABELS = {"base": "untrained demo model", "sft": "SFT", "grpo-v1": "SFT+GRPO (v1)", "grpo-v2": "SFT+GRPO (v2)"}
TOP_KEYS = {
    "base_model": "a Qwen-VL-style checkpoint folder to start from (a pretrained VLM); null: the random-init demo model",
    "cpu_threads": "torch threads per process (1 keeps a shared CPU from thrashing); null: torch's default",
    "parallel": "train GRPO v1 and v2 side by side and evaluate each model in its own process (many cores)",
    "synth": "SportSim data: " + ", ".join(f.name for f in fields(SynthSettings)),
    "distill": "the oracle teacher: " + ", ".join(f.name for f in fields(DistillSettings)),
    "vision": "the vision tower's auxiliary training before SFT: " + ", ".join(f.name for f in fields(VisionSettings)),
    "sft": "`sportlens train sft` keys but model, data and output_dir, which the run sets",
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
        return self.out / stage


def load_full_run(path: Path, out: Path, base_model: Path | None = None) -> FullRunConfig:
    """Read and check a full-run config; its stage configs get their paths inside ``out``.

    ``base_model`` (the command line's) wins over the file's; a relative path in the file is read from the file's
    folder. The checkpoint is checked here, so a base the protocol cannot be trained on stops the run at once.
    """
    from sportlens.training.checkpoint import CheckpointError, check_base_model

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
    grpo = {"model": str(out / "sft"), "data": qa}
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
        cpu_threads=threads,
        parallel=raw.get("parallel", False),
        base_model=base_model,
    )


class Progress:
    """Prints a line when a stage starts and when it ends, and keeps every stage's figures in ``timings.json``."""

    def __init__(self, out: Path, publish: Path | None) -> None:
        self.path, self.publish = out / "timings.json", publish
        self.timings: dict[str, dict] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self._started: dict[str, float] = {}

    def start(self, stage: str, what: str) -> None:
        self._started[stage] = time.perf_counter()
        print(f"[{STAGES.index(stage) + 1}/{len(STAGES)}] {stage}: {what}", flush=True)

    def elapsed(self, stage: str) -> float:
        return time.perf_counter() - self._started[stage]

    def done(self, stage: str, **figures) -> None:
        seconds = round(self.elapsed(stage), 2)
        self.timings[stage] = {"seconds": seconds, **figures}
        shown = ", ".join(f"{k} {v}" for k, v in figures.items() if isinstance(v, (int, float, str)))
        print(f"[{STAGES.index(stage) + 1}/{len(STAGES)}] {stage}: done in {seconds:.1f} s ({shown})", flush=True)
        self.path.write_text(json.dumps(self.timings, indent=2) + "\n")
        if self.publish is not None:
            (self.publish / self.path.name).write_text(self.path.read_text())


def run(config: FullRunConfig, publish: Path | None = None, stop_after: str | None = None) -> dict | None:
    """Every stage in order (see the module docstring); returns the evidence table.

    Stages that ``timings.json`` records as done are skipped, so a run killed (or stopped with ``stop_after``) is
    resumed by running it again on the same folder; an SFT stage with ``save_steps`` continues from its last
    checkpoint. Returns None when it stops after a stage before the evaluation.
    """
    import torch

    from sportlens.benchmarks.evidence import verdict_sentence

    out = config.out
    for folder in (out, out / "configs", *([publish] if publish else [])):
        folder.mkdir(parents=True, exist_ok=True)
    _threads(config.cpu_threads)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    (out / "run.json").write_text(json.dumps({"device": device, "torch": torch.__version__,
                                              "config": asdict(config)}, indent=2, default=str) + "\n")
    print(f"full run on {device} into {out}", flush=True)
    progress = Progress(out, publish)
    steps = (("synth", _synth), ("base", _base), ("distill", _distill), ("vision", _vision), ("sft", _sft),
             ("grpo-v2", _grpo))
    for stage, step in steps:
        if stage not in progress.timings:
            step(config, progress)
        if stop_after == stage:
            return None
    table = _evaluate(config, progress, publish)
    _export(config, progress, table)
    for verdict in table["verdicts"]:
        print(verdict_sentence(table, verdict).replace("**", ""), flush=True)
    _write_evidence(config, table, progress, publish)
    return table


def _threads(count: int | None) -> None:
    if count is not None:
        import torch

        torch.set_num_threads(count)


def _synth(config: FullRunConfig, progress: Progress) -> None:
    from sportlens.benchmarks import sportsim, sportsim_visual

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
    from sportlens.training.demo_model import DEMO_SHAPE, VISUAL_SHAPE, build_demo_model

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


def _items(qa: Path, split: str, answer_types: list[str], max_items: int | None, *, shuffle_seed: int | None = None):
    from sportlens.benchmarks.loaders import Dataset, load_dataset

    dataset = load_dataset(qa)
    items = [item for item in dataset.items if item.split == split and item.answer_type in answer_types]
    if shuffle_seed is not None:  # a prefix of a shuffled list spans every task and clip
        random.Random(shuffle_seed).shuffle(items)
    return Dataset(path=dataset.path, root=dataset.root, format=dataset.format, items=items[:max_items])


def _distill(config: FullRunConfig, progress: Progress) -> None:
    from sportlens.agent.loop import AgentSettings
    from sportlens.benchmarks.visual_oracle import oracle_for
    from sportlens.training.distill import distill
    from sportlens.training.visual_drills import write_drills

    d = config.distill
    dataset = _items(config.qa, "train", d.answer_types, d.max_items)
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
    from sportlens.training.visual_pretrain import pretrain

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
    from sportlens.training.sft import train_sft

    _write_stage_config(config, "sft", config.sft)
    progress.start("sft", f"`sportlens train sft {config.out / 'configs' / 'sft.json'}`")
    progress.done("sft", **train_sft(config.sft))


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
    from sportlens.training.grpo import train_grpo

    _threads(threads)
    return train_grpo(stage)


@dataclass(frozen=True)
class EvalRow:
    """One row of the table: a checkpoint asked with one run's settings, its results in ``eval/<key>/``."""

    key: str
    label: str
    stage: str
    run: RunSpec


def eval_rows(config: FullRunConfig) -> list[EvalRow]:
    """The table's rows in its order: the no-tool baseline of the verdict's agent first, then every model's agent."""
    from sportlens.agent.loop import AgentSettings
    from sportlens.benchmarks.runner import standard_runs

    e = config.eval
    agent = AgentSettings(initial_frames=e.initial_frames, frames_per_call=e.frames_per_call, max_turns=e.max_turns,
                          max_tokens_per_turn=e.max_tokens_per_turn, constrain=e.constrain, sampler=e.sampler)
    agent_run, no_tool = standard_runs([e.uniform_frames], constrain=e.constrain, agent=agent)
    baselines = [EvalRow(f"{stage}-no-tool", f"uniform-{e.uniform_frames}, no tool ({config.label(stage)} weights)",
                         stage, no_tool) for stage in e.no_tool_for]
    agents = [EvalRow(stage, config.label(stage), stage, agent_run) for stage in LABELS]
    return [baselines[0], *agents, *baselines[1:]]


def _evaluate(config: FullRunConfig, progress: Progress, publish: Path | None) -> dict:
    from sportlens.benchmarks.evidence import answered

    e = config.eval
    dataset = _items(config.qa, e.split, e.answer_types, e.max_items, shuffle_seed=config.synth.seed)
    rows = eval_rows(config)
    progress.start("evaluate", f"{len(dataset.items)} {e.split} questions × {len(rows)} rows"
                   + (f", at most {e.max_seconds:g} s" if e.max_seconds else "")
                   + (", a process per row" if config.parallel else ""))
    ids = [item.id for item in dataset.items]
    asking = dict(qa=str(config.qa), eval_root=str(config.out / "eval"), threads=config.cpu_threads)
    if config.parallel:
        seconds = _evaluate_in_processes(config, rows, ids, asking, lambda: _write_evidence(
            config, _table(config), progress, publish))
    else:
        seconds = {row.key: 0.0 for row in rows}
        deadline = time.time() + e.max_seconds if e.max_seconds else float("inf")
        backends: dict = {}
        try:
            for end in range(e.chunk, len(ids) + e.chunk, e.chunk):  # every row answers a chunk before any goes on
                for row in rows:
                    seconds[row.key] += evaluate_row(row, str(config.checkpoint(row.stage)), item_ids=ids[:end],
                                                     chunk=end, deadline=deadline, backends=backends, **asking)
                _write_evidence(config, _table(config), progress, publish)
        finally:
            for backend in backends.values():
                backend.close()
    table = _table(config)
    counts = {row.key: len(answered(row)) for row in _evidence_rows(config)}
    progress.done("evaluate", questions=len(ids), answered_by_every_row=table["questions"],
                  rows={key: {"answered": counts[key], "seconds": round(s, 1),
                              "questions_per_s": round(counts[key] / s, 3) if s else None}
                        for key, s in seconds.items()})
    return table


def _evaluate_in_processes(config: FullRunConfig, rows: list[EvalRow], ids: list[str], asking: dict,
                           checkpoint: Callable[[], None]) -> dict[str, float]:
    """A process per row; the clock of ``eval.max_seconds`` starts once every row's model is loaded, and
    ``checkpoint`` runs every half minute while they ask. Returns the seconds each row spent asking."""
    context = multiprocessing.get_context("spawn")
    ready, go, deadline, results = context.Semaphore(0), context.Event(), context.Value("d", float("inf")), context.Queue()
    processes = [context.Process(target=_row_process, args=(row, str(config.checkpoint(row.stage)), ids,
                                                            config.eval.chunk, asking, ready, go, deadline, results))
                 for row in rows]
    for process in processes:
        process.start()
    loaded = 0
    while loaded < len(processes) and any(p.is_alive() for p in processes):
        loaded += ready.acquire(timeout=5)
    if config.eval.max_seconds:
        deadline.value = time.time() + config.eval.max_seconds
    go.set()
    while any(p.is_alive() for p in processes):
        for process in processes:
            process.join(timeout=30 / len(processes))
        checkpoint()
    seconds = {row.key: 0.0 for row in rows}
    for _ in rows:
        try:
            key, spent, error = results.get(timeout=5)
        except queue.Empty:  # a process that died without a word: its row answered what its results file holds
            break
        seconds[key] = spent
        if error:
            print(f"evaluate: row {key} failed: {error}", file=sys.stderr, flush=True)
    return seconds


def _row_process(row: EvalRow, model_dir: str, ids: list[str], chunk: int, asking: dict, ready, go, deadline,
                 results) -> None:
    """One row in its own process: load the model, say so, wait for the start, ask until done or the deadline."""
    from sportlens.agent.backends.transformers_local import TransformersBackend

    try:
        _threads(asking["threads"])
        backends = {model_dir: TransformersBackend(Path(model_dir))}
    finally:
        ready.release()
    go.wait()
    try:
        spent = evaluate_row(row, model_dir, item_ids=ids, chunk=chunk, deadline=deadline.value, backends=backends,
                             **asking)
        results.put((row.key, spent, None))
    except Exception as error:  # reported by the parent; the row then answers fewer questions
        results.put((row.key, 0.0, f"{type(error).__name__}: {error}"))


def evaluate_row(row: EvalRow, model_dir: str, *, qa: str, item_ids: list[str], eval_root: str, chunk: int,
                 deadline: float, threads: int | None, backends: dict | None = None) -> float:
    """Ask ``item_ids`` of ``model_dir`` with ``row``'s settings through the benchmark runner into
    ``eval_root/<row.key>/``, ``chunk`` questions per call, until all are answered or ``deadline`` (epoch seconds)
    passes; returns the seconds spent asking.

    Questions already in the row's results.jsonl are not asked again (the runner resumes). ``backends`` keeps loaded
    checkpoints between calls in one process; without it the checkpoint is loaded here and closed at the end.
    """
    from sportlens.agent.backends.transformers_local import TransformersBackend
    from sportlens.benchmarks.loaders import Dataset, load_dataset
    from sportlens.benchmarks.runner import run_benchmark

    _threads(threads)
    dataset = load_dataset(qa)
    wanted = {item.id: item for item in dataset.items}
    dataset = Dataset(path=dataset.path, root=dataset.root, format=dataset.format, items=[wanted[i] for i in item_ids])
    owned = backends is None
    backends = {} if owned else backends
    if model_dir not in backends:
        backends[model_dir] = TransformersBackend(Path(model_dir))
    backend = backends[model_dir]
    seconds = 0.0
    try:
        for end in range(chunk, len(item_ids) + chunk, chunk):
            if time.time() >= deadline:
                break
            started = time.perf_counter()
            run_benchmark(dataset, Path(eval_root) / row.key, runs=[row.run], backend_for=lambda item: backend,
                          limit=min(end, len(item_ids)), resume=True, progress=False)
            seconds += time.perf_counter() - started
    finally:
        if owned:
            backend.close()
    return seconds


def _evidence_rows(config: FullRunConfig):
    from sportlens.benchmarks.evidence import Row

    return [Row(row.key, row.label, config.out / "eval" / row.key, row.run.name) for row in eval_rows(config)]


def _table(config: FullRunConfig) -> dict:
    from sportlens.benchmarks.evidence import Comparison, build
    from sportlens.benchmarks.sportsim import DIMENSIONS, EVENT_OF_TASK

    rows = _evidence_rows(config)
    comparisons = [Comparison(stage, "base", f"{stage}-no-tool", max_frames=config.eval.uniform_frames)
                   for stage in config.eval.no_tool_for]
    return build(rows, event_type=lambda record: EVENT_OF_TASK.get(record.task, "other"), comparisons=comparisons,
                 dimensions=list(DIMENSIONS.values()), event_types=list(dict.fromkeys(EVENT_OF_TASK.values())))


def _write_evidence(config: FullRunConfig, table: dict, progress: Progress, publish: Path | None) -> None:
    from sportlens.benchmarks import evidence

    appendix = "## Timings\n\n| stage | seconds | figures |\n|---|---|---|\n" + "".join(
        f"| {stage} | {figures['seconds']:g} | "
        + ", ".join(f"{k} {json.dumps(v)}" for k, v in figures.items() if k != "seconds") + " |\n"
        for stage, figures in progress.timings.items())
    paths = evidence.write(table, config.out, title="Evidence: the trained agent on the SportSim test split",
                           appendix=appendix)
    if publish is not None:
        for path in paths:
            (publish / path.name).write_bytes(path.read_bytes())


def _export(config: FullRunConfig, progress: Progress, table: dict) -> None:
    from sportlens.training.checkpoint import export

    progress.start("export", "`sportlens models export` of both GRPO checkpoints, their evaluation in the manifest")
    exported = []
    for stage in ("grpo-v1", "grpo-v2"):
        summary = config.out / "eval" / f"summary-{stage}.json"
        summary.parent.mkdir(parents=True, exist_ok=True)
        verdicts = [v for v in table["verdicts"] if v["agent"] == stage]
        summary.write_text(json.dumps({"dataset": "SportSim test split", "questions": table["questions"],
                                       "row": table["rows"].get(stage), "verdict": verdicts[0] if verdicts else None},
                                      indent=2) + "\n")
        exported.append(str(export(config.checkpoint(stage), config.out / "export" / stage, eval_summary=summary,
                                   name=f"sportlens-sportsim-{stage}")))
    progress.done("export", checkpoints=len(exported), folders=exported)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sportlens.training.full_run", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0] + "\n\nTop-level config keys:\n"
        + "\n".join(f"  {k}: {v}" for k, v in TOP_KEYS.items()) + "\n\neval keys:\n" + describe(EvalSettings))
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--profile", choices=PROFILES, help="a profile under training/configs/full-run-<profile>.yaml")
    source.add_argument("--config", type=Path, help="a full-run config file (YAML or JSON)")
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder for every stage's output")
    parser.add_argument("--publish", type=Path, help="also copy evidence.* and timings.json here whenever they change")
    parser.add_argument("--base-model", type=Path, help="start from this Qwen-VL-style checkpoint (overrides base_model)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a run in --out: skip the stages timings.json records as done")
    parser.add_argument("--stop-after", choices=STAGES[:5], help="end after this stage (resume later with --resume)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = args.config or CONFIGS / f"full-run-{args.profile}.yaml"
    try:
        config = load_full_run(path, args.out, args.base_model)
    except ConfigError as error:
        print(f"full_run: error: {error}", file=sys.stderr)
        return 2
    if not args.resume and args.out.exists() and any(args.out.iterdir()):
        print(f"full_run: error: {args.out} is not empty; choose a new or empty folder, or --resume", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    table = run(config, args.publish, stop_after=args.stop_after)
    return 0 if table is None or table["questions"] else 1


if __name__ == "__main__":
    sys.exit(main())
