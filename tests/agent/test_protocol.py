"""The protocol parser and rules, as a specification of what a model may say."""
import re

import pytest

from sportlens.agent import protocol

HERMES = '<think>the foul happens late</think>\n<tool_call>{"name": "choose_frames", "arguments": {"frame_range": [120, 240]}}</tool_call>'
DEEPSPORT = '<think>zoom in</think><tool_call>{"action": "choose_frames", "frame_range": [10, 90]}</tool_call>'


def test_hermes_tool_call_is_parsed():
    turn = protocol.parse_turn(HERMES)
    assert (turn.action, turn.frame_range, turn.thought, turn.error) == ("choose_frames", (120, 240), "the foul happens late", None)


def test_deepsport_tool_call_is_parsed():
    turn = protocol.parse_turn(DEEPSPORT)
    assert (turn.action, turn.frame_range, turn.error) == ("choose_frames", (10, 90), None)


def test_arguments_as_json_string_are_accepted():
    text = '<think>t</think><tool_call>{"name": "choose_frames", "arguments": "{\\"frame_range\\": [1, 50]}"}</tool_call>'
    assert protocol.parse_turn(text).frame_range == (1, 50)


def test_answer_is_parsed_and_stripped():
    turn = protocol.parse_turn("<think>it is a handball</think>\n<answer> B </answer>")
    assert (turn.action, turn.answer, turn.error) == ("answer", "B", None)


def test_missing_think_is_an_error_but_keeps_the_action():
    turn = protocol.parse_turn("<answer>A</answer>")
    assert turn.action == "answer" and turn.answer == "A"
    assert "think" in turn.error


@pytest.mark.parametrize(
    ("text", "error_words"),
    [
        ("<think>hmm</think> I think it is A", "neither"),
        ("<think>x</think><answer>A</answer><tool_call>{}</tool_call>", "both"),
        ("<think>x</think><answer>A</answer><answer>B</answer>", "more than one"),
        ("<think>x</think><answer>  </answer>", "empty"),
        ("<think>x</think><tool_call>{frame_range: [1, 2]}</tool_call>", "not valid JSON"),
        ('<think>x</think><tool_call>[1, 2]</tool_call>', "not a JSON object"),
        ('<think>x</think><tool_call>{"name": "zoom", "arguments": {"frame_range": [1, 20]}}</tool_call>', "unknown tool"),
        ('<think>x</think><tool_call>{"name": "choose_frames", "arguments": {"frame_range": [1]}}</tool_call>', "two integers"),
        ('<think>x</think><tool_call>{"name": "choose_frames", "arguments": {"frame_range": [1.5, 20]}}</tool_call>', "two integers"),
        ('<think>x</think><tool_call>{"action": "choose_frames", "frame_range": "1-20"}</tool_call>', "two integers"),
        ('<think>x</think><tool_call>{"name": "choose_frames", "arguments": "{oops"}</tool_call>', "arguments are not valid JSON"),
    ],
)
def test_malformed_turns_are_invalid_with_a_named_error(text, error_words):
    turn = protocol.parse_turn(text)
    assert turn.action == "invalid"
    assert error_words in turn.error


@pytest.mark.parametrize(
    ("frame_range", "error_words"),
    [
        ((50, 50), "start < end"),
        ((60, 40), "start < end"),
        ((-1, 40), "leaves the video"),
        ((10, 300), "leaves the video"),
        ((10, 15), "fewer than 8"),
        ((0, 99), "repeats an earlier call"),
    ],
)
def test_frame_range_rules(frame_range, error_words):
    error = protocol.check_frame_range(frame_range, total_frames=300, frames_per_call=8, earlier=[(0, 99)])
    assert error_words in error


def rule(frame_range, earlier=(), total_frames=300):
    return protocol.check_frame_range(frame_range, total_frames=total_frames, frames_per_call=8, earlier=list(earlier))


def test_a_range_must_hold_n_frames_strictly_inside_it():
    """FrameThinker's width rule: start >= end - n is refused, so [s, s + n] (n - 1 frames inside) is too narrow."""
    assert "holds 7 frames strictly inside it, fewer than 8" in rule((100, 108))  # start = end - n
    assert rule((100, 109)) is None  # start = end - n - 1: frames 101..108 lie inside
    assert rule((0, 8)) is not None and rule((0, 9)) is None
    assert rule((290, 299)) is None


def test_the_whole_video_counts_as_already_seen():
    for whole in [(0, 299), (1, 299), (0, 298), (1, 298)]:
        assert "repeats the whole video" in rule(whole)
    assert rule((2, 299)) is None and rule((0, 297)) is None


@pytest.mark.parametrize("near", [(100, 200), (99, 200), (101, 200), (100, 199), (100, 201), (99, 201), (101, 199)])
def test_a_range_within_one_frame_of_an_earlier_one_at_both_ends_repeats_it(near):
    assert "repeats an earlier call [100, 200]" in rule(near, earlier=[(40, 60), (100, 200)])


