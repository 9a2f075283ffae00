"""Progress lines of the default model's build, on stderr with one prefix.

Its own module because both the trainer and the WordNet fetch (which the trainer imports) report
under the same name.
"""

from __future__ import annotations

import sys


def train_log(message: str) -> None:
    print(f"[kuberank-train] {message}", file=sys.stderr, flush=True)
