"""The hand-written held-out relevance sets and the ranking metrics computed on them.

Both files hold one query per line with one ``relevant`` passage and three or more plausible
``irrelevant`` ones, on everyday topics (animals, places, science, software, cooking, health,
history, sports, arts, household):

- ``data/heldout.jsonl`` (111 queries): distractors are mostly about other subjects;
- ``data/heldout_hard.jsonl`` (110 queries, four distractors each): every distractor is about the
  query's own subject and shares its words but answers another question, while the relevant
  passage paraphrases; written blind to the models, never tuned on.

Written for evaluation only: ``leaked_into`` proves none of these texts occurs in the training
corpora (Python's documentation and WordNet's definitions).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

HELDOUT_PATH = Path(__file__).with_name("data") / "heldout.jsonl"
HARD_HELDOUT_PATH = HELDOUT_PATH.with_name("heldout_hard.jsonl")


@dataclass(frozen=True)
class Item:
    """One query; ``documents[0]`` is the relevant passage, the rest are distractors."""

    topic: str
    query: str
    documents: tuple[str, ...]


@dataclass(frozen=True)
class Scores:
    """Ranking quality over a set of items."""

    accuracy_at_1: float
    mrr: float
    n: int


def load_heldout(path: Path = HELDOUT_PATH) -> list[Item]:
    """Parse the JSONL set; raises ValueError on a malformed line."""
    items: list[Item] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        irrelevant = row.get("irrelevant")
        if not isinstance(irrelevant, list) or len(irrelevant) < 3:
            raise ValueError(f"{path}:{number}: needs at least three irrelevant passages")
        items.append(Item(str(row["topic"]), str(row["query"]),
                          (str(row["relevant"]), *map(str, irrelevant))))
    return items


def rank_of_relevant(scores: Sequence[float]) -> int:
    """1-based rank of document 0; ties count against it (a constant scorer scores badly)."""
    return 1 + sum(1 for s in scores[1:] if s >= scores[0])


def evaluate(items: Iterable[Item],
             score: Callable[[str, Sequence[str]], Sequence[float]]) -> Scores:
    """Accuracy@1 and mean reciprocal rank of the relevant passage under ``score``."""
    ranks = [rank_of_relevant(score(item.query, item.documents)) for item in items]
    if not ranks:
        raise ValueError("no items to evaluate")
    return Scores(sum(r == 1 for r in ranks) / len(ranks), sum(1 / r for r in ranks) / len(ranks),
                  len(ranks))


def _normalized(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def leaked_into(items: Iterable[Item], corpus_texts: Iterable[str]) -> list[str]:
    """Held-out queries and relevant passages that occur verbatim (normalized) in the corpus."""
    haystack = "\n".join(_normalized(t) for t in corpus_texts)
    probes = [t for item in items for t in (item.query, item.documents[0])]
    return [t for t in probes if _normalized(t) in haystack]
