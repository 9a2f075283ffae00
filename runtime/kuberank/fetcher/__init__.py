"""kuberank-fetch: puts a model file into the cache volume before the runtime starts."""
