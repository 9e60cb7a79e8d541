"""Benchmark datasets in, QAItems out: our JSONL, SportR's annotation JSON, DeepSport-style sets, Video-R1's
training and eval JSON, and SPORTU's video JSON, each read as its authors publish it.

Video paths that are not absolute are relative to the dataset file's folder. A malformed record raises
:class:`DatasetError` in one line naming the file, the line the record starts on (and, in a list of records,
its index) and the field.

Layouts
-------
``qa`` — our QA JSONL (docs/records.md): one :class:`~sportlens.agent.records.QAItem` per line.

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
  an option's text. Q2/Q3/Q6/Q7 and their video twins without options are SportR's open-ended form: open
  questions answered in free text. An image question is asked about a still clip made from the image.

``deepsport`` — a JSON list, or JSONL, of ``{"question", "options"?, "answer", "dimension", "video", "id"?,
"sport"?, "task"?, "event_window"?, "split"?}``; closed when it has options, open otherwise.

``videor1`` — Video-R1's JSON list (or JSONL) of records: Video-R1-260k and Video-R1-COT-165k (which FrameThinker
trains on too) and the Video-R1-eval files (github.com/tulerfeng/Video-R1)::

    {"problem_id": 2, "problem": "What appears on the screen ...?", "data_type": "video",
     "problem_type": "multiple choice", "options": ["A. A YouTube subscription notification", ...],
     "solution": "<answer>A</answer>", "path": "./LLaVA-Video-178K/.../ytb_7nRmsEw7nsE.mp4",
     "data_source": "LLaVA-Video-178K/30_60_s_youtube_v0_1"}

  "multiple choice" becomes a choice question (options in our "A) text" form, the letter inside <answer>);
  "numerical", "regression", "OCR" and "free-form" become open questions answered by the text inside <answer>.
  The id is problem_id, the task is problem_type; "path" is relative to the file's folder, as Video-R1's own
  scripts read it; "process" (the SFT chain of thought) and "data_source" are not needed.

``sportu`` — SPORTU-video's SportU_Video_mc.json and SportU_video_oe.json (github.com/chili-lab/SPORTU)::

    {"id": "soccer_267", "question": "What main color jersey is the offensive team wearing?",
     "options": {"A": "red & white", ...}, "answer": "D", "difficulty level": "medium"}
    {"id": "baseball_311", "question": "Why did the rule violation occur in the video?",
     "answer": "pitcher in white balks", "difficulty level": "hard"}

  "id" names the clip, not the question (a clip has up to ten), so an item's id is "<clip id>-<record index>".
  Options are a {letter: text-or-number} object or a list; an answer is a letter, an option's text or number.
  The difficulty ("easy", "medium", "hard"), by which SPORTU reports, is the task and level 1–3; the sport is
  the id's prefix. The clip is "<clip id>.mp4" found up to two folders below the file (SPORTU's Drive zips
  unpack one folder per sport, Soccer/soccer_267.mp4), else beside it.
"""
from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from sportlens.agent.records import QAItem

FORMATS = ("auto", "qa", "sportr", "deepsport", "videor1", "sportu")

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
VIDEOR1_OPEN_TYPES = ("numerical", "regression", "OCR", "free-form")
SPORTU_LEVELS = {"easy": 1, "medium": 2, "hard": 3}
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
        read = {"deepsport": _deepsport_item, "videor1": _videor1_item, "sportu": _sportu_item}[format]
        items = [read(path, line, number, record) for number, (line, record) in enumerate(_records(path, text, format))]
        if format == "sportu":
            items = _with_sportu_clips(items, path.parent)
    seen: dict[str, int] = {}
    for item in items:
        if item.id in seen:
            raise DatasetError(f"{path}: id {item.id!r} appears twice")
        seen[item.id] = 1
    return Dataset(path=path, root=path.parent, format=format, items=items)


def _detect(path: Path, text: str) -> str:
    if path.suffix == ".jsonl":
        for line, record in _jsonl(path, text):
            return "qa" if "answer_type" in record else _record_format(record)
        raise DatasetError(f"{path}: the file holds no records")
    data = _parse(path, text)
    if isinstance(data, dict) and ({"images", "videos"} & data.keys()):
        return "sportr"
    if isinstance(data, list):
        return _record_format(data[0]) if data and isinstance(data[0], dict) else "deepsport"
    raise DatasetError(f"{path}:1: neither SportR's {{\"images\", \"videos\"}} object nor a list of records")


def _record_format(record: dict) -> str:
    """Which list-of-records layout a record belongs to, by the fields only that layout has."""
    if "problem_type" in record or "solution" in record:
        return "videor1"
    if "difficulty level" in record:
        return "sportu"
    return "deepsport"


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


def _records(path: Path, text: str, format: str) -> list[tuple[int, dict]]:
    """The records of a JSONL file or of a JSON list, each with the line it starts on."""
    if path.suffix == ".jsonl":
        return _jsonl(path, text)
    data = _parse(path, text)
    if not isinstance(data, list):
        raise DatasetError(f"{path}:1: a {format} file is a JSON list of records (or JSONL), "
                           f"not a {type(data).__name__}")
    return _json_array(path, text, data)


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


