#!/usr/bin/env bash
# Install kuberank into a Python environment. The one install path shared by the images
# (Dockerfile, Dockerfile.runtime) and scripts/setup.sh, so what the tests run is what ships.
#
#   images/install.sh PYTHON EXTRAS [--editable]
#   images/install.sh --print-cmake-args      (what llama.cpp would be compiled with, and exit)
#
# PYTHON   interpreter of the target environment (a venv's bin/python)
# EXTRAS   comma-separated extras of pyproject.toml (runtime, operator, gateway, dev)
# Env: KUBERANK_ACCEL=cpu|cuda (default cpu) picks llama.cpp's backend when it is compiled;
#      KUBERANK_PORTABLE=1 compiles llama.cpp for any x86-64-v3 CPU (AVX2, FMA, F16C) instead of
#        the build machine's own (-march=native), as an image must: one built on an AVX-512 host
#        would die of SIGILL on nodes without it;
#      CMAKE_BUILD_PARALLEL_LEVEL bounds the compile's parallelism (default 2).
# llama-cpp-python's multimodal library (mtmd) is never built: the runtime does not use it.
set -euo pipefail

case "${KUBERANK_ACCEL:-cpu}" in
  cuda) export CMAKE_ARGS="${CMAKE_ARGS:-} -DGGML_CUDA=on" ;;
  cpu) ;;
  *) echo "install.sh: KUBERANK_ACCEL must be cpu or cuda" >&2; exit 2 ;;
esac
export CMAKE_ARGS="${CMAKE_ARGS:-} -DLLAVA_BUILD=OFF"
if [ "${KUBERANK_PORTABLE:-0}" = 1 ]; then
  export CMAKE_ARGS="$CMAKE_ARGS -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
-DGGML_F16C=ON -DGGML_BMI2=ON"
  # Machine code for every data-centre GPU generation CUDA 12.4 knows (T4, A100, A10/A40/L4,
  # L40S/Ada, H100/H200) plus sm_90 PTX that newer ones compile on first use, so no node pays
  # minutes of JIT at every pod start.
  if [ "${KUBERANK_ACCEL:-cpu}" = cuda ]; then
    export CMAKE_ARGS="$CMAKE_ARGS -DCMAKE_CUDA_ARCHITECTURES=75-real;80-real;86-real;89-real;90"
  fi
fi
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
if [ "${1:-}" = --print-cmake-args ]; then
  echo "$CMAKE_ARGS"
  exit 0
fi

python="${1:?usage: install.sh PYTHON EXTRAS [--editable]}"
extras="${2:?usage: install.sh PYTHON EXTRAS [--editable]}"
mode="${3:-}"
here="$(cd "$(dirname "$0")/.." && pwd)"

"$python" -m pip install -q --upgrade pip wheel setuptools
# llama-cpp-python builds llama.cpp from source (minutes; pip's wheel cache reuses it).
if [ "$mode" = "--editable" ]; then
  "$python" -m pip install --progress-bar off -e "$here[$extras]"
else
  "$python" -m pip install --progress-bar off "$here[$extras]"
fi
