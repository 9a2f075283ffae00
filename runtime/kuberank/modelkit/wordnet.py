"""Everyday-knowledge training text: WordNet 3.0's noun glosses, from Debian's ``wordnet-base``.

Python's documentation only covers software; WordNet's 82,000 noun definitions cover animals,
places, food, the body, science and tools in plain words, and its hypernym links give what a
reranker most needs to learn from: plausible wrong answers (the definitions of sibling concepts:
giant panda vs lesser panda vs bear). Three Debian builds of the package are pinned by SHA-256 and
the noun file by its own, so the text is byte-for-byte the same on every machine whichever build
the archive still serves; it is fetched once (6.5 MB) into kuberank's cache.

WordNet 3.0 license: Princeton's, permissive (use, copy, modify and distribute for any purpose,
with its copyright notice); the model trained on it ships no WordNet text.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kuberank.modelkit.atomic import atomic_path
from kuberank.modelkit.paths import cache_dir
from kuberank.modelkit.progress import train_log

NOUN_MEMBER = "./usr/share/wordnet/data.noun"
DEBIAN_ARCHIVE = "http://deb.debian.org/debian"
# Where Debian moves a release's pool when it retires the release (bookworm's build lives on there).
DEBIAN_RETIRED = "http://archive.debian.org/debian"
MIRROR_ENV = "KUBERANK_DEBIAN_MIRROR"  # e.g. a site mirror, for clusters without Internet access


@dataclass(frozen=True)
class DebPackage:
    """One Debian build of the package: its path in the archive and its SHA-256."""

    pool_path: str
    sha256: str


@dataclass(frozen=True)
class DebSource:
    """Builds that all carry the same noun file, tried in order: any one of them will do.

    Pinning a single build would break the default model's build the day Debian drops it from
    the pool; the noun file's own digest is what keeps the corpus the same.
    """

    packages: tuple[DebPackage, ...]
    noun_sha256: str


WORDNET_DEB = DebSource(
    packages=(
        DebPackage("pool/main/w/wordnet/wordnet-base_3.0-39_all.deb",  # trixie (Debian 13)
                   "f4f96d4d5d19061916c66cbb889a0119e6a46f9655051f5fd42b7317e46ce4db"),
        DebPackage("pool/main/w/wordnet/wordnet-base_3.0-41_all.deb",  # forky / sid
                   "e50d14b2ee444eaf36ef2a3bd38e50c623b47ba22b2301adc4a5f12736da9264"),
        DebPackage("pool/main/w/wordnet/wordnet-base_3.0-37_all.deb",  # bookworm (Debian 12)
                   "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752"),
    ),
    noun_sha256="fea17d2f9656611334eac790e5d69e47645fa180c4aa481fb4cd9b3520754ca2",
)
NOUN_SHA256 = WORDNET_DEB.noun_sha256

# Lexicographer files (wndb(5WN) ``lexnames``) of concrete, everyday nouns; the rest (feelings,
# relations, quantities, shapes, ...) are abstract and their glosses rarely read like passages.
EVERYDAY_LEXFILES = frozenset({
    4,   # noun.act
    5,   # noun.animal
    6,   # noun.artifact
    8,   # noun.body
    9,   # noun.cognition
    10,  # noun.communication
    11,  # noun.event
    13,  # noun.food
    14,  # noun.group
    15,  # noun.location
    17,  # noun.object
    18,  # noun.person
    19,  # noun.phenomenon
    20,  # noun.plant
    22,  # noun.process
    26,  # noun.state
    27,  # noun.substance
})


@dataclass(frozen=True)
class Synset:
    """One noun sense: its words, its is-a parents, and its gloss split into parts."""

    offset: int
    lexfile: int
    words: tuple[str, ...]  # underscores turned into spaces, first is the headword
    definition: str
    examples: tuple[str, ...]
    relations: tuple[tuple[str, int], ...] = ()  # (pointer symbol, noun offset), e.g. ("%p", …)

    @property
    def hypernyms(self) -> tuple[int, ...]:
        """Is-a parents: class ("@") and instance ("@i") hypernyms, in the file's order."""
        return tuple(offset for symbol, offset in self.relations if symbol in ("@", "@i"))


_LEADING_DOMAIN = re.compile(r"^\([^)]*\)\s*")


def _split_gloss(gloss: str) -> tuple[str, tuple[str, ...]]:
    """``definition; "example"; "example"`` → definition (domain label removed), examples."""
    parts = [p.strip() for p in gloss.split(";")]
    examples = tuple(p.strip('"') for p in parts if p.startswith('"') and p.endswith('"'))
    definition = "; ".join(p for p in parts if p and not p.startswith('"'))
    return _LEADING_DOMAIN.sub("", definition).strip(), examples


