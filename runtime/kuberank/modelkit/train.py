"""Build the default reranker: MiniLM-L6 fine-tuned offline as a cross-encoder, then GGUF.

Pipeline: Python's stdlib documentation (``corpus.py`` → ``pairs.py``) and WordNet's noun
definitions (``wordnet.py`` → ``gloss_pairs.py``), half the training groups each → groups
graded by the bi-encoder teacher (``teacher.py``) → a BertForSequenceClassification
(num_labels=1, BERT pooler + classifier = llama.cpp's ``cls`` + ``cls.output``) trained on CPU →
HF directory → ``convert_hf_dir`` → ``kuberank-minilm-reranker.gguf``.

Reproducibility: fixed seed, ``torch.use_deterministic_algorithms``, and a fixed intra-op thread
count (``THREADS``; float sums can round differently when the work is split differently, so the
count is part of the recipe, not taken from the machine). Token type ids are all zero in training
because llama.cpp adds token-type row 0 to every token; the GGUF then scores exactly like torch.
Word/position embeddings stay frozen: the corpora cover a small part of the vocabulary, and
moving only the rows they touch would pull them away from the rest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kuberank.modelkit import facets as facet_module
from kuberank.modelkit import gloss_pairs as gloss_module
from kuberank.modelkit import pairs as pairs_module
from kuberank.modelkit import teacher as teacher_module
from kuberank.modelkit.build import minilm_source_dir
from kuberank.modelkit.convert import convert_hf_dir
from kuberank.modelkit.corpus import stdlib_corpus
from kuberank.modelkit.facets import facet_groups
from kuberank.modelkit.gloss_pairs import gloss_pairs, gloss_texts
from kuberank.modelkit.heldout import HARD_HELDOUT_PATH, leaked_into, load_heldout
from kuberank.modelkit.pairs import Pair, make_pairs
from kuberank.modelkit.paths import DEFAULT, DEFAULT_HF, models_dir
from kuberank.modelkit.progress import train_log
from kuberank.modelkit.teacher import Group, encode, grade_missing, mine_groups
from kuberank.modelkit.wordnet import NOUN_SHA256, Synset, load_nouns

HF_DIR = DEFAULT_HF
THREADS = 2
# Bump when code changes what a given Recipe trains (loss, mining, pair cutting): the cached
# model's fingerprint then no longer matches and ``build_default_model`` rebuilds it.
RECIPE_REVISION = 4
_PAIRS_KNOBS = ("MAX_PASSAGE_WORDS", "MAX_QUERY_WORDS", "MIN_PASSAGE_WORDS", "MAX_PER_TOPIC")
_GLOSS_KNOBS = ("MIN_DEFINITION_WORDS", "MAX_DEFINITION_WORDS", "MIN_CLUSTER", "MAX_CLUSTER",
                "NAMED_PASSAGE_RATE", "KEYWORD_QUERY_RATE")
_FACET_KNOBS = ("NAMED_POSITIVE_RATE", "NAMED_NEGATIVE_RATE", "LIST_ITEMS")
_TEACHER_KNOBS = ("GROUP_SIZE", "HARD_POOL", "SHORT_NEGATIVE_RATE", "POSITIVE_SENTENCE_RATE",
                  "HARD_SENTENCE_RATE", "MIN_SENTENCE_WORDS")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the weights; recorded next to the model."""

    seed: int = 7
    steps: int = 200
    groups_per_step: int = 4  # x GROUP_SIZE 4 = 16 pairs per AdamW step
    negative_pool: int = 1280  # passages hard negatives are mined from (≥ train queries)
    wordnet_share: float = 0.5  # share of training groups asking for a WordNet concept
    # Share of groups asking for one aspect of a concept (facets.py). Off by default, a trade:
    # at 0.5 (WordNet 0.25) seeds 7/8/9 gave heldout.jsonl 0.955/0.892/0.829 (now 0.973/0.937/
    # 0.910) and heldout_hard.jsonl 0.200/0.273/0.273 (now 0.091/0.109/0.082).
    facet_share: float = 0.0
    max_length: int = 64  # tokens per (query, passage) pair
    frozen_layers: int = 0  # lowest encoder layers kept as they are
    lr_encoder: float = 1.5e-4
    lr_head: float = 1e-3
    warmup: float = 0.08
    # Chosen by the mean over 5 seeds (benchmarks/screen_recipes.py, 40 recipes on a GPU): on
    # heldout.jsonl Python docs alone gave acc@1 0.937±0.013 at 200 steps, half WordNet
    # 0.960±0.012; more steps, WordNet shares of 0.75/1.0, a bigger mining pool, other learning
    # rates, batch 8, temperatures, margins, BCE weights, negatives that name the asked word and
    # WordNet's own labels did worse or no better. Seeds 7/8/9 of this recipe: 0.973/0.937/0.910.
    # On heldout_hard.jsonl (chance 0.2) only facet_share lifted a recipe above 0.15.
    teacher_temperature: float = 0.05  # cosine gap 0.05 = one logit unit of preference
    positive_margin: float = 0.05  # the true passage outranks every negative by this much
    bce_weight: float = 0.3  # pointwise term keeps the sign meaningful: relevant > 0 > not
    l2sp: float = 0.0  # pull of the encoder back to its pre-trained weights (L2-SP)


