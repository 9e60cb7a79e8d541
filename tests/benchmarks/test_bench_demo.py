"""The runner with a real model: the in-process demo checkpoint (random weights) answers every question."""
from sportlens.agent.backends.transformers_local import TransformersBackend
from sportlens.agent.loop import AgentSettings
from sportlens.agent.records import Result
from sportlens.benchmarks.loaders import load_dataset
from sportlens.benchmarks.report import write_report
from sportlens.benchmarks.runner import run_benchmark, standard_runs


def test_demo_model_questions_end_in_a_full_report(sim_dataset, demo_model_dir, tmp_path):
    dataset = load_dataset(sim_dataset)
    agent = AgentSettings(max_turns=2, constrain=True, max_tokens_per_turn=64)
    runs = standard_runs([8], constrain=True, agent=agent)
    backend = TransformersBackend(demo_model_dir)
    try:
        records = run_benchmark(dataset, tmp_path, runs=runs, backend_for=lambda item: backend, concurrency=2,
                                limit=2, progress=False)
    finally:
        backend.close()
    assert len(records) == 4 and all(r.error is None for r in records)
    report = write_report(records, tmp_path, runs=["agent", "uniform8"])
    for run in report["runs"].values():
        assert run["questions"] == 2 and run["tokens"]["in_mean"] > 8 * 200 and run["tokens"]["out_mean"] > 0
        assert run["latency_s"]["p50"] > 0 and run["avg_frames_used"] >= 8
    assert (tmp_path / "accuracy_by_task.png").exists()


def test_bench_results_calibrate_and_come_back_with_prediction_sets(sim_dataset, demo_model_dir, tmp_path):
    """bench --score-options → calibrate → bench --calibration: the whole conformal path on SportSim."""
    from cli_runner import run_sportlens

    common = ["bench", sim_dataset, "--model", demo_model_dir, "--limit", "14", "--baselines", "none",
              "--max-turns", "1", "--no-progress"]
    first = run_sportlens(*common, "--score-options", "--out", tmp_path / "cal")
    assert first.returncode == 0, first.stderr
    results = tmp_path / "cal" / "agent.results.jsonl"
    calibrated = run_sportlens("calibrate", results, "--alpha", "0.25", "--by", "", "--out", tmp_path / "calib.json")
    assert calibrated.returncode == 0, calibrated.stderr
    second = run_sportlens(*common, "--calibration", tmp_path / "calib.json", "--out", tmp_path / "test")
    assert second.returncode == 0, second.stderr
    assert "prediction sets: coverage" in second.stdout and "target 75%" in second.stdout
    closed = [Result.model_validate_json(line) for line in (tmp_path / "test" / "agent.results.jsonl").read_text().splitlines()]
    closed = [r for r in closed if r.trajectory.options]
    assert closed and all(r.prediction_set is not None and r.alpha == 0.25 for r in closed)
