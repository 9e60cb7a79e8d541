"""Benchmark datasets in, QAItems out: our JSONL, SportR's annotation JSON and DeepSport-style sets.

Video paths that are not absolute are relative to the dataset file's folder. A malformed record raises
:class:`DatasetError` naming the file and the line the record starts on.

Layouts
-------
``qa`` — our QA JSONL (DESIGN.md): one :class:`~sportlens.agent.records.QAItem` per line.

``sportr`` — SportR's annotations as one JSON object (the paper's image questions Q1–Q7 and video questions
Q8–Q13; this is the layout we accept, built from the paper's description)::

    {"images": [{"id": "bb_0001", "image": "images/bb_0001.jpg", "sport": "basketball", "split": "test",
                 "Q1": {"answer": "yes"},
                 "Q2": {"options": ["blocking foul", "charging", ...], "answer": "B"},
                 "Q3": {"options": {"A": "two free throws", "B": "..."}, "answer": "two free throws"},
                 "Q4": {"answer": "The defender slides under the shooter ..."},
                 "Q5": {"box": [x0, y0, x1, y1]},
                 "Q6": {"options": [...], "answer": "A"}, "Q7": {...}}],
     "videos": [{"id": "sc_0042", "video": "videos/sc_0042.mp4", "sport": "soccer", "event_window": [120, 160],
                 "Q8": {...}, "Q9": ..., "Q13": {...}}]}

  Q1/Q8 infraction (yes/no) · Q2/Q9 which foul · Q3/Q10 which penalty · Q4/Q11 explanation (open) ·
  Q5 evidence box (pixels of the image) · Q6/Q12 offensive tactic · Q7/Q13 defensive tactic. Any question may be
  absent; each may carry its own "question" text (else SportR's wording below) and "explanation". Options are a
  list (lettered A, B, … in order; "A) text" is also fine) or a {letter: text} object; an answer is a letter or
  an option's text. An image question is asked about a still clip made from the image.

``deepsport`` — a JSON list, or JSONL, of ``{"question", "options"?, "answer", "dimension", "video", "id"?,
"sport"?, "task"?, "event_window"?, "split"?}``; closed when it has options, open otherwise.
"""
from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from sportlens.agent.records import QAItem

FORMATS = ("auto", "qa", "sportr", "deepsport")

# SportR question number -> (task, level, answer type, dimension, default wording)
SPORTR_QUESTIONS = {
    1: ("infraction", 1, "yes_no", "rule & procedural logic", "Is there a foul or violation in this image? Answer yes or no."),
    2: ("foul_type", 2, "choice", "fine-grained recognition", "Which foul or violation is committed?"),
    3: ("penalty", 3, "choice", "rule & procedural logic", "What penalty should be given?"),
    4: ("explanation", 4, "open", "assessment & coaching", "Explain the referee's decision."),
    5: ("evidence_box", 5, "box", "fine-grained recognition",
        "Give the bounding box [x0, y0, x1, y1] in pixels of the evidence for the foul."),
    6: ("offensive_tactic", 6, "choice", "assessment & coaching", "Which offensive tactic is used?"),
    7: ("defensive_tactic", 6, "choice", "assessment & coaching", "Which defensive tactic is used?"),
}
SPORTR_VIDEO_QUESTIONS = {8: 1, 9: 2, 10: 3, 11: 4, 12: 6, 13: 7}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class DatasetError(ValueError):
    """A dataset file that cannot be read as it is; the message names the file and line."""


@dataclass(frozen=True)
class Dataset:
    """Items read from ``path``; relative video paths are relative to ``root``."""

    path: Path
    root: Path
    format: str
    items: list[QAItem]

    def video_path(self, item: QAItem) -> Path:
        video = Path(item.video)
        return video if video.is_absolute() else self.root / video


