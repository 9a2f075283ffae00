"""The rerank wire API (dialects, validation, response shaping, errors); free of llama.cpp."""
