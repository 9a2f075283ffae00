"""Flags and KUBERANK_* environment variables configure the runtime the same way."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from kuberank.runtime.cli import parse_settings
from kuberank.runtime.settings import EngineChoices, engine_choices, load_settings
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
    assert engine_choices(s, offloaded=False, cpus=2).batch_size == s.ctx_size == 512
    assert s.overflow == "truncate" and s.normalize is False


def test_engine_defaults_are_the_measured_ones_for_cpu_and_gpu() -> None:
    s = load_settings([])
    # CPU: one pair per decode; one single-threaded context per CPU, up to four, then the
    # threads are shared out.
    assert engine_choices(s, offloaded=False, cpus=1) == EngineChoices("on", 1, 512, 1, 1)
    assert engine_choices(s, offloaded=False, cpus=2) == EngineChoices("on", 1, 512, 2, 1)
    assert engine_choices(s, offloaded=False, cpus=16) == EngineChoices("on", 1, 512, 4, 4)
    assert engine_choices(s, offloaded=False, cpus=7) == EngineChoices("on", 1, 512, 4, 1)
    # GPU: 8 pairs per decode, with room for 8 pairs of a full context each, 4 contexts.
    assert engine_choices(s, offloaded=True, cpus=16) == EngineChoices("auto", 8, 4096, 4, 4)
    assert engine_choices(s, offloaded=True, cpus=2) == EngineChoices("auto", 8, 4096, 4, 1)
    long_context = load_settings(["--ctx-size", "8192"])
    assert engine_choices(long_context, offloaded=True, cpus=8) == EngineChoices(
        "auto", 8, 8192, 4, 2)


def test_explicit_engine_settings_win_over_the_defaults() -> None:
    s = load_settings(["--flash-attn", "off", "--max-batch-pairs", "4", "--contexts", "3"])
    assert engine_choices(s, offloaded=True, cpus=6) == EngineChoices("off", 4, 2048, 3, 2)
    assert engine_choices(s, offloaded=False, cpus=6) == EngineChoices("off", 4, 2048, 3, 2)
    sized = load_settings(["--max-batch-pairs", "4", "--batch-size", "1000"])
    assert engine_choices(sized, offloaded=True, cpus=4) == EngineChoices("auto", 4, 1000, 4, 1)
    single = load_settings(["--max-batch-pairs", "1", "--flash-attn", "on"])
    assert engine_choices(single, offloaded=True, cpus=4) == EngineChoices("on", 1, 512, 4, 1)
    # --threads is the total: one thread means one context unless more are asked for.
    one = load_settings(["--threads", "1"])
    assert engine_choices(one, offloaded=False, cpus=16) == EngineChoices("on", 1, 512, 1, 1)
    eight = load_settings(["--threads", "8", "--contexts", "2"])
    assert engine_choices(eight, offloaded=False, cpus=2) == EngineChoices("on", 1, 512, 2, 4)


def test_queue_holds_the_largest_request_by_default() -> None:
    assert load_settings([]).effective_max_queued_pairs == 8192
    assert load_settings(["--max-documents", "10000"]).effective_max_queued_pairs == 10000
    assert load_settings(["--max-queued-pairs", "64", "--max-documents", "64"]
                         ).effective_max_queued_pairs == 64


@pytest.mark.parametrize("argv", [["--overflow", "drop"], ["--port", "http"],
                                  ["--flash-attn", "maybe"], ["--max-documents", "0"],
                                  ["--max-queued-pairs", "10", "--max-documents", "11"],
                                  ["--max-batch-pairs", "257"], ["--schedule", "random"],
                                  ["--contexts", "0"], ["--contexts", "17"],
                                  ["--batch-size", str(2**32 + 512)], ["--ctx-size", "200000"],
                                  ["--shutdown-seconds", "-1"]])
def test_invalid_settings_are_refused(argv: list[str]) -> None:
    with pytest.raises(ValidationError):
        load_settings(argv)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--max-documents", "0"], {},
         "--max-documents (KUBERANK_MAX_DOCUMENTS): Input should be greater than or equal to 1"),
        ([], {"KUBERANK_OVERFLOW": "drop"},
         "--overflow (KUBERANK_OVERFLOW): Input should be 'truncate' or 'reject'"),
        (["--served-name", " "], {},
         "--served-name (KUBERANK_SERVED_NAME): a served name must not be blank"),
        (["--served-name", "a\nb"], {},
         "--served-name (KUBERANK_SERVED_NAME): a served name must not contain control"),
        ([], {"KUBERANK_SERVED_NAME": "x" * 201},
         "--served-name (KUBERANK_SERVED_NAME): a served name has at most 200 characters"),
        (["--max-queued-pairs", "10", "--max-documents", "11"], {},
         "settings: --max-queued-pairs (KUBERANK_MAX_QUEUED_PAIRS, 10) must be at least "
         "--max-documents (KUBERANK_MAX_DOCUMENTS, 11)"),
    ],
    ids=["flag-out-of-range", "env-not-a-choice", "blank-name", "name-with-a-newline",
         "name-too-long", "queue-smaller-than-a-request"],
)
def test_bad_settings_exit_2_with_one_line_naming_the_setting(
    argv: list[str], env: dict[str, str], message: str, settings_refusal: Callable[..., str]
) -> None:
    assert settings_refusal(parse_settings, argv, env).startswith(
        f"kuberank-runtime: error: {message}")


@pytest.mark.parametrize(("argv", "preset", "seen"), [
    (["--gpu-layers", "-1"], None, "EAGER"),
    (["--gpu-layers", "8"], None, "EAGER"),
    ([], None, None),
    (["--gpu-layers", "-1"], "LAZY", "LAZY"),
], ids=["all-layers", "some-layers", "cpu", "a-person's-choice-wins"])
def test_a_gpu_runtime_loads_every_cuda_kernel_before_it_is_ready(
    argv: list[str], preset: str | None, seen: str | None, tmp_path: Path
) -> None:
    """CUDA reads CUDA_MODULE_LOADING once, at its first call: the runtime's own main sets it
    before its engine starts, so the warm-up loads every kernel rather than only the ones its
    one shape uses (measured: README, "Endpoints")."""
    probe = ("import os, sys\nfrom kuberank.runtime import cli\n"
             "try:\n    cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print('CUDA_MODULE_LOADING=' + os.environ.get('CUDA_MODULE_LOADING', '-'))\n")
    env = {k: v for k, v in os.environ.items()
           if k != "CUDA_MODULE_LOADING" and not k.startswith("KUBERANK_")}
    if preset is not None:
        env["CUDA_MODULE_LOADING"] = preset
    done = subprocess.run(
        [sys.executable, "-c", probe, "--model", str(tmp_path / "missing.gguf"),
         "--host", "127.0.0.1", "--port", "0", *argv],
        env=env, capture_output=True, text=True, timeout=120)
    assert "missing.gguf does not exist" in done.stderr  # it ran main, which ended at the load
    assert done.stdout.strip().splitlines()[-1] == f"CUDA_MODULE_LOADING={seen or '-'}"


def test_a_missing_default_model_says_how_to_build_it(tmp_path: Path) -> None:
    """A fresh machine with no --model: the line named the missing file and stopped there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERANK_")}
    env["KUBERANK_CACHE"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-m", "kuberank.runtime", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=120)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1
    assert "does not exist" in last and "`kuberank-models build` writes the embedded" in last
