#!/usr/bin/env bash
# Idempotent set-up of everything kuberank needs on a fresh machine of this kind:
# the Python environment (llama-cpp-python compiled once, then reused from pip's wheel cache),
# the Go-built control plane + kwok + helm, promtool, and the generated test and default models.
# Caches live outside the repo in $KUBERANK_CACHE (default ~/.cache/kuberank).
set -euo pipefail
cd "$(dirname "$0")/.."
export KUBERANK_CACHE="${KUBERANK_CACHE:-$HOME/.cache/kuberank}"
mkdir -p "$KUBERANK_CACHE"

step() { printf '\n==> %s\n' "$*" >&2; }

step "Python environment (.venv)"
if [ ! -x .venv/bin/python ]; then
  python3.11 -m venv .venv
fi
stamp=".venv/.kuberank-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # The images' install script (llama.cpp compiled once, then reused from pip's wheel cache).
  bash images/install.sh .venv/bin/python runtime,operator,gateway,dev --editable
  touch "$stamp"
fi

step "Control plane binaries (kube-apiserver, etcd, controller-manager, scheduler, kubectl, kwok, helm)"
bash tools/controlplane/build.sh

step "promtool (checks and unit-tests the chart's alerting rules)"
bash tools/promtool/build.sh >/dev/null

step "Generated models (tiny test reranker, MiniLM cross-encoders)"
.venv/bin/kuberank-models build --out "$KUBERANK_CACHE/models"
