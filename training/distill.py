"""Distillation: teacher trajectories through the agent loop, kept when a judge passes them, written as a dataset.

The teacher is any ``ModelBackend``: the SportSim oracle (``benchmarks.oracle``) or a large VLM behind an
OpenAI-compatible endpoint. Each question runs through ``answer_question``, the loop that serves, and the exact
messages the teacher was shown are recorded, so the student is trained on the prompts it will be served.

Output directory::

    conversations.jsonl   one kept conversation per line: id, messages, images, answer, provenance
    frames/<id>/<index>.jpg  the frames its image parts refer to (JPEG, quality 90, as frames travel over HTTP)
    rejected.jsonl        id and the judge's reasons for every trajectory dropped
    dataset.json          counts, settings, the source, its format and hash, the judge's version
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError

from sportlens.agent.backends.base import ChatMessage, ModelBackend
from sportlens.agent.loop import AgentSettings, answer_question
from sportlens.agent.protocol import parse_turn
from sportlens.agent.records import PROTOCOL_VERSION, QAItem, Trajectory
from sportlens.benchmarks.scoring import BoxSpace, score_answer
from sportlens.tools.frames import Frame
from sportlens.tools.video import Video
from sportlens.training.conversations import RecordingBackend
from sportlens.training.rewards import format_ok

log = logging.getLogger(__name__)

JUDGE_VERSION = "distill-judge-v2"  # v2: a box answer is read in pixels of the frame shown, as the bench reads it
_RANGE_IN_THOUGHT = re.compile(r"frames? (\d+) (?:to|-|–) (\d+)")
_LOOKS_AGAIN = re.compile(r"look closer|choose_frames|need (?:more|other) frames", re.IGNORECASE)


class DistillDataError(ValueError):
    """A distilled dataset that cannot be trained on; the message names the file and line."""


class Conversation(BaseModel):
    """One line of conversations.jsonl."""

    model_config = ConfigDict(extra="forbid")
    id: str
    messages: list[dict]
    images: list[str]
    answer: str
    provenance: dict


def judge(item: QAItem, trajectory: Trajectory) -> list[str]:
    """Why a teacher trajectory is unfit to imitate; an empty list keeps it (``JUDGE_VERSION``).

    - the answer is correct (``benchmarks.scoring``, a box mapped from the shown frame as the bench maps it; an
      open answer must match exactly: no LLM judge here);
    - every turn is protocol-valid (``rewards.format_ok``);
    - no interval is requested twice;
    - each thought is consistent with its action: it is not empty; a tool call's thought that names a frame
      range ("frames 40 to 60") names the range called; an answer's thought does not announce another look.
    """
    reasons = []
    space = BoxSpace.for_video(trajectory.video.width, trajectory.video.height)
    if score_answer(item, trajectory.answer, box_space=space).correct is not True:
        reasons.append(f"answer {trajectory.answer!r} is not the reference {item.answer!r}")
    if not format_ok(trajectory):
        errors = [s.format_error or parse_turn(s.raw_output).error for s in trajectory.steps]
        reasons.append("protocol broken: " + "; ".join(e for e in errors if e) if any(errors) else "no answer")
    ranges = [s.frame_range for s in trajectory.steps if s.frame_range is not None]
    if len(ranges) != len(set(ranges)):
        reasons.append("an interval is requested twice")
    for step in trajectory.steps:
        if not step.thought.strip():
            reasons.append(f"turn {step.turn}: empty thought")
        elif step.action == "choose_frames":
            named = [(int(a), int(b)) for a, b in _RANGE_IN_THOUGHT.findall(step.thought)]
            if named and tuple(step.frame_range) not in named:
                reasons.append(f"turn {step.turn}: the thought names frames {named[0]} but calls {step.frame_range}")
        elif step.action == "answer" and _LOOKS_AGAIN.search(step.thought):
            reasons.append(f"turn {step.turn}: the thought announces another look but the turn answers")
    return reasons


def distill(
    items: list[QAItem],
    video_path: Callable[[QAItem], Path],
    teacher: Callable[[QAItem], ModelBackend],
    out: Path,
    *,
    settings: AgentSettings = AgentSettings(),
    source: Path | None = None,
    source_format: str | None = None,
    teacher_name: str | None = None,
) -> dict:
    """Run every item through the loop with ``teacher(item)``, judge it, write the dataset to ``out``; returns counts.

    ``source`` and ``source_format`` (the loaders' layout it was read as) go into dataset.json, so a dataset says
    which annotation file, read how, its questions came from.
    """
    out = Path(out)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    video_hashes: dict[Path, str] = {}
    kept = rejected = 0
    reasons_count: dict[str, int] = {}
    with open(out / "conversations.jsonl", "w") as kept_file, open(out / "rejected.jsonl", "w") as rejected_file:
        for item in items:
            path = video_path(item)
            if path not in video_hashes:
                video_hashes[path] = file_sha256(path)
            recorder = RecordingBackend(teacher(item))
            with Video(path) as video:
                trajectory = answer_question(video, item.question, recorder, options=item.options, settings=settings)
            reasons = judge(item, trajectory)
            if reasons:
                rejected += 1
                for reason in reasons:
                    key = reason.split(":")[0] if reason.startswith("turn") else reason.split(" ")[0]
                    reasons_count[key] = reasons_count.get(key, 0) + 1
                rejected_file.write(json.dumps({"id": item.id, "reasons": reasons}) + "\n")
                continue
            messages, images = write_frames(recorder.conversation(), out, item.id)
            provenance = {
                "teacher": teacher_name or trajectory.model,
                "item": item.model_dump(mode="json"),
                "video_sha256": video_hashes[path],
                "source": str(source) if source else None,
                "judge": JUDGE_VERSION,
                "protocol_version": PROTOCOL_VERSION,
                "agent_settings": asdict(settings),
                "trajectory": trajectory.model_dump(mode="json"),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            record = Conversation(id=item.id, messages=messages, images=images, answer=item.answer, provenance=provenance)
            kept_file.write(record.model_dump_json() + "\n")
            kept += 1
    summary = {
        "kept": kept,
        "rejected": rejected,
        "rejected_by_reason": reasons_count,
        "teacher": teacher_name,
        "source": str(source) if source else None,
        "source_sha256": file_sha256(source) if source else None,
        "source_format": source_format,
        "judge": JUDGE_VERSION,
        "protocol_version": PROTOCOL_VERSION,
        "agent_settings": asdict(settings),
    }
    (out / "dataset.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("distilled %d of %d trajectories into %s", kept, kept + rejected, out)
    return summary


def write_frames(chat: list[ChatMessage], out: Path, item_id: str) -> tuple[list[dict], list[str]]:
    folder = out / "frames" / _safe(item_id)
    messages, images = [], []
    for message in chat:
        content = []
        for part in message.parts:
            if isinstance(part, Frame):
                folder.mkdir(parents=True, exist_ok=True)
                relative = f"frames/{folder.name}/{part.index:06d}.jpg"
                if not (out / relative).exists():
                    (out / relative).write_bytes(part.jpeg(90))
                content.append({"type": "image"})
                images.append(relative)
            else:
                content.append({"type": "text", "text": part})
        messages.append({"role": message.role, "content": content})
    return messages, images


def load_conversations(folder: Path) -> list[tuple[list[dict], list[Path]]]:
    """Every conversation of a distilled dataset as (chat messages, frame paths), checked before training.

    A record that is not JSON, lacks a field, has roles out of order, a different number of image parts and frame
    files, a missing frame, or a final assistant turn that breaks the protocol raises :class:`DistillDataError`
    naming the file and line.
    """
    path = Path(folder) / "conversations.jsonl"
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise DistillDataError(f"cannot read {path}: {error.strerror} (write it with `sportlens distill`)") from error
    conversations = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = Conversation.model_validate_json(line)
        except ValidationError as error:
            first = error.errors()[0]
            raise DistillDataError(f"{where}: not a conversation record ({'.'.join(map(str, first['loc']))}: "
                                   f"{first['msg']})") from None
        conversations.append((_checked_messages(where, record), _checked_images(where, record, path.parent)))
    if not conversations:
        raise DistillDataError(f"{path}: no conversations")
    return conversations


def _checked_messages(where: str, record: Conversation) -> list[dict]:
    roles = [m.get("role") for m in record.messages]
    if len(roles) < 3 or roles[0] != "system" or roles[1] != "user" or roles[-1] != "assistant":
        raise DistillDataError(f"{where}: a conversation runs system, user, …, assistant; got {roles}")
    for message in record.messages:
        content = message.get("content")
        if not isinstance(content, list) or not all(
            isinstance(p, dict) and (p.get("type") == "image" or (p.get("type") == "text" and isinstance(p.get("text"), str)))
            for p in content
        ):
            raise DistillDataError(f"{where}: message content must be a list of text and image parts")
        if message["role"] == "assistant":
            text = "".join(p["text"] for p in content if p["type"] == "text")
            error = parse_turn(text).error
            if error:
                raise DistillDataError(f"{where}: an assistant turn breaks the protocol ({error})")
    return record.messages


def _checked_images(where: str, record: Conversation, root: Path) -> list[Path]:
    parts = sum(1 for m in record.messages for p in m["content"] if p["type"] == "image")
    if parts != len(record.images):
        raise DistillDataError(f"{where}: {parts} image parts but {len(record.images)} frame files")
    paths = [root / image for image in record.images]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DistillDataError(f"{where}: missing frame file {missing[0]}")
    return paths


def load_images(paths: list[Path]) -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in paths]


def data_hash(folder: Path) -> str:
    """SHA-256 of a dataset's conversations.jsonl: what a checkpoint manifest records."""
    return file_sha256(Path(folder) / "conversations.jsonl")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)
