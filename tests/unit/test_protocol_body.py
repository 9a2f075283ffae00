"""inflate: compressed request bodies, their members, their cap, and what may follow them."""

from __future__ import annotations

import gzip
import os
import zlib

import pytest
from kuberank.protocol.body import content_coding, inflate, transfer_coding_refusal
from kuberank.protocol.errors import (
    BadRequest,
    PayloadTooLarge,
    TransferCodingNotImplemented,
    UnsupportedMediaType,
)

pytestmark = pytest.mark.unit

BODY = b'{"query": "q", "documents": ["a", "b"]}'


def test_gzip_and_zlib_bodies_inflate() -> None:
    assert inflate(gzip.compress(BODY), "gzip", 1000) == BODY
    assert inflate(zlib.compress(BODY), "deflate", 1000) == BODY


def test_concatenated_gzip_members_are_one_body() -> None:
    head, tail = BODY[:10], BODY[10:]
    assert inflate(gzip.compress(head) + gzip.compress(tail), "gzip", 1000) == BODY


def test_the_cap_counts_every_member() -> None:
    with pytest.raises(PayloadTooLarge):
        inflate(gzip.compress(BODY) * 30, "gzip", len(BODY) * 29)


@pytest.mark.parametrize(("packed", "encoding"), [
    (gzip.compress(BODY) + b"junk", "gzip"),
    (zlib.compress(BODY) + zlib.compress(BODY), "deflate"),
    (gzip.compress(BODY)[:-5], "gzip"),
    (b"not compressed", "gzip"),
])
def test_broken_or_trailing_data_is_refused_not_dropped(packed: bytes, encoding: str) -> None:
    with pytest.raises(BadRequest) as refused:
        inflate(packed, encoding, 1000)
    assert refused.value.code == "invalid_encoding"


def test_members_larger_than_one_feed_and_a_body_at_the_limit_inflate() -> None:
    text = bytes(range(256)) * 1024  # 256 KiB that barely compresses: several feeds a member
    packed = gzip.compress(text) + gzip.compress(text)
    assert inflate(packed, "gzip", 2 * len(text)) == text + text
    with pytest.raises(PayloadTooLarge):
        inflate(packed, "gzip", 2 * len(text) - 1)


def test_a_bomb_is_refused_without_inflating_it_whole() -> None:
    with pytest.raises(PayloadTooLarge):
        inflate(gzip.compress(b"\0" * 50_000_000), "gzip", 1_000_000)


def test_a_body_of_many_tiny_members_is_refused_not_inflated_member_by_member() -> None:
    assert inflate(gzip.compress(BODY) * 64, "gzip", 10_000) == BODY * 64
    with pytest.raises(BadRequest) as refused:  # 400k empty members: refused at the 65th
        inflate(gzip.compress(b"") * 400_000, "gzip", 10_000_000)
    assert refused.value.code == "invalid_encoding"
    assert "more than 64 gzip members" in str(refused.value)


@pytest.mark.parametrize(("lines", "coding"), [
    ([], "identity"), (["identity"], "identity"), ([" GZip "], "gzip"), (["x-gzip"], "x-gzip"),
    (["identity", "gzip"], "gzip"), (["deflate, identity"], "deflate"),
])
def test_every_content_encoding_line_is_read_as_one_list(lines: list[str], coding: str) -> None:
    assert content_coding(lines) == coding


@pytest.mark.parametrize("lines", [
    ["br"], ["gzip, br"], ["gzip", "br"], ["gzip", "gzip"], ["gzip, deflate"]])
def test_another_or_a_stacked_coding_is_415_however_its_lines_are_cut(lines: list[str]) -> None:
    with pytest.raises(UnsupportedMediaType):  # the second line was ignored: gzip + br got 200
        content_coding(lines)


@pytest.mark.parametrize("lines", [["chunked"], ["Chunked "], [" chunked", ""]])
def test_chunked_alone_is_the_transfer_coding_read(lines: list[str]) -> None:
    assert transfer_coding_refusal(lines) is None


@pytest.mark.parametrize("lines", [["gzip, chunked"], ["gzip", "chunked"],
                                   ["x-custom;q=1, chunked"], ["deflate, gzip, chunked"]])
def test_a_coding_before_chunked_is_501_not_a_body_read_still_coded(lines: list[str]) -> None:
    refusal = transfer_coding_refusal(lines)
    assert isinstance(refusal, TransferCodingNotImplemented) and refusal.status == 501
    assert "Content-Encoding" in refusal.message


@pytest.mark.parametrize("lines", [["chunked, chunked"], ["gzip"], ["identity"],
                                   ["chunked, gzip"]])
def test_codings_that_do_not_end_in_one_chunked_are_a_bad_request(lines: list[str]) -> None:
    """RFC 9112: a request whose codings do not end in chunked has no known length (400)."""
    assert isinstance(transfer_coding_refusal(lines), BadRequest)


def test_inflating_reports_each_step_it_grows_by_and_stops_when_told() -> None:
    body = gzip.compress(os.urandom(100_000) * 20)  # 2 MB, compressible only by repeats
    sizes: list[int] = []
    assert inflate(body, "gzip", 4 << 20, sizes.append) == zlib.decompress(body, 31)
    assert sizes[-1] == 2_000_000 and sizes == sorted(sizes)
    assert max(b - a for a, b in zip([0, *sizes], sizes, strict=False)) <= 256 * 1024

    def refuse_past_a_megabyte(size: int) -> None:
        if size > 1 << 20:
            raise PayloadTooLarge("no room")

    with pytest.raises(PayloadTooLarge, match="no room"):
        inflate(body, "gzip", 4 << 20, refuse_past_a_megabyte)
