"""The oracle policy: perfect trajectories through the real agent loop, answering only from what it was shown."""
import json

import pytest

from sportlens.agent.backends.base import BackendError
from sportlens.agent.loop import AgentSettings, answer_question
from sportlens.agent.protocol import check_frame_range, parse_turn
from sportlens.agent.records import QAItem
from sportlens.benchmarks.oracle import UNSEEN_ANSWER, OraclePolicy, _widen, oracle_backends
from sportlens.benchmarks.scoring import BoxSpace, score_answer
from sportlens.tools.testclips import write_index_clip
from sportlens.tools.video import Video


def load(qa):
    return [QAItem.model_validate_json(line) for line in qa.read_text().splitlines()]


def ask(qa, item, settings=AgentSettings()):
    with Video(qa.parent / item.video) as video:
        return answer_question(video, item.question, OraclePolicy(item), options=item.options, settings=settings)


def test_the_oracle_answers_every_question_right_through_the_agent_loop(sim_dataset):
    items = load(sim_dataset)
    for item in items:
        trajectory = ask(sim_dataset, item)
        assert score_answer(item, trajectory.answer).correct, item.id
        assert trajectory.format_errors == 0
        for step in trajectory.steps:
            assert parse_turn(step.raw_output).error is None
        start, end = item.event_window
        shown = [f.index for f in trajectory.initial_frames] + [f.index for s in trajectory.steps for f in s.frames_shown]
        assert any(start <= index <= end for index in shown)  # it answered after seeing the moment


def test_an_event_missed_by_the_initial_frames_is_found_with_one_tool_call(sim_dataset):
    items = [item for item in load(sim_dataset) if item.task == "foul_type"]
    missed = None
    for item in items:
        trajectory = ask(sim_dataset, item)
        start, end = item.event_window
        if not any(start <= f.index <= end for f in trajectory.initial_frames):
            missed = trajectory
            break
    assert missed is not None, "no foul missed by 8 uniform frames in the fixture"
    call, answer = missed.steps
    assert call.action == "choose_frames"
    call_start, call_end = call.frame_range  # the narrowest range round the window with 8 frames strictly inside
    assert call_start <= start and end <= call_end and call_end - call_start == max(end - start, 9)
    assert sum(start <= f.index <= end for f in call.frames_shown) >= 7
    assert answer.action == "answer" and missed.answer == item.answer
    assert missed.frames_used == 16


def test_with_one_turn_the_oracle_only_guesses_what_it_did_not_see(sim_dataset):
    """The honest uniform-k baseline: the truth only when a shown frame carries the cue, else a blind guess."""
    for item in load(sim_dataset):
        trajectory = ask(sim_dataset, item, AgentSettings(max_turns=1))
        assert len(trajectory.steps) == 1 and trajectory.steps[0].action == "answer"
        start, end = item.event_window
        seen = any(start <= f.index <= end for f in trajectory.initial_frames)
        if seen:
            assert trajectory.answer == item.answer
        elif item.answer_type == "open":
            assert trajectory.answer == UNSEEN_ANSWER
        elif item.answer_type == "box":
            assert json.loads(trajectory.answer) == [160, 90, 480, 270]


def test_a_window_shown_without_its_cue_is_not_evidence(sim_dataset):
    item = next(i for i in load(sim_dataset) if i.task == "penalty")
    with Video(sim_dataset.parent / item.video) as video:
        blind = OraclePolicy(item, cue=lambda image: False)
        trajectory = answer_question(video, item.question, blind, options=item.options, settings=AgentSettings(max_turns=2))
    assert trajectory.steps[0].action == "choose_frames"
    assert "guess" in trajectory.steps[-1].thought


def test_the_oracle_asks_for_the_narrowest_range_the_protocol_accepts_and_never_a_near_repeat():
    asked = []
    for _ in range(3):
        frame_range = _widen((101, 109), 8, 299, asked)
        assert check_frame_range(frame_range, total_frames=300, frames_per_call=8, earlier=asked) is None
        asked.append(frame_range)
    assert asked == [(100, 109), (98, 111), (96, 113)]  # one frame wider would still repeat the last call
    assert _widen((0, 3), 8, 299, []) == (0, 9)  # grown inside the video
    assert _widen((0, 3), 8, 299, [(0, 9)]) == (0, 13)
    assert _widen((290, 299), 8, 299, []) == (290, 299)


def test_the_oracle_never_asks_for_the_whole_video_again():
    assert _widen((0, 299), 8, 299, []) is None
    assert _widen((1, 298), 8, 299, []) is None


def test_on_a_video_larger_than_the_shown_frames_the_oracle_answers_a_box_in_the_shown_pixels(tmp_path):
    clip = write_index_clip(tmp_path / "wide.mp4", frames=24, fps=6, size=(1280, 720))
    item = QAItem(id="box-1", video="wide.mp4", question="Where is the foul?", answer="[200, 100, 601, 500]",
                  answer_type="box", sport="soccer", task="evidence_box", box=(200, 100, 601, 500))
    oracle = oracle_backends(OraclePolicy, lambda asked: tmp_path / asked.video)(item)
    assert oracle.original_size == (1280, 720)
    with Video(clip) as video:  # shown at 640×360, as the runner shows it
        trajectory = answer_question(video, item.question, oracle, settings=AgentSettings(max_turns=1))
    assert json.loads(trajectory.answer) == [100, 50, 300, 250]  # halved, as a model sees it (300.5 rounds to even)
    score = score_answer(item, trajectory.answer, box_space=BoxSpace.for_video(1280, 720))
    assert score.correct and score.iou > 0.99
    unscaled = score_answer(item, item.answer, box_space=BoxSpace.for_video(1280, 720))
    assert not unscaled.correct  # the truth as it is, read as shown pixels, lands twice as far: why the oracle maps it


def test_the_oracle_refuses_to_score_options_with_a_clear_error(sim_dataset):
    item = next(item for item in load(sim_dataset) if item.options)
    with pytest.raises(BackendError, match="OraclePolicy backend cannot score options: it is no language model"):
        ask(sim_dataset, item, AgentSettings(score_options=True))
