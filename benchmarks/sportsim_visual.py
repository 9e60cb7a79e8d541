"""SportSim "visual": clips whose answers a small vision model trained from random weights can read.

Today's SportSim (``sportsim.py``) writes banners, digits and small numbered players: it is the benchmark for real,
pretrained models. This preset keeps only cues a tiny vision encoder learns quickly at the frame size it is given
(the shipped model sees 168×84 pixels, a 6×3 grid of merged 28-px patches): colour, shape, position and count of
large marks, and no text at all.

A clip (2 fps, 80, 100 or 120 s, 320×180) shows a field of one of three sports and two teams of four players, each team in
its own half. One incident happens, lasting ``MOMENT_FRAMES`` frames (2 s): a large marker in the field, whose shape
says what happened (circle: a score, triangle: the ball out of play, square / diamond / plus: a foul of one of three
types), whose colour says which team and whose place says where. The incident's lasting consequence is one more
white mark in the bar above the field, the same whatever happened: the 8 initial frames tell an agent *between
which two frames* to look, not what it will see there. 8 uniform frames show the moment one time in 4–8, 16 uniform
frames under half the time; a tool call over the two initial frames around the new mark always shows it.

Questions (4 options each): what happened, which team, where, what penalty follows a foul (a rule applied to the
foul's shape, per sport), and one that any frame answers (which side a team defends), so that a model learns when
not to call the tool. Each kind lists its options in one fixed order, as a referee's report form does (team colours
in palette order, a sport's penalties in foul-shape order): the letter then follows from the option a model names.
With shuffled options the letter is a second skill that is not sight (find the named text among the options, copy
the letter before it), which the 3.9M-parameter model did not learn from 7,818 drills in 600 steps
(benchmarks/results/visual-cpu/README.md). The answers stay uniform over what the frames show. Each item's ``explanation`` describes the moment in words (the oracle's thought).
Everything is a function of (seed, clip index): the same call writes the same clips and questions; splits are by
video as in SportSim.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from sportlens.agent.records import QAItem
from sportlens.benchmarks.sportsim_simulation import SPLIT_PATTERN

GENERATOR_VERSION = "sportsim-visual-4"
FPS = 2
# Three clip lengths, so three sets of initial frame labels. A model of this size trained from scratch learned to read
# the frames within 200 steps but not, in 600 steps, to copy frame labels it had not seen before into a tool call
# (benchmarks/results/visual-cpu/README.md): with few lengths the labels are few, and a label is recalled, not copied.
SECONDS = (80, 100, 120)
WIDTH, HEIGHT = 320, 180
MOMENT_FRAMES = 4
BAR_HEIGHT = 60  # the top third: one row of merged patches at the model's 168×84
MARK_SLOTS = 4  # marks fill slots left to right; a clip starts with 0–2 and its incident adds one
SPORTS = ("soccer", "basketball", "hockey")
FIELD_RGB = {"soccer": (40, 120, 50), "basketball": (150, 100, 55), "hockey": (170, 200, 225)}
# Four team colours, so that "which team?" lists every colour, always in this order.
TEAM_RGB = {"red": (220, 30, 30), "blue": (30, 60, 220), "yellow": (240, 220, 30), "black": (20, 20, 20)}
PLACES = ("left", "centre", "right")
SIDES = ("left", "right")
KINDS = ("score", "out", "foul")
TASKS = ("what", "who", "where", "penalty", "side")  # the question kinds, in the order tables show them
FOUL_SHAPES = ("square", "diamond", "plus")
SHAPE_OF_KIND = {"score": "circle", "out": "triangle"}
# Each option of a kind starts with its own word: the shipped model's closing sentence began "a" for both "a score" and
# "a foul", and all 13 of its "what" answers whose closing named the right option but whose letter was wrong (of 93,
# session 4's test split) were those two swapped.
KIND_WORDS = {"score": "score", "out": "ball out of play", "foul": "foul", "none": "nothing happened"}
PENALTIES = {  # per sport: the penalty each foul shape draws, then a penalty no shape draws (a distractor)
    "soccer": {"square": "direct free kick", "diamond": "penalty kick", "plus": "yellow card", None: "corner kick"},
    "basketball": {"square": "two free throws", "diamond": "three free throws", "plus": "technical foul",
                   None: "jump ball"},
    "hockey": {"square": "two-minute minor", "diamond": "penalty shot", "plus": "five-minute major", None: "icing"},
}
SHAPE_WORDS = {"square": "holding", "diamond": "tripping", "plus": "hitting"}
LETTERS = "ABCD"


@dataclass(frozen=True)
class VisualScene:
    """Everything random about one clip, drawn from its own seed."""

    index: int
    sport: str
    frames: int
    teams: tuple[str, str]  # colour names; team 0 defends ``sides[0]``
    sides: tuple[str, str]
    marks_before: int
    moment_start: int
    kind: str
    shape: str
    team: int  # the team the incident is about
    place: str
    split: str

    @property
    def moment(self) -> tuple[int, int]:
        """The incident's inclusive frame window."""
        return self.moment_start, self.moment_start + MOMENT_FRAMES - 1

    def describe(self) -> str:
        """The moment in words: what a model that saw it would say."""
        return f"a {self.teams[self.team]} {self.shape} on the {self.place}"


