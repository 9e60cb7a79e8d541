"""The oracle of SportSim visual clips: plays the protocol from the pixels alone, the way a trained model should.

Unlike ``oracle.OraclePolicy``, which asks for an item's known event window, this policy reads the frames it was
shown: it counts the marks in the bar of each initial frame, in order, until one shows a new mark; if that frame
shows the incident it answers, else it calls ``choose_frames`` on the two initial frames around the new mark, and
answers from the frame of the returned ones that shows the incident. Its thoughts say exactly that, frame by
frame, so that a model distilled from it learns a scan whose every step is one short look or one short copy:
``frame 13 (6.5s): asked what, there is 1 mark. frame 40 (20.0s): asked what, there is 1 mark. frame 67 (33.5s):
asked what, there are 2 marks. The new mark appeared between frame 40 and frame 67.``; after the call it scans the new
frames the same way until one shows the incident (``frame 60 (30.0s): asked what, shows a score.``), and concludes
(``So the answer is a score.``).

Every entry starts with what the question asks (``asked``: what, team, where, or for a penalty the sport whose rule
applies), and the entry that sees the incident names what the question asks for, the right option's text
(``frame 60 (30.0s): asked team, shows red.``), which the closing sentence then copies. The question stands hundreds
of tokens back, at a distance the scans vary; carried from entry to entry it is a copy at one fixed distance. When the
seen entry described the whole marker (colour, shape, place) the model, 3.9M parameters from random weights, learned
every word of it and of ``asked``, but after 2,000 SFT steps its closing sentence still named the nearest word (the
place) whatever was asked (benchmarks/results/visual-cpu/README.md): choosing among words it had written was the one
step it did not learn. Here the choice is made where the frame is read, right after ``asked``.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from sportlens.agent.backends.base import ChatMessage, Generation
from sportlens.agent.records import QAItem
from sportlens.benchmarks.oracle import MODEL_ID as ORACLE_MODEL_ID, OraclePolicy, is_last_turn, oracle_turn
from sportlens.benchmarks.sportsim_visual import GENERATOR_VERSION, count_marks, shows_moment
from sportlens.tools.frames import Frame

MODEL_ID = "sportsim-visual-oracle"
# What each question kind asks, one token in the shipped model's tokenizer; a penalty question asks for its sport's
# rule, so it carries the sport's name; look drills (no question) say "look".
ASKED = {"what": "what", "who": "team", "where": "where"}
DRILL_ASKED = "look"


def asked(item: QAItem) -> str:
    """The word every scan entry carries for ``item``: "what", "team", "where", or the sport of a penalty question."""
    return item.sport if item.task == "penalty" else ASKED[item.task]


def marker_words(description: str) -> str:
    """A marker's description ("a red circle on the left") as a look drill's entry says it: "red circle, left"."""
    colour, shape, place = re.fullmatch(r"a (\w+) (\w+) on the (\w+)", description).groups()
    return f"{colour} {shape}, {place}"


def scan_thought(frames: list[Frame], asked: str) -> tuple[str, int | None]:
    """The scan of initial frames up to the first with a new mark, and that frame's position (None: no new mark).

    Every entry but the last is exactly as many tokens long (18, in the shipped model's tokenizer) as a labelled
    frame is positions long in the prompt (its label, then 18 image tokens that advance the position by 6), so the
    k-th entry stands at one fixed distance from the k-th frame and its label: copying the label and reading the
    frame is one fixed-offset look, the easiest thing attention learns.
    """
    first = count_marks(frames[0].image)
    parts = []
    for position, frame in enumerate(frames):
        marks = count_marks(frame.image)
        parts.append(f"{_entry(frame)} asked {asked}, there {'is 1 mark' if marks == 1 else f'are {marks} marks'}.")
        if marks > first:
            return " ".join(parts), position
    return " ".join(parts), None


def moment_scan(frames: list[Frame], shows: str, asked: str) -> tuple[str, Frame | None]:
    """The scan of a tool call's frames up to the first that shows the incident, and that frame (None: none does).

    The entry that sees the incident says what the question asks for (``shows``: "red" for "which team?"); every
    entry before it is 18 tokens, so reading the marker is a look at a fixed distance back, like reading the counts.
    """
    parts = []
    for frame in frames:
        if shows_moment(frame.image):
            parts.append(seen_entry(frame, shows, asked))
            return " ".join(parts), frame
        parts.append(unseen_entry(frame, asked))
    return " ".join(parts), None


def _option_text(item: QAItem) -> str:
    """The text of the item's right option ("a score" for "B) a score")."""
    for option in item.options or []:
        letter, _, text = option.partition(")")
        if letter.strip() == item.answer:
            return text.strip()
    return item.answer


def seen_entry(frame: Frame, shows: str, asked: str) -> str:
    """The scan entry of a frame that shows the incident: "frame 80 (40.0s): asked team, shows red." """
    return f"{_entry(frame)} asked {asked}, shows {shows}."


def unseen_entry(frame: Frame, asked: str) -> str:
    """The scan entry of a tool frame that does not show it: "frame 84 (42.0s): asked team, the incident is not seen." """
    return f"{_entry(frame)} asked {asked}, the incident is not seen."


def _entry(frame: Frame) -> str:
    return f"frame {frame.index} ({frame.seconds:.1f}s):"


class VisualOraclePolicy(OraclePolicy):
    """Answers a SportSim visual ``item`` from the frames it has been shown; a fresh instance per question."""

    model_id = MODEL_ID

    def __init__(self, item: QAItem) -> None:
        super().__init__(item, cue=shows_moment)

    def generate(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float = 0.0, constraint: str | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        last_turn = is_last_turn(messages)
        initial = [part for part in messages[1].parts if isinstance(part, Frame)]
        later = [part for m in messages[2:] if m.role == "user" for part in m.parts if isinstance(part, Frame)]
        answer = f"<answer>{self.item.answer}</answer>"
        # The thought names the right option's text before the letter: choosing the letter is then a copy of the
        # letter in front of that text in the question, not a lookup the model must learn per question kind.
        conclusion = f"So the answer is {_option_text(self.item)}."
        if self.item.task == "side":
            return oracle_turn(f"{self.item.explanation or ''} {conclusion}", answer)
        shows, carried = _option_text(self.item), asked(self.item)
        if later:  # the frames of the tool call
            scan, seen = moment_scan(later, shows, carried)
            if seen is not None:
                return oracle_turn(f"{scan} {conclusion}", answer)
            return oracle_turn(f"{scan} I have not seen the moment, so I can only guess.",
                         f"<answer>{self._guess(initial)}</answer>")
        scan, position = scan_thought(initial, carried)
        if position is not None and shows_moment(initial[position].image):
            return oracle_turn(f"{scan} It shows {shows}. {conclusion}", answer)
        if position and not last_turn:
            start, end = initial[position - 1].index, initial[position].index
            call = json.dumps({"name": "choose_frames", "arguments": {"frame_range": [start, end]}})
            return oracle_turn(f"{scan} The new mark appeared between frame {start} and frame {end}.",
                         f"<tool_call>{call}</tool_call>")
        return oracle_turn(f"{scan} I have not seen the moment, so I can only guess.",
                     f"<answer>{self._guess(initial)}</answer>")


def oracle_for(dataset: Path) -> tuple[type[OraclePolicy], str]:
    """The oracle that plays a question set and its model id: this one for a SportSim visual set (its sportsim.json
    says so), else ``OraclePolicy``, which asks for the event window."""
    described = Path(dataset).parent / "sportsim.json"
    if described.exists() and json.loads(described.read_text()).get("generator") == GENERATOR_VERSION:
        return VisualOraclePolicy, MODEL_ID
    return OraclePolicy, ORACLE_MODEL_ID
