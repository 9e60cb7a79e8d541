"""The think-with-video loop: show k frames, let the model think, serve its frame requests, stop at its answer.

One function, ``answer_question``, used alike by the CLI, the service, the benchmark runner and training
rollouts. It knows the protocol and the model interface; it knows nothing about HTTP or Redis.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel

from sportlens.agent import protocol
from sportlens.agent.backends.base import ChatMessage, Generation, ModelBackend
from sportlens.agent.records import FrameRef, Step, TokenLogprob, Trajectory, VideoSummary
from sportlens.tools.frames import SAMPLERS, Frame, Sampler, call_indices, opening_indices


class VideoSource(Protocol):
    """What the loop needs of a video: its probed info and exact frames by index (tools.video.Video provides both).

    The loop picks the indices itself (``settings.sampler``), so that one setting decides which frames a
    question shows, whoever provides them.
    """

    @property
    def info(self): ...

    def frames_at(self, indices: list[int]) -> list[Frame]: ...


@dataclass(frozen=True)
class AgentSettings:
    """Every knob of the loop, with the protocol's defaults.

    ``constrain`` asks the backend to keep each turn inside the protocol with a regular expression
    (vLLM structured outputs, xgrammar in-process); it lets even an untrained model answer. Its thought is
    bounded by ``max_thought_chars`` so that a constrained turn fits in ``max_tokens_per_turn``.
    ``score_options`` scores every option of a closed question after the answer (teacher-forced, the
    input of conformal sets); ``answer_samples`` samples that many further final answers at temperature 1
    (the input of sample-based conformal sets for open questions).
    ``sampler`` names how frames are spread over the video and inside a tool call's range
    (``tools.frames.Sampler``); keep the default, "centred", alike for serving, training and evaluation.
    """

    initial_frames: int = 8
    frames_per_call: int = 8
    max_turns: int = 5
    max_tokens_per_turn: int = 512
    max_thought_chars: int = 200
    temperature: float = 0.0
    constrain: bool = False
    score_options: bool = False
    answer_samples: int = 0
    sampler: Sampler = "centred"

    def __post_init__(self) -> None:
        for name in ("initial_frames", "frames_per_call", "max_turns", "max_tokens_per_turn", "max_thought_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.answer_samples < 0:
            raise ValueError("answer_samples must be ≥ 0")
        if self.temperature < 0:
            raise ValueError("temperature must be ≥ 0")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, not {self.sampler!r}")


class AgentEvent(BaseModel):
    """Progress while a question runs: the initial frames, a turn starting, a step finished."""

    kind: Literal["initial_frames", "turn_started", "step"]
    turn: int
    frames: list[FrameRef] = []
    step: Step | None = None


def opening_messages(
    video: VideoSource, question: str, options: list[str] | None, settings: AgentSettings
) -> tuple[list[Frame], list[ChatMessage]]:
    """The initial frames, spread over the whole video, and the chat the model first sees: system prompt, question.

    Public so that whatever compares models on a first turn gives them exactly the input the loop would.
    """
    info = video.info
    initial = video.frames_at(opening_indices(info.frames, settings.initial_frames, settings.sampler))
    messages = [
        protocol.system_message(
            total_frames=info.frames,
            fps=info.fps,
            initial_frames=len(initial),
            frames_per_call=settings.frames_per_call,
            max_turns=settings.max_turns,
        ),
        protocol.question_message(question, options, initial),
    ]
    return initial, messages


def answer_question(
    video: VideoSource,
    question: str,
    backend: ModelBackend,
    *,
    options: list[str] | None = None,
    settings: AgentSettings = AgentSettings(),
    on_event: Callable[[AgentEvent], None] | None = None,
) -> Trajectory:
    """Run the agent protocol on one question about one open video and return the whole trajectory.

    A broken protocol rule is reported back to the model once; after a second one the model is told
    to answer. The last allowed turn must answer; a trajectory whose model never answers has answer None.
    """
    if not question.strip():
        raise ValueError("the question is empty")
    emit = on_event or (lambda event: None)
    started = time.perf_counter()
    info = video.info
    initial, messages = opening_messages(video, question, options, settings)
    emit(AgentEvent(kind="initial_frames", turn=0, frames=_refs(initial)))
    steps: list[Step] = []
    earlier_ranges: list[tuple[int, int]] = []
    seen = {frame.index for frame in initial}
    errors_reported = 0
    answer: str | None = None
    answer_logprobs: list[TokenLogprob] = []
    option_logprobs: dict[str, float] | None = None
    answer_samples: list[str] = []
    final_turn = settings.max_turns
    model_latency = 0.0

    def rule_broken(frame_range: tuple[int, int]) -> str | None:
        return protocol.check_frame_range(
            frame_range, total_frames=info.frames, frames_per_call=settings.frames_per_call, earlier=earlier_ranges
        )

    turn = 0
    while turn < final_turn:
        turn += 1
        last = turn == final_turn
        emit(AgentEvent(kind="turn_started", turn=turn))
        constraint = (
            protocol.turn_constraint(options=options, total_frames=info.frames, allow_tool=not last,
                                     max_thought_chars=settings.max_thought_chars)
            if settings.constrain
            else None
        )
        early = None if last else _EarlyFrames(video, settings, rule_broken)
        call_started = time.perf_counter()
        try:
            generation = backend.generate(
                messages,
                max_tokens=settings.max_tokens_per_turn,
                temperature=settings.temperature,
                constraint=constraint,
                on_text=early.see if early else None,
            )
        except BaseException:
            if early:
                early.settle()  # the caller may close the video once this returns
            raise
        latency = time.perf_counter() - call_started
        model_latency += latency
        messages.append(ChatMessage("assistant", [generation.text]))
        parsed = protocol.parse_turn(generation.text)
        action, error, shown = parsed.action, parsed.error, []
        turn_answer = None
        if action == "choose_frames":
            assert parsed.frame_range is not None
            range_error = "the last turn must answer" if last else rule_broken(parsed.frame_range)
            if range_error:
                action, error = "invalid", range_error
            else:
                earlier_ranges.append(parsed.frame_range)
                assert early is not None  # a tool call on the last turn is refused above
                frames = early.frames_for(parsed.frame_range)
                shown = _refs(frames)
                seen.update(frame.index for frame in frames)
                messages.append(protocol.tool_response_message(frames, last_turn=turn + 1 == final_turn))
        elif action == "answer":
            assert parsed.answer is not None
            turn_answer, answer_error = _normalise_answer(parsed.answer, options)
            if answer_error:
                action, error = "invalid", answer_error
        if early:
            early.settle()
        step = Step(
            turn=turn,
            thought=parsed.thought,
            action=action,
            frame_range=parsed.frame_range,
            frames_shown=shown,
            answer=turn_answer,
            format_error=error,
            raw_output=generation.text,
            tokens_in=generation.tokens_in,
            tokens_out=generation.tokens_out,
            latency_s=latency,
        )
        steps.append(step)
        emit(AgentEvent(kind="step", turn=turn, step=step))
        if action == "answer":
            answer = turn_answer
            answer_logprobs = _answer_logprobs(generation)
            context = messages[:-1]
            if options and settings.score_options:
                answer_prefix = generation.text[: generation.text.index("<answer>") + len("<answer>")]
                option_logprobs = _score_options(backend, context, answer_prefix, options)
            if settings.answer_samples:
                answer_samples = _sample_answers(backend, context, options, info.frames, settings)
            break
        if action == "invalid" and not last:
            if errors_reported == 0:
                errors_reported += 1
                messages.append(protocol.format_error_message(error or "", last_turn=turn + 1 == final_turn))
            else:
                final_turn = turn + 1
                messages.append(ChatMessage("user", [protocol.LAST_TURN_NOTE]))
    return Trajectory(
        question=question,
        options=options,
        model=backend.model_id,
        video=VideoSummary.model_validate(info, from_attributes=True),
        initial_frames=_refs(initial),
        steps=steps,
        answer=answer,
        answer_logprobs=answer_logprobs,
        tokens_in=sum(s.tokens_in for s in steps),
        tokens_out=sum(s.tokens_out for s in steps),
        latency_s=time.perf_counter() - started,
        model_latency_s=model_latency,
        frames_used=len(seen),
        format_errors=sum(1 for s in steps if s.format_error),
        option_logprobs=option_logprobs,
        answer_samples=answer_samples,
    )


class _EarlyFrames:
    """Decodes a tool call's frames as soon as a streaming backend has written the call's frame range.

    The model still writes the call's last tokens meanwhile (``]}}</tool_call>`` and the end of turn). The
    frames are used only when the finished turn asks for that very range, so a trajectory is the same with
    or without a streaming backend; only the wait for frames after the model's turn shrinks.
    """

    def __init__(
        self, video: VideoSource, settings: AgentSettings, rule_broken: Callable[[tuple[int, int]], str | None]
    ) -> None:
        self._video, self._settings, self._rule_broken = video, settings, rule_broken
        self._range: tuple[int, int] | None = None
        self._fetch: Future[list[Frame]] | None = None

    def see(self, text_so_far: str) -> None:
        """``on_text`` of the model call: start decoding once a valid range is written (at most once a turn)."""
        if self._fetch is not None:
            return
        frame_range = protocol.frame_range_written(text_so_far)
        if frame_range is None or self._rule_broken(frame_range):
            return
        fetch: Future[list[Frame]] = Future()
        self._range, self._fetch = frame_range, fetch
        threading.Thread(target=self._decode, args=(fetch, frame_range), name="early-frames", daemon=True).start()

    def _decode(self, fetch: Future[list[Frame]], frame_range: tuple[int, int]) -> None:
        try:
            fetch.set_result(self._decode_now(frame_range))
        except BaseException as error:  # handed to whoever uses the frames, as if they had decoded them
            fetch.set_exception(error)

    def frames_for(self, frame_range: tuple[int, int]) -> list[Frame]:
        """The frames of the turn's final call: those decoded early if the range is the same, else decoded now."""
        if self._fetch is not None and frame_range == self._range:
            fetch, self._fetch = self._fetch, None
            return fetch.result()
        self.settle()
        return self._decode_now(frame_range)

    def _decode_now(self, frame_range: tuple[int, int]) -> list[Frame]:
        settings = self._settings
        return self._video.frames_at(call_indices(*frame_range, settings.frames_per_call, settings.sampler))

    def settle(self) -> None:
        """Wait for an early decoding that nothing will use (a retried stream wrote another range, or the call failed)."""
        if self._fetch is not None:
            self._fetch.exception()
            self._fetch = None


def _score_options(
    backend: ModelBackend, context: list[ChatMessage], answer_prefix: str, options: list[str]
) -> dict[str, float]:
    """Log-probability of each option letter as the answer, teacher-forced after the final turn's reasoning.

    Every continuation shares the turn's text up to ``<answer>``, so the differences between options are
    the model's preference among them given the whole trajectory.
    """
    letters = protocol.option_letters(options)
    totals = backend.score_continuations(context, [f"{answer_prefix}{letter}</answer>" for letter in letters])
    return dict(zip(letters, totals))


def _sample_answers(
    backend: ModelBackend,
    context: list[ChatMessage],
    options: list[str] | None,
    total_frames: int,
    settings: AgentSettings,
) -> list[str]:
    """Further final answers sampled at temperature 1 from the same point; unusable samples are dropped."""
    constraint = protocol.turn_constraint(options=options, total_frames=total_frames, allow_tool=False,
                                          max_thought_chars=settings.max_thought_chars)
    samples = []
    for _ in range(settings.answer_samples):
        generation = backend.generate(
            context, max_tokens=settings.max_tokens_per_turn, temperature=1.0,
            constraint=constraint if settings.constrain else None,
        )
        parsed = protocol.parse_turn(generation.text)
        sample, error = _normalise_answer(parsed.answer or "", options) if parsed.action == "answer" else (None, "")
        if sample is not None and not error:
            samples.append(sample)
    return samples


def _refs(frames: list[Frame]) -> list[FrameRef]:
    return [FrameRef(index=frame.index, seconds=frame.seconds) for frame in frames]


def _normalise_answer(answer: str, options: list[str] | None) -> tuple[str | None, str | None]:
    """A closed question's answer is its option letter ("B", "B)" and "B) text" all mean B)."""
    if not options:
        return answer, None
    letters = protocol.option_letters(options)
    letter = answer.strip()[:1].upper()
    rest = answer.strip()[1:2]
    if letter in letters and rest in ("", ")", ".", ":", " "):
        return letter, None
    return None, f"answer {answer!r} is not one of the option letters {', '.join(letters)}"


def _answer_logprobs(generation: Generation) -> list[TokenLogprob]:
    """The logprobs of the tokens that spell the answer, located by their character offsets in the text.

    Offsets are counted back from the end: only ``</answer>`` follows the answer, while earlier text may hold
    tokens whose strings do not add up to the text (a partial UTF-8 byte decodes to one replacement character).
    """
    span = protocol.answer_span(generation.text)
    if span is None:
        return []
    selected, offset = [], len(generation.text)
    for token in reversed(generation.logprobs):
        token_end, offset = offset, offset - len(token.token)
        if offset < span[1] and token_end > span[0]:
            selected.append(token)
    return selected[::-1]
