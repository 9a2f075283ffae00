"""The reranker server every RerankModel pod runs: llama.cpp rank pooling behind FastAPI."""
