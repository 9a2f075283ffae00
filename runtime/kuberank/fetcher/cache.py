"""Where fetched files live, so that one cache volume can serve many pods and models.

A RerankModel's ``spec.cache`` claim is written by every replica of every model that mounts it.
Files are kept under what identifies their content (a URL's file by its SHA-256, a Hugging Face
file by repository and revision), and each key is fetched holding a lock file: a pod that starts
while another fetches the same key waits for it and then finds the file ready (or resumes the
partial file of a pod that died).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger("kuberank.fetch")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(part: str) -> str:
    return _UNSAFE.sub("--", part).strip(".-") or "_"


def url_entry(sha256: str) -> Path:
    """The cache entry of a URL source: its file is named by content."""
    return Path("url") / _safe(sha256.lower())


def hf_entry(repo: str, revision: str) -> Path:
    """The cache entry of a Hugging Face source ('@' cannot occur in either safe part)."""
    return Path("hf") / f"{_safe(repo)}@{_safe(revision)}"


@contextmanager
def exclusive(cache: Path, entry: Path) -> Iterator[Path]:
    """Hold ``entry``'s lock (waiting, with a log line, while another pod holds it); yields the
    entry's directory."""
    locks = cache / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(locks / f"{entry.parent.name}-{entry.name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("another pod is fetching %s into the shared cache; waiting for it", entry)
        lock.acquire()
    try:
        yield cache / entry
    finally:
        lock.release()
