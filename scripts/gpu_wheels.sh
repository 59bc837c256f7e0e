#!/bin/bash
# Gather, where pip reaches PyPI, the wheels scripts/gpu_smoke.sh needs on a GPU machine with no network whose
# Python has torch, transformers, accelerate and peft but no trl, datasets, bitsandbytes or DeepSpeed:
#
#   scripts/gpu_wheels.sh .whl                 # Python 3.12, x86-64, bitsandbytes' CUDA 13.0 build only
#   scripts/gpu_wheels.sh .whl 3.11 126        # another Python, the CUDA 12.6 build
#   # carry .whl to the GPU machine (keep it out of git: echo /.whl/ >> .git/info/exclude), then there:
#   scripts/gpu_smoke.sh --wheels .whl
#
# westwind's own pins (requirements.txt) for the stack, and the versions this checkout's Python has for what
# they need beyond the GPU image (dill, multiprocess, hjson, pydantic, ...). bitsandbytes' wheel holds one
# library per CUDA version (123 MB in all); only the one for CUDA_BUILD and the CPU one are kept, so the set
# stays under 64 MB. DeepSpeed publishes no wheel: it is built here as a pure-Python wheel (its ops compile
# just in time on the GPU machine; needs torch in this Python). flash-attn has no wheel for the GPU image's
# torch and is left out: the smoke then runs sdpa and says so. Not run in this repository's CI.
set -euo pipefail

OUT=${1:?usage: scripts/gpu_wheels.sh WHEELS_DIR [PYTHON_VERSION] [CUDA_BUILD]}
PY_VERSION=${2:-3.12}
CUDA_BUILD=${3:-130}
PYTHON=${PYTHON:-python3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$OUT"

pin() { grep -E "^$1(\[[^]]*\])?==" "$ROOT/requirements.txt" | sed -E 's/\[[^]]*\]//'; }
local_pin() { echo "$1==$("$PYTHON" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1")"; }

PLATFORMS=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
  manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$tag")
done
"$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
  "${PLATFORMS[@]}" -d "$OUT" \
  "$(pin trl)" "$(pin datasets)" "$(pin bitsandbytes)" "$(pin transformers)" "$(pin peft)" \
  "$(local_pin dill)" "$(local_pin multiprocess)" "$(local_pin xxhash)" \
  "$(local_pin pydantic)" "$(local_pin pydantic-core)" "$(local_pin annotated-types)" \
  "$(local_pin typing-inspection)" hjson==3.1.0

DS_BUILD_OPS=0 "$PYTHON" -m pip wheel --no-deps --no-build-isolation -w "$OUT" "deepspeed==0.19.8"

"$PYTHON" - "$OUT" "$CUDA_BUILD" <<'PY'
"""Keep one CUDA build (and the CPU library) in the bitsandbytes wheel."""
import pathlib, re, sys, zipfile

out, keep = pathlib.Path(sys.argv[1]), sys.argv[2]
for wheel in out.glob("bitsandbytes-*.whl"):
    slim = wheel.with_name(wheel.name + ".slim")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            build = re.search(r"libbitsandbytes_cuda(\d+)", item.filename)
            if build is None or build.group(1) == keep:
                target.writestr(item, source.read(item))
    slim.replace(wheel)
PY
du -sh "$OUT"
