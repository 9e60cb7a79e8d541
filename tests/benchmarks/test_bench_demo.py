"""The runner with a real model: the in-process demo checkpoint (random weights) answers every question."""
from sportlens.agent.backends.transformers_local import TransformersBackend
from sportlens.agent.loop import AgentSettings
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
