"""What the benchmarks share and that needs no llama.cpp: the query, the documents, percentiles,
a free port.

Kept free of llama_cpp and torch so a benchmark's helper process (transformers_rate.py) can use
it without loading both CUDA stacks into one process.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

from kuberank.modelkit import paths

QUERY = "which animals live in the bamboo forests of central china"


def documents(n: int, words: int = 90, vocab_file: Path | None = None) -> list[str]:
    """Seeded word soup from MiniLM's vocabulary: ~120-137 tokens per pair at 90 words."""
    rng = random.Random(7)
    vocab_file = vocab_file or paths.models_dir() / paths.MINILM_HF / "vocab.txt"
    vocab = vocab_file.read_text().split()[2000:12000]
    return [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(n)]


def percentile_ms(seconds: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of latencies in seconds, in milliseconds."""
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def free_port() -> int:
    """A loopback port nothing listens on now, for a server the benchmark starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
