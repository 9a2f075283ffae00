"""The converter's GGUF files load in real llama.cpp; bad inputs fail cleanly."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from gguf import GGUFReader, LlamaFileType
from kuberank.modelkit import cli
from kuberank.modelkit.build import build_tiny_hf, ensure_tiny, minilm_source_dir
from kuberank.modelkit.check import SAMPLE_PAIRS, LlamaRanker, compare
from kuberank.modelkit.convert import convert_hf_dir
from kuberank.modelkit.hparams import UnsupportedModelError
from kuberank.modelkit.wordnet import WORDNET_DEB

pytestmark = pytest.mark.runtime


def _field(reader: GGUFReader, key: str) -> object:
    return reader.get_field(key).contents()  # type: ignore[union-attr]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_model_is_a_rank_pooling_bert_gguf(tiny_model: Path) -> None:
    reader = GGUFReader(tiny_model)
    assert _field(reader, "general.architecture") == "bert"
    assert _field(reader, "bert.pooling_type") == 4
    assert _field(reader, "bert.attention.causal") is False
    names = {t.name for t in reader.tensors}
    assert {"cls.weight", "cls.bias", "cls.output.weight", "cls.output.bias"} <= names
    assert len(names) == 9 + 16 * 2


def test_tiny_model_scores_pairs_in_llama_cpp(tiny_model: Path) -> None:
    with LlamaRanker(tiny_model) as ranker:
        scores = [ranker.score(q, d) for q, d in SAMPLE_PAIRS]
        again = ranker.score(*SAMPLE_PAIRS[0])
    assert all(math.isfinite(s) for s in scores)
    assert len({round(s, 6) for s in scores}) == len(scores)
    assert again == scores[0]


def test_tiny_model_matches_transformers_on_its_hf_source(tmp_path: Path) -> None:
    hf_dir = tmp_path / "tiny-hf"
    hf_dir.mkdir()
    build_tiny_hf(hf_dir)
    gguf_path = convert_hf_dir(hf_dir, tmp_path / "tiny.gguf")
    results = compare(gguf_path, hf_dir, SAMPLE_PAIRS)
    assert all(r.tokens_match for r in results)
    assert max(r.diff for r in results) < 1e-3


def test_tiny_build_is_reproducible(tmp_path: Path, tiny_model: Path) -> None:
    rebuilt = ensure_tiny(tmp_path, lambda _msg: None)
    assert _sha256(rebuilt) == _sha256(tiny_model)


def test_ensure_skips_an_existing_model(tmp_path: Path) -> None:
    messages: list[str] = []
    first = ensure_tiny(tmp_path, messages.append)
    mtime = first.stat().st_mtime_ns
    ensure_tiny(tmp_path, messages.append)
    assert first.stat().st_mtime_ns == mtime
    assert messages[-1].endswith(": present")
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temp files left


def test_f16_conversion_is_smaller_and_scores_close_to_f32(
    tmp_path: Path, minilm_model: Path, minilm_hf_dir: Path
) -> None:
    f16 = convert_hf_dir(minilm_hf_dir, tmp_path / "minilm-f16.gguf", dtype="f16")
    assert _field(GGUFReader(f16), "general.file_type") == LlamaFileType.MOSTLY_F16
    assert f16.stat().st_size < 0.6 * minilm_model.stat().st_size
    with LlamaRanker(minilm_model) as ranker:
        full = [ranker.score(q, d) for q, d in SAMPLE_PAIRS]
    with LlamaRanker(f16) as ranker:
        half = [ranker.score(q, d) for q, d in SAMPLE_PAIRS]
    assert max(abs(a - b) for a, b in zip(full, half, strict=True)) < 2e-2


def test_bare_encoder_without_classifier_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.gguf"
    with pytest.raises(UnsupportedModelError, match=r"missing tensors: cls\.output\.bias"):
        convert_hf_dir(minilm_source_dir(), out)
    assert list(tmp_path.iterdir()) == []


def test_two_label_classifier_is_refused(tmp_path: Path, minilm_hf_dir: Path) -> None:
    hf_dir = tmp_path / "two-labels"
    shutil.copytree(minilm_hf_dir, hf_dir)
    config = json.loads((hf_dir / "config.json").read_text())
    config["id2label"] = {"0": "no", "1": "yes"}
    (hf_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="exactly one output label"):
        convert_hf_dir(hf_dir, tmp_path / "out.gguf")


def test_cli_convert_reports_a_missing_directory_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["convert", str(tmp_path / "nope"), str(tmp_path / "x.gguf")]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_cli_convert_writes_only_a_file_in_a_directory_that_exists(
    tmp_path: Path, minilm_hf_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file is written beside OUT and renamed over it: /dev/stdout became a 46 MB file, a
    link was replaced rather than written through, a missing directory was made."""
    link, target = tmp_path / "link.gguf", tmp_path / "target"
    target.write_text("kept")
    link.symlink_to(target)
    for out, said in ((link, "is not a regular file"), (tmp_path, "is not a regular file"),
                      (tmp_path / "no" / "such" / "x.gguf", "does not exist")):
        assert cli.main(["convert", str(minilm_hf_dir), str(out)]) == 2
        assert said in capsys.readouterr().err
    assert link.is_symlink() and target.read_text() == "kept"
    assert not (tmp_path / "no").exists()


