#!/usr/bin/env bash
# The evidence of issue 16 for a model trained by `python -m sportlens.training.full_run --profile visual-cpu`:
#   benchmarks/results/visual-cpu/evaluate.sh RUN_DIR MODEL_DIR OUT_DIR [TEST_QUESTIONS] [VAL_QUESTIONS]
# UNTRAINED=DIR names the untrained model (default RUN_DIR/base: a run started from random weights); LABEL the row's
# name for MODEL_DIR (default "trained agent"); TITLE the evidence table's.
# On the run's held-out SportSim visual clips (split by video), with the same protocol settings everywhere:
#   test-agent:     the trained agent, every option scored after its answer
#   val:            the same on the val split → `sportlens calibrate` (LAC, α = 0.1) → calibration.json
#   test-uniform16: the same weights answering once from 16 uniform frames (no tool)
#   test-untrained: the untrained base, one turn (random weights: it can only guess)
# then the evidence table with the paired sign test, the test answers' prediction sets from the val calibration
# (coverage, set size, selective answering), and coverage / set size over 100 random val+test splits.
# Every row is constrained to the protocol (structured output) so that every row answers; the trained rows may think
# 1200 characters (a scan of 16 frames), the untrained one 200 (its thought is noise).
# Two processes of one thread each: about 30 minutes on this 2-core machine for 400 + 200 questions.
set -euo pipefail
RUN=$1 MODEL=$2 OUT=$3 TESTS=${4:-400} VALS=${5:-200}
UNTRAINED=${UNTRAINED:-$RUN/base} LABEL=${LABEL:-trained agent}
TITLE=${TITLE:-"The trained model on SportSim visual's test split"}
QA=$RUN/sportsim/qa.jsonl
BIN=$(dirname "$(readlink -f "$0")")/../../../.venv/bin
export OMP_NUM_THREADS=1
bench() { "$BIN/sportlens" bench "$QA" --no-progress --baselines none --constrain "$@"; }
mkdir -p "$OUT"
bench --model "$MODEL" --split test --limit "$TESTS" --max-thought-chars 1200 --score-options --out "$OUT/test-agent" \
    > "$OUT/agent.log" 2>&1 &
(
  bench --model "$MODEL" --split val --limit "$VALS" --max-thought-chars 1200 --score-options --out "$OUT/val"
  bench --model "$MODEL" --split test --limit "$TESTS" --max-thought-chars 1200 --initial-frames 16 --max-turns 1 \
      --out "$OUT/test-uniform16"
  bench --model "$UNTRAINED" --split test --limit "$TESTS" --max-turns 1 --out "$OUT/test-untrained"
) > "$OUT/baselines.log" 2>&1 &
wait
"$BIN/sportlens" calibrate "$OUT/val/agent.results.jsonl" --alpha 0.1 --method lac --by "" --model "$MODEL" \
    --out "$OUT/calibration.json"
"$BIN/python" - "$OUT" <<'PY' | tee "$OUT/prediction_sets.txt"
import sys
from pathlib import Path
from sportlens.agent.conformal import CalibrationArtifact, apply_calibration
from sportlens.agent.records import Result
from sportlens.benchmarks.runner import read_records
out = Path(sys.argv[1])
artifact = CalibrationArtifact.load(out / "calibration.json")
results = [apply_calibration(r.result, artifact) for r in read_records(out / "test-agent" / "results.jsonl")
           if r.result is not None and r.result.trajectory.option_logprobs]
covered = sum(r.label in r.prediction_set for r in results)
single = [r for r in results if r.set_size == 1]
print(f"test answers with sets from the val calibration (LAC, alpha {artifact.alpha}): {len(results)}; "
      f"coverage {covered / len(results):.1%} (target {1 - artifact.alpha:.0%}); "
      f"mean set size {sum(r.set_size for r in results) / len(results):.2f} of 4 options; "
      f"selective (answering only one-answer sets): {len(single) / len(results):.1%} answered, "
      f"{sum(r.label == r.trajectory.answer for r in single) / max(1, len(single)):.1%} of them right")
PY
"$BIN/python" -m sportlens.benchmarks.evidence --title "$TITLE" \
    --row "uniform16=same weights, 16 uniform frames, no tool=$OUT/test-uniform16" \
    --row "untrained=untrained (random weights)=$OUT/test-untrained" \
    --row "agent=$LABEL=$OUT/test-agent" \
    --compare agent,untrained,uniform16 --out "$OUT"
"$BIN/python" -m sportlens.benchmarks.conformal_eval "$OUT/val/agent.results.jsonl" \
    "$OUT/test-agent/agent.results.jsonl" --out "$OUT/conformal"
