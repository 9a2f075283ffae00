"""Aspect questions built from WordNet relations."""

from __future__ import annotations

import pytest
from kuberank.modelkit.facets import facet_groups
from kuberank.modelkit.wordnet import Synset

pytestmark = pytest.mark.unit


def synset(offset: int, word: str, definition: str, *relations: tuple[str, int],
           examples: tuple[str, ...] = ()) -> Synset:
    return Synset(offset, 6, (word,), definition, examples, relations)


VEHICLE = synset(1, "vehicle", "a conveyance that transports people or objects")
MACHINE = synset(6, "machine", "any mechanical or electrical device that transmits energy")
FURNITURE = synset(7, "furniture", "furnishings that make a room or area ready for use")
WHEEL = synset(3, "wheel", "a simple machine consisting of a circular frame", ("@", 6),
               ("#p", 2))
SEAT = synset(4, "saddle seat", "a seat for the rider of a horse or bicycle here", ("@", 7),
              ("#p", 8))
CAR = synset(2, "motorcar", "a motor vehicle with four wheels and an engine", ("@", 1),
             ("%p", 3), ("~", 5), examples=("he needs a motorcar to get to work",))
CAB = synset(5, "taxicab", "a car driven by a person whose job is to take passengers", ("@", 2))
BIKE = synset(8, "bicycle", "a wheeled vehicle that has two wheels and is moved by pedals",
              ("@", 1), ("%p", 4), ("~", 9), examples=("he rides his bicycle to school",))
TANDEM = synset(9, "tandem bicycle", "a bicycle with two sets of pedals and two seats here",
                ("@", 8))
ALL = [VEHICLE, MACHINE, FURNITURE, WHEEL, SEAT, CAR, CAB, BIKE, TANDEM]


def test_each_group_asks_one_aspect_and_puts_its_answer_first() -> None:
    groups = {g.query: g for g in facet_groups(ALL)}
    parts = groups["What are the parts of a motorcar?"]
    assert "has a wheel." in parts.passages[0]
    kinds = groups["What types of motorcar are there?"]
    assert "taxicab" in kinds.passages[0]
    usage = groups["How is the word motorcar used in a sentence?"]
    assert "get to work" in usage.passages[0]
    for group in groups.values():
        assert len(group.passages) == 4 and len(set(group.passages)) == 4


def test_wrong_candidates_are_other_aspects_or_other_concepts() -> None:
    group = next(g for g in facet_groups(ALL) if g.query == "What are the parts of a motorcar?")
    assert not any("has a wheel." in p for p in group.passages[1:])
    assert any("has a saddle seat." in p for p in group.passages[1:])  # the bicycle's parts


def test_groups_do_not_depend_on_input_order() -> None:
    assert facet_groups(ALL) == facet_groups(list(reversed(ALL)))
