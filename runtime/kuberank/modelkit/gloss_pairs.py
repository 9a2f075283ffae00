"""Query/passage pairs from WordNet noun senses, in clusters of siblings. Pure: synsets in.

A pair asks for a concept ("What is a giant panda?", or just "giant panda") and is answered by
its definition. Pairs come in clusters that share a parent concept (the pandas, the bears), so
when the teacher mines hard negatives from a pool of clusters it finds definitions of sibling
concepts: on-topic, similar words, wrong answer — the distractors real rankings must beat.

Only headwords with a single noun sense become queries ("mold" has five, so no query asks for
it), otherwise a sibling's definition could be just as right an answer. Passages name their
concept in half of the cases, so neither naming nor omitting the asked word gives the answer
away. Every choice hashes the synset, so the pairs do not depend on any random state.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

from kuberank.modelkit.pairs import Pair
from kuberank.modelkit.wordnet import EVERYDAY_LEXFILES, Synset, word_senses

MIN_DEFINITION_WORDS = 5
MAX_DEFINITION_WORDS = 40
MIN_CLUSTER = 3
MAX_CLUSTER = 6
NAMED_PASSAGE_RATE = 0.5
KEYWORD_QUERY_RATE = 0.3

_PLAIN_WORD = re.compile(r"^[A-Za-z][A-Za-z' -]*[A-Za-z]$")
_TAXONOMY = re.compile(r"\b(genus|family|order|subfamily|suborder|phylum)\b")
COUNTABLE_LEXFILES = frozenset({5, 6, 17, 18, 20})  # animal, artifact, object, person, plant


def fraction(key: str) -> float:
    """A stable number in [0, 1) for ``key`` (the pairs' only source of variety)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32


def usable(synset: Synset, senses: dict[str, int]) -> bool:
    head = synset.words[0]
    if synset.lexfile not in EVERYDAY_LEXFILES or not _PLAIN_WORD.match(head) or len(head) < 3:
        return False
    if _TAXONOMY.search(synset.definition) or (head[0].isupper() and synset.lexfile in (5, 20)):
        return False  # Latin taxa ("Ailurus") and glosses that only place one in a genus
    if senses.get(head.lower(), 0) != 1:
        return False
    return MIN_DEFINITION_WORDS <= len(synset.definition.split()) <= MAX_DEFINITION_WORDS


def _query(synset: Synset) -> tuple[str, str]:
    head = synset.words[0]
    if fraction(f"q{synset.offset}") < KEYWORD_QUERY_RATE:
        return head, "keyword"
    if head[0].isupper():
        return (f"Who was {head}?" if synset.lexfile == 18 else f"What is {head}?"), "question"
    if synset.lexfile not in COUNTABLE_LEXFILES:
        return f"What is {head}?", "question"  # populism, paella, erosion
    article = "an" if head[0] in "aeiou" else "a"
    return f"What is {article} {head}?", "question"


def _passage(synset: Synset) -> str:
    definition = synset.definition[0].upper() + synset.definition[1:]
    if fraction(f"p{synset.offset}") >= NAMED_PASSAGE_RATE:
        return f"{definition}."
    head = synset.words[0]
    name = head[0].upper() + head[1:]
    others = [w for w in synset.words[1:] if w.lower() != head.lower()][:2]
    also = f" (also {', '.join(others)})" if others else ""
    return f"{name}{also}: {synset.definition}."


def gloss_pairs(synsets: Sequence[Synset]) -> list[Pair]:
    """Pairs in clusters of siblings (clusters in a fixed pseudo-random order)."""
    senses = word_senses(synsets)
    children: dict[int, list[Synset]] = {}
    for synset in synsets:
        if synset.hypernyms and usable(synset, senses):
            children.setdefault(synset.hypernyms[0], []).append(synset)
    clusters = [sorted(members, key=lambda s: fraction(f"m{s.offset}"))[:MAX_CLUSTER]
                for members in children.values() if len(members) >= MIN_CLUSTER]
    clusters.sort(key=lambda c: fraction(f"c{c[0].offset}"))
    return [_pair(s) for cluster in clusters for s in cluster]


def _pair(synset: Synset) -> Pair:
    query, shape = _query(synset)
    return Pair(query, _passage(synset), f"wordnet:{synset.offset:08d}", shape)


def gloss_texts(synsets: Iterable[Synset]) -> list[str]:
    """Every definition, for the held-out leak check."""
    return [s.definition for s in synsets]
