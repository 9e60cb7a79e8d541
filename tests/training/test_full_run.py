"""The full run end to end on the cpu-smoke profile: every stage in order, timed, each checkpoint written, and an
evidence table with every row and column whose numbers are those of the results files it was built from."""
import json
from pathlib import Path

import pytest
import torch

from sportlens.benchmarks.runner import read_records
from sportlens.benchmarks.sportsim import DIMENSIONS, EVENT_OF_TASK
from sportlens.training.full_run import STAGES, main

ROWS = ["grpo-v1-no-tool", "base", "sft", "grpo-v1", "grpo-v2"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[Path, Path]:
    out, publish = tmp_path_factory.mktemp("full-run") / "run", tmp_path_factory.mktemp("published")
    threads = torch.get_num_threads()
    try:
        assert main(["--profile", "cpu-smoke", "--out", str(out), "--publish", str(publish)]) == 0
    finally:
        torch.set_num_threads(threads)  # the profile asks for one thread; later tests get theirs back
    return out, publish


def test_every_stage_ran_in_order_timed_and_left_its_checkpoint(smoke_run):
    out, _ = smoke_run
    timings = json.loads((out / "timings.json").read_text())
    ran = [stage for stage in STAGES if stage not in ("vision", "anneal")]  # the smoke profile has neither
    assert list(timings) == ran and all(stage["seconds"] > 0 for stage in timings.values())
    for stage in ("sft", "grpo-v1", "grpo-v2"):
        assert timings[stage]["samples_per_s"] > 0 and timings[stage]["tokens_per_s"] > 0
    for stage in ("grpo-v1", "grpo-v2"):
        steps = timings[stage]["steps"]
        assert len(timings[stage]["rollout_s_steps"]) == len(timings[stage]["update_s_steps"]) == steps >= 1
        assert timings[stage]["rollout_s_per_step"] > 0 and timings[stage]["update_s_per_step"] > 0
    manifests = {stage: json.loads((out / stage / "manifest.json").read_text()) for stage in ("sft", "grpo-v1", "grpo-v2")}
    assert [s["stage"] for s in manifests["sft"]["stages"][1:]] == ["sft"]
    for reward in ("v1", "v2"):
        assert [s["stage"] for s in manifests[f"grpo-{reward}"]["stages"][1:]] == ["sft", "grpo"]
        assert manifests[f"grpo-{reward}"]["stages"][-1]["config"]["reward"] == reward
        exported = json.loads((out / "export" / f"grpo-{reward}" / "manifest.json").read_text())
        assert exported["eval_summary"]["row"]["label"] == f"SFT+GRPO ({reward})"
    assert json.loads((out / "configs" / "grpo-v2.json").read_text())["model"] == str(out.resolve() / "sft")


def test_the_table_has_every_row_and_column_and_is_published(smoke_run):
    out, publish = smoke_run
    table = json.loads((out / "evidence.json").read_text())
    assert list(table["rows"]) == ROWS and table["questions"] >= 1
    assert table["dimensions"] == list(DIMENSIONS.values())
    assert table["event_types"] == ["foul", "score", "out", "turnover", "tactic"]
    for row in table["rows"].values():
        assert list(row["by_dimension"]) == table["dimensions"] and list(row["by_event_type"]) == table["event_types"]
        for key in ("accuracy", "event_accuracy", "avg_frames_used", "tool_call_rate", "format_error_rate"):
            assert row[key] is not None
    text = (out / "evidence.md").read_text()
    for header in [*table["dimensions"], *table["event_types"], "avg frames", "tool-call rate", "format-error rate"]:
        assert header in text
    assert all(row["label"] in text for row in table["rows"].values()) and "## Verdict" in text
    assert "| grpo-v1 |" in text  # the timings appendix
    assert (out / "evidence.png").read_bytes().startswith(b"\x89PNG")
    for name in ("evidence.json", "evidence.md", "evidence.png", "timings.json"):
        assert (publish / name).read_bytes() == (out / name).read_bytes()


def test_the_numbers_are_those_of_the_results_files(smoke_run):
    out, _ = smoke_run
    table = json.loads((out / "evidence.json").read_text())
    answered = {}
    for key in ROWS:
        run = "uniform16" if key.endswith("no-tool") else "agent"
        answered[key] = {r.item_id: r for r in read_records(out / "eval" / key / "results.jsonl")
                         if r.run == run and r.result is not None}
    common = set.intersection(*(set(a) for a in answered.values()))
    assert table["questions"] == len(common)
    for key, records in answered.items():
        rows = [records[i] for i in sorted(common)]
        row = table["rows"][key]
        right = [r for r in rows if r.score.correct]
        assert row["accuracy"]["accuracy"] == round(100 * len(right) / len(rows), 2)
        events = [r for r in rows if r.event]
        assert row["event_accuracy"]["scored"] == len(events) == table["event_questions"]
        frames = [r.result.trajectory.frames_used for r in rows]
        assert row["avg_frames_used"] == round(sum(frames) / len(frames), 2)
        tools = sum(any(s.action == "choose_frames" for s in r.result.trajectory.steps) for r in rows)
        assert row["tool_call_rate"] == round(tools / len(rows), 4)
        errors = sum(r.result.trajectory.format_errors > 0 for r in rows)
        assert row["format_error_rate"] == round(errors / len(rows), 4)
        for kind, cell in row["by_event_type"].items():
            assert cell["n"] == sum(EVENT_OF_TASK[r.task] == kind for r in rows)
        if key.endswith("no-tool"):
            assert all(r.result.trajectory.frames_used == 16 and len(r.result.trajectory.steps) == 1 for r in rows)
    (verdict,) = table["verdicts"]
    assert (verdict["agent"], verdict["untrained"], verdict["no_tool"]) == ("grpo-v1", "base", "grpo-v1-no-tool")
    assert verdict["met"] == (verdict["beats_untrained"] and verdict["beats_no_tool"] and verdict["fewer_frames"])


def test_a_bad_config_is_refused_before_anything_runs(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("synth: {clips: 3}\ngrpo: {reward: v1}\n")
    assert main(["--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "grpo: the run sets reward itself" in capsys.readouterr().err
    config.write_text("sft: {lerning_rate: 1}\n")
    assert main(["--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "unknown key(s) lerning_rate" in capsys.readouterr().err
    config.write_text("eval: {no_tool_for: [base]}\n")
    assert main(["--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "no_tool_for takes" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    config.write_text("{}\n")
    assert main(["--config", str(config), "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_rows_evaluated_in_processes_answer_every_question(smoke_run, tmp_path):
    from dataclasses import replace

    from sportlens.training.full_run import CONFIGS, load_full_run
    from sportlens.training.full_run_eval import _evaluate_in_processes, eval_rows

    out, _ = smoke_run
    again = tmp_path / "run"
    again.mkdir()
    for folder in ("sportsim", "base", "grpo-v1"):
        (again / folder).symlink_to(out / folder)
    config = replace(load_full_run(CONFIGS / "full-run-cpu-smoke.yaml", again), parallel=True)
    rows = [row for row in eval_rows(config) if row.key in ("base", "grpo-v1-no-tool")]
    ids = [r.item_id for r in read_records(out / "eval" / "base" / "results.jsonl")]
    checkpoints = []
    seconds = _evaluate_in_processes(config, rows, ids, {"qa": str(config.qa), "eval_root": str(again / "eval"),
                                                         "threads": 1}, lambda: checkpoints.append(1))
    assert set(seconds) == {"base", "grpo-v1-no-tool"} and all(s > 0 for s in seconds.values()) and checkpoints
    for row in rows:
        assert sorted(r.item_id for r in read_records(again / "eval" / row.key / "results.jsonl")) == sorted(ids)


def test_a_base_model_of_your_own_is_checked_linked_and_named_in_the_table(tmp_path):
    from sportlens.training.demo_model import build_demo_model
    from sportlens.training.full_run import CONFIGS, load_full_run
    from sportlens.training.full_run_eval import eval_rows
    from sportlens.training.full_run_progress import Progress
    from sportlens.training.full_run_stages import _base

    own = build_demo_model(tmp_path / "my-vlm", seed=1)  # stands for a pretrained checkpoint: another one than the demo's
    config = tmp_path / "run.yaml"
    config.write_text("base_model: my-vlm\n")  # read from the config's folder
    out = tmp_path / "out"
    loaded = load_full_run(config, out)
    assert loaded.base_model == own.resolve() and loaded.sft.model == str(out.resolve() / "base")
    assert load_full_run(CONFIGS / "full-run-cpu-smoke.yaml", out, base_model=own).base_model == own.resolve()

    out.mkdir()
    _base(loaded, Progress(out, None))
    assert (out / "base").is_symlink() and (out / "base").resolve() == own.resolve()  # linked, not copied
    assert json.loads((out / "timings.json").read_text())["base"]["weights_mb"] > 1
    labels = {row.key: row.label for row in eval_rows(loaded)}
    assert labels["base"] == "untrained base (my-vlm)" and labels["sft"] == "SFT"


def test_a_base_model_the_protocol_cannot_use_stops_the_run_before_anything_runs(
        tmp_path, base_without_tool_call_tokens, capsys):
    out = tmp_path / "out"
    assert main(["--profile", "cpu-smoke", "--base-model", str(base_without_tool_call_tokens), "--out", str(out)]) == 2
    assert "base_model:" in (error := capsys.readouterr().err) and "lacks the special token(s) <tool_call>" in error
    assert main(["--profile", "cpu-smoke", "--base-model", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "no checkpoint at" in capsys.readouterr().err and not out.exists()


VISUAL_SMOKE = """
cpu_threads: 1
synth: {preset: visual, clips: 10, seed: 2, workers: 1}
distill: {answer_types: [choice], max_items: 4, drills_per_clip: 1}
vision: {steps: 2, batch_size: 4}
sft: {learning_rate: 1.0e-3, max_steps: 2, batch_size: 2, freeze_vision: true, save_steps: 1}
anneal: {learning_rate: 3.0e-4, lr_scheduler: cosine, max_steps: 1, batch_size: 2, save_steps: 1}
grpo: {num_generations: 2, batch_size: 2, max_steps: 1, max_items: 2, max_turns: 2, max_tokens_per_turn: 12}
eval: {max_items: 2, max_turns: 2, max_tokens_per_turn: 160, chunk: 2, no_tool_for: [grpo-v1], constrain: false}
"""


def test_a_visual_run_stops_after_a_stage_and_resumes_where_it_stopped(tmp_path, capsys):
    from dataclasses import replace

    from sportlens.training.full_run import load_full_run
    from sportlens.training.sft import train_sft

    config, out = tmp_path / "visual.yaml", tmp_path / "run"
    config.write_text(VISUAL_SMOKE)
    threads = torch.get_num_threads()
    try:
        assert main(["--config", str(config), "--out", str(out), "--stop-after", "distill"]) == 0
        assert list(json.loads((out / "timings.json").read_text())) == ["synth", "base", "distill"]
        assert json.loads((out / "timings.json").read_text())["distill"]["drills"] >= 1  # one per training clip
        assert json.loads((out / "base" / "manifest.json").read_text())["shape"]["number_tokens"]  # the visual shape
        qa_written = (out / "sportsim" / "qa.jsonl").stat().st_mtime_ns
        assert main(["--config", str(config), "--out", str(out)]) == 2  # a used folder needs --resume
        assert "--resume" in capsys.readouterr().err
        timed = tmp_path / "timed.yaml"  # SFT's time runs out after its first step
        timed.write_text(VISUAL_SMOKE.replace("save_steps: 1}", "save_steps: 1, max_seconds: 0.001}"))
        assert main(["--config", str(timed), "--out", str(out), "--resume"]) == 0
        assert "sft stopped after 0.001 s at step 1 of 2; run again with --resume" in capsys.readouterr().out
        assert list(json.loads((out / "timings.json").read_text())) == ["synth", "base", "distill", "vision"]
        assert not (out / "grpo-v1").exists()  # nothing trains on the half-trained SFT
        stopped = json.loads((out / "unfinished.json").read_text())["sft"]
        assert main(["--config", str(config), "--out", str(out), "--resume", "--stop-after", "anneal"]) == 0
    finally:
        torch.set_num_threads(threads)
    timings = json.loads((out / "timings.json").read_text())
    assert list(timings) == ["synth", "base", "distill", "vision", "sft", "anneal"] and timings["sft"]["steps"] == 2
    assert timings["sft"]["resumed_from_step"] == 1  # the time-limited invocation's checkpoint
    assert timings["sft"]["earlier_invocations_s"] == stopped > 0  # its seconds count in the stage's
    assert timings["sft"]["seconds"] > stopped and "sft" not in json.loads((out / "unfinished.json").read_text())
    stages = [stage.get("stage") for stage in json.loads((out / "anneal" / "manifest.json").read_text())["stages"]
              if isinstance(stage, dict)]
    assert stages[-3:] == ["vision", "sft", "sft"]  # SFT trained the vision stage's checkpoint, the anneal SFT's
    loaded = load_full_run(config, out)
    assert loaded.grpo_v1.model == loaded.grpo_v2.model == str(out.resolve() / "anneal")  # GRPO starts from it,
    assert loaded.checkpoint("sft") == out.resolve() / "anneal"  # and the table's SFT row is it
    assert (out / "sportsim" / "qa.jsonl").stat().st_mtime_ns == qa_written  # done stages are not redone
    try:
        assert main(["--config", str(config), "--out", str(out), "--resume"]) == 0  # GRPO, evaluation, export
        assert main(["--config", str(config), "--out", str(out), "--resume"]) == 0  # a finished run: table, export again
    finally:
        torch.set_num_threads(threads)
    table = json.loads((out / "evidence.json").read_text())  # the visual preset's question kinds are its columns
    assert table["event_types"] == ["what", "who", "where", "penalty", "side"] and table["questions"] >= 1
    assert sum(cell["n"] for cell in table["rows"]["sft"]["by_event_type"].values()) == table["questions"]
    untrained = read_records(out / "eval" / "base" / "results.jsonl")  # constrained even so, the untrained row answers
    assert untrained and all(r.result.trajectory.answer for r in untrained)
    from safetensors.torch import load_file

    saved = load_file(out / "sft" / "trainer" / "checkpoint-2" / "model.safetensors")
    again = replace(load_full_run(config, out).sft, output_dir=str(tmp_path / "again"))
    (tmp_path / "again").mkdir()
    (out / "sft" / "trainer").rename(tmp_path / "again" / "trainer")
    finished = train_sft(again)  # an SFT stage with save_steps continues from its checkpoint, here its last step:
    assert (finished["resumed_from_step"], finished["steps"], finished["final_loss"]) == (2, 2, None)  # none more
    resumed = load_file(tmp_path / "again" / "model.safetensors")  # no step left to take: the checkpoint's weights
    name = "model.layers.0.self_attn.q_proj.weight"
    assert resumed[name].equal(saved[name])


def test_a_vision_stage_needs_the_visual_preset(tmp_path):
    from sportlens.training.config import ConfigError
    from sportlens.training.full_run import load_full_run

    config = tmp_path / "broadcast.yaml"
    config.write_text("synth: {clips: 3}\nvision: {steps: 10}\n")
    with pytest.raises(ConfigError, match="vision.steps needs synth.preset visual"):
        load_full_run(config, tmp_path / "out")
