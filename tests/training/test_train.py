"""CPU smoke runs of every stage through the command line: distill → train sft → train grpo → models export → ask.

Each stage runs a couple of steps on the random demo model; what is checked is the wiring — the checkpoints, their
manifests, the masks and the updates — not what the model learns.
"""
import hashlib
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from builders import make_result, synthetic
from sportlens.agent.conformal import calibrate, model_sha256
from sportlens.agent.records import PROTOCOL_VERSION
from sportlens.cli import main

SFT = {"learning_rate": 1e-3, "max_steps": 2}
GRPO = {"num_generations": 2, "batch_size": 2, "max_steps": 1, "max_turns": 2, "max_tokens_per_turn": 12,
        "max_items": 2, "learning_rate": 1e-3, "beta": 0.04}


def write_config(folder: Path, name: str, **values) -> Path:
    path = folder / name
    path.write_text(json.dumps(values))
    return path


def weights(folder: Path) -> dict:
    return load_file(folder / "model.safetensors")


@pytest.fixture(scope="module")
def sft_checkpoint(tmp_path_factory, demo_model_dir, distilled) -> Path:
    folder = tmp_path_factory.mktemp("sft")
    config = write_config(folder, "sft.json", model=str(demo_model_dir), data=str(distilled),
                          output_dir=str(folder / "out"), **SFT)
    assert main(["train", "sft", str(config)]) == 0
    return folder / "out"


def test_distill_from_the_command_line(sim_qa, tmp_path, capsys):
    assert main(["distill", str(sim_qa), "--out", str(tmp_path / "d"), "--types", "choice", "--limit", "3"]) == 0
    assert "kept 3 of 3 trajectories" in capsys.readouterr().out
    assert len((tmp_path / "d" / "conversations.jsonl").read_text().splitlines()) == 3


def test_sft_writes_a_merged_checkpoint_that_moved_and_says_where_it_came_from(sft_checkpoint, demo_model_dir, distilled):
    manifest = json.loads((sft_checkpoint / "manifest.json").read_text())
    stage = manifest["stages"][-1]
    assert manifest["stages"][0] == "random-init demo" and stage["stage"] == "sft" and stage["steps"] == 2
    assert stage["data_sha256"] == hashlib.sha256((distilled / "conversations.jsonl").read_bytes()).hexdigest()
    assert stage["config"]["learning_rate"] == 1e-3 and stage["samples_per_s"] > 0 and stage["tokens_per_s"] > 0
    before, after = weights(demo_model_dir), weights(sft_checkpoint)
    assert set(before) == set(after)
    text, vision = "model.layers.0.self_attn.q_proj.weight", "visual.blocks.0.attn.qkv.weight"
    assert not before[text].equal(after[text])  # trained
    assert before[vision].equal(after[vision])  # the vision tower is frozen by default


def test_lora_sft_is_merged_into_plain_weights(tmp_path, demo_model_dir, distilled):
    config = write_config(tmp_path, "lora.json", model=str(demo_model_dir), data=str(distilled),
                          output_dir=str(tmp_path / "out"), lora=True, lora_r=4, **{**SFT, "max_steps": 1})
    assert main(["train", "sft", str(config)]) == 0
    assert not (tmp_path / "out" / "adapter_config.json").exists()
    before, after = weights(demo_model_dir), weights(tmp_path / "out")
    assert set(before) == set(after)  # no lora_A / lora_B left
    assert not before["model.layers.0.self_attn.q_proj.weight"].equal(after["model.layers.0.self_attn.q_proj.weight"])


