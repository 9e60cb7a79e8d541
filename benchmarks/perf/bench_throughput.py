"""Questions per second the benchmark runner gets out of a backend at several concurrencies.

    .venv/bin/python benchmarks/perf/bench_throughput.py QA.jsonl --backend-url http://127.0.0.1:8000 \
        --model-name NAME --limit 32 --concurrency 1,4,8
    .venv/bin/python benchmarks/perf/bench_throughput.py QA.jsonl --oracle --limit 64   # decode-bound floor

Runs only the agent (no baselines), each concurrency into a fresh folder, and prints questions/s.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sportlens.agent.backends.openai_http import OpenAIHTTPBackend
from sportlens.agent.loop import AgentSettings
from sportlens.benchmarks.loaders import load_dataset
from sportlens.benchmarks.oracle import OraclePolicy
from sportlens.benchmarks.runner import RunSpec, run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--backend-url")
    parser.add_argument("--model-name")
    parser.add_argument("--oracle", action="store_true")
    parser.add_argument("--limit", type=int, default=32)
    parser.add_argument("--concurrency", default="1,4,8")
    args = parser.parse_args()
    if args.oracle == bool(args.backend_url):
        parser.error("give --oracle or --backend-url (with --model-name)")
    dataset = load_dataset(args.dataset)
    if args.oracle:
        backend_for = OraclePolicy
    else:
        backend = OpenAIHTTPBackend(args.backend_url, args.model_name)
        backend_for = lambda item: backend  # noqa: E731
    runs = [RunSpec("agent", AgentSettings())]
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            records = run_benchmark(dataset, Path(out), runs=runs, backend_for=backend_for,
                                    concurrency=concurrency, limit=args.limit, progress=False)
            took = time.perf_counter() - started
        errors = sum(1 for r in records if r.error)
        print(f"concurrency {concurrency}: {len(records)} questions in {took:.1f} s = {len(records) / took:.2f} q/s"
              f" ({errors} errors)")


if __name__ == "__main__":
    main()
