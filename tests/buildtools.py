"""The tools the tests build for themselves from Go modules (helm with the control plane,
promtool), each by its idempotent build script: the path, built on first use, cached after."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@functools.cache
def _built(script: str) -> Path:
    """The last line the build script prints: where the tool (or its folder) now is."""
    out = subprocess.run(["bash", str(REPO / "tools" / script)], capture_output=True, text=True,
                         timeout=1800, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def helm() -> str:
    return str(_built("controlplane/build.sh") / "helm")


def promtool() -> str:
    return str(_built("promtool/build.sh"))
