"""Resumable, verified HTTP(S) download with progress in the log.

Bytes go to `<name>.part`; an interrupted fetch (pod restart, dropped connection) continues
with an HTTP Range request from where the part file ends. The SHA-256 covers the whole file
and is checked before the file takes its final name.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
from kuberank.fetcher.errors import ChecksumMismatchError, FetchError
from kuberank.fetcher.files import sha256_of

log = logging.getLogger("kuberank.fetch")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def shown(url: str) -> str:
    """``url`` fit for messages, which reach conditions, Events and API clients' 503s: without
    the user and password it may carry, or its query (where presigned URLs keep signatures)."""
    scheme, sep, rest = url.partition("://")
    query_at = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    head, tail = rest[:query_at], rest[query_at:]
    # Before the query, up to the last "@" is credentials, even where a password holds an
    # unencoded "/" that makes a URL parser end the host early (and print the password as
    # host and path). An "@" only after a "?" or "#" is a query's (a presigned URL's
    # X-Goog-Credential=sa@...), or a password's holding "?" or "#": the host shown then is
    # none, when it has a ":" that may be such a password's first part.
    _credentials, at, located = head.rpartition("@")
    host, slash, path = located.partition("/")
    if at:
        host = f"<credentials>@{host}"
    elif "@" in tail and ":" in host:
        host = "<redacted>"
    return f"{scheme}{sep}{host}{slash}{path}{'?<redacted>' if tail else ''}"


def file_name(url: str) -> str:
    """A safe local name from the URL path ('model.gguf' when the path has none)."""
    base = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = _SAFE.sub("_", base).strip("._")
    return name or "model.gguf"


class Progress:
    """Logs at most every `every_s` seconds, plus the final line."""

    def __init__(
        self, name: str, every_s: float = 2.0, clock: Callable[[], float] = time.monotonic
    ):
        self.name, self.every_s, self.clock = name, every_s, clock
        self.last = clock()

    def update(self, done: int, total: int | None, final: bool = False) -> None:
        now = self.clock()
        if not final and now - self.last < self.every_s:
            return
        self.last = now
        mib = done / 2**20
        if total:
            log.info(
                "%s: %.1f/%.1f MiB (%.0f%%)", self.name, mib, total / 2**20, 100 * done / total
            )
        else:
            log.info("%s: %.1f MiB", self.name, mib)


def fetch_url(
    url: str,
    sha256: str,
    dest: Path,
    *,
    attempts: int = 5,
    timeout_s: float = 30.0,
    client: httpx.Client | None = None,
) -> Path:
    """Download url into dest, resuming a previous .part; verify; return the final path."""
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / file_name(url)
    if final.exists():
        if sha256_of(final).hexdigest() == sha256:
            log.info("%s already present and verified", final.name)
            return final
        final.unlink()
    part = final.with_name(final.name + ".part")
    own = client is None
    http = client or httpx.Client(timeout=timeout_s, follow_redirects=True)
    try:
        for attempt in range(1, attempts + 1):
            try:
                _download(http, url, part)
                break
            except httpx.UnsupportedProtocol as err:  # a redirect to ftp:// stays one
                raise FetchError(f"GET {shown(url)}: {err} (only http and https can be "
                                 "fetched)") from err
            except (httpx.TransportError, httpx.RemoteProtocolError) as err:
                if attempt == attempts:
                    raise FetchError(
                        f"GET {shown(url)} failed after {attempts} attempts: {err}") from err
                log.warning("attempt %d: %s; resuming", attempt, err)
                time.sleep(min(2.0**attempt, 30.0) / 10)
    finally:
        if own:
            http.close()
    actual = sha256_of(part).hexdigest()
    if actual != sha256:
        part.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"sha256 mismatch for {shown(url)}: expected {sha256}, got {actual}"
        )
    part.replace(final)
    log.info("%s verified (sha256 %s)", final.name, sha256[:12])
    return final


def _download(http: httpx.Client, url: str, part: Path) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with http.stream("GET", url, headers=headers) as resp:
        if resp.status_code == 416 and offset:
            log.info("%s: server has no bytes past %d; verifying what we have", part.name, offset)
            return
        if resp.status_code == 206:
            start = _range_start(resp.headers.get("content-range", ""))
            if start != offset:
                raise FetchError(f"server resumed {shown(url)} at byte {start}, wanted {offset}")
            mode = "ab"
            log.info("resuming %s at %.1f MiB", part.name, offset / 2**20)
        elif resp.status_code == 200:
            mode, offset = "wb", 0
        else:
            raise FetchError(f"GET {shown(url)}: HTTP {resp.status_code}")
        length = resp.headers.get("content-length")
        total = offset + int(length) if length and length.isdigit() else None
        progress = Progress(part.name.removesuffix(".part"))
        done = offset
        with part.open(mode) as out:
            for chunk in resp.iter_bytes(1 << 20):
                out.write(chunk)
                done += len(chunk)
                progress.update(done, total)
        progress.update(done, total, final=True)
        if total is not None and done != total:
            raise httpx.RemoteProtocolError(f"connection closed at {done} of {total} bytes")


def _range_start(content_range: str) -> int:
    match = re.match(r"bytes (\d+)-", content_range)
    return int(match.group(1)) if match else -1
