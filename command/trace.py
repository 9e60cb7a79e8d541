"""The readable trace `sportlens ask` prints: which frames the model saw, at which times, and why."""
from __future__ import annotations

import sys
from typing import TextIO

from sportlens.agent.loop import AgentEvent
from sportlens.agent.records import FrameRef, Result, Step


def _frames(refs: list[FrameRef]) -> str:
    if not refs:
        return "none"
    return f"{len(refs)} frames {refs[0].index}…{refs[-1].index} ({refs[0].seconds:.1f}s–{refs[-1].seconds:.1f}s)"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TracePrinter:
    """Prints steps as they happen, and a live status line on a terminal.

    With ``json_output`` stdout is kept for the JSON record: steps then go to stderr, and only on a terminal.
    """

    def __init__(self, *, json_output: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.err = err
        self.live = err.isatty()
        self.out: TextIO | None = (err if self.live else None) if json_output else out
        self._status_shown = False

    def status(self, text: str) -> None:
        if self.live:
            self.err.write("\r\033[K" + text)
            self.err.flush()
            self._status_shown = True

    def clear_status(self) -> None:
        if self._status_shown:
            self.err.write("\r\033[K")
            self.err.flush()
            self._status_shown = False

    def _line(self, text: str) -> None:
        self.clear_status()
        if self.out is not None:
            print(text, file=self.out, flush=True)

    def video(self, info) -> None:
        self._line(
            f"video: {info.path} · {info.frames} frames at {info.fps:.2f} fps ({info.duration_s:.1f} s), "
            f"{info.width}×{info.height} {info.codec}, read with {info.reader}"
        )

    def event(self, event: AgentEvent) -> None:
        if event.kind == "initial_frames":
            self._line(f"looked at {_frames(event.frames)}, uniform over the video")
        elif event.kind == "turn_started":
            self.status(f"turn {event.turn}: the model is thinking…")
        elif event.step is not None:
            self._line(self._step_text(event.step))

    @staticmethod
    def _step_text(step: Step) -> str:
        lines = [f"turn {step.turn} ({step.latency_s:.1f} s, {step.tokens_out} tokens): {_short(step.thought) or '(no thought)'}"]
        if step.action == "choose_frames":
            lines.append(f"  → choose_frames {list(step.frame_range)}: {_frames(step.frames_shown)}")
        elif step.action == "answer":
            lines.append(f"  → answer: {step.answer}")
        if step.format_error:
            lines.append(f"  ! format error: {step.format_error}")
        return "\n".join(lines)

    def summary(self, result: Result) -> None:
        trajectory = result.trajectory
        answer = trajectory.answer if trajectory.answer is not None else "(no answer)"
        self._line(
            f"answer: {answer}  [{len(trajectory.steps)} turns, {trajectory.frames_used} frames, "
            f"{trajectory.tokens_in + trajectory.tokens_out} tokens, {trajectory.latency_s:.1f} s]"
        )
        if result.prediction_set is not None:
            verdict = "  → abstains" if result.abstain else ""
            self._line(
                f"prediction set at {result.coverage_target:.0%} coverage ({result.calibration_group}): "
                f"{{{', '.join(result.prediction_set)}}}{verdict}"
            )