def load_dataset(path: str | Path, format: str = "auto") -> Dataset:
    """Read a dataset file in one of ``FORMATS`` ("auto" tells them apart by extension and shape)."""
    path = Path(path)
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read it ({error})") from error
    if format == "auto":
        format = _detect(path, text)
    if format == "qa":
        items = [_qa_item(path, line, record) for line, record in _jsonl(path, text)]
    elif format == "sportr":
        items = _sportr(path, text)
    else:
        records = _jsonl(path, text) if path.suffix == ".jsonl" else _json_array(path, text, _parse(path, text))
        items = [_deepsport_item(path, line, number, record) for number, (line, record) in enumerate(records)]
    seen: dict[str, int] = {}
    for item in items:
        if item.id in seen:
            raise DatasetError(f"{path}: id {item.id!r} appears twice")
        seen[item.id] = 1
    return Dataset(path=path, root=path.parent, format=format, items=items)


def _detect(path: Path, text: str) -> str:
    if path.suffix == ".jsonl":
        for line, record in _jsonl(path, text):
            return "qa" if "answer_type" in record else "deepsport"
        raise DatasetError(f"{path}: the file holds no records")
    data = _parse(path, text)
    if isinstance(data, dict) and ({"images", "videos"} & data.keys()):
        return "sportr"
    if isinstance(data, list):
        return "deepsport"
    raise DatasetError(f"{path}:1: neither SportR's {{\"images\", \"videos\"}} object nor a DeepSport list of records")


