"""Local file helpers: hashing, atomic links and copies into the cache directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

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
