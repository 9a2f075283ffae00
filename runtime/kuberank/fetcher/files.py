"""Local file helpers: hashing, atomic links and copies into the cache directory."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from kuberank.fetcher.errors import FetchError

CHUNK = 1 << 20


def sha256_of(path: Path, h: hashlib._Hash | None = None) -> hashlib._Hash:
    """Hash a file's bytes into `h` (a fresh sha256 when None)."""
    h = h or hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h


def point_link(dest: Path, link_name: str, target: Path) -> Path:
    """Make dest/link_name a symlink to target, replacing any old link atomically."""
    link = dest / link_name
    if link.resolve() == target.resolve() and link.is_symlink():
        return link
    rel = os.path.relpath(target, dest) if target.is_relative_to(dest) else str(target)
    tmp = dest / f".{link_name}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(rel)
    os.replace(tmp, link)
    return link


def copy_into(source: Path, dest: Path) -> Path:
    """Copy a file into dest via a .part file, so a crash never leaves a half file in place."""
    if not source.is_file():
        raise FetchError(f"{source} does not exist or is not a file; check spec.source.pvc.path")
    final = dest / source.name
    if final.exists() and final.stat().st_size == source.stat().st_size:
        return final
    part = final.with_name(final.name + ".part")
    shutil.copyfile(source, part)
    os.replace(part, final)
    return final
