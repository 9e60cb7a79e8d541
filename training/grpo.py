"""GRPO with TRL's GRPOTrainer, the rollouts being our agent loop: the protocol, parser and frame tool that serve.

TRL's built-in multi-turn tools parse calls with the tokenizer's response schema and send results back as "tool"
messages; our protocol is ``<think>`` + hermes ``<tool_call>`` parsed by ``agent.protocol``, tool results as user
turns of labelled frames, a format error reported once, a last turn that must answer. So :class:`AgentGRPOTrainer`
replaces only TRL's generation step: each rollout is ``answer_question`` run with the policy being trained
(:class:`PolicyBackend`, a ``TransformersBackend`` over the live model) on the item's video, and the whole
conversation is rendered with the checkpoint's processor (``conversations``). The completion is everything after
the first assistant header; ``env_mask`` (TRL's ``tool_mask``) keeps the loss on the assistant's own tokens, so
tool responses and their frames are context, never trained on. TRL then does the rest unchanged: group-relative
advantages, the clipped objective, the KL term against the reference model, the optimizer. The frames of tool
responses reach the forward passes through TRL's own path for images inside completions.

Rewards are the terms of the config's ``training.rewards`` preset, functions of the rollouts' trajectories, weighted
through TRL's ``reward_weights``; open answers are scored by the configured judge or by ROUGE overlap. For v2 each
step also runs every item once greedily with a single turn (``solved_without_tool``). An optional pre-flight pass
rolls every item out before training and finds those whose rollouts all earn one reward: no learning signal.
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import xgrammar as xgr
from datasets import Dataset
from transformers import GenerationConfig, TrainerCallback
from transformers.utils import logging as transformers_logging
from trl import GRPOConfig, GRPOTrainer

from sportlens.agent.backends.base import ChatMessage
from sportlens.agent.backends.transformers_local import TransformersBackend, stop_token_ids, to_chat
from sportlens.agent.loop import AgentSettings, answer_question
from sportlens.agent.records import QAItem, Trajectory
from sportlens.benchmarks.judge import OpenAIJudge
from sportlens.benchmarks.loaders import load_dataset
from sportlens.tools.video import Video
from sportlens.training.checkpoint import check_base_model, save_checkpoint
from sportlens.training.config import GRPOStageConfig
from sportlens.training.conversations import RecordingBackend, assistant_mask, encode
from sportlens.training.distill import file_sha256
from sportlens.training.rewards import (
    Judge,
    RememberingJudge,
    RewardPreset,
    ZeroVariance,
    answer_accuracy,
    reward_preset,
    zero_variance,
)
from sportlens.training.sft import load_model, resolve_dtype, time_limit

log = logging.getLogger(__name__)


class PolicyBackend(TransformersBackend):
    """A ``TransformersBackend`` over a model already in memory: the policy that GRPO is training.

    It sets up what ``TransformersBackend.__init__`` sets up after loading (stop ids, plain sampling, the grammar
    compiler for constrained turns), so rollouts generate, decode and constrain exactly as serving does.
    """

    def __init__(self, model, processor, model_id: str) -> None:  # nothing to load, so no super().__init__
        self._processor = processor
        self._model = model
        self.model_id = model_id
        self._device = next(model.parameters()).device
        self._tokenizer = processor.tokenizer
        self._stop_ids = stop_token_ids(model.generation_config, self._tokenizer)
        pad_id = self._tokenizer.pad_token_id
        generating = model.get_base_model() if hasattr(model, "get_base_model") else model  # a LoRA-wrapped model
        generating.generation_config = GenerationConfig(
            eos_token_id=self._stop_ids, pad_token_id=self._stop_ids[0] if pad_id is None else pad_id
        )
        vocab_size = model.config.get_text_config().vocab_size
        self._compiler = xgr.GrammarCompiler(
            xgr.TokenizerInfo.from_huggingface(self._tokenizer, vocab_size=vocab_size, stop_token_ids=self._stop_ids)
        )
        self._grammars = {}
        self._lock = threading.Lock()


def render_rollout(processor, messages: list[ChatMessage]) -> dict:
    """A finished conversation as TRL's rollout fields: prompt ids, completion ids, env mask, images.

    The completion starts at the first token the assistant wrote and ends with its last ``<|im_end|>``.
    """
    chat, images = to_chat(messages)
    ids = encode(processor, chat, images)["input_ids"][0]
    mask = assistant_mask(ids, processor.tokenizer)
    written = mask.nonzero().flatten()
    first, last = int(written[0]), int(written[-1])
    return {"prompt_ids": ids[:first].tolist(), "completion_ids": ids[first : last + 1].tolist(),
            "env_mask": mask[first : last + 1].tolist(), "images": images}


class RolloutTimer(TrainerCallback):
    """Per optimizer step: seconds in rollouts (the agent loop) and in the rest (scoring, loss, backward, update)."""

    def __init__(self) -> None:
        self.rollout_s: list[float] = []
        self.step_s: list[float] = []
        self.tokens: list[int] = []
        self._pending_rollout = 0.0
        self._pending_tokens = 0
        self._started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_s.append(time.perf_counter() - self._started)
        self.rollout_s.append(self._pending_rollout)
        self.tokens.append(self._pending_tokens)
        self._pending_rollout, self._pending_tokens = 0.0, 0

    def add(self, seconds: float, tokens: int) -> None:
        self._pending_rollout += seconds
        self._pending_tokens += tokens


class AgentGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer whose generation step runs the agent loop (see the module docstring).

    Args:
        items: the training questions by id; the dataset's ``item_id`` column picks them.
        video_path: where an item's video is.
        agent_settings: the loop's settings for rollouts (turns, frames, temperature).
        model_id: the name rollouts record as the trajectories' model.
        probe_without_tool: measure ``solved_without_tool`` per item each step (the v2 reward needs it).
        judge: scores the probe's open answers (the reward terms get it from the preset); None: ROUGE overlap.
        timer: collects rollout time and token counts per step.
        Everything else goes to ``GRPOTrainer``.
    """

    def __init__(self, *, items: dict[str, QAItem], video_path, agent_settings: AgentSettings, model_id: str,
                 probe_without_tool: bool, judge: Judge | None, timer: RolloutTimer, **kwargs) -> None:
        super().__init__(**kwargs)
        self.items, self.video_path, self.agent_settings = items, video_path, agent_settings
        self.policy_id, self.probe_without_tool, self.judge, self.timer = model_id, probe_without_tool, judge, timer
        # TRL builds pixel values for images inside completions only when it sees tools; ours is choose_frames.
        self.tools = [choose_frames]
        self._batch_inputs: list[dict] = []
        self._policy: PolicyBackend | None = None

    def _generate_and_score_completions(self, inputs):
        self._batch_inputs = inputs  # _generate receives only the prompts; the item ids are in the rows
        return super()._generate_and_score_completions(inputs)

    def play(self, items: list[QAItem]) -> tuple[list[Trajectory], list[list[ChatMessage]], dict[str, bool]]:
        """One rollout per entry of ``items`` with the current policy: the trajectories, the conversations as the
        policy saw them, and (when probing) whether each item is solved from its initial frames alone."""
        if self._policy is None:  # the model is updated in place, so one backend serves every step
            model = self.accelerator.unwrap_model(self.model)
            self._policy = PolicyBackend(model, self.processing_class, self.policy_id)
        backend = self._policy
        solved: dict[str, bool] = {}
        trajectories, conversations = [], []
        for item in items:
            recorder = RecordingBackend(backend)
            with Video(self.video_path(item)) as video:
                trajectory = answer_question(video, item.question, recorder, options=item.options,
                                             settings=self.agent_settings)
                if self.probe_without_tool and item.id not in solved:
                    probe = answer_question(video, item.question, backend, options=item.options,
                                            settings=replace(self.agent_settings, max_turns=1, temperature=0.0))
                    accuracy = answer_accuracy(probe, item.answer, item.answer_type, item.box, self.judge)
                    solved[item.id] = accuracy >= 0.5
            trajectories.append(trajectory)
            conversations.append(recorder.conversation())
        return trajectories, conversations, solved

    def _generate(self, prompts: list):
        started = time.perf_counter()
        items = [self.items[row["item_id"]] for row in self._batch_inputs]
        trajectories, conversations, solved = self.play(items)
        rollouts = [render_rollout(self.processing_class, conversation) for conversation in conversations]
        tokens = sum(len(r["prompt_ids"]) + len(r["completion_ids"]) for r in rollouts)
        self.timer.add(time.perf_counter() - started, tokens)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["tools/call_frequency"].append(
            sum(any(s.action == "choose_frames" for s in t.steps) for t in trajectories) / len(trajectories))
        self._metrics[mode]["format_errors"].append(sum(t.format_errors for t in trajectories) / len(trajectories))
        self._metrics[mode]["frames_used"].append(sum(t.frames_used for t in trajectories) / len(trajectories))
        if mode == "train":
            self.state.num_input_tokens_seen += tokens
        self._metrics[mode]["num_tokens"] = [self.state.num_input_tokens_seen]
        extra = {"solved_without_tool": [solved[i.id] for i in items]} if self.probe_without_tool else {}
        images = [r["images"] for r in rollouts]
        return ([r["prompt_ids"] for r in rollouts], [r["completion_ids"] for r in rollouts],
                [r["env_mask"] for r in rollouts], trajectories, None, extra, images, images)


