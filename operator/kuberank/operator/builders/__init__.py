"""Pure manifest builders: (spec, settings) -> dict. No kopf, no Kubernetes client."""
