#!/usr/bin/env bash
# The full training run on the device machine — synth → distill → SFT → GRPO v1 ∥ v2 → evaluation → export — with
# the gpu profile (training/configs/full-run-gpu.yaml); what matters comes back flat under $OUT.
#
# The machine (one H100, 16 cores, nothing downloadable) has python3 3.12 with torch 2.11 (CUDA), torchvision,
# accelerate, numpy, pillow, pyyaml, matplotlib, pyarrow, pandas, tokenizers, safetensors and huggingface-hub
# (/work/.library/device/KINDS.md), but not trl, datasets, av, xgrammar or pydantic, and an older transformers.
# Download these wheels once, here, in the repository root (.whl/ is git-ignored; 57.5 MiB, which with the
# working tree stays under the 64 MiB a call carries):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
#     trl==1.16.0 datasets==5.2.0 av==18.1.0 xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2 transformers==5.24.0 \
#     peft==0.21.2 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
#     typing-extensions==4.16.0 regex==2026.11.19 dill==0.4.1 multiprocess==0.70.19
#
# Then, with the device tool: run(command="bash benchmarks/gpu/run_full.sh", carry=[".whl"], timeout_s=540).
# Expected: about 6 minutes of Python (7½ at worst: each time limit is checked after a step or a chunk), ~30 s of
# wheel install and ~1 min for issue 3's CUDA backend check, so about 9 minutes of device time with the machine's
# start; then give_back.
# Back under $OUT: cuda_backend.json (issue 3), evidence.json, evidence.md, evidence.png and timings.json (rewritten as the run goes, so a cut
# run still returns a table), run.log, results.tar.gz (every row's results, stage configs, manifests, run.json) and
# model-grpo-v1.tar.gz (the exported SFT+GRPO v1 checkpoint).
#
# BASE_MODEL=DIR starts from that Qwen-VL checkpoint instead of the random-init demo model (full_run --base-model).
# `run_full.sh check` runs issue 3's check alone (≈1½ min of device time with the wheel install).
# A dry run of the wiring on a CPU: WHEELS= OUT=/tmp/out PYTHON=.venv/bin/python bash benchmarks/gpu/run_full.sh cpu-smoke
set -uo pipefail
profile=${1:-gpu}
python=${PYTHON:-python3}
: "${OUT:?set OUT to the folder whose files come back}"
cd "$(dirname "$0")/../.."
wheels=${WHEELS-.whl}  # WHEELS= (empty) installs none: the dry run's Python has them
if [ -n "$wheels" ] && compgen -G "$wheels/*.whl" > /dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# pyproject maps the top-level folders to sportlens.<layer>; without installing, link them under one package.
source_root=$(mktemp -d)
mkdir "$source_root/sportlens"
ln -s "$PWD"/command/*.py "$source_root/sportlens/"
for layer in tools agent training service benchmarks; do ln -s "$PWD/$layer" "$source_root/sportlens/$layer"; done
export PYTHONPATH=$source_root${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# Fail in seconds, not after the data is made, when a carried wheel does not fit what the machine has.
"$python" -c 'import torch, transformers, trl, datasets, av, xgrammar, pydantic
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "transformers", transformers.__version__,
      "trl", trl.__version__, "datasets", datasets.__version__)' 2>&1 | tee "$OUT/run.log"
[ "${PIPESTATUS[0]}" = 0 ] || exit 1
# Issue 3's check first (≈1 min): the transformers backend on CUDA in bf16 vs fp32 on the CPU → $OUT/cuda_backend.json.
if [ "$profile" = gpu ] || [ "$profile" = check ]; then
  "$python" -m sportlens.benchmarks.gpu.check_cuda_backend --out "$OUT" 2>&1 | tee -a "$OUT/run.log"
  checked=${PIPESTATUS[0]}
  [ "$profile" = check ] && exit "$checked"
fi
run=$(mktemp -d)/full-run
"$python" -m sportlens.training.full_run --profile "$profile" --out "$run" --publish "$OUT" \
  ${BASE_MODEL:+--base-model "$BASE_MODEL"} 2>&1 | tee -a "$OUT/run.log"
status=${PIPESTATUS[0]}
manifests=$(cd "$run" && ls -d */manifest.json export/*/manifest.json 2>/dev/null)
tar czf "$OUT/results.tar.gz" -C "$run" --exclude=stills run.json timings.json configs eval $manifests 2>/dev/null
[ -d "$run/export/grpo-v1" ] && tar czf "$OUT/model-grpo-v1.tar.gz" -C "$run/export" grpo-v1
exit "$status"