def reward_columns(item: QAItem) -> dict:
    """The dataset columns the reward terms read, for one item."""
    return {"answer": item.answer, "answer_type": item.answer_type, "box": list(item.box) if item.box else None}


def preflight(trainer: AgentGRPOTrainer, items: list[QAItem], preset: RewardPreset, generations: int) -> ZeroVariance:
    """Roll every item out ``generations`` times with the starting policy and find those whose rollouts all earn the
    same reward under ``preset``: GRPO would spend their rollouts for no gradient. Logs their share."""
    started = time.perf_counter()
    rolled = [item for item in items for _ in range(generations)]
    trajectories, _, solved = trainer.play(rolled)
    columns = {key: [reward_columns(item)[key] for item in rolled] for key in ("answer", "answer_type", "box")}
    if preset.probes_without_tool:
        columns["solved_without_tool"] = [solved[item.id] for item in rolled]
    totals = preset.total(trajectories, judge=trainer.judge, **columns)
    found = zero_variance({item.id: totals[i * generations : (i + 1) * generations] for i, item in enumerate(items)})
    log.info("grpo pre-flight: %d of %d items (%.1f%%) give every rollout the same %r reward (no learning signal); "
             "%.1f s", len(found.same_reward), found.prompts, 100 * found.share, preset.name,
             time.perf_counter() - started)
    return found


