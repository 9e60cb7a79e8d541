"""The batch benchmark runner: every question through the same agent loop, in bounded parallel, resumable.

Each (run, question) pair ends as one line of ``results.jsonl``, written and flushed the moment it finishes,
so a killed run loses at most the questions in flight; ``resume=True`` skips every pair already there
(pairs that ended in an error are tried again). Runs are the agent itself and its no-tool baselines
(``uniform8`` = 8 uniform frames, one turn that must answer), side by side on the same questions.
"""
from __future__ import annotations

import json
import logging
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image
from pydantic import BaseModel
from tqdm import tqdm

from sportlens.agent.backends.base import BackendError, ModelBackend
from sportlens.agent.loop import AgentSettings, answer_question
from sportlens.agent.records import QAItem, Result
from sportlens.benchmarks.judge import JudgePanel
from sportlens.benchmarks.loaders import Dataset, is_image
from sportlens.benchmarks.scoring import SHOWN_SIZE, BoxSpace, BoxUnits, Score, score_answer
from sportlens.tools.video import Video, VideoError

log = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
EVENT_WINDOW_SHARE = 0.5  # a question whose window covers less of the video than this is an "event" question


class BenchError(RuntimeError):
    """The benchmark cannot start as asked; the message says what to change."""


@dataclass(frozen=True)
class RunSpec:
    """One column of the report: a name and the loop settings it runs with."""

    name: str
    settings: AgentSettings


def standard_runs(baselines: list[int], *, constrain: bool, agent: AgentSettings | None = None) -> list[RunSpec]:
    """The agent (protocol defaults) and a ``uniform{k}`` baseline per k: k frames, no tool, one answering turn."""
    agent = agent or AgentSettings(constrain=constrain)
    runs = [RunSpec("agent", agent)]
    runs += [
        RunSpec(f"uniform{k}", AgentSettings(initial_frames=k, max_turns=1, constrain=constrain,
                                             max_tokens_per_turn=agent.max_tokens_per_turn, sampler=agent.sampler,
                                             max_thought_chars=agent.max_thought_chars))
        for k in baselines
    ]
    return runs


class BenchRecord(BaseModel):
    """One line of results.jsonl: which run asked which question, what came back, and how it scored."""

    run: str
    item_id: str
    sport: str
    task: str
    level: int | None = None
    dimension: str | None = None
    answer_type: str
    split: str | None = None
    event: bool
    reference: str
    result: Result | None = None
    score: Score | None = None
    error: str | None = None


def read_records(path: Path) -> list[BenchRecord]:
    """The records of a results file; a last line cut short by a kill is ignored."""
    if not path.exists():
        return []
    records, lines = [], path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(BenchRecord.model_validate_json(line))
        except ValueError:
            if number == len(lines):
                log.warning("%s: ignoring the unfinished last line", path)
                continue
            raise BenchError(f"{path}:{number}: not a benchmark record; use a fresh --out") from None
    return records


def latest(records: list[BenchRecord]) -> dict[tuple[str, str], BenchRecord]:
    """The last record of each (run, item) pair: a retried question counts once."""
    return {(r.run, r.item_id): r for r in records}


def run_benchmark(
    dataset: Dataset,
    out: Path,
    *,
    runs: list[RunSpec],
    backend_for: Callable[[QAItem], ModelBackend],
    concurrency: int = 1,
    limit: int | None = None,
    split: str | None = None,
    resume: bool = False,
    judge: JudgePanel | None = None,
    box_units: BoxUnits = "pixels",
    progress: bool = True,
) -> list[BenchRecord]:
    """Ask every selected question in every run; return all records of ``out/results.jsonl`` afterwards.

    ``backend_for(item)`` gives the backend for one question: the same shared model for every item, or a
    fresh oracle per item. ``concurrency`` questions are in flight at once (threads; the in-process model
    serialises its calls, an HTTP server batches them). ``box_units`` is how the model writes boxes, in
    pixels of the frame it was shown or 0–1000 (:class:`~sportlens.benchmarks.scoring.BoxSpace`).
    """
    if concurrency < 1:
        raise BenchError("--concurrency must be at least 1")
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS_FILE
    existing = read_records(results_path)
    if existing and not resume:
        raise BenchError(f"{results_path} already holds results: add --resume to continue it, or choose another --out")
    items = [item for item in dataset.items if split is None or item.split == split]
    items = items[:limit] if limit is not None else items
    if not items:
        raise BenchError(f"{dataset.path}: no questions to ask" + (f" in split {split!r}" if split else ""))
    _drop_unfinished_line(results_path)
    finished = {key for key, record in latest(existing).items() if record.error is None}
    todo = [(run, item) for run in runs for item in items if (run.name, item.id) not in finished]
    log.info("%d questions × %d runs; %d already done, %d to ask", len(items), len(runs), len(finished), len(todo))
    lock = threading.Lock()
    stills = _StillClips(out / "stills")
    bar = None
    if progress:
        bar = tqdm(total=len(todo), desc="questions", unit="q", dynamic_ncols=True)
    with open(results_path, "a") as sink, ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(_ask, dataset, run, item, backend_for, judge, box_units, stills) for run, item in todo]
        for future in as_completed(futures):
            record = future.result()
            with lock:
                sink.write(record.model_dump_json() + "\n")
                sink.flush()
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return read_records(results_path)


