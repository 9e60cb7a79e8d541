"""Look drills: short conversations that teach a model trained from random weights to read the incident's marker.

Distilled trajectories carry the marker in two or three words each (whether a tool frame shows the incident, and
what it shows), drowned in hundreds of tokens of scan; a model trained on them alone learned the scan, the counts and
the tool call but read the marker at chance (benchmarks/results/visual-cpu/README.md). A drill is a tool response
of 8 frames around (or away from) a training clip's incident, answered by the visual oracle's own scan entries for
*every* frame — "frame 82 (41.0s): it shows a red circle on the left." — so each drill
holds eight looks, about half of them at the marker, in the words and at the distances the protocol uses.

Letter drills teach the last step alone: a question and its options, reshuffled, and the oracle's closing sentence
("So the answer is a foul.") answered with the letter of that option. A model that had learned to read the marker
still chose the letter at chance (14–24 % teacher-forced): the letter is one token in a trajectory of hundreds.

Drills are protocol-valid conversations (system, user, assistant) written into a distilled dataset beside the
oracle's trajectories; SFT trains on both. Everything is a function of (clip or question, seed).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sportlens.agent.backends.base import ChatMessage
from sportlens.agent.protocol import tool_response_message
from sportlens.benchmarks.sportsim_visual import MOMENT_FRAMES, VisualScene, clip_name
from sportlens.benchmarks.visual_oracle import seen_entry, unseen_entry
from sportlens.tools.frames import Frame
from sportlens.training.distill import Conversation, write_frames

DRILL_SYSTEM = "Say, frame by frame, whether the incident is seen in the frame and what it shows."
LETTER_SYSTEM = "Answer with the letter of the option the thought names."
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
    entries = [seen_entry(frame, scene.describe()) if start <= frame.index <= end else unseen_entry(frame)
               for frame in frames]
    seen = any(start <= frame.index <= end for frame in frames)
    return f"<think>{' '.join(entries)}</think>\n<answer>{scene.describe() if seen else 'not seen'}</answer>"


def write_drills(sportsim_dir: Path, out: Path, *, per_clip: int, seed: int = 0) -> int:
    """Append ``per_clip`` drills for every training clip of a SportSim visual set to ``out/conversations.jsonl``
    (frames under ``out/frames``); returns how many were written."""
    from sportlens.tools.video import Video

    scenes = [VisualScene(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(line).items()
                             if k != "video"})
              for line in (Path(sportsim_dir) / "scenes.jsonl").read_text().splitlines()]
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


def write_letter_drills(qa: Path, out: Path, *, per_item: int, seed: int = 0) -> int:
    """Append ``per_item`` letter drills for every closed training question of ``qa`` to ``out/conversations.jsonl``
    (each with its options in a new order); returns how many were written."""
    from sportlens.agent.protocol import question_message
    from sportlens.agent.records import QAItem

    items = [QAItem.model_validate_json(line) for line in Path(qa).read_text().splitlines() if line.strip()]
    written = 0
    with open(Path(out) / "conversations.jsonl", "a") as conversations:
        for number, item in enumerate(i for i in items if i.split == "train" and i.options):
            rng = np.random.default_rng([seed, number, 19])
            texts = [option.split(") ", 1)[1] for option in item.options]
            right = texts["ABCD".index(item.answer)]
            for copy in range(per_item):
                order = [texts[k] for k in rng.permutation(len(texts))]
                options = [f"{'ABCD'[k]}) {text}" for k, text in enumerate(order)]
                letter = "ABCD"[order.index(right)]
                chat = [
                    ChatMessage("system", [LETTER_SYSTEM]),
                    question_message(item.question, options, []),
                    ChatMessage("assistant", [f"<think>So the answer is {right}.</think>\n<answer>{letter}</answer>"]),
                ]
                drill_id = f"letter-{item.id}-{copy}"
                messages, images = write_frames(chat, Path(out), drill_id)
                record = Conversation(id=drill_id, messages=messages, images=images, answer=letter,
                                      provenance={"teacher": "letter-drill", "item": item.id, "seed": seed})
                conversations.write(record.model_dump_json() + "\n")
                written += 1
    return written