def recipe_fingerprint(recipe: Recipe) -> str:
    """Hash of what decides the weights, so a cached model built by another recipe is rebuilt."""
    facts = {"revision": RECIPE_REVISION, "threads": THREADS, "recipe": asdict(recipe),
             "pairs": {k: getattr(pairs_module, k) for k in _PAIRS_KNOBS},
             "teacher": {k: getattr(teacher_module, k) for k in _TEACHER_KNOBS},
             "gloss": {k: getattr(gloss_module, k) for k in _GLOSS_KNOBS},
             "facets": {k: getattr(facet_module, k) for k in _FACET_KNOBS}}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def cached_fingerprint(out_dir: Path) -> str | None:
    """The fingerprint recorded beside the model in ``out_dir``, if any."""
    try:
        info = json.loads((Path(out_dir) / HF_DIR / "training.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = info.get("fingerprint") if isinstance(info, dict) else None
    return value if isinstance(value, str) else None


def _fix_threads() -> None:
    """Same intra-op split everywhere, for the teacher's embeddings as for training."""
    import torch

    torch.set_num_threads(THREADS)


def _graded(pairs: Sequence[Pair], n_train: int, pool_size: int,
            rng: random.Random) -> list[Group]:
    """Teacher-graded groups for ``n_train`` pairs spread evenly over the mining pool.

    Spreading (rather than taking the first pairs) matters for WordNet, whose pairs come in
    clusters: the first 400 would cover only about a hundred families of concepts.
    """
    if n_train == 0:
        return []
    pool = list(pairs[: max(n_train, pool_size)])
    chosen = {len(pool) * i // n_train for i in range(n_train)}
    pool = [pool[i] for i in sorted(chosen)] + [p for i, p in enumerate(pool) if i not in chosen]
    queries = [p.query for p in pool[:n_train]]
    passages = [p.passage for p in pool]
    q_emb, p_emb = encode(queries), encode(passages)
    return grade_missing(mine_groups(queries, passages, q_emb, p_emb, rng), q_emb)


def _facet_groups(nouns: Sequence[Synset], n_train: int) -> list[Group]:
    """Aspect-question groups (``facets.py``) labelled by WordNet itself, not by the teacher.

    The teacher grades by shared words, the very habit these groups are there to break: with
    its grades held-out "hard" acc@1 was 0.182, with WordNet's answer as the label 0.236 (seed 7).
    """
    chosen = facet_groups(nouns)[:n_train] if n_train else []
    if len(chosen) < n_train:
        raise RuntimeError(f"wordnet gave {len(chosen)} aspect questions, recipe needs {n_train}")
    return [Group(g.query, g.passages, (1.0, *(0.0 for _ in g.passages[1:]))) for g in chosen]


def training_groups(recipe: Recipe) -> tuple[list[Group], dict[str, Any]]:
    """Teacher-graded groups the recipe trains on, plus facts pinning which corpora gave them.

    Two corpora, mined separately so negatives stay in their domain: Python's documentation
    (software prose) and WordNet definitions (everyday concepts, with sibling concepts as hard
    negatives); plus, when ``facet_share`` > 0, WordNet aspect questions. The groups are
    interleaved in a fixed pseudo-random order.
    """
    _fix_threads()
    corpus = stdlib_corpus()
    nouns = load_nouns()
    heldout = [*load_heldout(), *load_heldout(HARD_HELDOUT_PATH)]
    leaks = leaked_into(heldout, [*(d.text for d in corpus.docs), *gloss_texts(nouns)])
    if leaks:
        raise RuntimeError(f"held-out texts occur in the training corpus: {leaks[:3]}")
    doc_pairs, word_pairs = make_pairs(corpus.docs), gloss_pairs(nouns)
    n_train = recipe.steps * recipe.groups_per_step
    n_words = round(n_train * recipe.wordnet_share)
    n_facets = round(n_train * recipe.facet_share)
    n_docs = n_train - n_words - n_facets
    for name, have, need in (("python docs", len(doc_pairs), max(n_docs, recipe.negative_pool)),
                             ("wordnet", len(word_pairs), max(n_words, recipe.negative_pool))):
        if have < need:
            raise RuntimeError(f"{name} gave {have} pairs, recipe needs {need}")
    train_log(f"corpora: Python {corpus.python} stdlib docs ({len(corpus.docs)} texts, "
              f"{len(doc_pairs)} pairs), WordNet 3.0 nouns ({len(word_pairs)} pairs); "
              f"teacher-grading {n_docs} + {n_words} queries, {n_facets} aspect questions")
    started = time.monotonic()
    rng = random.Random(recipe.seed)
    groups = [*_graded(doc_pairs, n_docs, recipe.negative_pool, rng),
              *_graded(word_pairs, n_words, recipe.negative_pool, rng),
              *_facet_groups(nouns, n_facets)]
    groups.sort(key=lambda g: hashlib.sha256(g.query.encode()).hexdigest())
    train_log(f"teacher done in {time.monotonic() - started:.0f}s")
    info = {"corpus": "python-stdlib-docs + wordnet-3.0-nouns", "python": corpus.python,
            "corpus_sha256": corpus.digest(), "corpus_texts": len(corpus.docs),
            "wordnet_sha256": NOUN_SHA256, "skipped_modules": corpus.skipped,
            "pairs_available": {"python_docs": len(doc_pairs), "wordnet": len(word_pairs)},
            "train_queries": {"python_docs": n_docs, "wordnet": n_words,
                              "wordnet_aspects": n_facets}}
    return groups, info


def _loss(logits: Any, teacher: Any, recipe: Recipe) -> Any:
    """Listwise distillation from the teacher plus a light pointwise relevant/irrelevant term."""
    import torch
    from torch.nn import functional

    neg_max = teacher[:, 1:].max(dim=1).values
    boosted = teacher.clone()
    boosted[:, 0] = torch.maximum(teacher[:, 0], neg_max + recipe.positive_margin)
    target = functional.softmax(boosted / recipe.teacher_temperature, dim=1)
    log_probs = functional.log_softmax(logits, dim=1)
    listwise = functional.kl_div(log_probs, target, reduction="batchmean")
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1.0
    pointwise = functional.binary_cross_entropy_with_logits(logits, labels)
    return listwise + recipe.bce_weight * pointwise


def _lr_factor(step: int, recipe: Recipe) -> float:
    warm = max(1, int(recipe.steps * recipe.warmup))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (recipe.steps - step) / (recipe.steps - warm))


def fit(groups: Sequence[Group], recipe: Recipe, source: Path | None = None,
        device: str = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """Fine-tune MiniLM on ``groups``; returns (model, tokenizer, training facts).

    On the CPU the run is deterministic (the default model's build); ``device="cuda"`` is for
    screening recipes quickly, where bit-identical results are not needed.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(recipe.seed)
    _fix_threads()
    torch.use_deterministic_algorithms(device == "cpu")
    source = source or minilm_source_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    # llama.cpp's BERT computes GELU with the tanh approximation; training with the same function
    # makes the served GGUF score like its HF twin (erf GELU left differences up to 6e-3).
    model: Any = BertForSequenceClassification.from_pretrained(
        str(source), num_labels=1, hidden_act="gelu_pytorch_tanh")
    model.float().to(device)  # fp32 whatever the checkpoint holds
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    model.bert.embeddings.position_embeddings.weight.requires_grad_(False)
    model.bert.embeddings.token_type_embeddings.weight.requires_grad_(False)
    for layer in model.bert.encoder.layer[: recipe.frozen_layers]:
        layer.requires_grad_(False)
    head = [*model.bert.pooler.parameters(), *model.classifier.parameters()]
    head_ids = {id(p) for p in head}
    encoder = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    optimizer = torch.optim.AdamW([{"params": encoder, "lr": recipe.lr_encoder},
                                   {"params": head, "lr": recipe.lr_head}], weight_decay=0.01)
    base = [g["lr"] for g in optimizer.param_groups]
    anchors = [p.detach().clone() for p in encoder] if recipe.l2sp > 0 else []
    model.train()
    g_per = recipe.groups_per_step
    started, losses = time.monotonic(), []
    for step in range(recipe.steps):
        batch = groups[step * g_per:(step + 1) * g_per]
        firsts = [g.query for g in batch for _ in g.passages]
        seconds = [p for g in batch for p in g.passages]
        enc = tokenizer(firsts, seconds, truncation="only_second", max_length=recipe.max_length,
                        padding=True, return_tensors="pt").to(device)
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                       token_type_ids=torch.zeros_like(enc["input_ids"])).logits
        teacher = torch.tensor([g.teacher for g in batch], dtype=torch.float32, device=device)
        loss = _loss(logits.view(len(batch), -1), teacher, recipe)
        if anchors:
            drift = sum(((p - a) ** 2).sum() for p, a in zip(encoder, anchors, strict=True))
            loss = loss + recipe.l2sp * drift
        for group, lr in zip(optimizer.param_groups, base, strict=True):
            group["lr"] = lr * _lr_factor(step, recipe)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if device == "cpu" and ((step + 1) % 10 == 0 or step + 1 == recipe.steps):
            elapsed = time.monotonic() - started
            eta = elapsed / (step + 1) * (recipe.steps - step - 1)
            recent = sum(losses[-10:]) / len(losses[-10:])
            train_log(f"step {step + 1}/{recipe.steps} loss {recent:.4f} "
                      f"{elapsed / (step + 1):.2f}s/step ETA {eta:.0f}s")
    model.eval()
    model.config.architectures = ["BertForSequenceClassification"]
    facts = {"train_seconds": round(time.monotonic() - started, 1), "threads": THREADS,
             "torch": torch.__version__, "first_loss": losses[0], "final_loss": losses[-1]}
    return model, tokenizer, facts


def train(groups: Sequence[Group], recipe: Recipe, hf_dir: Path) -> dict[str, Any]:
    """Fine-tune on the CPU, save the HF directory (weights + tokenizer); returns the facts."""
    model, tokenizer, facts = fit(groups, recipe)
    model.save_pretrained(str(hf_dir))
    tokenizer.save_pretrained(str(hf_dir))
    return facts


def build_default_model(out_dir: Path, force: bool = False, recipe: Recipe | None = None) -> Path:
    """Write ``out_dir/kuberank-minilm-reranker.gguf`` (and its HF twin).

    Skipped when the model there records this recipe's fingerprint; rebuilt when it records
    another (or none), so a changed recipe never leaves a stale cached model behind.
    """
    out_dir = Path(out_dir)
    target = out_dir / DEFAULT
    recipe = recipe or Recipe()
    fingerprint = recipe_fingerprint(recipe)
    if target.is_file() and not force:
        if cached_fingerprint(out_dir) == fingerprint:
            train_log(f"{target} was built by this recipe; skipping (force to rebuild)")
            return target
        train_log(f"{target} was built by another recipe (or records none); rebuilding")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    groups, info = training_groups(recipe)
    staging = out_dir / f".{HF_DIR}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    info |= train(groups, recipe, staging)
    info |= {"recipe": asdict(recipe), "fingerprint": fingerprint,
             "total_seconds": round(time.monotonic() - started, 1)}
    (staging / "training.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    final = out_dir / HF_DIR
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    convert_hf_dir(final, target, dtype="f32")
    train_log(f"wrote {target} in {time.monotonic() - started:.0f}s total")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kuberank.modelkit.train",
                                     description="Fine-tune and write the default reranker GGUF.")
    parser.add_argument("--out", type=Path, default=models_dir(), help="output directory")
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    parser.add_argument("--steps", type=int, default=Recipe.steps, help="AdamW steps")
    args = parser.parse_args(argv)
    path = build_default_model(args.out, force=args.force, recipe=Recipe(steps=args.steps))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
