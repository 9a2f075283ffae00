#!/usr/bin/env bash
# Build llama-cpp-python with CUDA and run benchmarks/bench_gpu.py, on a machine with an NVIDIA
# GPU, nvcc, CMake, scikit-build-core, torch and transformers, and no package index.
#
#   WHEELS=DIR [OUT=DIR] [CUDA_ARCH=90] bash benchmarks/bench_gpu.sh [bench_gpu.py flags]
#
# WHEELS holds what the machine lacks, fetched where an index is reachable: the
#   llama-cpp-python sdist, wheels of the runtime's pure-Python dependencies (fastapi, starlette,
#   uvicorn, pydantic, pydantic-core, pydantic-settings, gguf, diskcache, ...) for that machine's
#   Python, and tokenizer/ (MiniLM's vocab.txt and tokenizer files, from any HF twin that
#   `kuberank-models build` wrote).
# OUT receives build.log, bench.log and gpu.json.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
wheels="$(cd "${WHEELS:?set WHEELS to the folder of wheels and the llama-cpp-python sdist}" && pwd)"
out="${OUT:-/tmp/kuberank-bench-gpu}"
site=/tmp/kuberank-site
mkdir -p "$out" "$site"
export PYTHONUNBUFFERED=1 PATH="/usr/local/cuda/bin:$PATH"

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
nvcc --version | tail -1

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$site" "$wheels"/*.whl
export PYTHONPATH="$site:$here/runtime:$here/operator:$here/gateway:$here/benchmarks"

started=$SECONDS
echo "building llama-cpp-python with CUDA (arch ${CUDA_ARCH:-90}; log: $out/build.log)"
# The flags the images use (images/install.sh), for this GPU's architecture only.
cmake_args="$(KUBERANK_ACCEL=cuda bash "$here/images/install.sh" --print-cmake-args)"
CMAKE_ARGS="$cmake_args -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH:-90}" \
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  python3 -m pip wheel --no-index --no-deps --no-build-isolation -w /tmp/kuberank-llama-wheel \
  "$wheels"/llama_cpp_python-*.tar.gz >"$out/build.log" 2>&1 \
  || { tail -40 "$out/build.log"; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" \
  /tmp/kuberank-llama-wheel/llama_cpp_python-*.whl
echo "built in $((SECONDS - started)) s"

python3 "$here/benchmarks/bench_gpu.py" --tokenizer "$wheels/tokenizer" --work /tmp/kuberank-bench \
  --json "$out/gpu.json" "$@" 2>&1 | grep -v "special_eos_id\|Loading weights" | tee "$out/bench.log"
