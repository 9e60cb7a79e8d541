"""The `sportlens synth` and `sportlens bench` subcommands. Heavy imports wait until a command runs.

Like every sportlens command, bad input ends in one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

from sportlens.agent.backends.base import BackendError
from sportlens.agent.conformal import CalibrationArtifact, CalibrationError, apply_calibration, calibrated_settings
from sportlens.agent.loop import AgentSettings
from sportlens.agent.models import check_model_choice, open_backend, thought_chars
from sportlens.agent.settings_flags import add_agent_flags, agent_settings
from sportlens.benchmarks.judge import panel_from_flags
from sportlens.benchmarks.loaders import FORMATS, DatasetError, load_dataset
from sportlens.tools.usage import UsageError

# SportSim, the oracles, the runner and the report (matplotlib) are imported when `synth` or `bench` runs:
# `sportlens --help` takes 0.6 s so, 0.8 to 1.1 s with them here (medians of 5 runs, twice, on a shared 2-core CPU).

DATASET_FORMATS = FORMATS  # the choices of --format
SYNTH_PRESETS = ("broadcast", "visual")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``synth`` and ``bench`` on the sportlens command's subparsers."""
    synth = commands.add_parser("synth", help="write SportSim clips and their questions (QA JSONL)")
    synth.add_argument("--out", type=Path, required=True, help="folder for clips/, qa.jsonl, scenes.jsonl")
    synth.add_argument("--n", type=int, required=True, help="number of clips")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--preset", default="broadcast",
                       help='"broadcast" (banners, digits, numbered players: for pretrained VLMs) or "visual" (large '
                            "marks, no text, 2 fps, 80, 100 or 120 s: what a model trained from scratch can read; "
                            "--sports, --seconds, --fps and --size are its own)")
    synth.add_argument("--sports", default="soccer,basketball,tennis", help="comma-separated, drawn in turn")
    synth.add_argument("--seconds", type=float, default=60.0, help="clip length (30–180 s are broadcast-like)")
    synth.add_argument("--fps", type=int, default=12)
    synth.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    synth.add_argument("--workers", type=int, default=None, help="encoding processes (default: CPU count)")
    synth.set_defaults(run=_synth)

    bench = commands.add_parser("bench", help="run the agent and its baselines on a dataset and write a report")
    bench.add_argument("dataset", type=Path,
                       help="QA JSONL, SportR JSON, DeepSport-style, Video-R1 or SPORTU-video JSON/JSONL")
    bench.add_argument("--format", default="auto", choices=DATASET_FORMATS,
                       help="the dataset's layout (default: told apart by its fields); benchmarks/loaders.py lists them")
    bench.add_argument("--out", type=Path, required=True, help="folder for results.jsonl and the report")
    bench.add_argument("--model", type=Path, help="checkpoint run in-process (default: the demo model)")
    bench.add_argument("--backend-url", help="an OpenAI-compatible server (vLLM) instead of in-process")
    bench.add_argument("--model-name", help="the model's name on that server")
    bench.add_argument("--api-key", default=os.environ.get("SPORTLENS_BACKEND_API_KEY"))
    bench.add_argument("--oracle", action="store_true", help="the ground-truth oracle policy instead of a model")
    bench.add_argument("--concurrency", type=int, default=1, help="questions in flight at once")
    bench.add_argument("--limit", type=int, help="only the first N questions (after --split)")
    bench.add_argument("--split", help="only questions of this split (train, val, test)")
    bench.add_argument("--resume", action="store_true", help="continue the results already in --out")
    bench.add_argument("--baselines", default="uniform8,uniform16,uniform32",
                       help='no-tool baselines run beside the agent, e.g. "uniform8,uniform16"; "none" for none')
    add_agent_flags(bench, max_thought_chars=True, constrain=True, sampler_note="; the baselines use it too")
    bench.add_argument("--judge-url", action="append", default=[],
                       help="OpenAI-compatible server of a judge for open answers; repeat it for a panel")
    bench.add_argument("--judge-model", action="append", default=[],
                       help="the judge model's name on that server (one per --judge-url, or one for all)")
    bench.add_argument("--judge-panel", type=Path,
                       help='a JSON list of judges, [{"url": ..., "model": ..., "api_key_env": ...}], added to the panel')
    bench.add_argument("--judge-api-key", default=os.environ.get("SPORTLENS_JUDGE_API_KEY"))
    bench.add_argument("--box-units", default="pixels", choices=("pixels", "norm1000"),
                       help="how the model writes boxes: pixels of the frame it was shown, or 0-1000 (Qwen2-VL, Qwen3-VL)")
    bench.add_argument("--write-lmms-eval", type=Path, metavar="DIR",
                       help="also write the results in lmms-eval's layout under DIR")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.add_argument("--score-options", action="store_true",
                       help="score every option after the answer (the input of `sportlens calibrate` lac/aps)")
    bench.add_argument("--samples", type=int, default=0,
                       help="sample this many more final answers (the input of `sportlens calibrate --method sample`)")
    bench.add_argument("--calibration", type=Path,
                       help="a calibration artifact: the agent's results get prediction sets, coverage is reported")
    bench.set_defaults(run=_bench)


