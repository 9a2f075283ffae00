"""longest_first: how a pair over the model's room is split between query and document."""

from __future__ import annotations

import pytest
from kuberank.protocol.errors import Unprocessable
from kuberank.runtime.pairs import Limits, PairBuilder, longest_first, plain_layout

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("query", "document", "room", "kept"), [
    (10, 20, 100, (10, 20)),      # fits: nothing cut
    (10, 500, 100, (10, 90)),     # a short query stays whole, the document takes the rest
    (500, 10, 100, (90, 10)),     # a short document stays whole: a long query cannot crowd it out
    (500, 500, 100, (50, 50)),    # both long: halves
    (500, 500, 101, (50, 51)),
    (50, 60, 100, (50, 50)),      # the longer is cut first, down to the shorter's length
    (1, 1, 2, (1, 1)),
])
def test_the_longer_side_is_cut_first(query: int, document: int, room: int,
                                      kept: tuple[int, int]) -> None:
    assert longest_first(query, document, room) == kept


@pytest.mark.parametrize("room", range(2, 40))
def test_the_kept_tokens_fill_the_room_and_leave_each_side_one(room: int) -> None:
    for query in range(1, 50):
        for document in range(1, 50):
            q, d = longest_first(query, document, room)
            assert 1 <= q <= query and 1 <= d <= document
            assert q + d == min(room, query + document)


def test_a_query_that_tokenizes_to_nothing_is_refused_like_an_empty_one() -> None:
    """"\u200b" passes the text check (it is no whitespace to str.strip) yet holds no token:
    every document would be scored against no question at all."""
    def tokenize(text: str, special: bool) -> list[int]:
        return [ord(c) for c in text if c.isalnum()]

    builder = PairBuilder(plain_layout(101, 102, None), tokenize, Limits(max_pair_tokens=64))
    with pytest.raises(Unprocessable) as refused:
        builder.query("\u200b\u00ad", truncate=True)
    assert refused.value.code == "empty_query"
    assert builder.query("a\u200b", truncate=True).tokens == [ord("a")]
