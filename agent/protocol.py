"""The agent protocol v2 (docs/protocol.md): the prompts the model sees, the parser of what it says, the rules a tool call obeys.

The protocol is DeepSport's "think with videos" loop in the hermes tool-call form that Qwen-VL models,
vLLM's hermes parser and TRL understand. Serving, benchmarks and training all go through this module, so
what is trained is exactly what is served.

What changed from v1 to v2 (FrameThinker-RL's checks, which DeepSport adopts; benchmarks/README.md compares):

- width: v1 accepted a range holding n frames (``end - start + 1 >= n``); v2 rejects ``start >= end - n``,
  so a range holds at least n frames strictly inside it.
- repeats: v1 rejected an exact repeat of an earlier call; v2 counts the whole video ``(0, N-1)`` as already
  seen (the initial frames sample it) and rejects a range within one frame of an earlier one at both ends.
- sampling: the frames inside a range are a named setting (``tools.frames.Sampler``); ``"centred"``, v1's
  only sampler, stays the default everywhere.
"""
from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from typing import Literal

from sportlens.agent.backends.base import ChatMessage
from sportlens.tools.frames import Frame

TOOL_SCHEMA = {
    "type": "function",
    "function": {
        "name": "choose_frames",
        "description": "Return frames sampled uniformly inside a range of raw frame indices of the video.",
        "parameters": {
            "type": "object",
            "properties": {
                "frame_range": {
                    "type": "array",
                    "items": {"type": "integer"},
                    "minItems": 2,
                    "maxItems": 2,
                    "description": "[start, end], raw frame indices, with more frames strictly between start and end "
                    "than the call returns",
                }
            },
            "required": ["frame_range"],
        },
    },
}

SYSTEM_PROMPT = """You review sports video like a referee reviewing a play.
You are shown {initial_frames} frames sampled uniformly from a video of {total_frames} frames at {fps:.2f} fps ({duration:.1f} s). Each frame is preceded by its label: frame index and time.
Think inside <think></think>. Then do exactly one of:
- look closer: call the tool to get {frames_per_call} frames sampled uniformly inside a range of frame indices:
<tool_call>{{"name": "choose_frames", "arguments": {{"frame_range": [start, end]}}}}</tool_call>
- answer: <answer>your answer</answer> (for a multiple-choice question, the option letter only).
A range must lie inside the video (0 to {last_frame}) and have start < end - {frames_per_call}, so that at least {frames_per_call} frames lie strictly between start and end. It must not repeat the whole video or an earlier range, not even off by one frame at either end.
You have at most {max_turns} turns; the last one must answer.

<tools>
{tool_schema}
</tools>"""

LAST_TURN_NOTE = "This is your last turn: answer now."

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_OPTION = re.compile(r"^\s*([A-Z])\s*[).:]\s*(\S.*?)\s*$")
_RANGE_WRITTEN = re.compile(
    r'<tool_call>\s*\{\s*"name"\s*:\s*"choose_frames"\s*,\s*"arguments"\s*:\s*\{\s*"frame_range"\s*:\s*'
    r"\[\s*(-?\d+)\s*,\s*(-?\d+)\s*\]"
)


@dataclass(frozen=True)
class ParsedTurn:
    """What one assistant turn said. ``error`` names the first protocol rule it broke, if any.

    A turn with an error may still carry a usable action (a missing <think> does not void an answer);
    ``action`` is "invalid" only when nothing usable was said.
    """

    thought: str
    action: Literal["choose_frames", "answer", "invalid"]
    frame_range: tuple[int, int] | None = None
    answer: str | None = None
    error: str | None = None


