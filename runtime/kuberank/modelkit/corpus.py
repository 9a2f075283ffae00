"""The training corpus: the Python standard library's own documentation.

Chosen because it is offline, needs no network or apt state, and is byte-for-byte the same for
a given Python version, so the default model is reproducible. It covers software only; WordNet
(``wordnet.py``) brings the everyday concepts.

Frozen selection rule: top-level modules in ``sys.stdlib_module_names`` (sorted) and, for packages,
all their submodules (``pkgutil.walk_packages``, sorted), minus any dotted name with a private part
and those under ``SKIPPED`` (side effects on import, GUI toolkits, the test suite, codecs); from
each, the module docstring and the docstrings (``inspect.getdoc``) of public classes, functions
and class methods defined in it; plus every section of ``pydoc_data.topics`` (the language
reference as ``help()`` shows it). A module that fails to import is skipped, and recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import io
import json
import pkgutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType

SKIPPED = frozenset({
    "antigravity", "this",  # open a browser / print on import
    "idlelib", "tkinter", "turtle", "turtledemo",  # GUI toolkit, may be absent
    "test", "lib2to3", "ensurepip", "venv", "pydoc_data",  # tooling, not library prose
    "encodings",  # a hundred codec tables with boilerplate docstrings
})


def _selected(name: str) -> bool:
    parts = name.split(".")
    private = any(p.startswith("_") or p in ("test", "tests") for p in parts)
    return parts[0] not in SKIPPED and not private


def _module_names() -> list[str]:
    names: set[str] = set()
    for top in sys.stdlib_module_names:
        if not _selected(top):
            continue
        names.add(top)
        try:
            module = _import_quietly(top)
        except Exception:
            continue
        path = getattr(module, "__path__", None)
        if path is not None:
            for info in pkgutil.walk_packages(path, prefix=top + ".", onerror=lambda _: None):
                if _selected(info.name):
                    names.add(info.name)
    return sorted(names)


@dataclass(frozen=True)
class Doc:
    """One documentation text and what it documents."""

    source: str  # dotted name, or "topic:<name>" for language reference sections
    kind: str  # "module", "class", "function" or "topic"
    text: str


@dataclass
class Corpus:
    """The documents plus the facts that identify this corpus."""

    docs: list[Doc]
    python: str
    skipped: list[str] = field(default_factory=list)

    def digest(self) -> str:
        """SHA-256 over all texts, recorded with the model to pin which corpus was used."""
        h = hashlib.sha256()
        for doc in self.docs:
            h.update(doc.source.encode() + b"\0" + doc.text.encode() + b"\0")
        return h.hexdigest()


def _members(module: ModuleType) -> Iterator[Doc]:
    name = module.__name__
    for attr in sorted(vars(module)):
        if attr.startswith("_"):
            continue
        obj = getattr(module, attr)
        if getattr(obj, "__module__", None) != name:
            continue  # re-exports are documented where they are defined
        if inspect.isclass(obj):
            yield from _doc(f"{name}.{attr}", "class", obj)
            for meth in sorted(vars(obj)):
                if not meth.startswith("_") and inspect.isfunction(vars(obj)[meth]):
                    yield from _doc(f"{name}.{attr}.{meth}", "function", vars(obj)[meth])
        elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
            yield from _doc(f"{name}.{attr}", "function", obj)


def _doc(source: str, kind: str, obj: object) -> Iterator[Doc]:
    text = inspect.getdoc(obj)
    if text and text.strip():
        yield Doc(source, kind, text.strip())


def _import_quietly(name: str) -> ModuleType:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def stdlib_corpus() -> Corpus:
    """Collect the corpus by the frozen rule, in a fresh isolated interpreter.

    Libraries patch the standard library when imported (torch replaces ``inspect.getfile``,
    pytest ``sys.unraisablehook``), so collecting in this process would make the corpus depend
    on what was imported first. This file imports only the standard library, so it runs as a
    script under ``-I -S``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "corpus.json"
        subprocess.run([sys.executable, "-I", "-S", __file__, str(out)], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        data = json.loads(out.read_text(encoding="utf-8"))
    return Corpus(docs=[Doc(**d) for d in data["docs"]], python=data["python"],
                  skipped=data["skipped"])


def _collect() -> Corpus:
    docs: list[Doc] = []
    skipped: list[str] = []
    for name in _module_names():
        try:
            module = _import_quietly(name)
        except Exception:  # any import failure (missing C extension, platform) only skips it
            skipped.append(name)
            continue
        docs.extend(_doc(name, "module", module))
        docs.extend(_members(module))
    from pydoc_data.topics import topics

    docs.extend(Doc(f"topic:{key}", "topic", topics[key].strip()) for key in sorted(topics))
    return Corpus(docs=docs, python=sys.version.split()[0], skipped=skipped)


if __name__ == "__main__":
    corpus = _collect()
    Path(sys.argv[1]).write_text(json.dumps({
        "python": corpus.python, "skipped": corpus.skipped,
        "docs": [asdict(d) for d in corpus.docs]}), encoding="utf-8")
