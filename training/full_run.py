"""The whole recipe in one run, and the evidence it produced: synth → distill → SFT → GRPO v1 and v2 → evaluation → export.

    python -m sportlens.training.full_run --profile cpu-smoke|cpu|gpu --out DIR [--publish DIR]
    python -m sportlens.training.full_run --config RUN.yaml --out DIR
    python -m sportlens.training.full_run --profile gpu --base-model QWEN_VL_DIR --out DIR

A profile is ``training/configs/full-run-<profile>.yaml``; ``--config`` takes any file with the same keys
(:class:`FullRunConfig`; `--help` lists them). The whole config is checked before anything runs. The profiles:

- ``cpu-smoke``: a few clips and a step or two of each stage; the end-to-end test runs it (about a minute).
- ``cpu``: 60-s clips with small frames (320×180, 6 fps), ~150 distilled conversations, 8 GRPO steps per reward,
  40 test questions per row, one torch thread per process; 12 to 19 minutes on a shared 2-core CPU.
- ``gpu``: sized for one H100 machine (16 cores): GRPO v1 and v2 train side by side and every row is evaluated in
  its own process; stages stop on time limits so the Python ends in about 6 minutes whatever the machine's speed.
  ``benchmarks/gpu/run_full.sh`` runs it on the device machine.

Stages, each announced by a progress line when it starts and when it ends (its seconds and throughput):

1. ``synth``: SportSim clips and questions (``sportsim/qa.jsonl``).
2. ``base``: the untrained demo model (``base/``), the starting point and the table's untrained row; or, with
   ``base_model`` (``--base-model``), a Qwen-VL-style checkpoint of your own, linked as ``base/``. The demo model is
   blind — random weights — and cannot learn to read SportSim's frames in minutes; a pretrained VLM can. The
   checkpoint is checked (special tokens, image token, chat template) before anything runs.
3. ``distill``: the SportSim oracle answers the closed training questions through the agent loop; judged
   conversations in ``distilled/`` (with ``drills_per_clip``, look drills beside them: ``visual_drills.py``).
4. ``vision`` (SportSim visual, ``vision.steps`` > 0): the tower learns to read rendered frames through auxiliary
   read-out heads (``visual_pretrain.py``), into ``vision/``, which SFT then starts from; skipped otherwise.
5. ``sft``, 6. ``anneal``, 7. ``grpo-v1``, 8. ``grpo-v2``: ``sportlens train sft|grpo`` on those, from ``base/``
   (``vision/``), then a second SFT phase from ``sft/`` when the config has an ``anneal`` section (a lower,
   decaying rate), then from the last SFT phase with DeepSport's gated tool reward v1 and v2; each writes a full
   checkpoint with its manifest, and its stage config under ``configs/`` (``sportlens train grpo
   configs/grpo-v1.json`` repeats the stage alone). An SFT phase with ``max_seconds`` stops unfinished and
   ``--resume`` continues it from its last checkpoint.
9. ``evaluate``: the held-out test questions through ``benchmarks.runner.run_benchmark`` for every row — the
   untrained model, SFT, SFT+GRPO v1 and v2 as agents, and trained weights answering once from 16 uniform frames
   without the tool — a chunk of questions at a time, the rows in turn (or side by side, a process each, with
   ``parallel``); when ``eval.max_seconds`` runs out, the table compares the rows on the questions all of them
   answered. Results in ``eval/<row>/results.jsonl``; the evidence table (``benchmarks.evidence``:
   ``evidence.json``, ``evidence.md``, ``evidence.png``) is rewritten after every chunk, and copied to
   ``--publish`` with ``timings.json`` each time.
10. ``export``: ``sportlens models export`` of both GRPO checkpoints to ``export/``, their evaluation in the
   manifest — last, because the manifest records the evaluation; the weights are those evaluated.

``timings.json`` holds every stage's seconds and figures: clips/s, items/s, samples/s and tokens/s for SFT and
GRPO, rollout and update seconds for every GRPO step, questions/s for every evaluated row.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sportlens.training.config import ConfigError, EvalSettings, describe
from sportlens.training.full_run_config import CONFIGS, PROFILES, STAGES, TOP_KEYS, load_full_run

# The stages (full_run_stages: torch, TRL, the trainers) are imported once the config is checked: `--help` takes
# 0.48 s so and 7.5 s with them imported here, a bad config 0.51 s and 7.7 s (median of 5 runs, shared 2-core CPU).


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sportlens.training.full_run", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0] + "\n\nTop-level config keys:\n"
        + "\n".join(f"  {k}: {v}" for k, v in TOP_KEYS.items()) + "\n\neval keys:\n" + describe(EvalSettings))
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--profile", choices=PROFILES, help="a profile under training/configs/full-run-<profile>.yaml")
    source.add_argument("--config", type=Path, help="a full-run config file (YAML or JSON)")
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder for every stage's output")
    parser.add_argument("--publish", type=Path, help="also copy evidence.* and timings.json here whenever they change")
    parser.add_argument("--base-model", type=Path, help="start from this Qwen-VL-style checkpoint (overrides base_model)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a run in --out: skip the stages timings.json records as done")
    parser.add_argument("--stop-after", choices=STAGES[:6], help="end after this stage (resume later with --resume)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = args.config or CONFIGS / f"full-run-{args.profile}.yaml"
    try:
        config = load_full_run(path, args.out, args.base_model)
    except ConfigError as error:
        print(f"full_run: error: {error}", file=sys.stderr)
        return 2
    if not args.resume and args.out.exists() and any(args.out.iterdir()):
        print(f"full_run: error: {args.out} is not empty; choose a new or empty folder, or --resume", file=sys.stderr)
        return 2
    from sportlens.training.full_run_stages import run

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    table = run(config, args.publish, stop_after=args.stop_after)
    return 0 if table is None or table["questions"] else 1


if __name__ == "__main__":
    sys.exit(main())