def make_scene(seed: int, index: int) -> VisualScene:
    """The random choices for clip ``index`` of a set drawn with ``seed``.

    The incident starts after the first initial frame and ends before the last, so the new mark always
    appears between two of the 8 initial frames (or on one of them).
    """
    rng = np.random.default_rng([seed, index, 7])
    frames = SECONDS[int(rng.integers(len(SECONDS)))] * FPS
    first, last = int(0.5 * frames / 8), int(7.5 * frames / 8)
    teams = tuple(str(c) for c in rng.choice(list(TEAM_RGB), 2, replace=False))
    kind = KINDS[int(rng.integers(len(KINDS)))]
    shape = SHAPE_OF_KIND.get(kind) or FOUL_SHAPES[int(rng.integers(len(FOUL_SHAPES)))]
    left = int(rng.integers(2))
    return VisualScene(
        index=index, sport=SPORTS[index % len(SPORTS)], frames=frames, teams=teams,
        sides=(SIDES[left], SIDES[1 - left]), marks_before=int(rng.integers(0, MARK_SLOTS - 1)),
        moment_start=int(rng.integers(first + 1, last - MOMENT_FRAMES)), kind=kind, shape=shape,
        team=int(rng.integers(2)), place=PLACES[int(rng.integers(len(PLACES)))], split=SPLIT_PATTERN[index % 10],
    )


