"""Stage configs: YAML or JSON in, a checked dataclass out, or one clear error before anything loads."""
import json

import pytest

from sportlens.training.config import ConfigError, GRPOStageConfig, SFTStageConfig, describe, load_config


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_is_read_with_paths_relative_to_the_file(tmp_path):
    path = write(tmp_path, "sft.yaml", "model: base\ndata: data\noutput_dir: out\nlearning_rate: 1e-5\nlora: true\n")
    config = load_config(path, SFTStageConfig)
    assert config.model == str(tmp_path / "base") and config.output_dir == str(tmp_path / "out")
    assert config.learning_rate == 1e-5 and config.lora is True and config.epochs == 1.0


def test_json_grpo_config_with_its_defaults(tmp_path):
    path = write(tmp_path, "grpo.json", json.dumps({"model": "/m", "data": "/q.jsonl", "output_dir": "/o", "reward": "v2"}))
    config = load_config(path, GRPOStageConfig)
    assert (config.reward, config.num_generations, config.beta, config.max_turns) == ("v2", 8, 0.04, 5)
    assert config.sampler == "centred"  # what serving and `sportlens bench` use by default


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"learnign_rate": 1e-5}, "unknown key(s) learnign_rate"),
        ({"num_generations": 1, "batch_size": 1}, "num_generations must be at least 2"),
        ({"num_generations": 4, "batch_size": 6}, "must be a multiple of num_generations"),
        ({"reward": "v3"}, "reward must be one of v1, v2, sportr, video-r1, accuracy, format, not 'v3'"),
        ({"reward": "sportr", "reward_weights": [1.0]}, "reward_weights must give one weight per term of the 'sportr' "
                                                        "preset (accuracy_reward, format_reward), not 1"),
        ({"reward_weights": ["heavy", 1, 1]}, "reward_weights must be list[float] | None"),
        ({"judge_url": "http://127.0.0.1:8001"}, "judge_url and judge_model go together"),
        ({"preflight": "yes"}, 'preflight must be "off", "report" or "drop"'),
        ({"prompts_per_step": 0}, "prompts_per_step must be at least 1"),
        ({"prompts_per_step": 32, "gradient_accumulation_steps": 4}, "gradient_accumulation_steps follows from"),
        ({"prompts_per_step": 3, "num_generations": 2, "batch_size": 4}, "(6) must be a multiple of batch_size (4)"),
        ({"beta": -0.1}, "beta must be ≥ 0"),
        ({"learning_rate": 0}, "learning_rate must be > 0"),
        ({"max_turns": "five"}, "max_turns must be int"),
        ({"lora": "yes"}, "lora must be bool"),
        ({"dtype": "fp8"}, 'dtype must be "auto"'),
        ({"answer_types": ["essay"]}, "answer_types takes"),
        ({"max_seconds": 0}, "max_seconds must be > 0 or null"),
        ({"sampler": "random"}, "sampler must be one of centred, framethinker, not 'random'"),
    ],
)
def test_impossible_grpo_configs_are_refused_naming_the_file(tmp_path, extra, message):
    path = write(tmp_path, "grpo.json", json.dumps({"model": "m", "data": "d", "output_dir": "o", **extra}))
    with pytest.raises(ConfigError, match="grpo.json") as error:
        load_config(path, GRPOStageConfig)
    assert message in str(error.value)


def test_grpo_step_shape_reward_preset_and_preflight(tmp_path):
    deepsport = {"model": "m", "data": "d", "output_dir": "o", "reward": "sportr", "reward_weights": [1, 0.25],
                 "num_generations": 8, "prompts_per_step": 32, "batch_size": 16, "preflight": "drop"}
    config = load_config(write(tmp_path, "grpo.json", json.dumps(deepsport)), GRPOStageConfig)
    assert config.reward_weights == [1.0, 0.25] and config.preflight == "drop"
    assert config.accumulation_steps == 16  # 32 questions × 8 rollouts in micro-batches of 16
    legacy = GRPOStageConfig(model="m", data="d", output_dir="o", batch_size=8, gradient_accumulation_steps=3)
    assert legacy.accumulation_steps == 3 and legacy.prompts_per_step is None and legacy.preflight == "off"
    odd_micro_batch = GRPOStageConfig(model="m", data="d", output_dir="o", num_generations=8, prompts_per_step=3,
                                      batch_size=6)  # 24 rollouts in 4 micro-batches: groups may span them
    assert odd_micro_batch.accumulation_steps == 4


