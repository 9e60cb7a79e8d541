"""The oracle policy: a ModelBackend that knows one item's ground truth and plays the protocol perfectly.

It goes through the same agent loop as any model, so its trajectories are valid protocol turns (the teacher
for the training pipeline), and it proves each question can be answered from frames the tool can fetch.
It answers only from what it was shown: the truth is given only once a frame inside the item's event window
has been shown and, for a SportSim event, that frame visibly carries the event banner (checked on the pixels,
``sportsim_render.shows_banner``). Until then it asks ``choose_frames`` for the event window; on a last turn
with nothing seen it makes a fixed, truth-blind guess. With ``AgentSettings(max_turns=1)`` the same policy is
the honest "answer from the k uniform frames" baseline.

A box is answered as a model writes it, in pixels of the frame it was shown (``scoring.BoxSpace``), so the oracle
scores what a perfect model scores; :func:`oracle_backends` tells each box question's oracle the size of the video
or image its truth is counted in.
"""
from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from sportlens.agent import protocol
from sportlens.agent.backends.base import BackendError, ChatMessage, Generation
from sportlens.agent.records import QAItem
from sportlens.benchmarks.loaders import is_image
from sportlens.benchmarks.scoring import BoxSpace, parse_box
from sportlens.benchmarks.sportsim_render import shows_banner
from sportlens.tools.frames import Frame
from sportlens.tools.video import probe

MODEL_ID = "sportsim-oracle"
UNSEEN_ANSWER = "I did not see the moment the question is about."

_FRAMES_PER_CALL = re.compile(r"to get (\d+) frames")
_MAX_TURNS = re.compile(r"at most (\d+) turns")
_LAST_FRAME = re.compile(r"inside the video \(0 to (\d+)\)")