def _shape_mask(shape: str, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    c, r = (size - 1) / 2, size / 2
    if shape == "circle":
        return (x - c) ** 2 + (y - c) ** 2 <= r**2
    if shape == "square":
        return np.abs(x - c) <= 0.8 * r
    if shape == "diamond":
        return np.abs(x - c) + np.abs(y - c) <= r
    if shape == "plus":
        return (np.abs(x - c) <= r / 3) | (np.abs(y - c) <= r / 3)
    if shape == "triangle":
        return (y >= 0.1 * size) & (np.abs(x - c) <= (y - 0.1 * size) * 0.6)
    raise ValueError(f"unknown shape {shape!r}")


MARKER_SIZE = 100
_MARKER_X = {"left": 12, "centre": (WIDTH - MARKER_SIZE) // 2, "right": WIDTH - 12 - MARKER_SIZE}
_MARKER_Y = BAR_HEIGHT + (HEIGHT - BAR_HEIGHT - MARKER_SIZE) // 2


def mark_box(slot: int) -> tuple[int, int, int, int]:
    """The (x0, y0, x1, y1) of mark ``slot`` in the bar: 40 px wide, one a merged patch, centred."""
    x0 = 53 + slot * 56
    return x0 + 8, 12, x0 + 48, BAR_HEIGHT - 12


def render(scene: VisualScene, t: int) -> np.ndarray:
    """Frame ``t`` of the clip as RGB pixels."""
    image = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    image[:BAR_HEIGHT] = 35
    image[BAR_HEIGHT:] = FIELD_RGB[scene.sport]
    image[BAR_HEIGHT:, WIDTH // 2 - 1 : WIDTH // 2 + 1] = 235  # the halfway line
    marks = scene.marks_before + (t >= scene.moment_start)
    for slot in range(marks):
        x0, y0, x1, y1 = mark_box(slot)
        image[y0:y1, x0:x1] = 245
    rng = np.random.default_rng([scene.index, 11])
    phases = rng.uniform(0, 2 * np.pi, (2, 4, 2))
    for team in range(2):
        half = 0 if scene.sides[team] == "left" else WIDTH // 2
        for player in range(4):
            px = half + 30 + (player % 2) * 70 + 25 * np.sin(t / 5 + phases[team, player, 0])
            py = BAR_HEIGHT + 20 + (player // 2) * 55 + 18 * np.sin(t / 7 + phases[team, player, 1])
            x, y = int(px), int(py)
            image[y : y + 16, x : x + 16] = TEAM_RGB[scene.teams[team]]
    start, end = scene.moment
    if start <= t <= end:
        x, y = _MARKER_X[scene.place], _MARKER_Y
        region = image[y : y + MARKER_SIZE, x : x + MARKER_SIZE]
        region[_shape_mask(scene.shape, MARKER_SIZE)] = TEAM_RGB[scene.teams[scene.team]]
    return image


def count_marks(image: np.ndarray) -> int:
    """How many marks the bar of a frame shows (read from pixels, as a model must)."""
    count = 0
    for slot in range(MARK_SLOTS):
        x0, y0, x1, y1 = mark_box(slot)
        if image[y0 + 4 : y1 - 4, x0 + 4 : x1 - 4].mean() > 180:
            count += 1
    return count


def shows_moment(image: np.ndarray) -> bool:
    """Whether a frame shows the incident's marker, read from pixels: a 24×24 block of one colour, not the field's,
    inside one of the marker's places. Players are 16 px and never touch, so only a marker fills such a block."""
    field = np.array(image[HEIGHT - 2, 2], int)
    y = _MARKER_Y + MARKER_SIZE // 2 + 5  # inside every shape, the triangle's narrow top too
    for x0 in _MARKER_X.values():
        x = x0 + MARKER_SIZE // 2
        block = image[y - 12 : y + 12, x - 12 : x + 12].reshape(-1, 3).astype(int)
        if np.abs(block - field).sum(axis=1).min() > 60 and np.ptp(block, axis=0).max() < 40:
            return True
    return False


def _options(right: str, choices: list[str]) -> tuple[list[str], str]:
    """The four ``choices`` lettered in the order given, and the letter of ``right``."""
    return [f"{LETTERS[i]}) {text}" for i, text in enumerate(choices)], LETTERS[choices.index(right)]


def questions(scene: VisualScene, video: str, seed: int) -> list[QAItem]:
    """The clip's questions: about the incident (what, who, where, and the penalty for fouls) and about its teams."""
    rng = np.random.default_rng([seed, scene.index, 13])
    base = f"sv{seed}-{scene.index:05d}"
    moment = scene.describe()
    asked = [
        ("what", "What happened at the incident?", KIND_WORDS[scene.kind], [KIND_WORDS[k] for k in (*KINDS, "none")]),
        ("who", "Which team was the incident about?", scene.teams[scene.team], list(TEAM_RGB)),
        ("where", "Where on the field did the incident happen?", scene.place, [*PLACES, "outside the field"]),
    ]
    if scene.kind == "foul":
        rules = PENALTIES[scene.sport]
        asked.append(("penalty", f"What penalty follows the foul in this {scene.sport} clip?", rules[scene.shape],
                      [rules[s] for s in (*FOUL_SHAPES, None)]))
    items = []
    for task, text, right, choices in asked:
        options, answer = _options(right, choices)
        items.append(QAItem(
            id=f"{base}-{task}", video=video, question=text, options=options, answer=answer, answer_type="choice",
            sport=scene.sport, task=task, dimension="fine-grained recognition" if task != "penalty"
            else "rule & procedural logic", event_window=scene.moment, explanation=f"It shows {moment}.",
            split=scene.split,
        ))
    team = int(rng.integers(2))
    options, answer = _options(scene.sides[team], [*SIDES, "top", "bottom"])
    items.append(QAItem(
        id=f"{base}-side", video=video, question=f"Which side does the {scene.teams[team]} team defend?",
        options=options, answer=answer, answer_type="choice", sport=scene.sport, task="side",
        dimension="assessment & coaching", event_window=(0, scene.frames - 1),
        explanation=f"The {scene.teams[team]} team stands on the {scene.sides[team]}.", split=scene.split,
    ))
    return items


def clip_name(scene: VisualScene) -> str:
    return f"{scene.sport}_{scene.index:05d}.mp4"


def write_clip(scene: VisualScene, path: Path) -> Path:
    """Encode the clip with PyAV as H.264 (yuv420p), one keyframe a second."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS), options={"preset": "veryfast", "crf": "20"})
        stream.width, stream.height = WIDTH, HEIGHT
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = FPS
        stream.codec_context.thread_count = 1
        for t in range(scene.frames):
            frame = av.VideoFrame.from_ndarray(render(scene, t), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _one_clip(seed: int, index: int, out: Path) -> tuple[list[dict], dict]:
    scene = make_scene(seed, index)
    name = clip_name(scene)
    write_clip(scene, out / "clips" / name)
    items = [item.model_dump(mode="json", exclude_none=True) for item in questions(scene, f"clips/{name}", seed)]
    meta = {"video": f"clips/{name}", **{k: v for k, v in scene.__dict__.items()}}
    return items, meta


def generate(out: str | os.PathLike[str], *, n: int, seed: int = 0, workers: int | None = None,
             progress: bool = False) -> Path:
    """Write ``n`` clips under ``out/clips`` and their questions to ``out/qa.jsonl``; returns the JSONL path.

    ``out/scenes.jsonl`` keeps every clip's ground truth; ``out/sportsim.json`` the generator and seed.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    jobs = [(seed, i, out) for i in range(n)]
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    results = pool.map(_one_clip, *zip(*jobs)) if pool else map(_one_clip, *zip(*jobs))
    if progress:
        results = tqdm(results, total=n, desc="clips", unit="clip")
    try:
        done = list(results)
    finally:
        if pool:
            pool.shutdown()
    qa = out / "qa.jsonl"
    with open(qa, "w") as items_file, open(out / "scenes.jsonl", "w") as scenes_file:
        for items, meta in done:
            items_file.writelines(json.dumps(item) + "\n" for item in items)
            scenes_file.write(json.dumps(meta) + "\n")
    (out / "sportsim.json").write_text(json.dumps(
        {"generator": GENERATOR_VERSION, "preset": "visual", "n": n, "seed": seed}, indent=2) + "\n")
    return qa
