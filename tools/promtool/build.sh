#!/usr/bin/env bash
# Build Prometheus' promtool from the Go module proxy into $KUBERANK_CACHE/bin, so the tests can
# check and unit-test the chart's alerting rules with Prometheus' own rule engine.
# `go install …@version` refuses this module (its go.mod has exclude directives), so the module
# is downloaded and built as the main module from a writable copy. Idempotent: a stamp keyed on
# the version and Go makes a warm run take milliseconds. Prints the binary's path on stdout.
set -euo pipefail

cache="${KUBERANK_CACHE:-$HOME/.cache/kuberank}"
bin="$cache/bin"
PROMETHEUS_MODULE_VERSION="${PROMETHEUS_MODULE_VERSION:-v0.307.3}"  # Prometheus 3.7.3
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"

log() { printf '[promtool] %s\n' "$*" >&2; }

stamp_text="prometheus=$PROMETHEUS_MODULE_VERSION $(go env GOVERSION) $(sha256sum "$0" | cut -c1-16)"
stamp="$bin/.kuberank-promtool-stamp"
mkdir -p "$bin"
exec 9>"$bin/.promtool.lock"
flock 9
if [ -x "$bin/promtool" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_text" ]; then
  log "up to date ($stamp_text)"
  echo "$bin/promtool"
  exit 0
fi

start=$SECONDS
work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
log "downloading github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION"
dir="$(cd "$work" && go mod download -json "github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
log "building promtool (about 3 minutes on 2 cores the first time)"
(cd "$work/src" && go build -trimpath -ldflags "-s -w" -o "$bin/promtool.new" ./cmd/promtool)
mv "$bin/promtool.new" "$bin/promtool"
echo "$stamp_text" > "$stamp"
log "built in $((SECONDS - start)) s"
echo "$bin/promtool"
