"""The loss mask on a real rendered conversation: only what the assistant wrote is trained on."""
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoProcessor

from sportlens.training.conversations import IGNORE_INDEX, encode_for_training
from sportlens.training.distill import load_conversations, load_images
from sportlens.training.grpo import render_rollout


@pytest.fixture(scope="module")
def looked_closer(distilled: Path):
    """A distilled conversation in which the oracle called the tool: system, user, assistant, tool response, assistant."""
    return next((m, p) for m, p in load_conversations(distilled) if len(m) == 5)


def assistant_texts(messages):
    return [m["content"][0]["text"] for m in messages if m["role"] == "assistant"]


def test_labels_are_exactly_the_assistant_turns_and_their_end_tokens(demo_model_dir, looked_closer):
    processor = AutoProcessor.from_pretrained(demo_model_dir)
    messages, paths = looked_closer
    batch = encode_for_training(processor, messages, load_images(paths))
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    tokenizer = processor.tokenizer
    trained = tokenizer.decode(ids[labels != IGNORE_INDEX], skip_special_tokens=False)

    assert trained == "".join(text + "<|im_end|>" for text in assistant_texts(messages))
    assert "<tool_call>" in trained and "<answer>" in trained
    assert "<tool_response>" not in trained and "Question:" not in trained and "assistant\n" not in trained
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (ids == image_pad).sum() > 0 and ((ids == image_pad) & (labels != IGNORE_INDEX)).sum() == 0
    assert batch["image_grid_thw"].shape[0] == len(paths) == 16  # 8 initial frames + 8 from the tool


def test_a_rollout_completion_masks_the_tool_response_inside_it(demo_model_dir, looked_closer):
    from sportlens.agent.backends.base import ChatMessage
    from sportlens.tools.frames import Frame

    processor = AutoProcessor.from_pretrained(demo_model_dir)
    messages, paths = looked_closer
    images = iter(load_images(paths))
    chat = [ChatMessage(m["role"], [p["text"] if p["type"] == "text" else Frame(0, 0.0, np.asarray(next(images)))
                                    for p in m["content"]]) for m in messages]
    rollout = render_rollout(processor, chat)
    tokenizer = processor.tokenizer
    completion, mask = rollout["completion_ids"], rollout["env_mask"]

    assert tokenizer.decode(completion, skip_special_tokens=False).startswith(assistant_texts(messages)[0])
    assert completion[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>") and mask[-1] == 1
    context = tokenizer.decode([t for t, m in zip(completion, mask) if m == 0], skip_special_tokens=False)
    assert context.startswith("\n<|im_start|>user\n<tool_response>") and context.endswith("<|im_start|>assistant\n")
    assert len(rollout["images"]) == 16
