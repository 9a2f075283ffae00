"""Flags and KUBERANK_* environment variables configure the runtime the same way."""

from __future__ import annotations

import pytest
from kuberank.runtime.settings import load_settings
from pydantic import ValidationError

pytestmark = pytest.mark.runtime


def test_environment_sets_every_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"MODEL": "/m/x.gguf", "SERVED_NAME": "bge", "HOST": "127.0.0.1", "PORT": "9000",
           "THREADS": "3", "CTX_SIZE": "1024", "BATCH_SIZE": "256", "GPU_LAYERS": "-1",
           "FLASH_ATTN": "false", "MAX_DOCUMENTS": "50", "MAX_QUERY_TOKENS": "64",
           "MAX_DOCUMENT_TOKENS": "200", "OVERFLOW": "reject", "NORMALIZE": "true"}
    for key, value in env.items():
        monkeypatch.setenv(f"KUBERANK_{key}", value)
    s = load_settings([])
    assert (str(s.model), s.served_name, s.host, s.port, s.threads, s.ctx_size, s.batch_size,
            s.gpu_layers, s.flash_attn, s.max_documents, s.max_query_tokens,
            s.max_document_tokens, s.overflow, s.normalize) == (
        "/m/x.gguf", "bge", "127.0.0.1", 9000, 3, 1024, 256, -1, "off", 50, 64, 200,
        "reject", True)


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERANK_PORT", "9000")
    monkeypatch.setenv("KUBERANK_NORMALIZE", "true")
    s = load_settings(["--port", "9100", "--no-normalize", "--flash-attn", "auto"])
    assert (s.port, s.normalize, s.flash_attn) == (9100, False, "auto")


def test_defaults_serve_the_file_name_with_batch_equal_to_context() -> None:
    s = load_settings(["--model", "/m/bge-reranker.gguf"])
    assert s.effective_served_name == "bge-reranker"
    assert s.effective_batch_size == s.ctx_size == 512
    assert s.overflow == "truncate" and s.normalize is False


@pytest.mark.parametrize("argv", [["--overflow", "drop"], ["--port", "http"],
                                  ["--flash-attn", "maybe"], ["--max-documents", "0"]])
def test_invalid_settings_are_refused(argv: list[str]) -> None:
    with pytest.raises(ValidationError):
        load_settings(argv)
