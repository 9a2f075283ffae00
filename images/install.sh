#!/usr/bin/env bash
# Install kuberank into a Python environment. The one install path shared by the images
# (Dockerfile, Dockerfile.runtime) and scripts/setup.sh, so what the tests run is what ships.
#
#   images/install.sh PYTHON EXTRAS [--editable]
#
# PYTHON   interpreter of the target environment (a venv's bin/python)
# EXTRAS   comma-separated extras of pyproject.toml (runtime, operator, gateway, dev)
# Env: KUBERANK_ACCEL=cpu|cuda (default cpu) picks llama.cpp's backend when it is compiled;
#      CMAKE_BUILD_PARALLEL_LEVEL bounds the compile's parallelism (default 2).
set -euo pipefail
python="${1:?usage: install.sh PYTHON EXTRAS [--editable]}"
extras="${2:?usage: install.sh PYTHON EXTRAS [--editable]}"
mode="${3:-}"
here="$(cd "$(dirname "$0")/.." && pwd)"

case "${KUBERANK_ACCEL:-cpu}" in
  cuda) export CMAKE_ARGS="${CMAKE_ARGS:-} -DGGML_CUDA=on" ;;
  cpu) ;;
  *) echo "install.sh: KUBERANK_ACCEL must be cpu or cuda" >&2; exit 2 ;;
esac
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

"$python" -m pip install -q --upgrade pip wheel setuptools
# llama-cpp-python builds llama.cpp from source (minutes; pip's wheel cache reuses it).
if [ "$mode" = "--editable" ]; then
  "$python" -m pip install --progress-bar off -e "$here[$extras]"
else
  "$python" -m pip install --progress-bar off "$here[$extras]"
fi
