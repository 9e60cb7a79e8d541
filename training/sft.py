"""Supervised fine-tuning on distilled conversations with TRL's SFTTrainer: multi-turn, frames as images,
loss on the assistant's tokens only.

TRL's vision collator masks non-assistant tokens (``assistant_only_loss``) only with a chat template that carries
``{% generation %}`` markers; Qwen2.5-VL's template, the one served, has none, and a marked copy could drift from
what is served. So the dataset is passed unprepared and :class:`ConversationCollator` renders each conversation with
the checkpoint's own processor and sets the labels itself (``conversations.encode_for_training``): system and user
turns, tool responses and their frames are masked; TRL's trainer does the rest (loss, optimizer, schedule, logging).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback
from transformers.utils import logging as transformers_logging
from trl import SFTConfig, SFTTrainer

from sportlens.training.checkpoint import check_base_model, save_checkpoint
from sportlens.training.config import SFTStageConfig
from sportlens.training.conversations import IGNORE_INDEX, encode_for_training
from sportlens.training.distill import data_hash, load_conversations, load_images

log = logging.getLogger(__name__)


class TimeLimit(TrainerCallback):
    """Ends training after the first optimizer step that finishes ``seconds`` or more after training began."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._started = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if time.perf_counter() - self._started >= self.seconds:
            control.should_training_stop = True
            control.should_save = True  # a stage with save_steps resumes from here


def time_limit(seconds: float | None) -> list[TrainerCallback]:
    """The callbacks a stage's ``max_seconds`` asks for: a :class:`TimeLimit`, or none."""
    return [TimeLimit(seconds)] if seconds is not None else []


LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


class ConversationCollator:
    """Renders a batch of conversations to padded ids, labels (assistant tokens only), pixel values and grids."""

    def __init__(self, processor) -> None:
        self.processor = processor
        self.pad_id = processor.tokenizer.pad_token_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        encoded = [
            encode_for_training(self.processor, json.loads(row["conversation"]), load_images([Path(p) for p in row["frames"]]))
            for row in rows
        ]
        length = max(e["input_ids"].shape[1] for e in encoded)
        batch: dict[str, torch.Tensor] = {}
        for key, fill in (("input_ids", self.pad_id), ("attention_mask", 0), ("labels", IGNORE_INDEX), ("mm_token_type_ids", 0)):
            if key in encoded[0]:
                batch[key] = torch.cat(
                    [torch.nn.functional.pad(e[key], (0, length - e[key].shape[1]), value=fill) for e in encoded]
                )
        for key in ("pixel_values", "image_grid_thw"):  # a text-only conversation has none
            if any(key in e for e in encoded):
                batch[key] = torch.cat([e[key] for e in encoded if key in e])
        return batch


def load_model(model_dir: str, dtype_name: str, *, lora: bool, lora_r: int, lora_alpha: int, lora_dropout: float,
               freeze_vision: bool, weights_dir: str | None = None):
    """The checkpoint as a trainable model (LoRA-wrapped if asked), its processor, and the dtype chosen.

    ``weights_dir``: take the weights from there instead (a trainer checkpoint being resumed).
    """
    dtype = resolve_dtype(dtype_name)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(weights_dir or model_dir, dtype=dtype)
    if lora:
        model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                                 target_modules=LORA_TARGETS, task_type="CAUSAL_LM"))
    elif freeze_vision:
        for name, parameter in model.named_parameters():
            if ".visual." in f".{name}":
                parameter.requires_grad_(False)
    return model, processor, dtype


def resolve_dtype(name: str) -> torch.dtype:
    """ "auto": bfloat16 on a GPU, float32 on the CPU (bf16 matmuls on CPUs are slow or emulated)."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def _rough_tokens(messages: list[dict]) -> int:
    """About how many tokens a conversation renders to (4 characters a token, 24 an image): enough to group by."""
    parts = [part for message in messages for part in message["content"]]
    return sum(24 if part["type"] == "image" else len(part["text"]) // 4 for part in parts)


def train_sft(config: SFTStageConfig) -> dict:
    """Train one SFT stage and write the merged checkpoint to ``config.output_dir``; returns its throughput."""
    check_base_model(config.model)  # before any weights load
    conversations = load_conversations(Path(config.data))  # broken records fail here, naming file and line
    transformers_logging.set_verbosity_error()
    checkpoints = sorted((Path(config.output_dir) / "trainer").glob("checkpoint-*"), key=lambda p: int(p.name[11:]))
    resume = checkpoints[-1] if config.save_steps is not None and checkpoints else None
    # The weights of a resumed run load here: transformers 5.24's Trainer reads a Qwen2.5-VL checkpoint's weights
    # under the names they are saved with, which are not the model's, and without strict loading keeps none of them.
    model, processor, dtype = load_model(config.model, config.dtype, lora=config.lora, lora_r=config.lora_r,
                                         lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                         freeze_vision=config.freeze_vision, weights_dir=resume and str(resume))
    # Batches group conversations of similar length (look drills are a third as long as trajectories): less padding.
    dataset = Dataset.from_list([
        {"conversation": json.dumps(messages), "frames": [str(p) for p in images], "length": _rough_tokens(messages)}
        for messages, images in conversations
    ])
    args = SFTConfig(
        output_dir=str(Path(config.output_dir) / "trainer"),
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of all steps
        lr_scheduler_type=config.lr_scheduler,
        logging_steps=config.logging_steps,
        seed=config.seed,
        bf16=dtype == torch.bfloat16,
        use_cpu=not torch.cuda.is_available(),
        max_length=None,
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=False,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        save_total_limit=1,
        report_to=[],
        dataloader_num_workers=config.loader_workers,
        train_sampling_strategy="group_by_length",
        gradient_checkpointing=False,  # TRL turns it on; these models are small, and it costs a third more compute
        length_column_name="length",
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                         data_collator=ConversationCollator(processor), callbacks=time_limit(config.max_seconds))
    started = time.perf_counter()
    resumed_from = int(resume.name[11:]) if resume else 0
    if 0 < config.max_steps <= resumed_from:
        # Nothing left to train: transformers' Trainer resumed from a checkpoint inside an epoch takes one step past
        # max_steps before it checks (a finished 1,400-step stage became 1,401 steps), so it is not called.
        steps, planned, loss = resumed_from, config.max_steps, None
    else:
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)  # optimizer, schedule, data order
        steps, planned, loss = result.global_step, trainer.state.max_steps, round(float(result.training_loss), 4)
    seconds = time.perf_counter() - started
    samples = (steps - resumed_from) * config.batch_size * config.gradient_accumulation_steps
    tokens = max((float(e["num_tokens"]) for e in trainer.state.log_history if "num_tokens" in e), default=0.0)
    throughput = {
        "steps": steps,
        "planned_steps": planned,  # more than steps: stopped on max_seconds, resumable
        "resumed_from_step": resumed_from,
        "train_seconds": round(seconds, 2),
        "samples_per_s": round(samples / seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "final_loss": loss,  # None: no step trained in this call
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
    }
    stage = {"stage": "sft", "config": asdict(config), "data_sha256": data_hash(Path(config.data)),
             "conversations": len(conversations), **throughput}
    save_checkpoint(trainer.model, processor, config.output_dir, parent=config.model, stage=stage)
    log.info("sft: %s", throughput)
    return throughput
