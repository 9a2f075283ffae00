#!/usr/bin/env bash
# Build llama-cpp-python with CUDA (benchmarks/cuda_env.sh, which says what WHEELS must hold)
# and run benchmarks/bench_gpu.py, on a machine with an NVIDIA GPU and no package index.
#
#   WHEELS=DIR [OUT=DIR] [CUDA_ARCH=90] bash benchmarks/bench_gpu.sh [bench_gpu.py flags]
#
# OUT receives build.log, bench.log and gpu.json.
set -euo pipefail
source "$(dirname "$0")/cuda_env.sh"
set -euo pipefail
python3 "$kuberank_root/benchmarks/bench_gpu.py" --tokenizer "$kuberank_wheels/tokenizer" \
  --work /tmp/kuberank-bench --json "$kuberank_out/gpu.json" "$@" 2>&1 \
  | grep -v "special_eos_id\|Loading weights" | tee "$kuberank_out/bench.log"
