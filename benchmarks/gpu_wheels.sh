#!/usr/bin/env bash
# Fetch, where a package index is reachable, what benchmarks/cuda_env.sh needs on a GPU machine
# that has none: the llama-cpp-python sdist this checkout's .venv runs, wheels of the runtime's
# pure-Python dependencies at the same versions for that machine's Python, and tokenizer/ (the
# MiniLM vocabulary the benchmarks' models use).
#
#   bash benchmarks/gpu_wheels.sh DIR [PYTHON_VERSION]     (PYTHON_VERSION of the GPU machine: 3.12)
#
# Run after scripts/setup.sh (it reads versions from .venv and the tokenizer from the model cache).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:?usage: gpu_wheels.sh DIR [PYTHON_VERSION]}"
python_version="${2:-3.12}"
venv="$root/.venv/bin/python"
models="${KUBERANK_CACHE:-$HOME/.cache/kuberank}/models"
mkdir -p "$dir"

# What the runtime imports beyond what a CUDA image with torch and transformers carries.
packages=(fastapi opentelemetry-api starlette uvicorn httptools pydantic pydantic-core
          pydantic-settings python-dotenv annotated-types typing-inspection typing-extensions gguf
          diskcache)
pins=()
for name in "${packages[@]}" llama-cpp-python; do
  version="$("$venv" -m pip show "$name" 2>/dev/null | awk '/^Version:/ {print $2}')"
  [[ -n "$version" ]] || { echo "gpu_wheels: $name is not installed in .venv (run scripts/setup.sh)" >&2; exit 1; }
  pins+=("$name==$version")
done
llama_pin="${pins[-1]}"
unset 'pins[-1]'

platforms=()
for n in 17 27 28 31 34; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
"$venv" -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" \
  --implementation cp "${platforms[@]}" --platform manylinux2014_x86_64 -d "$dir" "${pins[@]}"
"$venv" -m pip download -q --no-deps --no-binary=:all: -d "$dir" "$llama_pin"

# The sdist (~77 MB) is over what a device call carries (64 MiB): drop what building the
# library never reads (vocabulary GGUFs for llama.cpp's tests, docs, media, benchmark logs, the
# web UI), keeping the file name pip builds it from.
sdist="$(ls "$dir"/llama_cpp_python-*.tar.gz)"
unpacked="$(mktemp -d)"
tar xzf "$sdist" -C "$unpacked"
vendor="$(echo "$unpacked"/llama_cpp_python-*/vendor/llama.cpp)"
rm -rf "$vendor"/models/*.gguf "$vendor"/docs "$vendor"/media "$vendor"/benches "$vendor"/tools/ui
tar czf "$sdist" -C "$unpacked" "$(basename "$(dirname "$(dirname "$vendor")")")"
rm -rf "$unpacked"

mkdir -p "$dir/tokenizer"
for file in vocab.txt tokenizer.json tokenizer_config.json special_tokens_map.json config.json; do
  cp "$models/minilm-l6-reranker-hf/$file" "$dir/tokenizer/"
done
du -sh "$dir"
