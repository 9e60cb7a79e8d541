"""The full run's evaluation: every row of the table asked through the benchmark runner, a chunk of questions at a
time (the rows in turn, or a process per row), and the evidence table written after every chunk (stage 8 of
``full_run``).
"""
from __future__ import annotations

import json
import multiprocessing
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sportlens.agent.backends.transformers_local import TransformersBackend
from sportlens.agent.loop import AgentSettings
from sportlens.benchmarks import evidence
from sportlens.benchmarks.evidence import Comparison, Row, answered, build
from sportlens.benchmarks.loaders import Dataset, load_dataset
from sportlens.benchmarks.runner import RunSpec, run_benchmark, standard_runs
from sportlens.benchmarks.sportsim import DIMENSIONS, EVENT_OF_TASK
from sportlens.benchmarks.sportsim_visual import TASKS
from sportlens.training.full_run_config import LABELS, FullRunConfig, questions
from sportlens.training.full_run_progress import Progress, use_threads


@dataclass(frozen=True)
class EvalRow:
    """One row of the table: a checkpoint asked with one run's settings, its results in ``eval/<key>/``."""

    key: str
    label: str
    stage: str
    run: RunSpec


def eval_rows(config: FullRunConfig) -> list[EvalRow]:
    """The table's rows in its order: the no-tool baseline of the verdict's agent first, then every model's agent."""
    e = config.eval
    agent = AgentSettings(initial_frames=e.initial_frames, frames_per_call=e.frames_per_call, max_turns=e.max_turns,
                          max_tokens_per_turn=e.max_tokens_per_turn, constrain=e.constrain, sampler=e.sampler)
    agent_run, no_tool = standard_runs([e.uniform_frames], constrain=e.constrain, agent=agent)
    baselines = [EvalRow(f"{stage}-no-tool", f"uniform-{e.uniform_frames}, no tool ({config.label(stage)} weights)",
                         stage, no_tool) for stage in e.no_tool_for]
    # Random weights keep no protocol by themselves: the untrained row is always constrained, so that it answers and
    # shows chance (unconstrained, every answer was a format error and the row read 0 %).
    untrained = RunSpec(agent_run.name, replace(agent_run.settings, constrain=True))
    agents = [EvalRow(stage, config.label(stage), stage, untrained if stage == "base" else agent_run) for stage in LABELS]
    return [baselines[0], *agents, *baselines[1:]]


def evaluate(config: FullRunConfig, progress: Progress, publish: Path | None) -> dict:
    """The evaluation stage: every row asks the test questions, and the evidence table is written after every chunk
    (copied to ``publish``); returns the table, which compares the rows on the questions all of them answered."""
    e = config.eval
    dataset = questions(config.qa, e.split, e.answer_types, e.max_items, shuffle_seed=config.synth.seed)
    rows = eval_rows(config)
    progress.start("evaluate", f"{len(dataset.items)} {e.split} questions × {len(rows)} rows"
                   + (f", at most {e.max_seconds:g} s" if e.max_seconds else "")
                   + (", a process per row" if config.parallel else ""))
    ids = [item.id for item in dataset.items]
    asking = dict(qa=str(config.qa), eval_root=str(config.out / "eval"), threads=config.cpu_threads)
    if config.parallel:
        seconds = _evaluate_in_processes(config, rows, ids, asking, lambda: write_evidence(
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
                write_evidence(config, _table(config), progress, publish)
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
    try:
        use_threads(asking["threads"])
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
    use_threads(threads)
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
    return [Row(row.key, row.label, config.out / "eval" / row.key, row.run.name) for row in eval_rows(config)]


def _table(config: FullRunConfig) -> dict:
    rows = _evidence_rows(config)
    comparisons = [Comparison(stage, "base", f"{stage}-no-tool", max_frames=config.eval.uniform_frames)
                   for stage in config.eval.no_tool_for]
    if config.synth.preset == "visual":  # its question kinds are its own; the broadcast event types would be empty
        return build(rows, event_type=lambda record: record.task, comparisons=comparisons, event_types=list(TASKS))
    return build(rows, event_type=lambda record: EVENT_OF_TASK.get(record.task, "other"), comparisons=comparisons,
                 dimensions=list(DIMENSIONS.values()), event_types=list(dict.fromkeys(EVENT_OF_TASK.values())))


def write_evidence(config: FullRunConfig, table: dict, progress: Progress, publish: Path | None) -> None:
    """evidence.json, .md (with the timings so far) and .png in the run's folder, and copied to ``publish``."""
    appendix = "## Timings\n\n| stage | seconds | figures |\n|---|---|---|\n" + "".join(
        f"| {stage} | {figures['seconds']:g} | "
        + ", ".join(f"{k} {json.dumps(v)}" for k, v in figures.items() if k != "seconds") + " |\n"
        for stage, figures in progress.timings.items())
    paths = evidence.write(table, config.out, title="Evidence: the trained agent on the SportSim test split",
                           appendix=appendix)
    if publish is not None:
        for path in paths:
            (publish / path.name).write_bytes(path.read_bytes())
