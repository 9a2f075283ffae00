"""Aspect questions about one concept, from WordNet's relations. Pure: synsets in, groups out.

The hard held-out set showed the reranker choosing passages that repeat the query's subject
over the one that answers it. These groups teach the opposite: a question asks for one aspect
of a concept (its parts, what it is part of, its kinds, its field, how the word is used), and
every wrong candidate is either another aspect of the same concept (often naming it) or the same
aspect of another concept. The subject's name appears on right and wrong passages alike, so
only the aspect decides. WordNet's relations are the labels (``train._facet_groups``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kuberank.modelkit.gloss_pairs import fraction, usable
from kuberank.modelkit.wordnet import Synset, word_senses

NAMED_POSITIVE_RATE = 0.3
NAMED_NEGATIVE_RATE = 0.7
LIST_ITEMS = 3


@dataclass(frozen=True)
class FacetGroup:
    """A question and its candidates; ``passages[0]`` answers it."""

    query: str
    passages: tuple[str, ...]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _listing(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


Render = Callable[[str], str]  # subject ("It" or "A giant panda") -> passage


def _facets(s: Synset, by_offset: dict[int, Synset]) -> dict[str, tuple[str, Render]]:
    """Aspect → (question, passage renderer) for the aspects WordNet records for ``s``."""
    head = s.words[0]

    def related(symbol: str) -> list[Synset]:
        return [by_offset[o] for sym, o in s.relations if sym == symbol and o in by_offset]

    out: dict[str, tuple[str, Render]] = {
        "definition": (f"What is {_a(head)}?", lambda subj: f"{subj} is {s.definition}."),
    }
    if parents := related("@"):
        parent = parents[0]
        out["kind"] = (f"What kind of thing is {_a(head)}?",
                       lambda subj: f"{subj} is a type of {parent.words[0]}: {parent.definition}.")
    if kinds := [k.words[0] for k in related("~")][:LIST_ITEMS]:
        out["types"] = (f"What types of {head} are there?",
                        lambda subj: ("Its varieties" if subj == "It" else f"Varieties of {head}")
                        + f" include {_listing(kinds)}.")
    if wholes := related("#p"):
        whole = wholes[0]
        out["part_of"] = (f"What is {_a(head)} part of?",
                          lambda subj: f"{subj} belongs to {_a(whole.words[0])}: "
                                       f"{whole.definition}.")
    if parts := [p.words[0] for p in related("%p")][:LIST_ITEMS]:
        out["parts"] = (f"What are the parts of {_a(head)}?",
                        lambda subj: f"{subj} has {_listing([_a(p) for p in parts])}.")
    if topics := related(";c"):
        topic = topics[0].words[0]
        out["topic"] = (f"In what field is the word {head} used?",
                        lambda subj: f"{subj} is a term from {topic}.")
    if s.examples:
        example = s.examples[0]
        out["usage"] = (f"How is the word {head} used in a sentence?",
                        lambda _subj: f'For instance: "{example}".')
    return out


def _subject(s: Synset, named: bool) -> str:
    return _a(s.words[0]).capitalize() if named else "It"


def facet_groups(synsets: Sequence[Synset]) -> list[FacetGroup]:
    """One group per (concept, recorded aspect), in a fixed pseudo-random order."""
    senses = word_senses(synsets)
    by_offset = {s.offset: s for s in synsets}
    concepts = sorted((s for s in synsets if s.hypernyms and usable(s, senses)),
                      key=lambda s: s.offset)
    facets = {s.offset: _facets(s, by_offset) for s in concepts}
    by_aspect: dict[str, list[Synset]] = {}
    for s in concepts:
        for aspect in facets[s.offset]:
            by_aspect.setdefault(aspect, []).append(s)
    groups: list[tuple[float, FacetGroup]] = []
    for s in concepts:
        mine = facets[s.offset]
        for aspect, (question, render) in mine.items():
            if aspect == "definition" or len(mine) < 3:
                continue
            key = f"{s.offset}:{aspect}"
            positive = render(_subject(s, fraction(f"p{key}") < NAMED_POSITIVE_RATE))
            others = sorted((a for a in mine if a != aspect), key=lambda a: fraction(key + a))
            negatives = [mine[a][1](_subject(s, fraction(f"n{key}{a}") < NAMED_NEGATIVE_RATE))
                         for a in others[:2]]
            pool = [c for c in by_aspect[aspect] if c.offset != s.offset]
            if not pool:
                continue
            other = pool[int(fraction(f"o{key}") * len(pool))]  # same aspect, other concept
            named = fraction(f"s{key}") < NAMED_POSITIVE_RATE
            negatives.append(facets[other.offset][aspect][1](_subject(other, named)))
            if len(set(negatives) | {positive}) < 4:
                continue
            groups.append((fraction(f"g{key}"), FacetGroup(question, (positive, *negatives))))
    return [g for _, g in sorted(groups, key=lambda pair: pair[0])]
