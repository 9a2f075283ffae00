"""A node agent for the local test cluster: the kubelet's job, for our own images' commands.

Pods bound to its Node run as local processes, each pod in its own network namespace with an
address on bridge kr0 (10.250.0.0/24). Run as root: `python -m tools.nodeagent --kubeconfig K`.
"""
