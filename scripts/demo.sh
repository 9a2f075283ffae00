#!/usr/bin/env bash
# From nothing to ranked results on this machine (root, Linux): a local cluster whose node really
# runs pods (tools/nodeagent), `helm install` of the chart, a RerankModel serving the default model
# from a local file server, an ApiKey, and the curl that reranks through the gateway.
#   bash scripts/demo.sh          # leaves everything running; `bash scripts/demo.sh down` stops it
set -euo pipefail
cd "$(dirname "$0")/.."
export KUBERANK_CACHE="${KUBERANK_CACHE:-$HOME/.cache/kuberank}"
state="$KUBERANK_CACHE/demo"
model_file="${DEMO_MODEL_FILE:-kuberank-minilm-reranker.gguf}"
ns=demo
say() { printf '\n==> %s\n' "$*" >&2; }

stop_pid() { [ -f "$state/$1.pid" ] && kill "$(cat "$state/$1.pid")" 2>/dev/null; rm -f "$state/$1.pid"; }
if [ "${1:-up}" = down ]; then
  stop_pid fileserver; stop_pid nodeagent; sleep 3
  .venv/bin/python tools/localcluster.py down --state "$state/cluster"
  rm -rf "$state/node/pods"  # the stopped pods' folders and logs
  exit 0
fi

say "Set-up (idempotent: venv, control plane binaries, models)"
bash scripts/setup.sh >&2
export PATH="$KUBERANK_CACHE/bin:$PATH"  # kubectl and helm, built beside the control plane
[ -f "$KUBERANK_CACHE/models/$model_file" ] || { echo "missing $KUBERANK_CACHE/models/$model_file" >&2; exit 1; }
mkdir -p "$state"

say "Local cluster (etcd, kube-apiserver, controller-manager, scheduler, kwok)"
kubeconfig="$(.venv/bin/python tools/localcluster.py up --state "$state/cluster")"
export KUBECONFIG="$kubeconfig"
helm="$KUBERANK_CACHE/bin/helm"

say "Node agent: node 'agent-node' runs pods as processes on bridge kr0 (10.250.0.0/24)"
if ! { [ -f "$state/nodeagent.pid" ] && kill -0 "$(cat "$state/nodeagent.pid")" 2>/dev/null; }; then
  setsid .venv/bin/python -m tools.nodeagent --kubeconfig "$kubeconfig" --state-dir "$state/node" \
    > "$state/nodeagent.log" 2>&1 &
  echo $! > "$state/nodeagent.pid"
fi
kubectl wait --for=condition=Ready node/agent-node --timeout=60s >&2 || \
  until kubectl get node agent-node >/dev/null 2>&1; do sleep 1; done

say "Model file server on 10.250.0.1:8765 (reachable from pod namespaces)"
if ! { [ -f "$state/fileserver.pid" ] && kill -0 "$(cat "$state/fileserver.pid")" 2>/dev/null; }; then
  setsid .venv/bin/python -m http.server 8765 --bind 10.250.0.1 --directory "$KUBERANK_CACHE/models" \
    > "$state/fileserver.log" 2>&1 &
  echo $! > "$state/fileserver.pid"
fi
sha="$(sha256sum "$KUBERANK_CACHE/models/$model_file" | cut -d' ' -f1)"

say "helm install kuberank (namespace kuberank-system, Pod Security restricted)"
kubectl create namespace kuberank-system --dry-run=client -o yaml | kubectl apply -f - >&2
kubectl label namespace kuberank-system pod-security.kubernetes.io/enforce=restricted --overwrite >&2
"$helm" upgrade --install kr charts/kuberank -n kuberank-system --wait --timeout 180s \
  --set gateway.replicas=1 \
  --set-string 'operator.nodeSelector.kuberank\.io/node-agent=true' \
  --set-string 'gateway.nodeSelector.kuberank\.io/node-agent=true' >&2

say "RerankModel 'minilm' and ApiKey 'demo' in namespace $ns"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >&2
kubectl apply -n "$ns" -f - >&2 <<YAML
apiVersion: kuberank.io/v1alpha1
kind: RerankModel
metadata:
  name: minilm
spec:
  source:
    url:
      url: http://10.250.0.1:8765/$model_file
      sha256: $sha
  resources:
    gpus: 1
  scheduling:
    nodeSelector:
      kuberank.io/node-agent: "true"
  engine:
    threads: 1
---
apiVersion: kuberank.io/v1alpha1
kind: ApiKey
metadata:
  name: demo
spec:
  models: ["minilm"]
YAML
began=$SECONDS
kubectl wait -n "$ns" --for=condition=Ready rerankmodel/minilm --timeout=300s >&2
say "RerankModel Ready in $((SECONDS - began))s"
until kubectl get secret -n "$ns" demo-key >/dev/null 2>&1; do sleep 1; done
key="$(kubectl get secret -n "$ns" demo-key -o jsonpath='{.data.api-key}' | base64 -d)"
gw="$(kubectl get pods -n kuberank-system -l app.kubernetes.io/component=gateway \
  -o jsonpath='{.items[0].status.podIP}')"

say "Rerank through the gateway:"
cmd="curl -s http://$gw:8080/v1/rerank -H 'Authorization: Bearer $key' -H 'Content-Type: application/json' \
-d '{\"model\": \"minilm\", \"query\": \"What is a panda?\", \"documents\": [\"hi\", \"it is a bear\", \"The giant panda is a bear species endemic to China.\"]}'"
echo "$cmd"
for _ in $(seq 30); do out="$(eval "$cmd")" && [[ "$out" == *results* ]] && break; sleep 1; done
echo "$out"
cat > "$state/env" <<ENV
export KUBECONFIG=$kubeconfig
# helm (and the control plane's binaries) as set-up built them, for README's helm commands:
export PATH=$KUBERANK_CACHE/bin:\$PATH
# The gateway's address now (it changes when a helm upgrade replaces the pod):
export GW=\$(kubectl get pods -n kuberank-system -l app.kubernetes.io/component=gateway \\
  -o jsonpath='{.items[0].status.podIP}'):8080
ENV
say "For kubectl, helm and the gateway's address in your shell: source $state/env
    Pod logs (this node agent serves no kubelet API, so no kubectl logs): $state/node/pods/*/logs/
    Stop everything: bash scripts/demo.sh down"
