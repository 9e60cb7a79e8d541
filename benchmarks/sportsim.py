"""SportSim: deterministic synthetic broadcast clips of soccer, basketball and doubles tennis, with exact ground truth.

A clip is a top-down view of two teams of numbered players, a ball, a referee and a scoreboard with the game
clock. A few events happen, sparse in time (each lasts ``EVENT_SECONDS``): a score, a foul or violation with
its penalty (the referee holds up a card when there is one), the ball going out of bounds, a turnover. While an
event lasts, play stops or the ball sits where it went, a banner names the event, and a yellow ring marks the
player it is about; the scoreboard keeps the consequences (score, fouls) afterwards. Each team keeps one tactic
for the whole clip (formations, pressing, zone against man marking), visible in its players' positions.

Questions follow SportR's hierarchy (infraction? → which foul → which penalty → explanation → evidence box →
offensive / defensive tactic) and DeepSport's four dimensions, closed and open, each with its answer, event
window, reference explanation and split (by video). Everything is a function of (seed, clip index, settings):
the same call writes the same clips and the same questions.

This module writes a dataset (``generate``). The rules live in ``sportsim_rules.py``, a clip's scene and
simulation in ``sportsim_simulation.py``, its questions in ``sportsim_questions.py``, its encoding in
``sportsim_encoding.py``, its drawing in ``sportsim_render.py``.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from sportlens.benchmarks.sportsim_encoding import write_clip
from sportlens.benchmarks.sportsim_questions import DIMENSIONS, EVENT_OF_TASK, questions
from sportlens.benchmarks.sportsim_rules import RULES, SPORTS
from sportlens.benchmarks.sportsim_simulation import SimSettings, Simulation, make_scene

# The dataset's public names: generate() and its settings, and what its questions carry (training reads these).
__all__ = ["DIMENSIONS", "EVENT_OF_TASK", "GENERATOR_VERSION", "SPORTS", "SimSettings", "clip_name", "generate"]

GENERATOR_VERSION = "sportsim-1"


def clip_name(sport: str, index: int) -> str:
    return f"{sport}_{index:05d}.mp4"


def _one_clip(seed: int, index: int, sport: str, settings: SimSettings, out: Path) -> tuple[list[dict], dict]:
    scene = make_scene(seed, index, sport, settings)
    sim = Simulation(scene, settings)
    name = clip_name(sport, index)
    write_clip(sim, out / "clips" / name)
    items = [item.model_dump(mode="json", exclude_none=True) for item in questions(sim, f"clips/{name}", seed)]
    meta = {
        "video": f"clips/{name}", "sport": sport, "split": scene.split, "teams": [t[0] for t in scene.teams],
        "numbers": scene.numbers, "offence": scene.offence, "defence": scene.defence,
        "events": [asdict(e) for e in sim.events],
    }
    return items, meta


def generate(
    out: str | os.PathLike[str],
    *,
    n: int,
    seed: int = 0,
    sports: tuple[str, ...] = SPORTS,
    settings: SimSettings = SimSettings(),
    workers: int | None = None,
    progress: bool = False,
) -> Path:
    """Write ``n`` clips under ``out/clips`` and their questions to ``out/qa.jsonl``; returns the JSONL path.

    Clip i is of sport ``sports[i % len(sports)]`` and of split ``SPLIT_PATTERN[i % 10]`` (60/20/20
    train/val/test by video). ``workers`` processes encode clips in parallel (default: the CPU count).
    ``out/scenes.jsonl`` keeps every clip's full ground truth (teams, tactics, events with frame windows).
    """
    unknown = [s for s in sports if s not in RULES]
    if unknown:
        raise ValueError(f"unknown sport(s) {', '.join(unknown)}; SportSim draws {', '.join(SPORTS)}")
    if n < 1:
        raise ValueError("n must be at least 1")
    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    jobs = [(seed, i, sports[i % len(sports)], settings, out) for i in range(n)]
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    if workers == 1:
        results = map(_one_clip, *zip(*jobs))
    else:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(_one_clip, *zip(*jobs))
    if progress:
        results = tqdm(results, total=n, desc="clips", unit="clip")
    try:
        done = list(results)
    finally:
        if workers > 1:
            pool.shutdown()
    qa = out / "qa.jsonl"
    with open(qa, "w") as items_file, open(out / "scenes.jsonl", "w") as scenes_file:
        for items, meta in done:
            for item in items:
                items_file.write(json.dumps(item) + "\n")
            scenes_file.write(json.dumps(meta) + "\n")
    (out / "sportsim.json").write_text(json.dumps({
        "generator": GENERATOR_VERSION, "n": n, "seed": seed, "sports": list(sports),
        "settings": asdict(settings),
    }, indent=2) + "\n")
    return qa
