"""``kuberank-models``: build the generated models, or convert an HF cross-encoder to GGUF."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from kuberank.modelkit import paths
from kuberank.modelkit.build import ensure_minilm, ensure_tiny
from kuberank.modelkit.convert import convert_hf_dir
from kuberank.modelkit.hparams import UnsupportedModelError
from kuberank.modelkit.wordnet import CorpusUnavailableError, noun_data_path
from kuberank.modelkit.writer import DTYPES
from kuberank.runtime.model import ModelLoadError, RankModel
from safetensors import SafetensorError


class UsageError(Exception):
    """An argument the command cannot use as given."""


def _log(message: str) -> None:
    print(f"kuberank-models: {message}", file=sys.stderr, flush=True)


def _build_default(out_dir: Path) -> None:
    """Build the fine-tuned default model when the trainer (issue 7) is installed."""
    try:
        train = importlib.import_module("kuberank.modelkit.train")
    except ImportError as err:  # the trainer needs the dev extra (torch, transformers)
        _log(f"default model trainer not available ({err}); skipping the default model")
        return
    # Fetched even when the model is cached: the model's tests check the held-out sets against
    # this corpus, and tests never download.
    _log(f"WordNet nouns: {noun_data_path()}")
    _log(f"default model: {train.build_default_model(out_dir)}")


def build(out_dir: Path) -> int:
    ensure_tiny(out_dir, _log)
    ensure_minilm(out_dir, _log)
    _build_default(out_dir)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kuberank-models", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the test and default models (skips existing files)")
    b.add_argument("--out", type=Path, default=None,
                   help="output directory (default: $KUBERANK_CACHE/models)")
    c = sub.add_parser("convert", help="convert an HF Bert- or XLMRobertaForSequenceClassification "
                       "dir (one label) to a rank GGUF")
    c.add_argument("hf_dir", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--dtype", choices=DTYPES, default="f32")
    k = sub.add_parser("check", help="compare a GGUF's scores with transformers on its HF dir")
    k.add_argument("gguf", type=Path)
    k.add_argument("hf_dir", type=Path)
    k.add_argument("--tolerance", type=float, default=1e-3)
    return p


def check(gguf: Path, hf_dir: Path, tolerance: float) -> int:
    """Exit 0 when every sample pair tokenizes identically and scores within ``tolerance``."""
    from kuberank.modelkit.check import SAMPLE_PAIRS, compare

    # The runtime's own load checks first (rank pooling, one-output head): scores that match
    # transformers say nothing of a file the runtime refuses.
    RankModel(gguf).close()
    results = compare(gguf, hf_dir, SAMPLE_PAIRS)
    for r in results:
        print(f"{r.llama:+.6f} {r.transformers:+.6f} diff={r.diff:.2e} "
              f"tokens={'same' if r.tokens_match else 'DIFFERENT'}  {r.query[:40]!r}")
    worst = max(r.diff for r in results)
    ok = worst < tolerance and all(r.tokens_match for r in results)
    print(f"max |diff| = {worst:.3e} over {len(results)} pairs: {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "build":
            return build(args.out or paths.models_dir())
        if args.command == "check":
            return check(args.gguf, args.hf_dir, args.tolerance)
        _writable_file(args.out)
        out = convert_hf_dir(args.hf_dir, args.out, dtype=args.dtype)
        _log(f"wrote {out}")
        return 0
    except (UsageError, UnsupportedModelError, CorpusUnavailableError, ModelLoadError) as err:
        _log(f"error: {err}")
        return 2
    except (OSError, ValueError, SafetensorError) as err:
        # A path, JSON, safetensors or tokenizer that is not what the command needs: one line,
        # as for the cases above, and not check's "scores differ" status.
        _log(f"error: {type(err).__name__}: {err}")
        return 2


def _writable_file(out: Path) -> None:
    """convert writes a file beside OUT and renames it over OUT: a link, device or directory
    there would be replaced (/dev/stdout became a 46 MB file), a missing directory made."""
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise UsageError(f"{out} exists and is not a regular file (a directory, link or "
                         "device): give the path of a file to write")
    if not out.parent.is_dir():
        raise UsageError(f"directory {out.parent} does not exist")


if __name__ == "__main__":
    sys.exit(main())
