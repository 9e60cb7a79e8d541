"""The `sportlens distill`, `sportlens train sft|grpo` and `sportlens models export|show` subcommands.

Heavy imports (torch, TRL) wait until a command runs. Bad input — a broken dataset record, a config with unknown
keys or impossible values, a base model without the protocol's special tokens — ends in one line on stderr and
exit status 2, before any model is loaded.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from sportlens.agent.backends.base import BackendError
from sportlens.agent.backends.openai_http import OpenAIHTTPBackend
from sportlens.agent.settings_flags import add_agent_flags, agent_settings
from sportlens.benchmarks.commands import DATASET_FORMATS
from sportlens.benchmarks.loaders import DatasetError, load_dataset
from sportlens.tools.usage import UsageError
from sportlens.training.checkpoint import CheckpointError, check_base_model, export, read_manifest
from sportlens.training.config import ConfigError, GRPOStageConfig, SFTStageConfig, describe, load_config

# Distillation (transformers), the oracles and the trainers (torch, TRL) are imported when a command runs:
# `sportlens --help` takes 0.6 s so, 7.3 to 7.4 s with them here (medians of 5 runs, twice, on a shared 2-core CPU).


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``distill``, ``train`` and ``models`` on the sportlens command's subparsers."""
    distill = commands.add_parser("distill", help="teacher trajectories through the agent loop, judged, as a dataset")
    distill.add_argument("dataset", type=Path,
                         help="questions: QA JSONL (e.g. `sportlens synth`), SportR, DeepSport, Video-R1 or SPORTU")
    distill.add_argument("--format", default="auto", choices=DATASET_FORMATS,
                         help="the dataset's layout (default: told apart by its fields)")
    distill.add_argument("--out", type=Path, required=True, help="folder for conversations.jsonl and frames/")
    distill.add_argument("--teacher-url", help="OpenAI-compatible server of the teacher VLM (default: the SportSim oracle)")
    distill.add_argument("--teacher-model", help="the teacher's name on that server")
    distill.add_argument("--api-key", default=os.environ.get("SPORTLENS_BACKEND_API_KEY"))
    distill.add_argument("--split", help='only questions of this split; "" for all (default: "train" when the file '
                                         "has splits, else every question: Video-R1 and SPORTU files have none)")
    distill.add_argument("--types", default="choice,yes_no,box,open", help="answer types to distill, comma-separated")
    distill.add_argument("--limit", type=int, help="only the first N questions (after the filters)")
    add_agent_flags(distill)
    distill.add_argument("--temperature", type=float, default=0.0, help="the teacher's sampling temperature")
    distill.set_defaults(run=_distill)

    train = commands.add_parser("train", help="train a checkpoint: sft on distilled data, then grpo")
    stages = train.add_subparsers(required=True, metavar="STAGE")
    for name, help_text in (("sft", "supervised fine-tuning on `sportlens distill` conversations"),
                            ("grpo", "GRPO with agent-loop rollouts and the gated tool-use reward")):
        stage = stages.add_parser(name, help=help_text, description=f"{help_text}. Config keys:\n" + _keys(name),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        stage.add_argument("config", type=Path, help="YAML or JSON config (keys below)")
        stage.set_defaults(run=_train, stage=name)

    models = commands.add_parser("models", help="export a trained checkpoint for serving, or show its manifest")
    actions = models.add_subparsers(required=True, metavar="ACTION")
    export = actions.add_parser("export", help="copy a trained checkpoint as a served model with its manifest")
    export.add_argument("checkpoint", type=Path, help="a `sportlens train` output directory")
    export.add_argument("out", type=Path, help="a new or empty directory")
    export.add_argument("--calibration", type=Path, help="calibration artifact (`sportlens calibrate`) to ship with it")
    export.add_argument("--eval-summary", type=Path, help="JSON evaluation summary to record in the manifest")
    export.add_argument("--name", help="the model's name (default: the directory's name)")
    export.add_argument("--max-thought-chars", type=int, help="the longest thought the model writes (a scanning "
                        "model's is long); constrained turns allow it")
    export.set_defaults(run=_export)
    show = actions.add_parser("show", help="print a checkpoint's manifest")
    show.add_argument("checkpoint", type=Path)
    show.set_defaults(run=_show)


def _keys(stage: str) -> str:
    return describe(SFTStageConfig if stage == "sft" else GRPOStageConfig)


def _distill(args: argparse.Namespace) -> int:
    from sportlens.training.distill import distill

    if bool(args.teacher_url) != bool(args.teacher_model):
        raise UsageError("--teacher-url and --teacher-model go together (or neither, for the SportSim oracle)")
    try:
        settings = agent_settings(args, temperature=args.temperature)
        dataset = load_dataset(args.dataset, args.format)
    except (ValueError, DatasetError) as error:
        raise UsageError(str(error)) from error
    types = {t for t in args.types.split(",") if t}
    unsplit = all(item.split is None for item in dataset.items)
    split = args.split if args.split is not None else ("" if unsplit else "train")
    items = [i for i in dataset.items if (not split or i.split == split) and i.answer_type in types]
    items = items[: args.limit] if args.limit else items
    if not items:
        hint = " (its questions carry no split: leave --split out or give --split '')" if unsplit and split else ""
        raise UsageError(f"{args.dataset}: no questions of split {split!r} and types {sorted(types)}{hint}")
    if args.teacher_url:
        backend = OpenAIHTTPBackend(args.teacher_url, args.teacher_model, api_key=args.api_key)
        teacher, name = (lambda item: backend), f"{args.teacher_model} @ {args.teacher_url}"
    else:
        from sportlens.benchmarks.oracle import oracle_backends
        from sportlens.benchmarks.visual_oracle import oracle_for

        policy, name = oracle_for(args.dataset)
        teacher = oracle_backends(policy, dataset.video_path)
    try:
        summary = distill(items, dataset.video_path, teacher, args.out, settings=settings, source=args.dataset,
                          source_format=dataset.format, teacher_name=name)
    finally:
        if args.teacher_url:
            backend.close()
    print(f"kept {summary['kept']} of {summary['kept'] + summary['rejected']} trajectories "
          f"({summary['rejected_by_reason'] or 'none rejected'}); written to {args.out}")
    return 0 if summary["kept"] else 1


def _train(args: argparse.Namespace) -> int:
    from sportlens.training.distill import DistillDataError, load_conversations

    try:
        config = load_config(args.config, SFTStageConfig if args.stage == "sft" else GRPOStageConfig)
        check_base_model(config.model)
        if args.stage == "sft":
            load_conversations(Path(config.data))
        else:
            load_dataset(config.data)
    except (ConfigError, CheckpointError, DistillDataError, ValueError) as error:
        raise UsageError(str(error)) from error
    if args.stage == "sft":
        from sportlens.training.sft import train_sft as run
    else:
        from sportlens.training.grpo import train_grpo as run
    throughput = run(config)
    print(json.dumps({"stage": args.stage, "output_dir": config.output_dir, **throughput}))
    return 0


def _export(args: argparse.Namespace) -> int:
    try:
        out = export(args.checkpoint, args.out, calibration=args.calibration, eval_summary=args.eval_summary,
                     name=args.name, max_thought_chars=args.max_thought_chars)
    except (CheckpointError, BackendError, OSError, json.JSONDecodeError) as error:
        raise UsageError(str(error)) from error
    print(f"exported to {out}; serve it with `sportlens ask --model {out}` or `sportlens serve`")
    return 0


def _show(args: argparse.Namespace) -> int:
    if not (args.checkpoint / "config.json").is_file():
        raise UsageError(f"no checkpoint at {args.checkpoint}")
    print(json.dumps(read_manifest(args.checkpoint), indent=2))
    return 0
