"""Look drills: short conversations that teach a model trained from random weights to read the incident's marker.

Distilled trajectories carry the marker in two or three words each (whether a tool frame shows the incident, and
what it shows), drowned in hundreds of tokens of scan; a model trained on them alone learned the scan, the counts and
the tool call but read the marker at chance (benchmarks/results/visual-cpu/README.md). A drill is a tool response
of 8 frames around (or away from) a training clip's incident, answered by the visual oracle's own scan entries for
*every* frame — "frame 82 (41.0s): asked look, shows red circle, left." — so each drill
holds eight looks, about half of them at the marker, in the words and at the distances the protocol uses.

Drills are protocol-valid conversations (system, user, assistant) written into a distilled dataset beside the
oracle's trajectories; SFT trains on both. Everything is a function of (clip, seed).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sportlens.agent.backends.base import ChatMessage
from sportlens.agent.protocol import tool_response_message
from sportlens.benchmarks.sportsim_visual import MOMENT_FRAMES, VisualScene, clip_name, make_scene
from sportlens.benchmarks.visual_oracle import DRILL_ASKED, marker_words, seen_entry, unseen_entry
from sportlens.tools.frames import Frame
from sportlens.tools.video import Video
from sportlens.training.distill import Conversation, write_frames

DRILL_SYSTEM = "Say, frame by frame, whether the incident is seen in the frame and what it shows."
FRAMES_PER_DRILL = 8


def drill_indices(scene: VisualScene, rng: np.random.Generator) -> list[int]:
    """8 frame indices of a clip: three drills in four around the incident (spaced 1–3 apart, so that about half
    show it), one away from it."""
    step = int(rng.integers(1, 4))
    span = step * (FRAMES_PER_DRILL - 1)
    if rng.random() < 0.75:
        centre = scene.moment_start + MOMENT_FRAMES // 2
        first = centre - span // 2 + int(rng.integers(-step, step + 1))
    else:
        first = int(rng.integers(0, scene.frames - span))
    first = min(max(first, 0), scene.frames - 1 - span)
    return [first + step * k for k in range(FRAMES_PER_DRILL)]


def drill_text(scene: VisualScene, frames: list[Frame]) -> str:
    """The assistant turn of a drill: the visual oracle's entry for every frame, then the marker as the answer."""
    start, end = scene.moment
    shown = [start <= frame.index <= end for frame in frames]
    marker = marker_words(scene.describe())
    entries = [seen_entry(frame, marker, DRILL_ASKED) if seen else unseen_entry(frame, DRILL_ASKED)
               for frame, seen in zip(frames, shown)]
    return f"<think>{' '.join(entries)}</think>\n<answer>{scene.describe() if any(shown) else 'not seen'}</answer>"


def write_drills(sportsim_dir: Path, out: Path, *, per_clip: int, seed: int = 0) -> int:
    """Append ``per_clip`` drills for every training clip of a SportSim visual set to ``out/conversations.jsonl``
    (frames under ``out/frames``); returns how many were written. The clips' scenes are drawn again from the set's
    seed (``sportsim.json``), as ``sportsim_visual.generate`` drew them."""
    described = json.loads((Path(sportsim_dir) / "sportsim.json").read_text())
    scenes = [make_scene(described["seed"], index) for index in range(described["n"])]
    written = 0
    with open(Path(out) / "conversations.jsonl", "a") as conversations:
        for scene in (s for s in scenes if s.split == "train"):
            rng = np.random.default_rng([seed, scene.index, 17])
            with Video(Path(sportsim_dir) / "clips" / clip_name(scene)) as video:
                for number in range(per_clip):
                    frames = video.frames_at(drill_indices(scene, rng))
                    chat = [
                        ChatMessage("system", [DRILL_SYSTEM]),
                        tool_response_message(frames, last_turn=False),
                        ChatMessage("assistant", [drill_text(scene, frames)]),
                    ]
                    drill_id = f"drill-{scene.index:05d}-{number}"
                    messages, images = write_frames(chat, Path(out), drill_id)
                    record = Conversation(id=drill_id, messages=messages, images=images, answer="",
                                          provenance={"teacher": "visual-drill", "clip": scene.index, "seed": seed})
                    conversations.write(record.model_dump_json() + "\n")
                    written += 1
    return written