def parse_noun_data(text: str) -> list[Synset]:
    """Parse WordNet's ``data.noun`` (format: wndb(5WN)); license header lines are skipped."""
    synsets: list[Synset] = []
    for line in text.splitlines():
        if not line or line.startswith(" "):
            continue
        head, _, gloss = line.partition(" | ")
        fields = head.split()
        count = int(fields[3], 16)
        words = tuple(fields[4 + 2 * k].replace("_", " ") for k in range(count))
        at = 4 + 2 * count
        pointers = int(fields[at])
        pointed = [(fields[at + 1 + 4 * k], int(fields[at + 2 + 4 * k]), fields[at + 3 + 4 * k])
                   for k in range(pointers)]
        relations = tuple((symbol, offset) for symbol, offset, pos in pointed if pos == "n")
        definition, examples = _split_gloss(gloss.strip())
        synsets.append(Synset(int(fields[0]), int(fields[1]), words, definition, examples,
                              relations))
    return synsets


def _ar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Members of a Unix ``ar`` archive (a .deb is one): 60-byte headers, even-aligned bodies."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        yield name, data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)


def extract_noun_data(deb: bytes) -> bytes:
    """``data.noun`` out of the wordnet-base .deb (its data.tar.xz member)."""
    for name, body in _ar_members(deb):
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                try:
                    member = tar.extractfile(NOUN_MEMBER)
                except KeyError:
                    member = None
                if member is None:
                    break
                return member.read()
    raise ValueError(f"{NOUN_MEMBER} not found in the package")


def default_archives() -> tuple[str, ...]:
    """``$KUBERANK_DEBIAN_MIRROR`` alone when set (a site without Internet access would only
    wait on the public archives); else deb.debian.org, then archive.debian.org, where Debian
    moves the pool of a release it retires."""
    mirror = os.environ.get(MIRROR_ENV, "").strip().rstrip("/")
    return (mirror,) if mirror else (DEBIAN_ARCHIVE, DEBIAN_RETIRED)


def candidate_urls(source: DebSource, archives: Sequence[str]) -> list[tuple[str, str]]:
    """(url, sha256) in the order they are tried: every build from each archive in turn."""
    return [(f"{base.rstrip('/')}/{package.pool_path}", package.sha256)
            for base in archives for package in source.packages]


class CorpusUnavailableError(RuntimeError):
    """No pinned build of the package could be fetched and verified."""


def _fetch_nouns(url: str, sha256: str, noun_sha256: str, folder: Path) -> bytes:
    from kuberank.fetcher.download import fetch_url

    deb = fetch_url(url, sha256, folder)
    try:
        nouns = extract_noun_data(deb.read_bytes())
    finally:
        deb.unlink()
    if hashlib.sha256(nouns).hexdigest() != noun_sha256:
        raise ValueError(f"its {NOUN_MEMBER} does not have the pinned sha256")
    return nouns


def noun_data_path(cache: Path | None = None, source: DebSource = WORDNET_DEB,
                   archives: Sequence[str] | None = None) -> Path:
    """Path of the verified ``data.noun``, fetched and extracted on first use.

    Each .deb goes through ``kuberank-fetch``'s downloader (resumable, SHA-256 verified). A build
    that is gone, unreachable or not the pinned bytes is reported and the next one tried;
    nothing is cached unless the noun file has the pinned digest, because a silently different
    corpus would make the default model unreproducible. ``archives`` defaults to
    ``default_archives()``.
    """
    from kuberank.fetcher.errors import FetchError

    folder = (cache or cache_dir()) / "corpora" / "wordnet-3.0-nouns"
    target = folder / "data.noun"
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == source.noun_sha256:
        return target
    failures: list[str] = []
    for url, sha256 in candidate_urls(source, archives or default_archives()):
        train_log(f"fetching {url}")
        try:
            nouns = _fetch_nouns(url, sha256, source.noun_sha256, folder)
        except (FetchError, ValueError) as err:
            failures.append(f"{url}: {err}")
            train_log(f"{failures[-1]}; trying the next build")
            continue
        with atomic_path(target) as tmp:
            tmp.write_bytes(nouns)
        return target
    raise CorpusUnavailableError(
        "no pinned build of Debian's wordnet-base could be fetched and verified (point "
        f"{MIRROR_ENV} at a Debian mirror this machine reaches):\n  " + "\n  ".join(failures))


def load_nouns(cache: Path | None = None) -> list[Synset]:
    """All WordNet 3.0 noun synsets, from the pinned Debian package."""
    return parse_noun_data(noun_data_path(cache).read_text(encoding="utf-8"))


def word_senses(synsets: Iterable[Synset]) -> dict[str, int]:
    """How many noun senses each lowercased word has (1 = unambiguous as a query)."""
    counts: dict[str, int] = {}
    for synset in synsets:
        for word in {w.lower() for w in synset.words}:
            counts[word] = counts.get(word, 0) + 1
    return counts
