"""Build the token sequence of one query+document pair, within the limits, without llama.cpp.

The layout follows llama-server's `format_prompt_rerank`: the GGUF's `rerank` chat template with
`{query}`/`{document}` substituted and special tokens parsed when the model has one, otherwise
`[BOS]? query [EOS]? [SEP]? document [EOS]?` by the vocab's add-bos/eos/sep flags (EOS falls back
to SEP when the vocab has none). Both become prefix · query · middle · document · suffix, so
truncation cuts inside the query or document and always keeps the pair's closing tokens.

Token counts are settled here, before anything reaches `llama_decode`: a non-causal model cannot
split a sequence across micro-batches and llama.cpp aborts the process on an oversized one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from kuberank.protocol.errors import PayloadTooLarge, Unprocessable

Tokenize = Callable[[str, bool], list[int]]
"""(text, parse_special) -> token ids, without BOS/EOS."""

Direction = Literal["right", "left"]


@dataclass(frozen=True)
class PairLayout:
    prefix: list[int]
    middle: list[int]
    suffix: list[int]
    template: str | None = None  # when set, an untruncated pair is tokenized from the whole text
    parse_special: bool = False  # how query and document text are tokenized

    @property
    def overhead(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)


def plain_layout(bos: int | None, eos: int | None, sep: int | None) -> PairLayout:
    """`[BOS] q [EOS] [SEP] d [EOS]`, each special present only when the vocab asks for it."""
    def opt(t: int | None) -> list[int]:
        return [] if t is None else [t]
    return PairLayout(prefix=opt(bos), middle=opt(eos) + opt(sep), suffix=opt(eos))


def template_layout(template: str, tokenize: Tokenize) -> PairLayout:
    """Split a `rerank` chat template at its placeholders (query must come before document)."""
    q_at, d_at = template.find("{query}"), template.find("{document}")
    if q_at < 0 or d_at < q_at or template.count("{document}") != 1:
        raise ValueError("rerank chat template must contain {query} before one {document}")
    before, between = template[:q_at], template[q_at + len("{query}"):d_at]
    after = template[d_at + len("{document}"):]
    return PairLayout(
        prefix=tokenize(before, True) if before else [],
        middle=tokenize(between, True) if between else [],
        suffix=tokenize(after, True) if after else [],
        template=template, parse_special=True,
    )


@dataclass(frozen=True)
class Limits:
    max_pair_tokens: int
    max_query_tokens: int | None = None
    max_document_tokens: int | None = None


@dataclass(frozen=True)
class PreparedQuery:
    text: str
    tokens: list[int]
    truncated: bool


@dataclass(frozen=True)
class Pair:
    tokens: list[int]
    truncated: bool


class PairBuilder:
    def __init__(self, layout: PairLayout, tokenize: Tokenize, limits: Limits) -> None:
        if layout.overhead + 2 > limits.max_pair_tokens:
            raise ValueError(f"max pair tokens {limits.max_pair_tokens} leaves no room for text")
        self.layout = layout
        self.tokenize = tokenize
        self.limits = limits

    def query(self, text: str, *, truncate: bool) -> PreparedQuery:
        """Tokenize the query once per request; leave at least one token for each document."""
        room = self.limits.max_pair_tokens - self.layout.overhead - 1
        cap = min(room, self.limits.max_query_tokens or room)
        tokens, over = self._bounded(text, cap, "right")
        if not tokens:  # the text check let it through: a zero-width space, a control character
            raise Unprocessable("query must contain text this model reads (it tokenizes to "
                                "nothing: only invisible or control characters)",
                                code="empty_query")
        if over and not truncate:
            raise PayloadTooLarge(f"query is longer than {cap} tokens", code="query_too_long")
        return PreparedQuery(text, tokens, over)

    def pair(
        self,
        query: PreparedQuery,
        document: str,
        *,
        truncate: bool,
        direction: Direction = "right",
        max_tokens_per_doc: int | None = None,
    ) -> Pair:
        """The pair's tokens; over the limits it is cut (``truncate``, or a client that set
        ``max_tokens_per_doc`` and so asked for cuts) or refused with 413."""
        text_room = self.limits.max_pair_tokens - self.layout.overhead
        own_cap = min(text_room - 1, self.limits.max_document_tokens or text_room)
        cuts = truncate or max_tokens_per_doc is not None
        doc, over = self._bounded(document, min(own_cap, max_tokens_per_doc or own_cap),
                                  direction)
        if over and not cuts:
            raise PayloadTooLarge(f"document is longer than {own_cap} tokens",
                                  code="document_too_long")
        query_tokens = query.tokens
        if len(query_tokens) + len(doc) > text_room:
            if not cuts:
                raise PayloadTooLarge(
                    f"document is longer than {text_room - len(query_tokens)} tokens with this "
                    f"query", code="document_too_long")
            keep_query, keep_doc = longest_first(len(query_tokens), len(doc), text_room)
            query_tokens = query_tokens[:keep_query]
            doc = doc[:keep_doc] if direction == "right" else doc[len(doc) - keep_doc:]
            over = True
        lay = self.layout
        if lay.template is not None and not over and not query.truncated:
            whole = fill_template(lay.template, query.text, document)
            exact = self.tokenize(whole, True)
            if len(exact) <= self.limits.max_pair_tokens:
                return Pair(exact, False)
        tokens = lay.prefix + query_tokens + lay.middle + doc + lay.suffix
        return Pair(tokens, over or query.truncated)

    def _bounded(self, text: str, cap: int, direction: Direction) -> tuple[list[int], bool]:
        """The first (or last) `cap` tokens of `text` and whether it had more.

        Tokenizes growing slices of the text instead of all of it, so a 10 MB document costs
        about as much as a short one. A slice yielding more than `cap + 1` tokens settles the
        first `cap`: the token at the cut may be damaged, the earlier ones are not.
        """
        span = 8 * (cap + 2) + 64
        parse = self.layout.parse_special
        while True:
            whole = span >= len(text)
            piece = text if whole else (text[:span] if direction == "right" else text[-span:])
            tokens = self.tokenize(piece, parse)
            if whole and len(tokens) <= cap:
                return tokens, False
            if whole or len(tokens) > cap + 1:
                return (tokens[:cap] if direction == "right" else tokens[-cap:]), True
            span *= 4


def fill_template(template: str, query: str, document: str) -> str:
    """The template with its first ``{query}`` and its ``{document}`` filled in one pass, so a
    query that itself says "{document}" (or a document "{query}") is left as the user wrote it."""
    q_at, d_at = template.find("{query}"), template.find("{document}")
    return (template[:q_at] + query + template[q_at + len("{query}"):d_at] + document
            + template[d_at + len("{document}"):])


def longest_first(query_tokens: int, document_tokens: int, room: int) -> tuple[int, int]:
    """Tokens kept of query and document when together they pass ``room``: the longer is cut
    first (transformers' ``longest_first``, what sentence-transformers and TEI rank with), so a
    long query cannot squeeze every document down to a token or two and tie their scores."""
    if query_tokens + document_tokens <= room:
        return query_tokens, document_tokens
    half = room // 2
    if query_tokens <= half:
        return query_tokens, room - query_tokens
    if document_tokens <= room - half:
        return room - document_tokens, document_tokens
    return half, room - half