def test_cli_refusals_are_one_line_and_exit_2_not_tracebacks(
    tmp_path: Path, minilm_hf_dir: Path, tiny_model: Path, headless_model: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad input ended in a traceback and exit 1, which for check is also "scores differ"."""
    broken = tmp_path / "broken-json"
    shutil.copytree(minilm_hf_dir, broken)
    (broken / "config.json").write_text("{oops")
    truncated = tmp_path / "truncated"
    shutil.copytree(minilm_hf_dir, truncated)
    (truncated / "model.safetensors").write_bytes(b"\x10" * 64)
    cases = [
        (["check", str(tmp_path / "missing.gguf"), str(minilm_hf_dir)], "does not exist"),
        (["check", str(headless_model), str(minilm_hf_dir)], "no classification head"),
        (["convert", str(broken), str(tmp_path / "a.gguf")], "JSONDecodeError"),
        (["convert", str(truncated), str(tmp_path / "b.gguf")], "SafetensorError"),
        (["build", "--out", str(tiny_model)], "error: "),
    ]
    for argv, said in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err, (argv, err)


def test_cli_build_without_a_reachable_wordnet_names_each_url_and_changes_nothing(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(empty))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:  # answers 404 to everything
        threading.Thread(target=server.serve_forever, daemon=True).start()
        mirror = f"http://127.0.0.1:{server.server_address[1]}/debian"
        monkeypatch.setenv("KUBERANK_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("KUBERANK_DEBIAN_MIRROR", mirror)
        before = sorted((p.name, p.stat().st_mtime_ns) for p in models_dir.iterdir())
        assert cli.main(["build", "--out", str(models_dir)]) == 2
        server.shutdown()
    err = capsys.readouterr().err
    assert "error: no pinned build of Debian's wordnet-base" in err
    for package in WORDNET_DEB.packages:
        assert f"{mirror}/{package.pool_path}: GET" in err
    assert "archive.debian.org" not in err  # a configured mirror is the only place asked
    assert not list((tmp_path / "cache").rglob("data.noun"))
    assert sorted((p.name, p.stat().st_mtime_ns) for p in models_dir.iterdir()) == before


def test_cli_convert_writes_a_loadable_gguf(tmp_path: Path, minilm_hf_dir: Path) -> None:
    out = tmp_path / "converted.gguf"
    assert cli.main(["convert", str(minilm_hf_dir), str(out)]) == 0
    with LlamaRanker(out) as ranker:
        assert math.isfinite(ranker.score("q", "d"))