def _synth(args: argparse.Namespace) -> int:
    from sportlens.benchmarks import sportsim_visual
    from sportlens.benchmarks.sportsim import SimSettings, generate

    if args.preset not in SYNTH_PRESETS:
        raise UsageError(f"unknown --preset {args.preset!r}; choose one of {', '.join(SYNTH_PRESETS)}")
    if args.preset == "visual":
        started = time.perf_counter()
        try:
            path = sportsim_visual.generate(args.out, n=args.n, seed=args.seed, workers=args.workers, progress=True)
        except ValueError as error:
            raise UsageError(str(error)) from error
        print(f"{args.n} SportSim visual clips and their questions written to {path} "
              f"in {time.perf_counter() - started:.1f} s")
        return 0
    sports = tuple(s.strip() for s in args.sports.split(",") if s.strip())
    try:
        width, height = (int(side) for side in args.size.lower().split("x"))
        settings = SimSettings(seconds=args.seconds, fps=args.fps, size=(width, height))
        started = time.perf_counter()
        path = generate(args.out, n=args.n, seed=args.seed, sports=sports, settings=settings,
                        workers=args.workers, progress=True)
    except ValueError as error:
        raise UsageError(str(error)) from error
    print(f"{args.n} clips and their questions written to {path} in {time.perf_counter() - started:.1f} s")
    return 0


def _baselines(spec: str) -> list[int]:
    if spec.strip().lower() in ("", "none"):
        return []
    ks = []
    for name in spec.split(","):
        name = name.strip()
        if not name.startswith("uniform") or not name[len("uniform"):].isdigit() or int(name[len("uniform"):]) < 1:
            raise UsageError(f"baseline {name!r} is not of the form uniformK (e.g. uniform8)")
        ks.append(int(name[len("uniform"):]))
    return ks


