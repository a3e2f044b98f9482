#!/usr/bin/env bash
# One call on a GPU machine measures issue 18's GPU figures in a few minutes:
#   1. what the machine has (first line: torch, CUDA, Transformer Engine, Triton, mamba-ssm, nvcc);
#   2. wheels the machine lacks, installed offline from $WHEELS (a folder that travels with the tree);
#   3. bench/train.py --compile: BF16 vs FP8 tokens/s of the factory's trainer, small_20m and a 4-layer
#      model at Nemotron-H 8B widths (with the FP8/BF16 ratio and both final losses);
#   4. when megatron-core and Transformer Engine import: the Megatron engine on small_20m in BF16 and FP8,
#      its converted Hugging Face model's logits against Megatron's (bench/megatron_parity.py);
#   5. bench/throughput.py on CUDA: the hybrid's decode against the equal-size transformer, and the factory's
#      decoder against transformers' generate (its "same tokens" column checks the decoder's greedy tokens, through
#      mamba-ssm's selective_state_update kernel when that imports, against generate's).
#
#   bash bench/gpu_check.sh --dry-run      # prints the inventory line and the plan, runs nothing
#   bash bench/gpu_check.sh                # on the GPU machine; figures under runs/bench/gpu_check
# Environment: PYTHON (default .venv/bin/python), OUT (default runs/bench/gpu_check), STEPS (default 30),
# WHEELS (default wheels/). Plan lines are split on spaces: keep these paths free of them.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
case "${1:-}" in
  --dry-run) DRY_RUN=1 ;;
  "") ;;
  *) echo "usage: bash bench/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/bench/gpu_check}
STEPS=${STEPS:-30}
WHEELS=${WHEELS:-wheels}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DRY_RUN" = 1 ]; then
  "$PYTHON" bench/gpu_inventory.py
else
  "$PYTHON" bench/gpu_inventory.py --require-cuda  # exits 2 with a message on a machine without CUDA
fi

plan=()
if [ -d "$WHEELS" ] && compgen -G "$WHEELS/*.whl" >/dev/null; then
  wheels=("$WHEELS"/*.whl)
  plan+=("$PYTHON -m pip install --no-index --find-links $WHEELS ${wheels[*]}")
fi
plan+=("$PYTHON bench/train.py --compile --steps $STEPS --warmup 10 --out $OUT/train")
megatron="$PYTHON bench/megatron_parity.py --preset small_20m --out $OUT/megatron"
plan+=("$megatron")
plan+=("$PYTHON bench/throughput.py --device cuda --contexts 1024 8192 32768 --batches 1 8")

if [ "$DRY_RUN" = 1 ]; then
  for step in "${plan[@]}"; do echo "plan: $step"; done
  echo "plan: a real run needs CUDA; the Megatron step runs only when megatron.core and transformer_engine import"
  exit 0
fi

mkdir -p "$OUT"
failed=0
for step in "${plan[@]}"; do
  if [ "$step" = "$megatron" ] && ! "$PYTHON" -c "import megatron.core, transformer_engine" 2>/dev/null; then
    echo "skip: $step (megatron-core or transformer-engine does not import)"
    continue
  fi
  echo "run: $step"
  # a failed step is reported and the next one still runs: one call should bring back every figure it can
  # shellcheck disable=SC2086  # the plan lines are word lists
  $step 2>&1 | tee -a "$OUT/gpu_check.log" || { echo "failed: $step"; failed=1; }
done
exit "$failed"
