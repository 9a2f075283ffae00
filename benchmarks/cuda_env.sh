#!/usr/bin/env bash
# Source on a machine with an NVIDIA GPU, nvcc, CMake, scikit-build-core, torch and
# transformers, and no package index: builds llama-cpp-python with CUDA and exports a PYTHONPATH
# under which the runtime, the benchmarks and the test kits import.
#
#   WHEELS=DIR [OUT=DIR] [CUDA_ARCH=90] source benchmarks/cuda_env.sh
#
# WHEELS holds what the machine lacks, fetched where an index is reachable
#   (`bash benchmarks/gpu_wheels.sh DIR` writes it, under 64 MiB): the
#   llama-cpp-python sdist, wheels of the runtime's pure-Python dependencies (fastapi, starlette,
#   uvicorn, pydantic, pydantic-core, pydantic-settings, gguf, diskcache, ...) for that machine's
#   Python, and tokenizer/ (MiniLM's vocab.txt and tokenizer files, from any HF twin that
#   `kuberank-models build` wrote).
# OUT receives build.log.
set -euo pipefail
kuberank_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kuberank_wheels="$(cd "${WHEELS:?set WHEELS to the folder of wheels and the llama-cpp-python sdist}" && pwd)"
kuberank_out="${OUT:-/tmp/kuberank-bench-gpu}"
kuberank_site=/tmp/kuberank-site
mkdir -p "$kuberank_out" "$kuberank_site"
export PYTHONUNBUFFERED=1 PATH="/usr/local/cuda/bin:$PATH"

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
nvcc --version | tail -1

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$kuberank_site" "$kuberank_wheels"/*.whl
export PYTHONPATH="$kuberank_site:$kuberank_root/runtime:$kuberank_root/operator:$kuberank_root/gateway:$kuberank_root/benchmarks"

kuberank_started=$SECONDS
echo "building llama-cpp-python with CUDA (arch ${CUDA_ARCH:-90}; log: $kuberank_out/build.log)"
# The flags the images use (images/install.sh), for this GPU's architecture only.
CMAKE_ARGS="$(KUBERANK_ACCEL=cuda bash "$kuberank_root/images/install.sh" --print-cmake-args) -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH:-90}" \
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  python3 -m pip wheel --no-index --no-deps --no-build-isolation -w /tmp/kuberank-llama-wheel \
  "$kuberank_wheels"/llama_cpp_python-*.tar.gz >"$kuberank_out/build.log" 2>&1 \
  || { tail -40 "$kuberank_out/build.log"; return 1 2>/dev/null || exit 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$kuberank_site" \
  /tmp/kuberank-llama-wheel/llama_cpp_python-*.whl
echo "built in $((SECONDS - kuberank_started)) s"
set +euo pipefail
