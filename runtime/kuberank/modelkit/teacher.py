"""The bi-encoder teacher: MiniLM-L6's own sentence embeddings grade every training pair.

The cross-encoder starts from the same weights but with a random head, which ranks barely above
chance; the bi-encoder's cosine already ranks well. So the student learns to reproduce the
teacher's graded judgement over each group (positive, mined hard negatives, a random and
sometimes a near-empty passage), which transfers what the weights already know about meaning
rather than whatever is peculiar to the documentation corpus.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from kuberank.modelkit.build import minilm_source_dir
from kuberank.modelkit.pairs import first_sentence

GROUP_SIZE = 4
HARD_POOL = 12  # hard negatives are drawn from the teacher's top-k other passages
SHORT_NEGATIVE_RATE = 0.25  # share of groups whose last slot is a 1-3 word fragment
# Cutting passages to their first sentence varies length on both sides, so the student cannot
# learn "longer means relevant" and meets short on-topic distractors like real users send.
POSITIVE_SENTENCE_RATE = 0.3
HARD_SENTENCE_RATE = 0.5
MIN_SENTENCE_WORDS = 5

Matrix = npt.NDArray[np.float32]


@functools.cache
def _biencoder() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_source_dir()), device="cpu")


def encode(texts: Sequence[str], batch_size: int = 64) -> Matrix:
    """Unit-length sentence embeddings from the bi-encoder, offline (model loaded once)."""
    emb: Any = _biencoder().encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(emb, dtype=np.float32)


@dataclass(frozen=True)
class Group:
    """One query and its candidate passages (first is the positive) with teacher cosines."""

    query: str
    passages: tuple[str, ...]
    teacher: tuple[float, ...]


def _fragment(text: str, rng: random.Random) -> str:
    words = text.split()
    return " ".join(words[: rng.randint(1, 3)])


def _maybe_sentence(text: str, rate: float, rng: random.Random) -> str | None:
    """The first sentence of ``text`` with probability ``rate``, if it is a real sentence."""
    if rng.random() >= rate:
        return None
    sentence = first_sentence(text)
    return sentence if sentence != text and len(sentence.split()) >= MIN_SENTENCE_WORDS else None


def mine_groups(queries: Sequence[str], passages: Sequence[str], q_emb: Matrix, p_emb: Matrix,
                rng: random.Random) -> list[Group]:
    """Groups for pairs ``(queries[i], passages[i])``; pure apart from the seeded ``rng``."""
    sims = q_emb @ p_emb.T
    groups: list[Group] = []
    for i, query in enumerate(queries):
        order = [int(j) for j in np.argsort(-sims[i], kind="stable")
                 if passages[int(j)] != passages[i]][:HARD_POOL]
        chosen = rng.sample(order, GROUP_SIZE - 2)
        texts, scores = [], []
        for j, rate in ((i, POSITIVE_SENTENCE_RATE), *((j, HARD_SENTENCE_RATE) for j in chosen)):
            cut = _maybe_sentence(passages[j], rate, rng)
            texts.append(cut or passages[j])
            scores.append(float(sims[i, j]) if cut is None else float("nan"))
        other = rng.randrange(len(passages))
        while passages[other] == passages[i]:
            other = rng.randrange(len(passages))
        if rng.random() < SHORT_NEGATIVE_RATE:
            texts.append(_fragment(passages[other], rng))
            scores.append(float("nan"))  # graded in one batch by grade_missing
        else:
            texts.append(passages[other])
            scores.append(float(sims[i, other]))
        groups.append(Group(query, tuple(texts), tuple(scores)))
    return groups


def grade_missing(groups: list[Group], q_emb: Matrix) -> list[Group]:
    """Fill in teacher cosines for cut passages and fragments (encoded in one batch)."""
    todo = [(g, k) for g, group in enumerate(groups) for k, s in enumerate(group.teacher)
            if s != s]
    if not todo:
        return groups
    f_emb = encode([groups[g].passages[k] for g, k in todo])
    out = list(groups)
    for (g, k), emb in zip(todo, f_emb, strict=True):
        teacher = list(out[g].teacher)
        teacher[k] = float(q_emb[g] @ emb)
        out[g] = Group(out[g].query, out[g].passages, tuple(teacher))
    return out
