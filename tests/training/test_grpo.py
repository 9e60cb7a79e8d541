"""GRPO's update sees what the rollout saw: the tool's frames reach the forward pass, and a reward moves the weights.
Before training, a pre-flight pass finds the questions whose rollouts all earn one reward."""
from pathlib import Path

from safetensors.torch import load_file
from transformers.utils import get_json_schema

from sportlens.agent.backends.base import Generation
from sportlens.agent.records import QAItem
from sportlens.training import grpo
from sportlens.training.config import GRPOStageConfig
from sportlens.training.rewards import PRESETS, RewardPreset

from builders import example_trajectory

LOOK = '<think>look closer</think>\n<tool_call>{"name": "choose_frames", "arguments": {"frame_range": [0, 40]}}</tool_call>'


class LooksFirst(grpo.PolicyBackend):
    """The policy, except that its first turn always calls the tool: every rollout then carries tool frames."""

    def generate(self, messages, **kwargs):
        if not any(m.role == "assistant" for m in messages):
            return Generation(text=LOOK, tokens_in=0, tokens_out=0)
        return super().generate(messages, **kwargs)


def test_tool_frames_enter_the_update_and_a_varying_reward_moves_the_weights(demo_model_dir, sim_qa, tmp_path, monkeypatch):
    forwards = []
    original = grpo.AgentGRPOTrainer._get_per_token_logps_and_entropies

    def spy(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        forwards.append((kwargs.get("num_images"), kwargs["image_grid_thw"].shape[0], kwargs["pixel_values"].shape[0]))
        return original(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)

    def by_length(completions, **kwargs):  # differs between rollouts, so the group advantages are not all zero
        return [float(len(t.steps[-1].raw_output) % 7) for t in completions]

    monkeypatch.setattr(grpo, "PolicyBackend", LooksFirst)
    monkeypatch.setattr(grpo.AgentGRPOTrainer, "_get_per_token_logps_and_entropies", spy)
    monkeypatch.setattr(grpo, "reward_preset", lambda name, weights: RewardPreset("by-length", (by_length,), (1.0,)))
    config = GRPOStageConfig(model=str(demo_model_dir), data=str(sim_qa), output_dir=str(tmp_path / "out"),
                             num_generations=2, batch_size=2, max_steps=1, max_turns=2, max_tokens_per_turn=12,
                             max_items=1, learning_rate=1e-2, beta=0.0, preflight="report")
    report = grpo.train_grpo(config)

    assert forwards and all(num_images == [16, 16] and grids == 32 for num_images, grids, _ in forwards)
    before, after = load_file(Path(demo_model_dir) / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert not before["lm_head.weight"].equal(after["lm_head.weight"])
    assert report["steps"] == 1 and report["samples_per_s"] > 0
    assert report["zero_variance_items"] in (0, 1) and report["zero_variance_share"] == report["zero_variance_items"]


class ScriptedTrainer:
    """What the pre-flight pass needs of the trainer: ``play`` (answers read off a script, and whether each item is
    solved from its initial frames) and a judge."""

    judge = None

    def __init__(self, script: dict[str, tuple[bool, list[tuple[str, bool]]]]) -> None:
        self.script = script

    def play(self, items):
        rollouts = {item_id: iter(answers) for item_id, (_, answers) in self.script.items()}
        trajectories = []
        for entry in items:
            answer, tool = next(rollouts[entry.id])
            trajectories.append(example_trajectory(answer, tool=tool))
        return trajectories, [[] for _ in items], {item_id: solved for item_id, (solved, _) in self.script.items()}


def item(item_id: str) -> QAItem:
    return QAItem(id=item_id, video="clip.mp4", question="Which foul?", options=["A) a", "B) b", "C) c"], answer="B",
                  answer_type="choice", sport="soccer", task="foul")


def test_preflight_finds_the_questions_whose_rollouts_all_earn_one_reward():
    trainer = ScriptedTrainer({  # solved from the initial frames, and (answer, tool used) of each of 3 rollouts
        "always": (True, [("B", False)] * 3),  # right every time, the same way: no signal
        "mixed": (False, [("B", True), ("C", True), ("B", False)]),
        "never": (False, [("C", False)] * 3),  # wrong every time: no signal
        "wasted": (True, [("C", True), ("C", False), ("C", False)]),  # v1 consoles the look; v2 gives it nothing
    })
    items = [item(name) for name in trainer.script]
    v1 = grpo.preflight(trainer, items, PRESETS["v1"], generations=3)
    assert v1.same_reward == ("always", "never") and v1.share == 0.5
    assert grpo.preflight(trainer, items, PRESETS["v2"], generations=3).same_reward == ("always", "never", "wasted")


def test_rollouts_use_the_configured_sampler_and_the_tool_schema_states_the_v2_range_rule():
    config = GRPOStageConfig(model="m", data="d", output_dir="o", sampler="framethinker", initial_frames=4)
    settings = grpo.rollout_settings(config)
    assert (settings.sampler, settings.initial_frames, settings.temperature) == ("framethinker", 4, 1.0)
    schema = get_json_schema(grpo.choose_frames)["function"]["parameters"]["properties"]["frame_range"]
    assert "start < end - n" in schema["description"] and "off by one frame" in schema["description"]
