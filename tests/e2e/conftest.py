"""E2E fixtures live in e2ekit.py (importable by the tests); re-exported here for pytest."""

from e2ekit import agent_node, kubectl, model_server

__all__ = ["agent_node", "kubectl", "model_server"]