def _drop_unfinished_line(path: Path) -> None:
    """Cut a last line that a kill left without its newline, so that appended records start on a line of their own."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def _ask(
    dataset: Dataset,
    run: RunSpec,
    item: QAItem,
    backend_for: Callable[[QAItem], ModelBackend],
    judge: JudgePanel | None,
    box_units: BoxUnits,
    stills: _StillClips,
) -> BenchRecord:
    fields = dict(
        run=run.name, item_id=item.id, sport=item.sport, task=item.task, level=item.level, dimension=item.dimension,
        answer_type=item.answer_type, split=item.split, reference=item.answer, event=False,
    )
    path = dataset.video_path(item)
    try:
        if is_image(path):
            path = stills.clip_for(path)
        backend = backend_for(item)
        with Video(path, max_size=SHOWN_SIZE, threads=1) as video:
            trajectory = answer_question(video, item.question, backend, options=item.options, settings=run.settings)
    except (VideoError, BackendError, OSError, ValueError) as error:
        log.warning("%s (%s): %s", item.id, run.name, error)
        return BenchRecord(**fields, error=f"{type(error).__name__}: {error}")
    space = BoxSpace.for_video(trajectory.video.width, trajectory.video.height, box_units)
    score = score_answer(item, trajectory.answer, judge, box_space=space)
    fields["event"] = item.event_window is not None and (
        item.event_window[1] - item.event_window[0] + 1 < EVENT_WINDOW_SHARE * trajectory.video.frames
    )
    result = Result(trajectory=trajectory, item_id=item.id, sport=item.sport, task=item.task, label=item.answer,
                    correct=score.correct)
    return BenchRecord(**fields, result=result, score=score)


class _StillClips:
    """Image questions (SportR Q1–Q7) are asked about a 2-s still clip of the image, made once per image."""

    FRAMES, FPS = 16, 8

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()

    def clip_for(self, image_path: Path) -> Path:
        target = self.folder / f"{image_path.stem}-{zlib.crc32(str(image_path.resolve()).encode()):08x}.mp4"
        with self._lock:
            if not target.exists():
                self.folder.mkdir(parents=True, exist_ok=True)
                picture = np.asarray(Image.open(image_path).convert("RGB"))
                picture = picture[: picture.shape[0] // 2 * 2, : picture.shape[1] // 2 * 2]
                partial = target.with_suffix(".part.mp4")
                with av.open(str(partial), "w", format="mp4") as container:
                    stream = container.add_stream("libx264", rate=Fraction(self.FPS))
                    stream.height, stream.width = picture.shape[:2]
                    stream.pix_fmt = "yuv420p"
                    for index in range(self.FRAMES):
                        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                        frame.pts, frame.time_base = index, Fraction(1, self.FPS)
                        container.mux(stream.encode(frame))
                    container.mux(stream.encode(None))
                partial.rename(target)
        return target


def export_results(records: list[BenchRecord], out: Path) -> list[Path]:
    """``{run}.results.jsonl``: each run's Result records alone, one per line, the input of `sportlens calibrate`."""
    by_run: dict[str, list[Result]] = {}
    for record in latest(records).values():
        if record.result is not None:
            by_run.setdefault(record.run, []).append(record.result)
    paths = []
    for run, results in by_run.items():
        paths.append(out / f"{run}.results.jsonl")
        paths[-1].write_text("".join(result.model_dump_json() + "\n" for result in results))
    return paths


def write_config(out: Path, config: dict) -> None:
    """Keep how the run was asked for beside its results (the report repeats it)."""
    (out / "bench.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