def _options(where: str, raw) -> list[str]:
    """Options in our "A) text" form from a list (lettered in order) or a {letter: text} object.

    ``where`` ("file:line: field") starts the error message. Numbers are options too (SPORTU counts players).
    """
    if isinstance(raw, dict) and all(_is_text(v) for v in raw.values()):
        pairs = sorted((str(k).strip().upper(), str(v).strip()) for k, v in raw.items())
    elif isinstance(raw, list) and all(_is_text(o) for o in raw):
        pairs = []
        for position, option in enumerate(map(str, raw)):
            letter = string.ascii_uppercase[position]
            match = re.match(r"^\s*([A-Z])\s*[).:]\s*(.+)$", option)
            pairs.append((letter, match.group(2).strip() if match and match.group(1) == letter else option.strip()))
    else:
        raise DatasetError(f"{where}: options must be a list of texts or a {{letter: text}} object")
    if len(pairs) < 2 or [p[0] for p in pairs] != list(string.ascii_uppercase[: len(pairs)]):
        raise DatasetError(f"{where}: options need at least two choices lettered A, B, C… in order")
    return [f"{letter}) {text}" for letter, text in pairs]


def _is_text(value) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _answer_letter(where: str, answer, options: list[str]) -> str:
    """An answer given as a letter ("B", "B) text") or as an option's text or number, as its letter."""
    if not _is_text(answer) or not str(answer).strip():
        raise DatasetError(f"{where}: the answer must be a non-empty string or a number")
    texts = {option.split(") ", 1)[1].strip().lower(): option[0] for option in options}
    letters = [option[0] for option in options]
    head = str(answer).strip()
    if head[:1].upper() in letters and head[1:2] in ("", ")", ".", ":", " ") and head.lower() not in texts:
        return head[:1].upper()
    if head.lower() in texts:
        return texts[head.lower()]
    raise DatasetError(f"{where}: answer {answer!r} is neither an option letter nor an option's text")


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
        if answer_type == "choice" and not question.get("options"):
            answer_type = "open"  # SportR's open-ended form of a closed question
        if answer_type == "choice":
            options = _options(f"{path}:{line}: Q{number}", question.get("options"))
            answer = _answer_letter(f"{path}:{line}: Q{number}", question.get("answer"), options)
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
    options = _options(f"{path}:{line}", record["options"]) if record.get("options") is not None else None
    answer = _answer_letter(f"{path}:{line}", record["answer"], options) if options else record["answer"]
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


def _videor1_item(path: Path, line: int, number: int, record: dict) -> QAItem:
    where = f"{path}:{line}: record {number}"
    for key in ("problem", "problem_type", "solution", "path"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise DatasetError(f"{where}: field {key!r} must be a non-empty string")
    kind = record["problem_type"]
    if kind != "multiple choice" and kind not in VIDEOR1_OPEN_TYPES:
        raise DatasetError(f"{where}: field 'problem_type': {kind!r} is not \"multiple choice\" or one of "
                           f"{', '.join(VIDEOR1_OPEN_TYPES)}")
    # read as Video-R1's own reward reads it
    solution = re.search(r"<answer>\s*(.*?)\s*</answer>", record["solution"], re.DOTALL)
    if solution is None or not solution.group(1):
        raise DatasetError(f"{where}: field 'solution': no answer inside <answer>…</answer> "
                           f"in {record['solution']!r}")
    options = None
    answer = solution.group(1)
    if kind == "multiple choice":
        options = _options(f"{where}: field 'options'", record.get("options"))
        answer = _answer_letter(f"{where}: field 'solution'", answer, options)
    problem_id = record.get("problem_id")
    try:
        return QAItem(
            id=f"{path.stem}-{number}" if problem_id is None else str(problem_id), video=record["path"],
            question=record["problem"], options=options, answer=answer,
            answer_type="choice" if options else "open", sport="unknown", task=kind,
        )
    except ValidationError as error:
        raise DatasetError(f"{where}: {_first_error(error)}") from error


def _sportu_item(path: Path, line: int, number: int, record: dict) -> QAItem:
    where = f"{path}:{line}: record {number}"
    for key in ("id", "question", "difficulty level"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise DatasetError(f"{where}: field {key!r} must be a non-empty string")
    difficulty = record["difficulty level"].strip().lower()
    if difficulty not in SPORTU_LEVELS:
        raise DatasetError(f"{where}: field 'difficulty level': {record['difficulty level']!r} "
                           "is not easy, medium or hard")
    options = None
    if "options" in record:
        options = _options(f"{where}: field 'options'", record["options"])
        answer = _answer_letter(f"{where}: field 'answer'", record.get("answer"), options)
    elif _is_text(record.get("answer")) and str(record["answer"]).strip():
        answer = str(record["answer"]).strip()
    else:
        raise DatasetError(f"{where}: field 'answer' must be a non-empty string or a number")
    clip = record["id"].strip()
    try:
        return QAItem(
            id=f"{clip}-{number}", video=f"{clip}.mp4", question=record["question"], options=options, answer=answer,
            answer_type="choice" if options else "open", sport=re.sub(r"(_\d+)+$", "", clip).replace("_", " ").lower(),
            task=difficulty, level=SPORTU_LEVELS[difficulty],
        )
    except ValidationError as error:
        raise DatasetError(f"{where}: {_first_error(error)}") from error


def _with_sportu_clips(items: list[QAItem], root: Path) -> list[QAItem]:
    """Point each SPORTU item at its clip where one lies up to two folders below ``root`` (e.g. Soccer/)."""
    clips: dict[str, str] = {}
    for pattern in ("*.mp4", "*/*.mp4", "*/*/*.mp4"):
        for found in sorted(root.glob(pattern)):
            clips.setdefault(found.name, found.relative_to(root).as_posix())
    return [item.model_copy(update={"video": clips.get(item.video, item.video)}) for item in items]


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES
