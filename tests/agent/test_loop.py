"""The think-with-video loop, driven turn by turn.

``ScriptedModelFake`` stands in for a model only where a real one cannot be made to say a given thing on
demand (a repeated interval, a malformed turn); the loop's real run with the in-process model lives in
test_loop_transformers.py.
"""
import re
import threading
import time
from collections.abc import Callable

import pytest

from sportlens.agent.backends.base import BackendError, ChatMessage, Generation
from sportlens.agent.loop import AgentSettings, answer_question
from sportlens.agent.records import TokenLogprob
from sportlens.tools.frames import Frame, call_indices
from sportlens.tools.testclips import read_index, write_index_clip
from sportlens.tools.video import CorruptVideo, Video


class ScriptedModelFake:
    """Says the scripted turns in order and records every chat it was shown.

    Streams like the HTTP backend (``on_text`` with the text so far, word by word) unless ``streams`` is False.
    A scripted turn may be a pair (streamed first, final): a stream that broke off and was retried, or that
    ended in an error (final is an exception).
    """

    model_id = "scripted-fake"

    def __init__(self, turns: list[str | tuple[str, str]], *, streams: bool = True) -> None:
        self.turns = list(turns)
        self.streams = streams
        self.seen: list[list[ChatMessage]] = []
        self.constraints: list[str | None] = []
        self.on_streamed: Callable[[str], None] = lambda text: None  # called after each piece streamed

    def generate(self, messages, *, max_tokens, temperature=0.0, constraint=None, on_text=None):
        self.seen.append(list(messages))
        self.constraints.append(constraint)
        text = self.turns.pop(0)
        tries = list(text) if isinstance(text, tuple) else [text]
        text = tries[-1]
        if on_text is not None and self.streams:
            for streamed in tries:
                if isinstance(streamed, Exception):
                    raise streamed
                pieces = re.findall(r"\S+\s*|\s+", streamed)
                for end in range(1, len(pieces) + 1):
                    on_text("".join(pieces[:end]))
                    self.on_streamed("".join(pieces[:end]))
        tokens = re.findall(r"<[^<>]+>|[^<]+|<", text)  # tags are whole tokens, as in a real tokenizer
        return Generation(text=text, tokens_in=100, tokens_out=len(tokens),
                          logprobs=[TokenLogprob(token=t, logprob=-0.5) for t in tokens])

    def close(self):
        pass


def call(start, end):
    return f'<think>look at {start}-{end}</think>\n<tool_call>{{"name": "choose_frames", "arguments": {{"frame_range": [{start}, {end}]}}}}</tool_call>'


def answer(text):
    return f"<think>decided</think>\n<answer>{text}</answer>"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_index_clip(tmp_path_factory.mktemp("loop") / "clip.mp4", frames=300, size=(320, 180), gop=30)


def frames_in(message: ChatMessage) -> list[Frame]:
    return [part for part in message.parts if isinstance(part, Frame)]


@pytest.mark.parametrize("streams", [True, False], ids=["streamed", "in one piece"])
def test_tool_call_then_answer_shows_exactly_the_requested_frames(clip, streams):
    model = ScriptedModelFake([call(100, 179), answer("B")], streams=streams)
    with Video(clip) as video:
        trajectory = answer_question(video, "Was it a foul?", model, options=["A) yes", "B) no"])
    assert trajectory.answer == "B"
    assert [s.action for s in trajectory.steps] == ["choose_frames", "answer"]
    first_prompt, second_prompt = model.seen
    initial = frames_in(first_prompt[1])
    assert len(initial) == 8 and [read_index(f.image) for f in initial] == [f.index for f in initial]
    assert [f.index for f in initial] == [r.index for r in trajectory.initial_frames]
    tool_frames = frames_in(second_prompt[-1])
    assert second_prompt[-1].role == "user" and second_prompt[-1].parts[0] == "<tool_response>"
    assert [read_index(f.image) for f in tool_frames] == [r.index for r in trajectory.steps[0].frames_shown]
    assert all(100 <= f.index <= 179 for f in tool_frames) and len(tool_frames) == 8
    assert trajectory.frames_used == 16
    assert trajectory.tokens_in == 200 and trajectory.format_errors == 0
    assert "".join(t.token for t in trajectory.answer_logprobs).strip() == "B"


class RecordingVideo:
    """A real Video that notes the frames each tool call asks it for, and signals when a decoding has begun."""

    def __init__(self, video: Video, *, tool_fails_with: Exception | None = None) -> None:
        self.video, self.asked, self.decoding = video, [], threading.Event()
        self.tool_fails_with = tool_fails_with
        self.opened = False

    @property
    def info(self):
        return self.video.info

    def frames_at(self, indices):
        if self.opened:  # the first request is the initial frames, not a tool call's
            self.asked.append(list(indices))
            self.decoding.set()
            if self.tool_fails_with:
                time.sleep(0.2)  # fail after the loop has begun waiting for these frames
                raise self.tool_fails_with
        self.opened = True
        return self.video.frames_at(indices)


def served(start, end):
    """The frames a tool call on [start, end] is served with the default sampler."""
    return call_indices(start, end, 8)


def test_a_streamed_tool_call_decodes_its_frames_before_the_turn_ends(clip):
    model = ScriptedModelFake([call(100, 179), answer("A")])
    decoding_when_streamed = []
    with Video(clip) as opened:
        video = RecordingVideo(opened)

        def after_piece(text_so_far):
            if text_so_far.endswith("</tool_call>"):  # the model's last token: has the tool started meanwhile?
                decoding_when_streamed.append(video.decoding.wait(10))

        model.on_streamed = after_piece
        trajectory = answer_question(video, "Was it a foul?", model, options=["A) yes", "B) no"])
    assert decoding_when_streamed == [True]
    assert video.asked == [served(100, 179)]  # decoded once, early, and used
    tool_frames = frames_in(model.seen[1][-1])
    assert [read_index(f.image) for f in tool_frames] == [r.index for r in trajectory.steps[0].frames_shown]
    assert all(100 <= f.index <= 179 for f in tool_frames) and len(tool_frames) == 8


def test_a_retried_stream_that_writes_another_range_gets_the_frames_of_the_final_one(clip):
    model = ScriptedModelFake([(call(100, 179), call(20, 99)), answer("A")])
    with Video(clip) as opened:
        video = RecordingVideo(opened)
        trajectory = answer_question(video, "Was it a foul?", model, options=["A) yes", "B) no"])
    assert video.asked == [served(100, 179), served(20, 99)]
    assert trajectory.steps[0].frame_range == (20, 99)
    tool_frames = frames_in(model.seen[1][-1])
    assert [read_index(f.image) for f in tool_frames] == [r.index for r in trajectory.steps[0].frames_shown]
    assert all(20 <= f.index <= 99 for f in tool_frames) and len(tool_frames) == 8


def test_a_call_that_fails_after_writing_its_range_leaves_no_decoding_behind(clip):
    model = ScriptedModelFake([(call(100, 179), BackendError("the server went away"))])
    with Video(clip) as opened:
        video = RecordingVideo(opened)
        with pytest.raises(BackendError, match="went away"):
            answer_question(video, "Was it a foul?", model)
        assert video.asked == [served(100, 179)]
        assert not [thread for thread in threading.enumerate() if thread.name == "early-frames"]


@pytest.mark.timeout(60)  # the error once went nowhere and the loop waited for the frames for ever
def test_an_early_decoding_that_fails_raises_its_error_from_the_loop(clip):
    model = ScriptedModelFake([call(100, 179), answer("A")])
    with Video(clip) as opened:
        video = RecordingVideo(opened, tool_fails_with=CorruptVideo("clip.mp4 is damaged: decoding frame 110 failed"))
        with pytest.raises(CorruptVideo, match="frame 110"):
            answer_question(video, "Was it a foul?", model)
    assert video.asked == [served(100, 179)]


@pytest.mark.parametrize(("repeat", "words"), [
    (call(101, 178), "repeats an earlier call [100, 179]"),  # a near repeat: one frame off at each end
    (call(0, 298), "repeats the whole video"),
])
def test_a_streamed_range_that_breaks_a_rule_is_not_decoded(clip, repeat, words):
    model = ScriptedModelFake([call(100, 179), repeat, answer("A")])
    with Video(clip) as opened:
        video = RecordingVideo(opened)
        trajectory = answer_question(video, "Was it a foul?", model, options=["A) yes", "B) no"])
    assert video.asked == [served(100, 179)]  # the repeat was neither decoded early nor served
    assert [s.action for s in trajectory.steps] == ["choose_frames", "invalid", "answer"]
    assert words in trajectory.steps[1].format_error


def test_each_frame_is_preceded_by_its_label(clip):
    model = ScriptedModelFake([answer("A")])
    with Video(clip) as video:
        answer_question(video, "Who scored?", model, options=["A) red", "B) blue"])
    parts = model.seen[0][1].parts
    for position, part in enumerate(parts):
        if isinstance(part, Frame):
            assert parts[position - 1] == "\n" + part.label()
            assert part.label() == f"frame {part.index} ({part.index / 30:.1f}s):"


@pytest.mark.parametrize("repeat", [(0, 99), (1, 100), (0, 98)], ids=["exact", "one later", "one shorter"])
def test_repeated_interval_is_reported_once_and_recorded(clip, repeat):
    model = ScriptedModelFake([call(0, 99), call(*repeat), answer("A")])
    with Video(clip) as video:
        trajectory = answer_question(video, "q?", model, options=["A) x", "B) y"])
    assert [s.action for s in trajectory.steps] == ["choose_frames", "invalid", "answer"]
    assert "repeats an earlier call [0, 99]" in trajectory.steps[1].format_error
    reports = [m for m in model.seen[2] if "format error" in m.text()]
    assert len(reports) == 1 and "repeats" in reports[0].text()
    assert trajectory.format_errors == 1 and trajectory.answer == "A"


def test_the_whole_video_is_reported_once_as_a_repeat_then_the_model_must_answer(clip):
    model = ScriptedModelFake([call(0, 299), call(1, 298), answer("A")])
    with Video(clip) as video:
        trajectory = answer_question(video, "q?", model, options=["A) x", "B) y"])
    assert [s.action for s in trajectory.steps] == ["invalid", "invalid", "answer"]
    assert all("repeats the whole video" in s.format_error for s in trajectory.steps[:2])
    reports = [m for m in model.seen[2] if "format error" in m.text()]
    assert len(reports) == 1 and "last turn" in model.seen[2][-1].text()
    assert trajectory.format_errors == 2 and trajectory.frames_used == 8


def test_second_format_error_is_not_reported_and_forces_the_answer(clip):
    model = ScriptedModelFake(["rambling", "more rambling", answer("A")])
    with Video(clip) as video:
        trajectory = answer_question(video, "q?", model, options=["A) x", "B) y"],
                                     settings=AgentSettings(max_turns=5, constrain=True))
    assert [s.action for s in trajectory.steps] == ["invalid", "invalid", "answer"]
    reports = [m for m in model.seen[2] if "format error" in m.text()]
    assert len(reports) == 1
    assert "last turn" in model.seen[2][-1].text()
    assert "<tool_call>" not in model.constraints[2]  # the forced final turn may only answer


def test_the_last_turn_must_answer(clip):
    model = ScriptedModelFake([call(0, 99), call(100, 199)])
    with Video(clip) as video:
        trajectory = answer_question(video, "q?", model, settings=AgentSettings(max_turns=2))
    assert trajectory.answer is None
    assert trajectory.steps[-1].format_error == "the last turn must answer"
    assert "last turn" in model.seen[1][-1].text()


@pytest.mark.parametrize(("bad_call", "words"), [
    (call(50, 20), "start < end"), (call(250, 400), "leaves"), (call(10, 18), "7 frames strictly inside it, fewer than 8"),
])
def test_invalid_ranges_are_format_errors_without_frames(clip, bad_call, words):
    model = ScriptedModelFake([bad_call, answer("free text answer")])
    with Video(clip) as video:
        trajectory = answer_question(video, "What happened?", model)
    assert words in trajectory.steps[0].format_error and trajectory.steps[0].frames_shown == []
    assert trajectory.answer == "free text answer" and trajectory.frames_used == 8


def test_a_range_with_n_frames_strictly_inside_it_is_served(clip):
    model = ScriptedModelFake([call(10, 19), answer("A")])
    with Video(clip) as video:
        trajectory = answer_question(video, "q?", model)
    assert trajectory.steps[0].action == "choose_frames" and len(trajectory.steps[0].frames_shown) == 8


def test_the_framethinker_sampler_reaches_the_initial_frames_and_the_tool(clip):
    model = ScriptedModelFake([call(10, 19), answer("A")])
    with Video(clip) as video:
        trajectory = answer_question(video, "q?", model, settings=AgentSettings(sampler="framethinker"))
    initial = frames_in(model.seen[0][1])
    assert [read_index(f.image) for f in initial] == [r.index for r in trajectory.initial_frames]
    assert initial[0].index == 0 and initial[-1].index == 299  # the first and the last frame
    tool_frames = frames_in(model.seen[1][-1])
    assert [read_index(f.image) for f in tool_frames] == list(range(11, 19))  # the range's ends excluded
    default = ScriptedModelFake([call(10, 19), answer("A")])
    with Video(clip) as video:
        centred = answer_question(video, "q?", default)
    assert [r.index for r in centred.steps[0].frames_shown] == served(10, 19) != list(range(11, 19))
    assert centred.initial_frames[0].index > 0 and centred.initial_frames[-1].index < 299


def test_closed_answers_are_normalised_to_the_option_letter(clip):
    model = ScriptedModelFake([answer("B) no foul")])
    with Video(clip) as video:
        assert answer_question(video, "q?", model, options=["A) foul", "B) no foul"]).answer == "B"
    model = ScriptedModelFake([answer("Z"), answer("A")])
    with Video(clip) as video:
        trajectory = answer_question(video, "q?", model, options=["A) foul", "B) no foul"])
    assert "not one of the option letters" in trajectory.steps[0].format_error and trajectory.answer == "A"


def test_events_arrive_in_order(clip):
    events = []
    model = ScriptedModelFake([call(100, 179), answer("A")])
    with Video(clip) as video:
        answer_question(video, "q?", model, on_event=events.append)
    assert [(e.kind, e.turn) for e in events] == [
        ("initial_frames", 0), ("turn_started", 1), ("step", 1), ("turn_started", 2), ("step", 2)
    ]


def test_empty_question_and_bad_settings_are_refused(clip):
    with Video(clip) as video, pytest.raises(ValueError, match="empty"):
        answer_question(video, "  ", ScriptedModelFake([]))
    with pytest.raises(ValueError, match="max_turns"):
        AgentSettings(max_turns=0)
    with pytest.raises(ValueError, match="sampler must be one of centred, framethinker"):
        AgentSettings(sampler="uniform")


class ScoringModelFake(ScriptedModelFake):
    """A scripted model that scores continuations too, remembering what it was asked to score."""

    def __init__(self, turns, scores):
        super().__init__(turns)
        self.scores, self.scored = scores, []

    def score_continuations(self, messages, continuations):
        self.scored.append((list(messages), list(continuations)))
        return self.scores[: len(continuations)]


def test_score_options_scores_each_letter_after_the_answering_turns_reasoning(clip):
    model = ScoringModelFake([call(100, 179), answer("B")], scores=[-2.0, -0.1])
    with Video(clip) as video:
        trajectory = answer_question(video, "q?", model, options=["A) foul", "B) no foul"],
                                     settings=AgentSettings(score_options=True))
    [(context, continuations)] = model.scored
    assert continuations == ["<think>decided</think>\n<answer>A</answer>", "<think>decided</think>\n<answer>B</answer>"]
    assert context == model.seen[-1]  # the chat the answering turn continued
    assert trajectory.option_logprobs == {"A": -2.0, "B": -0.1}