def parse_turn(text: str) -> ParsedTurn:
    """Parse one assistant turn in either tool-call form (hermes or DeepSport's) or as an answer.

    >>> parse_turn('<think>look at the foul</think><tool_call>{"name": "choose_frames", '
    ...            '"arguments": {"frame_range": [120, 240]}}</tool_call>').frame_range
    (120, 240)
    """
    think = _THINK.search(text)
    thought = think.group(1).strip() if think else ""
    missing_think = None if think else "missing <think>…</think>"
    calls = _TOOL_CALL.findall(text)
    answers = _ANSWER.findall(text)
    if calls and answers:
        return ParsedTurn(thought, "invalid", error="both a tool call and an answer in one turn")
    if len(calls) > 1 or len(answers) > 1:
        return ParsedTurn(thought, "invalid", error="more than one action in one turn")
    if answers:
        answer = answers[0].strip()
        if not answer:
            return ParsedTurn(thought, "invalid", error="empty <answer>")
        return ParsedTurn(thought, "answer", answer=answer, error=missing_think)
    if calls:
        frame_range, error = _parse_tool_call(calls[0])
        if error:
            return ParsedTurn(thought, "invalid", error=error)
        return ParsedTurn(thought, "choose_frames", frame_range=frame_range, error=missing_think)
    return ParsedTurn(thought, "invalid", error="neither <tool_call> nor <answer>")


def frame_range_written(partial_text: str) -> tuple[int, int] | None:
    """The frame range of a hermes-form tool call whose range is written out in full, in a turn still being written.

    Lets a tool start while the model writes the call's last tokens; only ``parse_turn`` on the finished
    turn says whether the call stands.
    """
    match = _RANGE_WRITTEN.search(partial_text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _parse_tool_call(body: str) -> tuple[tuple[int, int] | None, str | None]:
    try:
        call = json.loads(body)
    except json.JSONDecodeError as exc:
        return None, f"tool call is not valid JSON ({exc.msg})"
    if not isinstance(call, dict):
        return None, "tool call is not a JSON object"
    if "action" in call:  # DeepSport's form: {"action": "choose_frames", "frame_range": [s, e]}
        name, arguments = call.get("action"), call
    else:  # hermes form: {"name": "choose_frames", "arguments": {...}}; arguments may arrive as a JSON string
        name, arguments = call.get("name"), call.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                return None, "tool call arguments are not valid JSON"
    if name != "choose_frames":
        return None, f"unknown tool {name!r}; the only tool is choose_frames"
    frame_range = arguments.get("frame_range") if isinstance(arguments, dict) else None
    if (
        not isinstance(frame_range, list)
        or len(frame_range) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in frame_range)
    ):
        return None, "frame_range must be two integers [start, end]"
    return (frame_range[0], frame_range[1]), None


def check_frame_range(
    frame_range: tuple[int, int], *, total_frames: int, frames_per_call: int, earlier: list[tuple[int, int]]
) -> str | None:
    """The rule a tool call breaks, or None when the video can serve it.

    ``earlier`` holds the ranges already served; the whole video counts as served too, since the initial
    frames sample it. A range within one frame of a served one at both ends is a repeat: its frames would
    be (nearly) those already shown, so the call teaches nothing.
    """
    start, end = frame_range
    if start >= end:
        return f"frame_range [{start}, {end}] must have start < end"
    if start < 0 or end > total_frames - 1:
        return f"frame_range [{start}, {end}] leaves the video (frames 0 to {total_frames - 1})"
    if start >= end - frames_per_call:
        return (f"frame_range [{start}, {end}] holds {end - start - 1} frames strictly inside it, fewer "
                f"than {frames_per_call}: start must be below end - {frames_per_call}")
    whole = (0, total_frames - 1)
    for seen in (whole, *earlier):
        if abs(start - seen[0]) <= 1 and abs(end - seen[1]) <= 1:
            what = "the whole video, which the initial frames already sample" if seen == whole else "an earlier call"
            return f"frame_range [{start}, {end}] repeats {what} [{seen[0]}, {seen[1]}] (within one frame at each end)"
    return None


