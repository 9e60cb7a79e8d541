"""The `sportlens` command: one entry point, a subcommand per job. Bad input ends in one line on stderr and exit 2."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sportlens.agent.backends.base import BackendError
from sportlens.agent.conformal import (CalibrationArtifact, CalibrationError, apply_calibration, calibrate,
                                       calibrated_settings, model_sha256)
from sportlens.agent.loop import answer_question
from sportlens.agent.models import (carried_calibration, check_model_choice, default_model_dir, demo_model_dir,
                                    open_backend, thought_chars)
from sportlens.agent.protocol import parse_options
from sportlens.agent.records import Result
from sportlens.agent.settings_flags import add_agent_flags, agent_settings
from sportlens.benchmarks.commands import add_parsers as register_benchmarks
from sportlens.service.cli import register as register_service
from sportlens.tools.usage import EXIT_BAD_INPUT, UsageError
from sportlens.tools.video import Video, VideoError
from sportlens.trace import TracePrinter
from sportlens.training.commands import add_parsers as register_training
from sportlens.vllm_command import register as register_vllm

# An import that costs start-up time waits until the command that needs it runs, here (the demo model's builder) and in
# the modules the command imports at start-up (agent/models.py and the subcommands' service/cli.py,
# benchmarks/commands.py, training/commands.py); torch must come after share_cores anyway. `sportlens --help` takes
# 0.6 s so, 6.1 to 6.4 s with this module's at the top, 8.1 to 8.3 s with all of them (medians of 5 runs, twice, on
# a shared 2-core CPU).


def share_cores() -> None:
    """Let torch's OpenMP threads sleep when they wait for work instead of spinning (libgomp's default).

    An in-process model shares its cores with decoders, Redis, an event loop or a vLLM server; a spinning thread
    stalls every parallel region whose partner thread is descheduled. With the demo model on 2 cores under load,
    a question took 6.7–9.2 s (3–5.6 s of CPU) spinning and 0.34–0.7 s (0.35–0.45 s of CPU) with PASSIVE. It must
    be set before torch is imported, so every command gets it here; an operator's own OMP_WAIT_POLICY wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    share_cores()
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("sportlens: interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:
        print(f"sportlens: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sportlens", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    ask = commands.add_parser("ask", help="ask a question about a video and print the answer with its trace")
    ask.add_argument("video", type=Path)
    ask.add_argument("question")
    ask.add_argument("--options", help='closed question choices, e.g. "A) foul;B) no foul"')
    ask.add_argument("--model", type=Path, help="checkpoint directory run in-process (default: the demo model)")
    ask.add_argument("--backend-url", help="an OpenAI-compatible server (vLLM) instead of in-process")
    ask.add_argument("--model-name", help="the model's name on that server")
    ask.add_argument("--api-key", default=os.environ.get("SPORTLENS_BACKEND_API_KEY"))
    add_agent_flags(ask, constrain=True)
    ask.add_argument("--json", action="store_true", help="print the Result record as JSON")
    ask.add_argument("--calibration", type=Path, help="a calibration artifact: answer with a conformal prediction set "
                     "(default with the shipped model: the one it carries)")
    ask.add_argument("--selective", action="store_true", help="abstain when the prediction set is not one answer")
    ask.add_argument("--samples", type=int, default=10, help="answers sampled for the sample method (default 10)")
    ask.set_defaults(run=_ask)

    calibrate = commands.add_parser("calibrate", help="calibrate conformal prediction sets on labelled results")
    calibrate.add_argument("results", type=Path, help="Result records, one JSON per line (from `sportlens bench`)")
    calibrate.add_argument("--alpha", type=float, default=0.1, help="miscoverage: sets hold the answer ≥ 1−α of the time")
    calibrate.add_argument("--method", choices=["lac", "aps", "sample"], default="lac")
    calibrate.add_argument("--by", default="sport,task", help='Mondrian groups, comma-separated fields, or "" for none')
    calibrate.add_argument("--min-group", type=int, default=50,
                           help="a Mondrian group needs this many points for its own q̂; smaller ones use the pool")
    calibrate.add_argument("--model", type=Path, help="the checkpoint the results came from, to record its hash")
    calibrate.add_argument("--out", type=Path, required=True)
    calibrate.set_defaults(run=_calibrate)

    register_service(commands)
    register_benchmarks(commands)
    register_vllm(commands)
    register_training(commands)

    demo = commands.add_parser("make-demo-model", help="build the offline demo checkpoint (random weights)")
    demo.add_argument("out", type=Path, nargs="?", default=None, help=f"default: {demo_model_dir()}")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_make_demo_model)
    return parser


def _ask(args: argparse.Namespace) -> int:
    if not args.question.strip():
        raise UsageError("the question is empty")
    try:
        check_model_choice(args.model, args.backend_url, args.model_name)
        options = parse_options(args.options) if args.options is not None else None
        path = args.calibration or carried_calibration(args.model, args.backend_url)
        artifact = CalibrationArtifact.load(path) if path else None
        if artifact and artifact.method != "sample" and not options:
            if args.calibration:
                raise UsageError(f"a {artifact.method} calibration needs a closed question (--options)")
            artifact = None  # the shipped calibration covers closed questions only
        settings = calibrated_settings(agent_settings(
            args,
            constrain=args.constrain if args.constrain is not None else args.backend_url is None,
            max_thought_chars=thought_chars(args.model, args.backend_url),
        ), artifact, closed=True, samples=args.samples)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    try:
        video = Video(args.video)
    except VideoError as exc:
        raise UsageError(str(exc)) from exc
    trace = TracePrinter(json_output=args.json)
    with video:
        trace.video(video.info)
        try:
            backend = _backend(args, trace)
            trajectory = answer_question(
                video, args.question, backend, options=options, settings=settings, on_event=trace.event
            )
        except (BackendError, VideoError) as exc:
            raise UsageError(str(exc)) from exc
        finally:
            trace.clear_status()
    result = Result(trajectory=trajectory)
    if artifact is not None and trajectory.answer is not None:
        try:
            if not args.backend_url:
                artifact.check_model(trajectory.model, model_sha256(args.model or default_model_dir()))
            result = apply_calibration(result, artifact, selective=args.selective)
        except CalibrationError as exc:
            raise UsageError(str(exc)) from exc
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        trace.summary(result)
    return 0 if trajectory.answer is not None else 1


def _backend(args: argparse.Namespace, trace):
    return open_backend(model_dir=args.model, backend_url=args.backend_url, model_name=args.model_name,
                        api_key=args.api_key, status=trace.status)


def _calibrate(args: argparse.Namespace) -> int:
    results = []
    try:
        lines = args.results.read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {args.results}: {exc.strerror}") from exc
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                results.append(Result.model_validate_json(line))
            except ValueError as exc:
                raise UsageError(f"{args.results}:{number}: not a Result record ({exc.errors()[0]['msg']})") from exc
    closed = args.method in ("lac", "aps")
    results = [result for result in results if bool(result.trajectory.options) == closed]  # the questions it applies to
    if not results:
        kind = "closed" if closed else "open"
        raise UsageError(f"{args.results} holds no {kind} questions, the ones the {args.method} method calibrates on")
    by = [field for field in args.by.split(",") if field]
    unknown = [field for field in by if field not in ("sport", "task")]
    if unknown:
        raise UsageError(f"--by takes sport and task, not {', '.join(unknown)}")
    try:
        artifact = calibrate(
            results,
            alpha=args.alpha,
            method=args.method,
            by=by,
            min_group_points=args.min_group,
            model_sha256=model_sha256(args.model) if args.model else None,
        )
    except CalibrationError as exc:
        raise UsageError(str(exc)) from exc
    artifact.save(args.out)
    groups = ", ".join(f"{key} n={n}" + ("" if key in artifact.quantiles else " (pooled)") for key, n in artifact.counts.items())
    print(f"{args.method} at α={args.alpha}: q̂ = {artifact.pooled_quantile:.4f} pooled over {artifact.n}; {groups}")
    print(f"written to {args.out}")
    return 0


def _make_demo_model(args: argparse.Namespace) -> int:
    from sportlens.training.demo_model import build_demo_model

    out = args.out or demo_model_dir()
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; choose an empty or new directory")
    path = build_demo_model(out, seed=args.seed)
    print(f"demo model written to {path} (random weights: its answers are random)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
