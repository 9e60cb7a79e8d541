"""The visual probe sorts the tokens of an oracle's turns into the skills they test."""
from sportlens.training.demo_model import _train_tokenizer
from sportlens.training.visual_probe import kind


def test_each_answer_bearing_token_is_sorted_into_its_skill():
    tokenizer = _train_tokenizer(number_tokens=True)
    text = ('<think>frame 13 (6.5s): asked what, there are 2 marks. frame 40 (20.0s): asked what, the incident is not '
            'seen. frame 44 (22.0s): asked look, shows red square, left. So the answer is a foul. The blue team '
            'stands on the right.</think>\n<tool_call>{"name": "choose_frames", "arguments": {"frame_range": [13, 40]}}'
            '</tool_call><answer>B</answer>')
    tokens = tokenizer.tokenize(text)
    kinds = {}
    for i in range(1, len(tokens)):
        kinds.setdefault(kind(tokens, i), []).append(tokens[i])
    assert kinds["label"] == ["13", "40", "44"] and kinds["count"] == ["2"] and kinds["call_start"] == ["13"]
    assert kinds["colour"] == ["Ġred", "Ġblue"] and kinds["shape"] == ["Ġsquare"] and kinds["seen?"] == ["Ġthe", "Ġshows"]
    assert kinds["asked"] == ["Ġwhat", "Ġwhat", "Ġlook"]
    assert kinds["place"] == ["Ġleft"]  # "stands on the right" is a side answer, not the marker's place
    assert kinds["letter"] == [">B"] and kinds["conclusion"] == ["Ġa"]  # "So the answer is a foul."
