"""Condition reasons the operator writes into a RerankModel's status and the gateway acts on:
one spelling for both sides of that contract (every reason is in docs/troubleshooting.md)."""

from __future__ import annotations

# Degraded: pods Pending for these may still start (a node autoscaler adds a GPU node, a claim
# binds), or pods on a node that stopped reporting may be ready again when it comes back (or be
# evicted and start elsewhere), so the gateway holds requests for a waking model through them.
INSUFFICIENT_GPU = "InsufficientGPU"
CLAIM_NOT_READY = "ClaimNotReady"
UNSCHEDULABLE = "Unschedulable"
NODE_NOT_READY = "NodeNotReady"
PENDING = frozenset({INSUFFICIENT_GPU, CLAIM_NOT_READY, UNSCHEDULABLE, NODE_NOT_READY})

# Degraded: some of the model's aliases reach another model. It serves all the same (Ready
# stays True): no reason to refuse a request, nor to tell a client its model is failing.
ALIAS_SHADOWED = "AliasShadowed"
SERVING = frozenset({ALIAS_SHADOWED})

# Available=False: no replica is ready yet (the pods fetch or load the model).
NO_REPLICAS_READY = "NoReplicasReady"

# Degraded: failures only someone's change ends (the spec edited, an object in the way removed,
# a model file replaced): a 503 for such a model carries no Retry-After. Other failures (an
# image or a file the network cannot fetch yet, a quota) may clear by themselves.
INVALID_SPEC = "InvalidSpec"
NAME_CONFLICT = "NameConflict"
CRASH_LOOP = "CrashLoop"
CHILD_REFUSED = "ChildRefused"  # the API server refused a child; the operator does not retry
NEEDS_A_CHANGE = frozenset({INVALID_SPEC, NAME_CONFLICT, CRASH_LOOP, CHILD_REFUSED})