def test_missing_keys_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="missing key.*data, output_dir"):
        load_config(write(tmp_path, "a.yaml", "model: m\n"), SFTStageConfig)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "b.yaml", "model: [\n"), SFTStageConfig)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "none.yaml", SFTStageConfig)
    with pytest.raises(ConfigError, match="max_steps must be -1"):
        load_config(write(tmp_path, "c.yaml", "model: m\ndata: d\noutput_dir: o\nmax_steps: 0\n"), SFTStageConfig)


def test_every_key_has_help():
    assert "num_generations (8): group size" in describe(GRPOStageConfig)


def test_the_shipped_sportsim_configs_load():
    from pathlib import Path

    import sportlens.training

    folder = Path(sportlens.training.__file__).parent / "configs"
    assert load_config(folder / "sportsim-sft.yaml", SFTStageConfig).epochs == 3
    v1 = load_config(folder / "sportsim-grpo-v1.yaml", GRPOStageConfig)
    assert (v1.reward, v1.reward_weights, v1.accumulation_steps, v1.preflight) == ("v1", None, 1, "off")
    assert load_config(folder / "sportsim-grpo-v2.yaml", GRPOStageConfig).reward == "v2"


def test_the_full_run_profiles_load_with_their_paths_inside_the_output(tmp_path):
    from sportlens.training.full_run import CONFIGS, PROFILES, load_full_run

    for profile in PROFILES:
        config = load_full_run(CONFIGS / f"full-run-{profile}.yaml", tmp_path / "run")
        assert (config.grpo_v1.reward, config.grpo_v2.reward) == ("v1", "v2")
        assert config.sft.output_dir == str(tmp_path / "run" / "sft")
        last_sft = str(tmp_path / "run" / "sft") if config.anneal is None else config.anneal.output_dir
        assert config.grpo_v1.model == config.grpo_v2.model == last_sft == str(config.checkpoint("sft"))
        if config.anneal is not None:  # a second SFT phase goes on from the first one
            assert (config.anneal.model, last_sft) == (config.sft.output_dir, str(tmp_path / "run" / "anneal"))
        trained_from = "vision" if config.vision.steps else "base"  # a vision stage's checkpoint goes on to SFT
        assert config.sft.model == str(tmp_path / "run" / trained_from) and config.eval.split == "test"


def test_a_time_limit_stops_training_after_the_step_that_crosses_it():
    from transformers import TrainerControl

    from sportlens.training.sft import TimeLimit, time_limit

    assert time_limit(None) == []
    (limit,) = time_limit(1e-9)
    control = TrainerControl()
    limit.on_train_begin(None, None, control)
    limit.on_step_end(None, None, control)
    assert control.should_training_stop
    control, patient = TrainerControl(), TimeLimit(3600)
    patient.on_train_begin(None, None, control)
    patient.on_step_end(None, None, control)
    assert not control.should_training_stop


@pytest.mark.parametrize("section, values, message", [
    ("synth", {"preset": "cartoon"}, "preset must be one of broadcast, visual"),
    ("sft", {"lr_scheduler": "steps"}, "lr_scheduler must be"),
    ("sft", {"save_steps": 0}, "save_steps must be at least 1"),
    ("eval", {"sampler": "random"}, "sampler must be one of"),
])
def test_impossible_presets_schedules_and_checkpoint_intervals_are_refused(section, values, message):
    from sportlens.training.config import EvalSettings, SFTStageConfig, SynthSettings, config_from_dict

    kind, required = {"synth": (SynthSettings, {}), "eval": (EvalSettings, {}),
                      "sft": (SFTStageConfig, {"model": "m", "data": "d", "output_dir": "o"})}[section]
    with pytest.raises(ConfigError, match=message):
        config_from_dict({**required, **values}, kind)


def test_the_full_run_evaluation_asks_every_row_with_its_sampler(tmp_path):
    from dataclasses import replace

    from sportlens.training.full_run import CONFIGS, load_full_run
    from sportlens.training.full_run_eval import eval_rows

    config = load_full_run(CONFIGS / "full-run-cpu-smoke.yaml", tmp_path / "run")
    assert {row.run.settings.sampler for row in eval_rows(config)} == {"centred"}
    config.eval = replace(config.eval, sampler="framethinker")
    assert {row.run.settings.sampler for row in eval_rows(config)} == {"framethinker"}


def test_a_negative_drill_count_is_refused():
    from sportlens.training.config import DistillSettings

    with pytest.raises(ConfigError, match="drills_per_clip must be 0 or more"):
        DistillSettings(drills_per_clip=-1)