def parse_options(spec: str) -> list[str]:
    """Options from the command line form "A) first;B) second" into ["A) first", "B) second"].

    Letters must run A, B, C… in order, at least two options, each with text.
    """
    items = [item.strip() for item in spec.split(";") if item.strip()]
    if len(items) < 2:
        raise ValueError('options need at least two choices, e.g. "A) foul;B) no foul"')
    for position, item in enumerate(items):
        match = _OPTION.match(item)
        expected = string.ascii_uppercase[position]
        if not match:
            raise ValueError(f'option {item!r} is not of the form "{expected}) text"')
        if match.group(1) != expected:
            raise ValueError(f"option {item!r} should be lettered {expected}; letters run A, B, C… in order")
    return [f"{_OPTION.match(item).group(1)}) {_OPTION.match(item).group(2)}" for item in items]


def option_letters(options: list[str]) -> list[str]:
    """The letters of options already in the "A) text" form."""
    return [option.split(")", 1)[0].strip() for option in options]


def system_message(
    *, total_frames: int, fps: float, initial_frames: int, frames_per_call: int, max_turns: int
) -> ChatMessage:
    text = SYSTEM_PROMPT.format(
        initial_frames=initial_frames,
        total_frames=total_frames,
        fps=fps,
        duration=total_frames / fps,
        last_frame=total_frames - 1,
        frames_per_call=frames_per_call,
        max_turns=max_turns,
        tool_schema=json.dumps(TOOL_SCHEMA),
    )
    return ChatMessage("system", [text])


def _labelled(frames: list[Frame]) -> list[str | Frame]:
    parts: list[str | Frame] = []
    for frame in frames:
        parts += ["\n" + frame.label(), frame]
    return parts


def question_message(question: str, options: list[str] | None, frames: list[Frame]) -> ChatMessage:
    """The first user turn: the question, its lettered options, then the initial frames, each labelled."""
    text = f"Question: {question}"
    if options:
        text += "\nOptions:\n" + "\n".join(options)
    return ChatMessage("user", [text, *_labelled(frames)])


def tool_response_message(frames: list[Frame], *, last_turn: bool) -> ChatMessage:
    """A tool result, sent as a user turn (some vLLM versions reject images in role "tool" messages)."""
    tail = "\n</tool_response>" + (f"\n{LAST_TURN_NOTE}" if last_turn else "")
    return ChatMessage("user", ["<tool_response>", *_labelled(frames), tail])


def format_error_message(error: str, *, last_turn: bool) -> ChatMessage:
    """The one report of a broken rule back to the model."""
    text = f"<tool_response>\nformat error: {error}\n</tool_response>"
    return ChatMessage("user", [text + (f"\n{LAST_TURN_NOTE}" if last_turn else "")])


def turn_constraint(
    *, options: list[str] | None, total_frames: int, allow_tool: bool, max_thought_chars: int = 200
) -> str:
    """A regular expression that a protocol-valid turn matches; backends use it to keep any model in the protocol.

    It bounds the thought, forces the tool call's JSON shape and, for closed questions, an option letter.
    Whether a range is inside the video, wide enough and new is left to ``check_frame_range``: a regex cannot
    say it simply.
    """
    digits = len(str(max(total_frames - 1, 1)))
    number = rf"(0|[1-9][0-9]{{0,{digits - 1}}})"
    think = rf"<think>[^<>]{{1,{max_thought_chars}}}</think>\n"
    call = (
        r'<tool_call>\{"name": "choose_frames", "arguments": \{"frame_range": \['
        + number
        + ", "
        + number
        + r"\]\}\}</tool_call>"
    )
    if options:
        answer = "<answer>(" + "|".join(option_letters(options)) + ")</answer>"
    else:
        answer = r"<answer>[^<>]{1,200}</answer>"
    return think + (f"({call}|{answer})" if allow_tool else answer)


def answer_span(text: str) -> tuple[int, int] | None:
    """Character span of the answer inside a turn's text, to pick out the answer tokens' logprobs."""
    match = _ANSWER.search(text)
    if not match:
        return None
    inner = match.group(1)
    start = match.start(1) + (len(inner) - len(inner.lstrip()))
    return start, start + len(inner.strip())
