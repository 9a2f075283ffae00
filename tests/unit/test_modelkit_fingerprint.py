"""The recipe fingerprint that decides whether a cached default model is still current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kuberank.modelkit.train import HF_DIR, Recipe, cached_fingerprint, recipe_fingerprint

pytestmark = pytest.mark.unit


def test_equal_recipes_have_equal_fingerprints() -> None:
    assert recipe_fingerprint(Recipe()) == recipe_fingerprint(Recipe())


def test_changing_any_recipe_field_changes_the_fingerprint() -> None:
    base = recipe_fingerprint(Recipe())
    assert recipe_fingerprint(Recipe(steps=Recipe.steps + 1)) != base
    assert recipe_fingerprint(Recipe(lr_encoder=Recipe.lr_encoder / 2)) != base


def test_cached_fingerprint_reads_the_value_recorded_beside_the_model(tmp_path: Path) -> None:
    (tmp_path / HF_DIR).mkdir()
    (tmp_path / HF_DIR / "training.json").write_text(json.dumps({"fingerprint": "abc"}))
    assert cached_fingerprint(tmp_path) == "abc"


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"recipe": {}}),
                                     json.dumps(["fingerprint"]), json.dumps({"fingerprint": 3})])
def test_cached_fingerprint_is_none_when_missing_or_malformed(
    tmp_path: Path, content: str | None
) -> None:
    if content is not None:
        (tmp_path / HF_DIR).mkdir()
        (tmp_path / HF_DIR / "training.json").write_text(content)
    assert cached_fingerprint(tmp_path) is None
