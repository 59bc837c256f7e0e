#!/bin/bash
# One-shot GPU smoke benchmark (benchmarks/gpu_smoke.py): QLoRA dSFT, QLoRA dDPO from that adapter, full dSFT
# and full dDPO of a ~1.1B model, each with the alignment-handbook's zephyr-7b-beta settings and with westwind's,
# on random-weight models built locally, then westwind's adapter merge under DeepSpeed ZeRO-3 on the one GPU.
# One CUDA GPU (H100/H200), no network, meant to finish in under 10 minutes (not yet timed on one). Writes
# outputs/gpu-smoke/results.json and prints tokens/s, peak memory, FLOPs per token, MFU and loss per run.
#
#   scripts/gpu_smoke.sh                    # on a GPU
#   scripts/gpu_smoke.sh --wheels .whl      # first install the wheels scripts/gpu_wheels.sh gathered
#   scripts/gpu_smoke.sh --cpu --tiny       # CI: the same code and table on a CPU with tiny models (~2-3 min)
#   scripts/gpu_smoke.sh --steps 30 --out results.json
#
# Needs torch (CUDA build), transformers, trl, peft, accelerate, datasets, tokenizers, pyyaml, bitsandbytes;
# uses flash-attn, liger-kernel and DeepSpeed when present. Missing packages are listed before anything runs.
set -euo pipefail

WHEELS=
if [[ "${1:-}" == "--wheels" ]]; then
  WHEELS=${2:?--wheels needs the folder scripts/gpu_wheels.sh filled}
  WHEELS=$(cd "$WHEELS" && pwd)
  shift 2
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python}
export PYTHONPATH="$ROOT/src:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_DISABLED=true

if [[ -n "$WHEELS" ]]; then  # into a folder of their own, ahead of the machine's packages; nothing fetched
  SITE=${WESTWIND_SMOKE_SITE:-/tmp/westwind-smoke-site}
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$WHEELS"/*.whl
  export PYTHONPATH="$SITE:$PYTHONPATH" PATH="$SITE/bin:$PATH"
fi

MISSING=$("$PYTHON" -c "from benchmarks.gpu_smoke import missing_packages; print(' '.join(missing_packages()))")
if [[ -n "$MISSING" ]]; then
  echo "error: gpu_smoke needs these Python packages: $MISSING" >&2
  exit 3
fi
for optional in flash_attn liger_kernel deepspeed; do
  "$PYTHON" -c "import $optional" 2>/dev/null || echo "gpu_smoke: $optional not importable; runs without it"
done

exec "$PYTHON" -m benchmarks.gpu_smoke "$@"
