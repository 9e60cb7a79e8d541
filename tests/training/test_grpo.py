"""GRPO's update sees what the rollout saw: the tool's frames reach the forward pass, and a reward moves the weights."""
from pathlib import Path

from safetensors.torch import load_file

from sportlens.agent.backends.base import Generation
from sportlens.training import grpo
from sportlens.training.config import GRPOStageConfig

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
    monkeypatch.setattr(grpo, "reward_function", lambda name: by_length)
    config = GRPOStageConfig(model=str(demo_model_dir), data=str(sim_qa), output_dir=str(tmp_path / "out"),
                             num_generations=2, batch_size=2, max_steps=1, max_turns=2, max_tokens_per_turn=12,
                             max_items=1, learning_rate=1e-2, beta=0.0)
    report = grpo.train_grpo(config)

    assert forwards and all(num_images == [16, 16] and grids == 32 for num_images, grids, _ in forwards)
    before, after = load_file(Path(demo_model_dir) / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert not before["lm_head.weight"].equal(after["lm_head.weight"])
    assert report["steps"] == 1 and report["samples_per_s"] > 0
