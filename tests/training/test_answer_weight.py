"""SFT's answer weight: the final turn's closing sentence and answer weigh more in the loss; nothing else does."""
import json

import pytest
import torch
from transformers import AutoProcessor

from sportlens.training.config import ConfigError, SFTStageConfig
from sportlens.training.conversations import IGNORE_INDEX
from sportlens.training.demo_model import VISUAL_SHAPE, build_demo_model
from sportlens.training.sft import ConversationCollator, weighted_loss

CALL = '<think>frame 40: 1 mark.</think>\n<tool_call>{"name": "choose_frames", "arguments": {"frame_range": [1, 20]}}</tool_call>'
ANSWER = "<think>frame 10: shows red circle, left; asked what. So the answer is a score.</think>\n<answer>A</answer>"


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    return AutoProcessor.from_pretrained(build_demo_model(tmp_path_factory.mktemp("m"), seed=0, shape=VISUAL_SHAPE))


def _conversation(*turns: str) -> list[dict]:
    messages = [{"role": "system", "content": [{"type": "text", "text": "s"}]},
                {"role": "user", "content": [{"type": "text", "text": "Question: what?\nOptions:\nA) a score\nB) out"}]}]
    for turn in turns:
        messages += [{"role": "assistant", "content": [{"type": "text", "text": turn}]},
                     {"role": "user", "content": [{"type": "text", "text": "<tool_response>\n</tool_response>"}]}]
    return messages[:-1]


def test_only_the_answering_turns_closing_sentence_and_answer_are_weighted(processor):
    rows = [{"conversation": json.dumps(_conversation(CALL, ANSWER)), "frames": []},
            {"conversation": json.dumps(_conversation(CALL)), "frames": []}]
    batch = ConversationCollator(processor, answer_weight=5.0)(rows)
    tokens = processor.tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    heavy = "".join(t for t, w in zip(tokens, batch["loss_weights"][0]) if w == 5.0)
    assert heavy.replace("Ġ", " ").replace("Ċ", "\n") == " So the answer is a score.</think>\n<answer>A</answer><|im_end|>"
    assert (batch["loss_weights"][1] == 1.0).all()  # a turn that calls the tool has no answer to weigh
    assert "loss_weights" not in ConversationCollator(processor)(rows)


def test_the_weighted_loss_is_cross_entropy_at_weight_one_and_grows_with_the_weight():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 6, 11), torch.randint(0, 11, (2, 6))
    labels[:, :2] = IGNORE_INDEX
    plain = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1))
    assert torch.isclose(weighted_loss(logits, labels, torch.ones(2, 6)), plain)
    heavier = torch.ones(2, 6)
    heavier[:, -1] = 3.0
    assert weighted_loss(logits, labels, heavier) > plain


def test_an_answer_weight_below_or_at_zero_is_refused():
    with pytest.raises(ConfigError, match="answer_weight"):
        SFTStageConfig(model="m", data="d", output_dir="o", answer_weight=0)
