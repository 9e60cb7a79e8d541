"""Conversations as the model sees them: chat messages with frames, rendered to token ids with an assistant-only mask.

SFT and GRPO both train on what this module renders, with the checkpoint's own chat template and processor, the
same ones ``TransformersBackend`` and vLLM use when serving; so the tokens trained on are the tokens served.

On disk (``sportlens distill``), a conversation is TRL's vision-language format: ``messages`` whose contents are
``{"type": "text", "text": …}`` and ``{"type": "image"}`` parts, and ``images``, the frame files (JPEG) in the
order of the image parts.
"""
from __future__ import annotations

import torch
from PIL import Image

from sportlens.agent.backends.base import ChatMessage, Generation

IGNORE_INDEX = -100  # labels with this value add nothing to the loss (transformers' convention)


def encode(processor, chat: list[dict], images: list[Image.Image], *, add_generation_prompt: bool = False) -> dict:
    """Token ids (image placeholders expanded), pixel values and grids of one chat, batch dimension 1."""
    text = processor.apply_chat_template(chat, add_generation_prompt=add_generation_prompt, tokenize=False)
    return dict(processor(text=[text], images=images or None, return_tensors="pt"))


def assistant_mask(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """1 on the tokens the assistant wrote — each assistant turn's content and its closing ``<|im_end|>`` — else 0.

    The role header (``<|im_start|>assistant\\n``), system and user turns, tool responses and their frames are 0.
    Turns are found on the ids: ``<|im_start|>`` and ``<|im_end|>`` are special tokens, which the tokenizer never
    merges with neighbouring text, so the header's ids are the same wherever it occurs.
    """
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    header = tokenizer.encode("assistant\n", add_special_tokens=False)
    ids = input_ids.tolist()
    mask = [0] * len(ids)
    position = 0
    while position < len(ids):
        if ids[position] == start and ids[position + 1 : position + 1 + len(header)] == header:
            position += 1 + len(header)
            while position < len(ids):
                mask[position] = 1
                if ids[position] == end:
                    break
                position += 1
        position += 1
    return torch.tensor(mask, dtype=torch.long)


def encode_for_training(processor, chat: list[dict], images: list[Image.Image]) -> dict:
    """``encode`` plus ``labels``: the ids where the assistant wrote them, ``IGNORE_INDEX`` everywhere else."""
    batch = encode(processor, chat, images)
    mask = assistant_mask(batch["input_ids"][0], processor.tokenizer)
    labels = batch["input_ids"].clone()
    labels[0, mask == 0] = IGNORE_INDEX
    batch["labels"] = labels
    return batch


class RecordingBackend:
    """Wraps a backend and keeps the messages of its last call and what it said: with them, the whole conversation.

    The agent loop's last call sees every message before the final turn, so ``conversation()`` after a run is
    exactly what the model was shown and said, frames included.
    """

    def __init__(self, backend) -> None:
        self.backend = backend
        self.model_id = backend.model_id
        self.messages: list[ChatMessage] = []
        self.text = ""

    def generate(self, messages: list[ChatMessage], **kwargs) -> Generation:
        generation = self.backend.generate(messages, **kwargs)
        self.messages, self.text = list(messages), generation.text
        return generation

    def score_continuations(self, messages: list[ChatMessage], continuations: list[str]) -> list[float]:
        return self.backend.score_continuations(messages, continuations)

    def conversation(self) -> list[ChatMessage]:
        return [*self.messages, ChatMessage("assistant", [self.text])]

    def close(self) -> None:
        """The wrapped backend stays open: it serves other rollouts."""