def _parse(path: Path, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from error


def _jsonl(path: Path, text: str) -> list[tuple[int, dict]]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{path}:{number}: not valid JSON ({error.msg})") from error
        if not isinstance(record, dict):
            raise DatasetError(f"{path}:{number}: a record must be a JSON object")
        records.append((number, record))
    return records


def _json_array(path: Path, text: str, data, key: str | None = None) -> list[tuple[int, dict]]:
    """The records of a JSON array (top level, or under ``key``), each with the line it starts on."""
    if key is None:
        start = text.index("[")
    else:
        match = re.search(r'"' + re.escape(key) + r'"\s*:\s*\[', text)
        if match is None:
            raise DatasetError(f"{path}: {key!r} must be a list of records")
        start = match.end() - 1
    decoder, records, position = json.JSONDecoder(), [], start + 1
    expected = data if key is None else data[key]
    while len(records) < len(expected):
        while text[position] in " \t\r\n,":
            position += 1
        record, end = decoder.raw_decode(text, position)
        line = text.count("\n", 0, position) + 1
        if not isinstance(record, dict):
            raise DatasetError(f"{path}:{line}: a record must be a JSON object")
        records.append((line, record))
        position = end
    return records


def _qa_item(path: Path, line: int, record: dict) -> QAItem:
    try:
        return QAItem.model_validate(record)
    except ValidationError as error:
        raise DatasetError(f"{path}:{line}: not a QA item: {_first_error(error)}") from error


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "record"
    return f"{where}: {first['msg']} ({error.error_count()} problem(s))"


def _options(path: Path, line: int, raw) -> list[str]:
    """Options in our "A) text" form from a list (lettered in order) or a {letter: text} object."""
    if isinstance(raw, dict):
        pairs = sorted((str(k).strip().upper(), str(v).strip()) for k, v in raw.items())
    elif isinstance(raw, list) and all(isinstance(o, str) for o in raw):
        pairs = []
        for position, option in enumerate(raw):
            letter = string.ascii_uppercase[position]
            match = re.match(r"^\s*([A-Z])\s*[).:]\s*(.+)$", option)
            pairs.append((letter, match.group(2).strip() if match and match.group(1) == letter else option.strip()))
    else:
        raise DatasetError(f"{path}:{line}: options must be a list of strings or a {{letter: text}} object")
    if len(pairs) < 2 or [p[0] for p in pairs] != list(string.ascii_uppercase[: len(pairs)]):
        raise DatasetError(f"{path}:{line}: options need at least two choices lettered A, B, C… in order")
    return [f"{letter}) {text}" for letter, text in pairs]


def _answer_letter(path: Path, line: int, answer, options: list[str]) -> str:
    """An answer given as a letter ("B", "B) text") or as an option's text, as its letter."""
    if not isinstance(answer, str) or not answer.strip():
        raise DatasetError(f"{path}:{line}: the answer must be a non-empty string")
    texts = {option.split(") ", 1)[1].strip().lower(): option[0] for option in options}
    letters = [option[0] for option in options]
    head = answer.strip()
    if head[:1].upper() in letters and head[1:2] in ("", ")", ".", ":", " ") and head.lower() not in texts:
        return head[:1].upper()
    if head.lower() in texts:
        return texts[head.lower()]
    raise DatasetError(f"{path}:{line}: answer {answer!r} is neither an option letter nor an option's text")


def _sportr(path: Path, text: str) -> list[QAItem]:
    data = _parse(path, text)
    items: list[QAItem] = []
    for kind, media_key in (("images", "image"), ("videos", "video")):
        if kind not in data:
            continue
        if not isinstance(data[kind], list):
            raise DatasetError(f"{path}: {kind!r} must be a list of records")
        for line, record in _json_array(path, text, data, kind):
            items += _sportr_record(path, line, record, media_key)
    return items


def _sportr_record(path: Path, line: int, record: dict, media_key: str) -> list[QAItem]:
    for key in ("id", media_key, "sport"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise DatasetError(f"{path}:{line}: a SportR {media_key} record needs a string {key!r}")
    numbers = range(1, 8) if media_key == "image" else range(8, 14)
    asked = [n for n in numbers if f"Q{n}" in record]
    unknown = [k for k in record if re.fullmatch(r"Q\d+", k) and int(k[1:]) not in numbers]
    if unknown:
        raise DatasetError(f"{path}:{line}: {', '.join(unknown)} are not {media_key} questions (Q{numbers[0]}–Q{numbers[-1]})")
    items = []
    for number in asked:
        question = record[f"Q{number}"]
        if not isinstance(question, dict):
            raise DatasetError(f"{path}:{line}: Q{number} must be an object")
        base = number if media_key == "image" else SPORTR_VIDEO_QUESTIONS[number]
        task, level, answer_type, dimension, wording = SPORTR_QUESTIONS[base]
        if media_key == "video":
            wording = wording.replace("this image", "this clip")
        options, box = None, None
        if answer_type == "choice":
            options = _options(path, line, question.get("options"))
            answer = _answer_letter(path, line, question.get("answer"), options)
        elif answer_type == "box":
            box = question.get("box")
            if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
                raise DatasetError(f"{path}:{line}: Q{number} needs a box of four numbers [x0, y0, x1, y1]")
            answer = json.dumps(box)
        else:
            answer = question.get("answer")
            if not isinstance(answer, str) or not answer.strip():
                raise DatasetError(f"{path}:{line}: Q{number} needs a non-empty string answer")
            if answer_type == "yes_no":
                answer = answer.strip().lower()
                if answer not in ("yes", "no"):
                    raise DatasetError(f"{path}:{line}: Q{number} is answered yes or no, not {answer!r}")
        try:
            items.append(QAItem(
                id=f"{record['id']}-Q{number}", video=record[media_key], question=question.get("question", wording),
                options=options, answer=answer, answer_type=answer_type, sport=record["sport"], task=task,
                level=level, dimension=dimension, event_window=record.get("event_window"), box=box,
                explanation=question.get("explanation"), split=record.get("split"),
            ))
        except ValidationError as error:
            raise DatasetError(f"{path}:{line}: Q{number}: {_first_error(error)}") from error
    return items


def _deepsport_item(path: Path, line: int, number: int, record: dict) -> QAItem:
    for key in ("question", "answer", "dimension", "video"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise DatasetError(f"{path}:{line}: a DeepSport record needs a non-empty string {key!r}")
    options = _options(path, line, record["options"]) if record.get("options") is not None else None
    answer = _answer_letter(path, line, record["answer"], options) if options else record["answer"]
    window = record.get("event_window", record.get("frame_range"))
    try:
        return QAItem(
            id=str(record.get("id", f"{path.stem}-{number}")), video=record["video"], question=record["question"],
            options=options, answer=answer, answer_type="choice" if options else "open",
            sport=str(record.get("sport", "unknown")), task=str(record.get("task", record["dimension"])),
            dimension=record["dimension"], event_window=window, explanation=record.get("explanation"),
            split=record.get("split"),
        )
    except ValidationError as error:
        raise DatasetError(f"{path}:{line}: {_first_error(error)}") from error


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES
