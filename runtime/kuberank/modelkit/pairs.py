"""Query/passage pairs cut from documentation texts. Pure: text in, pairs out.

Three shapes, so the student sees both statement-like and question-like queries:
- ``summary``: a docstring's first paragraph is the query, the rest of it the passage (the
  passage never repeats the query, so matching needs meaning, not copied words);
- ``sentence``: in a one-paragraph text or a reference section, the first sentence is the query
  and the sentences after it the passage;
- ``question``: "What is X?" for a class or module, answered by its whole description.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from kuberank.modelkit.corpus import Doc

MAX_PASSAGE_WORDS = 44
MAX_QUERY_WORDS = 24
MIN_PASSAGE_WORDS = 8
MAX_PER_TOPIC = 40

_SENTENCE_END = re.compile(r"(?<=[a-z0-9)][.!?])\s+(?=[A-Z])")
_CODE_LINE = re.compile(r"^\s*(>>>|\.\.\.|\$ |[-=~^*]{3,}|[|:] )")


@dataclass(frozen=True)
class Pair:
    """A query and the passage that answers it."""

    query: str
    passage: str
    source: str
    shape: str


def _prose(text: str) -> list[str]:
    """Paragraphs with code, tables and rulers removed and whitespace collapsed."""
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.splitlines() if not _CODE_LINE.match(ln)]
        para = " ".join(" ".join(lines).split())
        if para and _looks_like_prose(para):
            paragraphs.append(para)
    return paragraphs


def _looks_like_prose(text: str) -> bool:
    letters = sum(c.isalpha() or c == " " for c in text)
    return letters >= 0.85 * len(text) and len(text.split()) >= 3


def _clip(text: str, words: int) -> str:
    parts = text.split()
    return text if len(parts) <= words else " ".join(parts[:words])


def _sentences(paragraph: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(paragraph) if s]


def first_sentence(text: str) -> str:
    """The text up to its first sentence end (all of it when there is none)."""
    return _sentences(text)[0] if text else text


def _pair(query: str, passage: str, doc: Doc, shape: str) -> Pair | None:
    if not 3 <= len(query.split()) <= MAX_QUERY_WORDS:
        return None
    if len(passage.split()) < MIN_PASSAGE_WORDS:
        return None
    return Pair(query, _clip(passage, MAX_PASSAGE_WORDS), doc.source, shape)


def _doc_pairs(doc: Doc) -> Iterator[Pair | None]:
    paragraphs = _prose(doc.text)
    if not paragraphs:
        return
    if doc.kind == "topic":
        for para in paragraphs[:MAX_PER_TOPIC]:
            sentences = _sentences(para)
            if len(sentences) >= 2:
                yield _pair(sentences[0], " ".join(sentences[1:]), doc, "sentence")
        return
    if len(paragraphs) >= 2:
        yield _pair(paragraphs[0], " ".join(paragraphs[1:]), doc, "summary")
    else:
        sentences = _sentences(paragraphs[0])
        if len(sentences) >= 2:
            yield _pair(sentences[0], " ".join(sentences[1:]), doc, "sentence")
    if doc.kind in ("class", "module"):
        name = doc.source.rsplit(".", 1)[-1]
        question = f"What is the {name} module?" if doc.kind == "module" else f"What is {name}?"
        yield _pair(question, " ".join(paragraphs), doc, "question")


def _order_key(pair: Pair) -> str:
    """A fixed pseudo-random order that does not depend on dict or set iteration."""
    return hashlib.sha256(f"{pair.source}\0{pair.query}".encode()).hexdigest()


def make_pairs(docs: Iterable[Doc]) -> list[Pair]:
    """All usable pairs, one per distinct query, in a fixed pseudo-random order."""
    seen: set[str] = set()
    pairs: list[Pair] = []
    for doc in docs:
        for pair in _doc_pairs(doc):
            if pair is None or pair.query.lower() in seen:
                continue
            seen.add(pair.query.lower())
            pairs.append(pair)
    return sorted(pairs, key=_order_key)