def test_grpo_runs_agent_rollouts_and_writes_its_stage(sft_checkpoint, sim_qa, tmp_path, capsys):
    config = write_config(tmp_path, "grpo.json", model=str(sft_checkpoint), data=str(sim_qa),
                          output_dir=str(tmp_path / "out"), reward="v2", **GRPO)
    assert main(["train", "grpo", str(config)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["steps"] == 1 and report["rollout_s_per_step"] > 0 and report["update_s_per_step"] > 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [s["stage"] for s in manifest["stages"][1:]] == ["sft", "grpo"]
    assert manifest["stages"][-1]["config"]["reward"] == "v2"


def calibration_for(model: str, model_dir: Path, out: Path) -> Path:
    """A LAC artifact over synthetic results of ``model`` (the name its answers carry) with ``model_dir``'s hash."""
    probabilities, labels = synthetic(60, seed=3)
    results = [make_result(p, label, model=model, index=i) for i, (p, label) in enumerate(zip(probabilities, labels))]
    calibrate(results, alpha=0.1, method="lac", by=(), model_sha256=model_sha256(model_dir)).save(out)
    return out


def test_export_ships_the_calibration_under_the_exported_name_and_ask_applies_it(sft_checkpoint, sim_qa, tmp_path,
                                                                                 capsys):
    calibration = calibration_for("out", sft_checkpoint, tmp_path / "cal.json")  # `sportlens calibrate` of its answers
    summary = tmp_path / "eval.json"
    summary.write_text(json.dumps({"accuracy": 0.5}))
    out = tmp_path / "served"
    assert main(["models", "export", str(sft_checkpoint), str(out), "--calibration", str(calibration),
                 "--eval-summary", str(summary)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["calibration_artifact"] == "calibration.json" and (out / "calibration.json").is_file()
    assert manifest["eval_summary"] == {"accuracy": 0.5} and manifest["protocol_version"] == PROTOCOL_VERSION
    assert manifest["base_architecture"] == "Qwen2_5_VLForConditionalGeneration"
    assert not (out / "trainer").exists()  # the trainer's optimizer state stays behind
    assert manifest["weights_sha256"] == hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    capsys.readouterr()
    video = sim_qa.parent / "clips" / "soccer_00000.mp4"
    code = main(["ask", str(video), "Which foul?", "--options", "A) a;B) b", "--model", str(out), "--max-turns", "1",
                 "--calibration", str(out / "calibration.json"), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["trajectory"]["model"] == "served" and result["trajectory"]["answer"] in ("A", "B")
    assert result["prediction_set"] and set(result["prediction_set"]) <= {"A", "B"}


def test_training_from_an_exported_model_drops_what_described_its_weights(sft_checkpoint, distilled, sim_qa,
                                                                          tmp_path, capsys):
    """Fine-tuning the shipped model: the new checkpoint must not carry the parent's hash, calibration or evaluation
    (the inherited hash made `ask` refuse it as corrupted)."""
    summary = tmp_path / "eval.json"
    summary.write_text(json.dumps({"accuracy": 0.5}))
    served = tmp_path / "served"
    assert main(["models", "export", str(sft_checkpoint), str(served), "--eval-summary", str(summary),
                 "--calibration", str(calibration_for("out", sft_checkpoint, tmp_path / "cal.json"))]) == 0
    config = write_config(tmp_path, "sft.json", model=str(served), data=str(distilled),
                          output_dir=str(tmp_path / "tuned"), **{**SFT, "max_steps": 1})
    assert main(["train", "sft", str(config)]) == 0
    manifest = json.loads((tmp_path / "tuned" / "manifest.json").read_text())
    assert not {"weights_sha256", "calibration_artifact", "eval_summary"} & set(manifest)
    assert [s["stage"] for s in manifest["stages"][-2:]] == ["sft", "sft"]
    capsys.readouterr()
    video = sim_qa.parent / "clips" / "soccer_00000.mp4"
    code = main(["ask", str(video), "Which foul?", "--options", "A) a;B) b", "--model", str(tmp_path / "tuned"),
                 "--max-turns", "1", "--json"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["trajectory"]["answer"] in ("A", "B")


def test_export_refuses_a_calibration_made_for_another_model(sft_checkpoint, demo_model_dir, tmp_path, capsys):
    calibration = calibration_for("demo", demo_model_dir, tmp_path / "cal.json")
    assert main(["models", "export", str(sft_checkpoint), str(tmp_path / "served"), "--calibration",
                 str(calibration)]) == 2
    assert "made for model 'demo'" in capsys.readouterr().err
    assert not (tmp_path / "served").exists()


def test_export_refuses_a_non_empty_target(sft_checkpoint, tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    assert main(["models", "export", str(sft_checkpoint), str(tmp_path / "x")]) == 2
    assert "not empty" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_bad_input_is_refused_before_training(stage, demo_model_dir, base_without_tool_call_tokens, distilled, sim_qa,
                                              tmp_path, capsys):
    data = str(distilled if stage == "sft" else sim_qa)
    unknown = write_config(tmp_path, "a.json", model=str(demo_model_dir), data=data, output_dir="o", lerning_rate=1)
    assert main(["train", stage, str(unknown)]) == 2
    assert "unknown key(s) lerning_rate" in capsys.readouterr().err

    config = write_config(tmp_path, "b.json", model=str(base_without_tool_call_tokens), data=data, output_dir="o")
    assert main(["train", stage, str(config)]) == 2
    assert "lacks the special token(s) <tool_call> </tool_call>" in capsys.readouterr().err

    bad_data = tmp_path / "bad"
    bad_data.mkdir()
    (bad_data / ("conversations.jsonl" if stage == "sft" else "qa.jsonl")).write_text('{"id": "x"}\n')
    config = write_config(tmp_path, "c.json", model=str(demo_model_dir), output_dir="o",
                          data=str(bad_data if stage == "sft" else bad_data / "qa.jsonl"))
    assert main(["train", stage, str(config)]) == 2
    assert f"{'conversations' if stage == 'sft' else 'qa'}.jsonl:1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
