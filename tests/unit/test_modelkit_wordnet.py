"""WordNet's data.noun parser, the .deb unpacking, and the pairs cut from noun senses."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kuberank.modelkit.gloss_pairs import gloss_pairs
from kuberank.modelkit.wordnet import (
    NOUN_MEMBER,
    WORDNET_DEB,
    CorpusUnavailableError,
    DebPackage,
    DebSource,
    Synset,
    candidate_urls,
    default_archives,
    extract_noun_data,
    noun_data_path,
    parse_noun_data,
)

pytestmark = pytest.mark.unit

# Real lines of WordNet 3.0's data.noun (the panda family), plus one license header line.
DATA_NOUN = "\n".join([
    "  1 This software and database is being provided to you, the LICENSEE, by  ",
    "02509815 05 n 03 lesser_panda 0 red_panda 0 panda 0 002 @ 02507649 n 0000"
    " #m 02509694 n 0000 | reddish-brown Old World raccoon-like carnivore;"
    " in some classifications considered unrelated to the giant pandas",
    "02510455 05 n 03 giant_panda 0 panda 1 panda_bear 0 003 @ 02507649 n 0000"
    " @i 02131653 n 0000 #m 02510240 n 0000 | large black-and-white herbivorous mammal of"
    ' bamboo forests of China and Tibet; "the panda is an endangered species";'
    ' "pandas eat bamboo"',
    "01748100 05 n 01 hood 0 002 @ 05225090 n 0000 ;c 06083243 n 0000 | (zoology) an"
    " expandable part or marking that resembles a hood on the head or neck of an animal  ",
])


def test_parser_reads_words_hypernyms_definition_and_examples() -> None:
    lesser, giant, hood = parse_noun_data(DATA_NOUN)
    assert lesser.words == ("lesser panda", "red panda", "panda")
    assert lesser.lexfile == 5
    assert giant.hypernyms == (2507649, 2131653)  # "@" and instance "@i", not "#m"
    assert giant.definition == ("large black-and-white herbivorous mammal of bamboo forests of "
                                "China and Tibet")
    assert giant.examples == ("the panda is an endangered species", "pandas eat bamboo")
    assert lesser.definition.endswith("unrelated to the giant pandas")
    assert hood.definition.startswith("an expandable part")  # "(zoology)" label removed


def _ar(members: dict[str, bytes]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, body in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n"
        out += header.encode() + body + (b"\n" if len(body) % 2 else b"")
    return bytes(out)


def _tar_xz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def test_noun_data_is_taken_out_of_the_packages_data_tarball() -> None:
    deb = _ar({"debian-binary": b"2.0\n", "control.tar.xz": _tar_xz({"./control": b"x"}),
               "data.tar.xz": _tar_xz({NOUN_MEMBER: b"noun lines", "./other": b"y"})})
    assert extract_noun_data(deb) == b"noun lines"


def test_a_package_without_noun_data_or_not_a_deb_is_refused() -> None:
    with pytest.raises(ValueError, match="not found"):
        extract_noun_data(_ar({"data.tar.xz": _tar_xz({"./other": b"y"})}))
    with pytest.raises(ValueError, match="not an ar archive"):
        extract_noun_data(b"<html>mirror error page</html>")


class DebServer(ThreadingHTTPServer):
    """A Debian archive on loopback: serves ``files`` by path, 404 for anything else."""

    files: dict[str, bytes]
    requests: list[str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/debian"


class DebHandler(BaseHTTPRequestHandler):
    server: DebServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path.removeprefix("/debian/"))
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")


@pytest.fixture
def mirror() -> Iterator[DebServer]:
    server = DebServer(("127.0.0.1", 0), DebHandler)
    server.files, server.requests = {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


NOUNS = DATA_NOUN.encode()
DEB = _ar({"debian-binary": b"2.0\n", "data.tar.xz": _tar_xz({NOUN_MEMBER: NOUNS})})
OLD_DEB = _ar({"debian-binary": b"2.0\n", "control.tar.xz": _tar_xz({"./control": b"old"}),
               "data.tar.xz": _tar_xz({NOUN_MEMBER: NOUNS})})
SOURCE = DebSource((DebPackage("pool/main/w/wn/wn_2_all.deb", _sha(DEB)),
                    DebPackage("pool/main/w/wn/wn_1_all.deb", _sha(OLD_DEB))), _sha(NOUNS))


def test_candidates_are_every_build_from_each_archive_in_turn() -> None:
    assert candidate_urls(SOURCE, ["http://mirror.example/debian/", "http://old.example/d"]) == [
        ("http://mirror.example/debian/pool/main/w/wn/wn_2_all.deb", _sha(DEB)),
        ("http://mirror.example/debian/pool/main/w/wn/wn_1_all.deb", _sha(OLD_DEB)),
        ("http://old.example/d/pool/main/w/wn/wn_2_all.deb", _sha(DEB)),
        ("http://old.example/d/pool/main/w/wn/wn_1_all.deb", _sha(OLD_DEB)),
    ]


def test_archives_are_debian_then_its_retired_releases_or_the_configured_mirror_alone(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERANK_DEBIAN_MIRROR", raising=False)
    assert default_archives() == ("http://deb.debian.org/debian", "http://archive.debian.org/debian")
    monkeypatch.setenv("KUBERANK_DEBIAN_MIRROR", "http://mirror.internal/debian/")
    assert default_archives() == ("http://mirror.internal/debian",)


def test_the_pinned_builds_are_distinct_packages() -> None:
    paths = [p.pool_path for p in WORDNET_DEB.packages]
    assert len(set(paths)) == len(paths) >= 2
    assert len({p.sha256 for p in WORDNET_DEB.packages}) == len(paths)


def test_noun_data_is_fetched_verified_and_then_served_from_the_cache(
    mirror: DebServer, tmp_path: Path
) -> None:
    mirror.files = {"pool/main/w/wn/wn_2_all.deb": DEB}
    path = noun_data_path(tmp_path, SOURCE, [mirror.base])
    assert path.read_bytes() == NOUNS
    assert list(path.parent.iterdir()) == [path]  # the .deb is not kept
    assert noun_data_path(tmp_path, SOURCE, [mirror.base]) == path
    assert mirror.requests == ["/debian/pool/main/w/wn/wn_2_all.deb"]


def test_a_build_the_archive_dropped_or_serves_altered_falls_back_to_the_next(
    mirror: DebServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror.files = {"pool/main/w/wn/wn_1_all.deb": OLD_DEB}  # the newer build is gone (404)
    assert noun_data_path(tmp_path, SOURCE, [mirror.base]).read_bytes() == NOUNS
    assert "wn_2_all.deb: GET" in capsys.readouterr().err
    other = tmp_path / "other"
    mirror.files = {"pool/main/w/wn/wn_2_all.deb": DEB + b"tampered",
                    "pool/main/w/wn/wn_1_all.deb": OLD_DEB}
    assert noun_data_path(other, SOURCE, [mirror.base]).read_bytes() == NOUNS
    assert "sha256 mismatch" in capsys.readouterr().err


def test_when_no_build_verifies_the_error_names_each_and_nothing_is_cached(
    mirror: DebServer, tmp_path: Path
) -> None:
    mirror.files = {"pool/main/w/wn/wn_2_all.deb": DEB + b"tampered"}
    wrong_nouns = DebSource(SOURCE.packages[1:], _sha(b"other nouns"))
    mirror.files["pool/main/w/wn/wn_1_all.deb"] = OLD_DEB
    with pytest.raises(CorpusUnavailableError) as caught:
        noun_data_path(tmp_path, DebSource(SOURCE.packages[:1], SOURCE.noun_sha256),
                       [mirror.base, mirror.base + "-retired"])
    message = str(caught.value)
    assert "KUBERANK_DEBIAN_MIRROR" in message
    assert f"{mirror.base}/pool/main/w/wn/wn_2_all.deb: sha256 mismatch" in message
    assert f"{mirror.base}-retired/pool/main/w/wn/wn_2_all.deb: GET" in message  # 404 there
    with pytest.raises(CorpusUnavailableError, match="pinned sha256"):
        noun_data_path(tmp_path, wrong_nouns, [mirror.base])
    assert not list(tmp_path.rglob("data.noun"))
    assert not list(tmp_path.rglob("*.deb"))


def _synset(offset: int, words: tuple[str, ...], parent: int, definition: str,
            lexfile: int = 5) -> Synset:
    return Synset(offset, lexfile, words, definition, (), (("@", parent),))


BEARS = [
    _synset(1, ("giant panda", "panda bear"), 100, "large black-and-white mammal of bamboo woods"),
    _synset(2, ("brown bear",), 100, "large ferocious bear of Eurasia and North America"),
    _synset(3, ("polar bear", "ice bear"), 100, "white bear of Arctic regions living on the ice"),
    _synset(4, ("sloth bear",), 100, "common coarse-haired long-snouted bear of south Asia"),
]


def test_pairs_come_in_sibling_clusters_answered_by_their_definitions() -> None:
    pairs = gloss_pairs(BEARS)
    assert {p.source for p in pairs} == {f"wordnet:{n:08d}" for n in (1, 2, 3, 4)}
    for pair, synset in ((p, next(s for s in BEARS if p.source.endswith(f"{s.offset:08d}")))
                         for p in pairs):
        assert synset.words[0] in pair.query
        assert synset.definition[1:] in pair.passage  # first letter may be capitalized
        assert pair.shape in ("question", "keyword")


def test_pairs_do_not_depend_on_input_order() -> None:
    assert gloss_pairs(BEARS) == gloss_pairs(list(reversed(BEARS)))


def test_ambiguous_words_small_clusters_and_latin_taxa_give_no_pairs() -> None:
    mold = [_synset(10 + k, ("mold",), 200 + k, f"sense number {k} of the word mold here")
            for k in range(3)]
    ambiguous = [*BEARS, _synset(5, ("polar bear",), 300, "a second sense of the same words here")]
    assert "wordnet:00000003" not in {p.source for p in gloss_pairs(ambiguous)}
    pair_of_two = BEARS[:2]
    taxa = [_synset(20 + k, (f"Ursus{k}",), 400, "any of several bears of the northern lands")
            for k in range(3)]
    assert gloss_pairs([*mold, *pair_of_two, *taxa]) == []


def test_questions_use_an_article_only_for_countable_things() -> None:
    food = [_synset(30 + k, (name,), 500, f"a dish of rice and {name} cooked slowly", lexfile=13)
            for k, name in enumerate(("paella", "risotto", "pilaf", "jambalaya", "biryani"))]
    queries = {p.query for p in gloss_pairs(food) if p.shape == "question"}
    assert queries and all(q.startswith("What is ") and " a " not in q for q in queries)
    animals = {p.query for p in gloss_pairs(BEARS) if p.shape == "question"}
    assert all(q.startswith(("What is a ", "What is an ")) for q in animals)