def _bench(args: argparse.Namespace) -> int:
    from sportlens.benchmarks.oracle import oracle_backends
    from sportlens.benchmarks.visual_oracle import oracle_for
    from sportlens.benchmarks.report import write_lmms_eval, write_report
    from sportlens.benchmarks.runner import BenchError, export_results, run_benchmark, standard_runs, write_config

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    chosen = [flag for flag, on in (("--model", args.model), ("--backend-url", args.backend_url), ("--oracle", args.oracle)) if on]
    if len(chosen) > 1:
        raise UsageError(f"give one of --model, --backend-url and --oracle, not {' and '.join(chosen)}")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    try:
        check_model_choice(args.model, args.backend_url, args.model_name)
        dataset = load_dataset(args.dataset, args.format)
        artifact = CalibrationArtifact.load(args.calibration) if args.calibration else None
        constrain = args.constrain if args.constrain is not None else not (args.backend_url or args.oracle)
        thought = args.max_thought_chars or (AgentSettings.max_thought_chars if args.oracle
                                             else thought_chars(args.model, args.backend_url))
        agent = agent_settings(args, constrain=constrain, max_thought_chars=thought, score_options=args.score_options,
                               answer_samples=args.samples)
        agent = calibrated_settings(agent, artifact, closed=True, samples=args.samples or 10)
        runs = standard_runs(_baselines(args.baselines), constrain=constrain, agent=agent)
        judge = panel_from_flags(args.judge_url, args.judge_model, args.judge_api_key, args.judge_panel)
    except (DatasetError, ValueError) as error:  # CalibrationError is a ValueError
        raise UsageError(str(error)) from error
    backend = None
    if args.oracle:
        backend_for = oracle_backends(oracle_for(args.dataset)[0], dataset.video_path)
    else:
        backend = _model_backend(args)
        backend_for = lambda item: backend  # noqa: E731 — one shared model for every question
        if artifact is not None:
            try:
                artifact.check_model(backend.model_id)  # before hours of questions, not after
            except ValueError as error:
                backend.close()
                raise UsageError(str(error)) from error
    config = {
        "dataset": str(args.dataset), "format": dataset.format, "split": args.split, "limit": args.limit,
        "model": "oracle" if args.oracle else (args.model_name or str(args.model or "demo")),
        "runs": {run.name: asdict(run.settings) for run in runs},
        "concurrency": args.concurrency, "judges": judge.names if judge else [], "box_units": args.box_units,
        "sampler": args.sampler,
    }
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        records = run_benchmark(
            dataset, args.out, runs=runs, backend_for=backend_for, concurrency=args.concurrency, limit=args.limit,
            split=args.split, resume=args.resume, judge=judge, box_units=args.box_units, progress=not args.no_progress,
        )
        config["wall_s"] = round(time.perf_counter() - started, 2)
        write_config(args.out, config)
        if artifact is not None:
            records = [_with_prediction_set(record, artifact) for record in records]
        export_results(records, args.out)
        report = write_report(records, args.out, runs=[run.name for run in runs], config=config)
        if args.write_lmms_eval:
            write_lmms_eval(records, args.write_lmms_eval, model=config["model"], dataset=str(args.dataset),
                            config=config, wall_s=config["wall_s"])
    except (BenchError, CalibrationError) as error:
        raise UsageError(str(error)) from error
    finally:
        if backend is not None:
            backend.close()
        if judge is not None:
            judge.close()
    for name, run in report["runs"].items():
        print(f"{name:>10}: accuracy {run['overall']['accuracy']}% ({run['overall']['scored']} scored), "
              f"event questions {run['event_questions']['accuracy']}%, frames {run['avg_frames_used']}")
    if artifact is not None:
        calibrated = [r.result for r in records if r.run == "agent" and r.result and r.result.prediction_set is not None]
        if calibrated:
            coverage = sum(r.label in r.prediction_set for r in calibrated) / len(calibrated)
            size = sum(r.set_size for r in calibrated) / len(calibrated)
            single = [r for r in calibrated if r.set_size == 1]
            print(f"prediction sets: coverage {coverage:.1%} (target {1 - artifact.alpha:.0%}), "
                  f"mean size {size:.2f} over {len(calibrated)} answers; selective (answering only single-answer "
                  f"sets): {len(single) / len(calibrated):.1%} answered, "
                  f"{sum(r.correct for r in single) / max(1, len(single)):.1%} of them right")
    print(f"report: {args.out / 'report.md'}")
    return 0


def _with_prediction_set(record, artifact):
    """The agent's answers get their conformal set; baselines and failed questions stay as they are."""
    result = record.result
    if record.run != "agent" or result is None or result.trajectory.answer is None:
        return record
    if artifact.method != "sample" and not result.trajectory.option_logprobs:
        return record
    return record.model_copy(update={"result": apply_calibration(result, artifact)})


def _model_backend(args: argparse.Namespace):
    try:
        return open_backend(model_dir=args.model, backend_url=args.backend_url, model_name=args.model_name,
                            api_key=args.api_key)
    except BackendError as error:
        raise UsageError(str(error)) from error
