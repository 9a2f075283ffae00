"""The default model really ranks: held-out quality through llama.cpp, as the runtime serves it.

The model is built by ``build_default_model`` on first use (minutes on 2 cores) and cached in
``$KUBERANK_CACHE/models``; ``scripts/setup.sh`` normally builds it beforehand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kuberank.modelkit import paths
from kuberank.modelkit.corpus import stdlib_corpus
from kuberank.modelkit.gloss_pairs import gloss_texts
from kuberank.modelkit.heldout import HARD_HELDOUT_PATH, Item, evaluate, leaked_into, load_heldout
from kuberank.modelkit.scorers import Scorer, gguf_scorer, transformers_scorer
from kuberank.modelkit.train import (
    HF_DIR,
    Recipe,
    build_default_model,
    cached_fingerprint,
    recipe_fingerprint,
    train,
    training_groups,
)
from kuberank.modelkit.wordnet import load_nouns

pytestmark = pytest.mark.runtime

# Measured (benchmarks/eval_default_model.py, Python 3.11.7, torch 2.15 CPU): ours 0.973 / 0.986
# on heldout.jsonl; MiniLM bi-encoder cosine 1.000 / 1.000; same weights with a random head
# 0.189 / 0.498. Other seeds on the same data gave 0.937 / 0.968 and 0.910 / 0.952, so the floor
# leaves room for another CPU's rounding. (heldout_hard.jsonl is reported by the benchmark, not
# asserted: every MiniLM cross-encoder recipe screened stays below chance on it.)
MIN_ACCURACY_AT_1 = 0.88
MIN_MRR = 0.93

PANDA_QUERY = "What is a panda?"


@pytest.fixture(scope="module")
def default_model() -> Path:
    return build_default_model(paths.models_dir())


@pytest.fixture(scope="module")
def llama_score(default_model: Path) -> Iterator[Scorer]:
    with gguf_scorer(default_model) as score:
        yield score


@pytest.fixture(scope="module")
def heldout() -> list[Item]:
    return load_heldout()


@pytest.fixture(scope="module")
def hard_heldout() -> list[Item]:
    return load_heldout(HARD_HELDOUT_PATH)


def test_heldout_sets_have_100_queries_each_with_three_distractors(
    heldout: list[Item], hard_heldout: list[Item]
) -> None:
    for items in (heldout, hard_heldout):
        assert len(items) >= 100
        assert len({item.query for item in items}) == len(items)
        assert all(len(item.documents) >= 4 for item in items)
        assert {"animals", "places", "science", "software", "cooking"} <= {i.topic for i in items}
    assert not {i.query.lower() for i in heldout} & {i.query.lower() for i in hard_heldout}


def test_heldout_texts_never_occur_in_the_training_corpora(
    heldout: list[Item], hard_heldout: list[Item]
) -> None:
    corpora = [*(doc.text for doc in stdlib_corpus().docs), *gloss_texts(load_nouns())]
    assert leaked_into([*heldout, *hard_heldout], corpora) == []


def test_leak_check_catches_a_heldout_query_copied_into_the_corpus(heldout: list[Item]) -> None:
    corpus = ["Some docstring.", f"Intro. {heldout[3].query.upper()} More text."]
    assert leaked_into(heldout, corpus) == [heldout[3].query]


def test_heldout_loader_rejects_an_item_with_too_few_distractors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"topic": "t", "query": "q", "relevant": "r",
                               "irrelevant": ["a", "b"]}) + "\n")
    with pytest.raises(ValueError, match="three irrelevant"):
        load_heldout(bad)


def test_default_model_ranks_heldout_relevant_passages_first(
    llama_score: Scorer, heldout: list[Item]
) -> None:
    result = evaluate(heldout, llama_score)
    assert result.accuracy_at_1 >= MIN_ACCURACY_AT_1, result
    assert result.mrr >= MIN_MRR, result


def test_default_model_puts_the_giant_panda_passage_first_for_the_panda_query(
    llama_score: Scorer, heldout: list[Item]
) -> None:
    panda = next(item for item in heldout if item.query == PANDA_QUERY)
    scores = llama_score(panda.query, panda.documents)
    assert panda.documents[0].startswith("The giant panda (Ailuropoda melanoleuca)")
    assert max(range(len(scores)), key=scores.__getitem__) == 0, scores
    assert scores[0] > 0, "the relevant passage should get a positive raw score"


def test_default_model_gguf_scores_equal_its_transformers_twin(
    default_model: Path, llama_score: Scorer, heldout: list[Item]
) -> None:
    torch_score = transformers_scorer(default_model.parent / HF_DIR)
    for item in heldout[:5]:
        expected = torch_score(item.query, item.documents)
        # llama.cpp (flash attention, ggml's f32 kernels) sums in another order than torch;
        # scores of a few units then agree to a few thousandths, and the ranking is the same.
        assert llama_score(item.query, item.documents) == pytest.approx(expected, abs=5e-3)


def test_building_again_reuses_the_cached_model(default_model: Path) -> None:
    before = default_model.stat().st_mtime_ns
    assert build_default_model(default_model.parent) == default_model
    assert default_model.stat().st_mtime_ns == before


def test_training_twice_with_one_recipe_gives_identical_weights(tmp_path: Path) -> None:
    recipe = Recipe(steps=2, negative_pool=64)
    groups, _ = training_groups(recipe)
    train(groups, recipe, tmp_path / "a")
    train(groups, recipe, tmp_path / "b")
    a, b = (tmp_path / d / "model.safetensors" for d in "ab")
    assert a.read_bytes() == b.read_bytes()


def test_a_cached_model_built_by_another_recipe_is_rebuilt(tmp_path: Path) -> None:
    old, new = Recipe(steps=2, negative_pool=64), Recipe(steps=3, negative_pool=64)
    built = build_default_model(tmp_path, recipe=old)
    before = built.stat().st_mtime_ns
    assert build_default_model(tmp_path, recipe=old).stat().st_mtime_ns == before
    assert build_default_model(tmp_path, recipe=new) == built
    assert built.stat().st_mtime_ns != before
    assert cached_fingerprint(tmp_path) == recipe_fingerprint(new)
    info = json.loads((tmp_path / HF_DIR / "training.json").read_text())
    assert info["recipe"]["steps"] == 3
