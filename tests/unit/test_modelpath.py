"""Which paths name a model (/models/<name>/<rerank path>) and what is routed of them."""

from __future__ import annotations

import pytest
from kuberank.gateway.modelpath import split_model_path


@pytest.mark.parametrize(("path", "split"), [
    ("/models/minilm/rerank", ("minilm", "/rerank")),
    ("/models/minilm/v1/rerank", ("minilm", "/v1/rerank")),  # not model "minilm/v1"
    ("/models/minilm/v2/rerank", ("minilm", "/v2/rerank")),
    ("/models/minilm/reranking", ("minilm", "/rerank")),  # llama-server's spelling
    ("/models/minilm/v1/reranking", ("minilm", "/v1/rerank")),
    ("/models/BAAI/bge-reranker-v2-m3/rerank", ("BAAI/bge-reranker-v2-m3", "/rerank")),
    ("/models/v1/rerank", ("v1", "/rerank")),
    ("/models/minilm//rerank", ("minilm", "/rerank")),  # a base URL ending in a slash
    ("/models//rerank", None),  # no name
    ("/models/rerank", None),
    ("/models/minilm", None),
    ("/models/minilm/metrics", None),
    ("/v1/models/minilm", None),
    ("/v1/rerank", None),
])
def test_only_a_named_model_before_a_rerank_path_is_split(
    path: str, split: tuple[str, str] | None
) -> None:
    assert split_model_path(path) == split