@pytest.mark.parametrize("apart", [(98, 200), (102, 200), (100, 198), (100, 202), (98, 202), (102, 198), (99, 202)])
def test_a_range_two_frames_off_an_earlier_one_at_either_end_is_new(apart):
    assert rule(apart, earlier=[(100, 200)]) is None


def test_the_system_prompt_states_the_v2_rules():
    text = protocol.system_message(total_frames=300, fps=30.0, initial_frames=8, frames_per_call=8, max_turns=5).text()
    assert "start < end - 8" in text and "at least 8 frames lie strictly between start and end" in text
    assert "must not repeat the whole video or an earlier range, not even off by one frame" in text


@pytest.mark.parametrize(("partial", "written"), [
    ('<think>x</think><tool_call>{"name": "choose_frames", "arguments": {"frame_range": [12, 1', None),
    ('<think>x</think><tool_call>{"name": "choose_frames", "arguments": {"frame_range": [12, 130', None),
    ('<think>x</think><tool_call>{"name": "choose_frames", "arguments": {"frame_range": [12, 130]', (12, 130)),
    ('<think>x</think>\n<tool_call> {"name":"choose_frames","arguments":{"frame_range":[ 0 , 99 ]}}</tool_call>', (0, 99)),
    ('<think>the call "frame_range": [1, 9] is what I need</think>', None),  # not inside a tool call
    ('<think>x</think><answer>A</answer>', None),
])
def test_a_range_counts_as_written_only_once_its_bracket_closes_inside_a_tool_call(partial, written):
    assert protocol.frame_range_written(partial) == written


def test_options_are_parsed_and_validated():
    assert protocol.parse_options("A) foul ; B)no foul;") == ["A) foul", "B) no foul"]
    assert protocol.option_letters(["A) foul", "B) no foul"]) == ["A", "B"]
    for bad in ["A) only one", "A) x;C) y", "foul;no foul", "A) ;B) y", ""]:
        with pytest.raises(ValueError):
            protocol.parse_options(bad)


def test_constraint_accepts_protocol_turns_and_rejects_others():
    options = ["A) foul", "B) no foul"]
    constraint = protocol.turn_constraint(options=options, total_frames=900, allow_tool=True)
    assert re.fullmatch(constraint, HERMES)
    assert re.fullmatch(constraint, "<think>clear</think>\n<answer>B</answer>")
    assert not re.fullmatch(constraint, "<think>clear</think>\n<answer>C</answer>")
    assert not re.fullmatch(constraint, DEEPSPORT)  # the constraint asks for the hermes form only
    final = protocol.turn_constraint(options=options, total_frames=900, allow_tool=False)
    assert not re.fullmatch(final, HERMES)
    assert re.fullmatch(final, "<think>clear</think>\n<answer>A</answer>")
    every_constrained_turn_parses = protocol.parse_turn(HERMES).action == "choose_frames"
    assert every_constrained_turn_parses


def test_constrained_numbers_have_no_more_digits_than_the_last_frame():
    constraint = protocol.turn_constraint(options=None, total_frames=900, allow_tool=True)
    call = '<think>t</think>\n<tool_call>{"name": "choose_frames", "arguments": {"frame_range": [%s, %s]}}</tool_call>'
    assert re.fullmatch(constraint, call % (0, 899))
    assert not re.fullmatch(constraint, call % (0, 1000))
    assert not re.fullmatch(constraint, call % ("007", 100))


def test_answer_span_points_at_the_answer_text():
    text = "<think>x</think><answer> B </answer>"
    start, end = protocol.answer_span(text)
    assert text[start:end] == "B"
    assert protocol.answer_span("<think>x</think>") is None


def test_system_prompt_states_the_rules_and_the_tool():
    message = protocol.system_message(total_frames=900, fps=30.0, initial_frames=8, frames_per_call=8, max_turns=5)
    text = message.text()
    assert "0 to 899" in text and "choose_frames" in text and "<answer>" in text and "5 turns" in text


def test_the_constraint_bounds_the_thought_by_the_setting():
    from sportlens.agent.loop import AgentSettings

    long_thought = "<think>" + "x" * 300 + "</think>\n<answer>A</answer>"
    assert not re.fullmatch(protocol.turn_constraint(options=["A) a", "B) b"], total_frames=100, allow_tool=False), long_thought)
    assert re.fullmatch(protocol.turn_constraint(options=["A) a", "B) b"], total_frames=100, allow_tool=False,
                                        max_thought_chars=400), long_thought)
    assert AgentSettings().max_thought_chars == 200
    with pytest.raises(ValueError, match="max_thought_chars"):
        AgentSettings(max_thought_chars=0)