def _judge(config: GRPOStageConfig) -> Judge | None:
    if config.judge_url is None:
        return None
    api_key = os.environ.get("SPORTLENS_JUDGE_API_KEY")
    return RememberingJudge(OpenAIJudge(config.judge_url, config.judge_model, api_key=api_key))


def choose_frames(frame_range: list[int]) -> str:
    """Return frames sampled uniformly inside a range of raw frame indices of the video.

    Args:
        frame_range: [start, end], raw frame indices inside the video with start < end - n, n being the frames a
            call returns, so that n frames lie strictly between start and end (protocol v2). Neither the whole
            video nor an earlier range, not even off by one frame at either end.
    """
    raise RuntimeError("choose_frames is served by the agent loop during rollouts, never by TRL")


def rollout_settings(config: GRPOStageConfig) -> AgentSettings:
    """The loop's settings for the rollouts: the config's turns, frames, sampler, sampling and constraint."""
    return AgentSettings(initial_frames=config.initial_frames, frames_per_call=config.frames_per_call,
                         max_turns=config.max_turns, max_tokens_per_turn=config.max_tokens_per_turn,
                         temperature=config.temperature, constrain=config.constrain, sampler=config.sampler)


def train_grpo(config: GRPOStageConfig) -> dict:
    """Train one GRPO stage and write the merged checkpoint to ``config.output_dir``; returns its throughput."""
    check_base_model(config.model)
    dataset_file = load_dataset(config.data)  # broken records fail here, naming file and line
    items = [item for item in dataset_file.items if (config.split is None or item.split == config.split)
             and item.answer_type in config.answer_types]
    items = items[: config.max_items] if config.max_items else items
    if not items:
        raise ValueError(f"{config.data}: no items of split {config.split!r} and types {config.answer_types}")
    transformers_logging.set_verbosity_error()
    model, processor, dtype = load_model(config.model, config.dtype, lora=config.lora, lora_r=config.lora_r,
                                         lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                         freeze_vision=config.freeze_vision)
    served_padding_side = processor.tokenizer.padding_side
    processor.tokenizer.padding_side = "left"  # TRL pads prompts on the left
    rows = Dataset.from_list([
        {"prompt": [{"role": "user", "content": item.question}], "item_id": item.id, **reward_columns(item)}
        for item in items
    ])
    preset = reward_preset(config.reward, config.reward_weights)
    judge = _judge(config)
    settings = rollout_settings(config)
    timer = RolloutTimer()
    with tempfile.TemporaryDirectory() as scratch:
        args = GRPOConfig(
            output_dir=scratch,
            learning_rate=config.learning_rate,
            max_steps=config.max_steps,
            gradient_checkpointing=False,  # TRL turns it on; these models are small, and it costs a third more compute
            per_device_train_batch_size=config.batch_size,
            gradient_accumulation_steps=config.accumulation_steps,
            num_generations=config.num_generations,
            reward_weights=list(preset.weights),
            beta=config.beta,
            temperature=config.temperature,
            max_completion_length=config.max_turns * config.max_tokens_per_turn,
            logging_steps=config.logging_steps,
            seed=config.seed,
            bf16=dtype == torch.bfloat16,
            use_cpu=not torch.cuda.is_available(),
            remove_unused_columns=False,
            save_strategy="no",
            report_to=[],
        )
        trainer = AgentGRPOTrainer(
            items={item.id: item for item in items}, video_path=dataset_file.video_path, agent_settings=settings,
            model_id=Path(config.model).resolve().name, probe_without_tool=preset.probes_without_tool, judge=judge,
            timer=timer, model=model, reward_funcs=preset.reward_funcs(judge), args=args, train_dataset=rows,
            processing_class=processor, callbacks=[timer, *time_limit(config.max_seconds)],
        )
        checked = {}
        if config.preflight != "off":
            found = preflight(trainer, items, preset, config.num_generations)
            checked = {"zero_variance_share": round(found.share, 4), "zero_variance_items": len(found.same_reward)}
            if config.preflight == "drop":
                if len(found.same_reward) == len(items):
                    raise ValueError(f"{config.data}: every item's rollouts earned one reward under {config.reward!r}; "
                                     "nothing is left to learn from")
                dropped = set(found.same_reward)
                trainer.train_dataset = rows.select([i for i, item in enumerate(items) if item.id not in dropped])
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    steps = len(timer.step_s)
    rollouts = steps * config.batch_size * config.accumulation_steps
    throughput = {
        "steps": steps,
        "train_seconds": round(seconds, 2),
        "samples_per_s": round(rollouts / seconds, 3),
        "tokens_per_s": round(sum(timer.tokens) / seconds, 1),
        "rollout_s_per_step": round(sum(timer.rollout_s) / max(steps, 1), 2),
        "update_s_per_step": round((sum(timer.step_s) - sum(timer.rollout_s)) / max(steps, 1), 2),
        "rollout_s_steps": [round(r, 2) for r in timer.rollout_s],
        "update_s_steps": [round(s - r, 2) for s, r in zip(timer.step_s, timer.rollout_s)],
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "dtype": str(resolve_dtype(config.dtype)).removeprefix("torch."),
        "mean_reward_per_step": [round(float(e["reward"]), 4) for e in trainer.state.log_history if "reward" in e],
        **checked,
    }
    stage = {"stage": "grpo", "config": asdict(config), "data_sha256": file_sha256(Path(config.data)),
             "items": len(items), **throughput}
    processor.tokenizer.padding_side = served_padding_side
    save_checkpoint(trainer.model, processor, config.output_dir, parent=config.model, stage=stage)
    log.info("grpo: %s", throughput)
    return throughput
