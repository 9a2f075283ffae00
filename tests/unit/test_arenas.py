"""The operator caps glibc's malloc arenas itself, unless the environment chose already."""

from __future__ import annotations

import os
import subprocess
import sys

PROGRAM = (
    "from kuberank.operator.arenas import limit_malloc_arenas\n"
    "print(limit_malloc_arenas())\n"
)


def _run(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env_extra
    return subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_arenas_are_capped_on_glibc() -> None:
    assert _run({}) == "True"  # this machine's Python runs on glibc


def test_a_choice_in_the_environment_wins() -> None:
    assert _run({"MALLOC_ARENA_MAX": "8"}) == "False"