class OraclePolicy:
    """Answers ``item`` perfectly once its evidence is in view; a fresh instance per question.

    Args:
        item: the question with its answer and event window.
        cue: whether a frame inside the event window shows the evidence; default: the SportSim banner.
            A window covering the whole video needs no cue (any frame shows a team's formation).
            Pass ``lambda frame: True`` for datasets whose windows are trusted as they are.
        original_size: (width, height) of the video or image the item's box is counted in; its box answer is
            that box mapped into the pixels of the frames shown. None: the box is already in the shown pixels.

    It is no language model: it reports 0 tokens and no logprobs.
    """

    model_id = MODEL_ID

    def __init__(
        self, item: QAItem, *, cue: Callable[[np.ndarray], bool] = shows_banner,
        original_size: tuple[int, int] | None = None,
    ) -> None:
        self.item = item
        self.cue = cue
        self.original_size = original_size

    def generate(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float = 0.0, constraint: str | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        system = messages[0].text()
        frames_per_call = int(_FRAMES_PER_CALL.search(system).group(1))
        last_frame = int(_LAST_FRAME.search(system).group(1))
        last = is_last_turn(messages)
        shown = [part for m in messages if m.role == "user" for part in m.parts if isinstance(part, Frame)]
        window = self._window(last_frame)
        evidence = [f for f in shown if window[0] <= f.index <= window[1] and (self._whole(window, last_frame) or self.cue(f.image))]
        if evidence:
            indices = ", ".join(str(f.index) for f in evidence[:4])
            thought = f"Frames {indices} show the moment. {self.item.explanation or ''}".strip()
            return oracle_turn(thought, f"<answer>{_clean(self._truth(evidence[0]))}</answer>")
        requested = _requested_ranges(messages)
        if not last:
            frame_range = _widen(window, frames_per_call, last_frame, requested)
            if frame_range is not None:
                thought = (f"None of the frames I have seen shows the moment this question is about; "
                           f"I look closer at frames {frame_range[0]} to {frame_range[1]}.")
                call = json.dumps({"name": "choose_frames", "arguments": {"frame_range": list(frame_range)}})
                return oracle_turn(thought, f"<tool_call>{call}</tool_call>")
        return oracle_turn("I have not seen the moment this question is about, so I can only guess.",
                     f"<answer>{self._guess(shown)}</answer>")

    def score_continuations(self, messages: list[ChatMessage], continuations: list[str]) -> list[float]:
        """Refused: with no language model behind it there are no log-probabilities to score options with."""
        raise BackendError(f"the {type(self).__name__} backend cannot score options: it is no language model")

    def close(self) -> None:
        pass

    def _window(self, last_frame: int) -> tuple[int, int]:
        if self.item.event_window is None:
            return 0, last_frame
        start, end = self.item.event_window
        return max(0, start), min(last_frame, end)

    def _truth(self, shown: Frame) -> str:
        """The reference answer as a model shown ``shown`` writes it: a box in that frame's pixels."""
        box = (self.item.box or parse_box(self.item.answer)) if self.item.answer_type == "box" else None
        if box is None or self.original_size is None:
            return self.item.answer
        height, width = shown.image.shape[:2]
        space = BoxSpace(shown=(width, height), original=self.original_size)
        return json.dumps([round(value) for value in space.to_shown(box)])

    @staticmethod
    def _whole(window: tuple[int, int], last_frame: int) -> bool:
        return window == (0, last_frame)

    def _guess(self, shown: list[Frame]) -> str:
        """A fixed guess that does not look at the answer: a letter, yes/no or a box picked by the item id."""
        pick = zlib.crc32(self.item.id.encode())
        if self.item.options:
            return protocol.option_letters(self.item.options)[pick % len(self.item.options)]
        if self.item.answer_type == "yes_no":
            return ("yes", "no")[pick % 2]
        if self.item.answer_type == "box":
            height, width = shown[0].image.shape[:2] if shown else (360, 640)
            return json.dumps([width // 4, height // 4, 3 * width // 4, 3 * height // 4])
        return UNSEEN_ANSWER


def oracle_backends(
    policy: Callable[..., OraclePolicy], video_path: Callable[[QAItem], Path]
) -> Callable[[QAItem], OraclePolicy]:
    """A fresh ``policy`` per item (the runner's ``backend_for``, distill's ``teacher``).

    A box item's oracle is told the size of its video or image (``video_path(item)``), so that it answers in the
    shown frame's pixels; no other answer depends on the size, so no other item's file is opened for it.
    """

    def backend_for(item: QAItem) -> OraclePolicy:
        if item.answer_type != "box":
            return policy(item)
        return policy(item, original_size=media_size(video_path(item)))

    return backend_for


def media_size(path: Path) -> tuple[int, int]:
    """(width, height) of a video as displayed, or of an image (SportR's questions are about stills)."""
    if is_image(path):
        with Image.open(path) as image:
            return image.size
    info = probe(path)
    return info.width, info.height


def is_last_turn(messages: list[ChatMessage]) -> bool:
    """Whether the turn about to be written must answer: the turn budget (read from the system prompt) or a note says so."""
    max_turns = int(_MAX_TURNS.search(messages[0].text()).group(1))
    turns_taken = sum(1 for m in messages if m.role == "assistant")
    return turns_taken + 1 >= max_turns or protocol.LAST_TURN_NOTE in messages[-1].text()


def oracle_turn(thought: str, action: str) -> Generation:
    """An oracle's turn: its thought (made safe inside the tag) and its action; no tokens, it is no model."""
    return Generation(text=f"<think>{_clean(thought)}</think>\n{action}", tokens_in=0, tokens_out=0)


def _clean(text: str) -> str:
    """Text safe inside a protocol tag."""
    return text.replace("<", "(").replace(">", ")")


def _requested_ranges(messages: list[ChatMessage]) -> list[tuple[int, int]]:
    ranges = []
    for message in messages:
        if message.role == "assistant":
            parsed = protocol.parse_turn(message.text())
            if parsed.frame_range is not None:
                ranges.append(parsed.frame_range)
    return ranges


def _widen(
    window: tuple[int, int], frames_per_call: int, last_frame: int, requested: list[tuple[int, int]]
) -> tuple[int, int] | None:
    """The narrowest range round the event window's centre that ``protocol.check_frame_range`` accepts.

    The window grows until it holds a tool call's frames strictly inside it (start < end - n), then by two
    frames at each end while it repeats the whole video or an earlier call: one frame would still be a repeat.
    """
    start, end = window
    grow = max(0, frames_per_call + 1 - (end - start))
    start, end = start - grow // 2 - grow % 2, end + grow // 2
    for _ in range(12):
        candidate = _inside(start, end, last_frame)
        if protocol.check_frame_range(
            candidate, total_frames=last_frame + 1, frames_per_call=frames_per_call, earlier=requested
        ) is None:
            return candidate
        start, end = start - 2, end + 2
    return None


def _inside(start: int, end: int, last_frame: int) -> tuple[int, int]:
    """The range shifted to lie inside the video, cut to the whole video where it is wider."""
    if start < 0:
        start, end = 0, end - start
    if end > last_frame:
        start, end = max(0, start - (end - last_frame)), last_frame
    return start, end
