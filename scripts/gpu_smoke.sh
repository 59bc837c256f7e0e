#!/bin/bash
# One-shot GPU smoke benchmark (benchmarks/gpu_smoke.py): QLoRA dSFT with packing, QLoRA dDPO from that
# adapter, full dSFT of a ~1.1B model, each with the alignment-handbook's settings and with westwind's, on
# random-weight models built locally. One CUDA GPU, no network, ~10 minutes. Writes
# outputs/gpu-smoke/results.json and prints tokens/s, peak memory, MFU and loss per run.
#
#   scripts/gpu_smoke.sh                    # on a GPU
#   scripts/gpu_smoke.sh --cpu --tiny       # CI: the same code on a CPU with tiny models (~1-2 min)
#   scripts/gpu_smoke.sh --steps 30 --out results.json
#
# Needs torch (CUDA build), transformers, trl, peft, accelerate, datasets, tokenizers, pyyaml, bitsandbytes;
# uses flash-attn and liger-kernel when present. Missing packages are listed before anything runs, so they
# can be brought as wheels (pip install --no-index --find-links WHEELS ...).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python}
export PYTHONPATH="$ROOT/src:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_DISABLED=true

MISSING=$("$PYTHON" -c "from benchmarks.gpu_smoke import missing_packages; print(' '.join(missing_packages()))")
if [[ -n "$MISSING" ]]; then
  echo "error: gpu_smoke needs these Python packages: $MISSING" >&2
  exit 3
fi
for optional in flash_attn liger_kernel; do
  "$PYTHON" -c "import $optional" 2>/dev/null || echo "gpu_smoke: $optional not importable; runs without it"
done

exec "$PYTHON" -m benchmarks.gpu_smoke "$@"
