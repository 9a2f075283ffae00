"""kuberank-fetch {url,hf,pvc}: fetch a model into --dest and link it as --link.

Exit status 0 means the link points at a complete, verified file. On failure the reason goes to
stderr and to the pod's termination message, so the RerankModel's Degraded condition shows it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from pathlib import Path

import httpx
from kuberank.fetcher.cache import exclusive, hf_entry, url_entry
from kuberank.fetcher.download import fetch_url
from kuberank.fetcher.errors import ChecksumMismatchError, FetchError
from kuberank.fetcher.files import point_link
from kuberank.fetcher.huggingface import fetch_hf

log = logging.getLogger("kuberank.fetch")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kuberank-fetch", description=__doc__)
    sub = p.add_subparsers(dest="source", required=True)
    url = sub.add_parser("url", help="HTTP(S) file verified by SHA-256")
    where = url.add_mutually_exclusive_group(required=True)
    where.add_argument("--url")
    where.add_argument("--url-env", metavar="NAME",
                       help="environment variable holding the URL (from a Secret: it may carry "
                       "credentials or a presigned signature, kept out of the pod's arguments)")
    url.add_argument("--sha256", required=True)
    hf = sub.add_parser("hf", help="Hugging Face Hub file or glob")
    hf.add_argument("--repo", required=True)
    hf.add_argument("--file", required=True)
    hf.add_argument("--revision", default="main")
    pvc = sub.add_parser("pvc", help="file on a mounted volume")
    pvc.add_argument("--path", required=True, type=Path)
    for s in (url, hf, pvc):
        s.add_argument("--dest", type=Path, default=Path("/models"),
                       help="where the link is made (the pod's own directory)")
        s.add_argument("--link", default="model.gguf")
    for s in (url, hf):
        s.add_argument("--cache", type=Path, default=None,
                       help="where fetched files are kept, possibly shared by many pods "
                       "(default: --dest)")
    return p


def _spec_url(args: argparse.Namespace) -> str:
    if args.url is not None:
        url, where = str(args.url), "spec.source.url.url"
    else:
        url = os.environ.get(args.url_env, "").strip()
        where = f"${args.url_env} (the Secret key spec.source.url.urlSecretRef names)"
        if not url.startswith(("http://", "https://")):
            raise FetchError(f"{where} does not hold an http(s) URL")
    try:
        httpx.URL(url)
    except httpx.InvalidURL:  # its text may quote the URL's password: not passed on
        raise FetchError(f"{where} does not parse as a URL: a user name or password holding "
                         "'/', '?', '#' or '@' must be percent-encoded") from None
    return url


def _fetch_spec_url(url: str, sha256: str, dest: Path, field: str) -> Path:
    """fetch_url, with its failure pointing at the RerankModel field to check.

    The hint lives here, not in fetch_url, because other callers (the WordNet corpus fetch)
    have no RerankModel spec.
    """
    try:
        return fetch_url(url, sha256, dest)
    except ChecksumMismatchError as err:
        raise ChecksumMismatchError(
            f"{err}; check spec.source.url.sha256 or the file on the server") from err
    except FetchError as err:
        raise FetchError(f"{err}; check {field}") from err


def run(args: argparse.Namespace) -> Path:
    dest: Path = args.dest
    dest.mkdir(parents=True, exist_ok=True)
    if args.source == "url":
        sha256 = args.sha256.lower()
        with exclusive(args.cache or dest, url_entry(sha256)) as entry:
            field = ("spec.source.url.url" if args.url is not None
                     else "the URL in the Secret spec.source.url.urlSecretRef names")
            target = _fetch_spec_url(_spec_url(args), sha256, entry, field)
    elif args.source == "hf":
        with exclusive(args.cache or dest, hf_entry(args.repo, args.revision)) as entry:
            target = fetch_hf(args.repo, args.file, args.revision, entry)
    else:
        path: Path = args.path
        if not path.is_file():
            raise FetchError(f"{path} not found on the volume; check spec.source.pvc.path")
        target = path  # linked where it lies: the claim is mounted read-only into the pod
    return point_link(dest, args.link, target)


def unexpected(err: BaseException) -> str:
    """What a failure no code path foresaw says: its type and where it arose, never its text,
    which may quote a token or a URL's password ("Illegal header value b'Bearer hf_...'",
    "Invalid port: '<password>'"), and would reach conditions, Events and clients' 503s."""
    frames = traceback.extract_tb(err.__traceback__)
    where = f" in {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    if isinstance(err, OSError) and err.errno is not None and err.strerror:
        # The system's own words (a full disk, a volume not writable) quote no credential.
        on = f" on {err.filename}" if isinstance(err.filename, str) else ""
        return f"{type(err).__name__}{where}: [Errno {err.errno}] {err.strerror}{on}"
    return (f"unexpected {type(err).__name__}{where} (its text is withheld: it may quote "
            "credentials); check spec.source and its Secrets")


def _fail(message: str) -> None:
    print(f"kuberank-fetch: {message}", file=sys.stderr)
    _termination_message(message)


def _termination_message(text: str) -> None:
    path = Path(os.environ.get("KUBERANK_TERMINATION_LOG", "/dev/termination-log"))
    with contextlib.suppress(OSError):  # not in a pod: stderr carries the message
        path.write_text(text[:4000])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # httpx logs every request's full URL at INFO: a url source's password or presigned
    # signature would land in `kubectl logs -c fetch-model`. Our own lines say what matters.
    for chatty in ("httpx", "httpcore", "httpx2"):  # httpx2: huggingface_hub's client
        logging.getLogger(chatty).setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    try:
        link = run(args)
    except FetchError as err:
        _fail(str(err))
        return 1
    except Exception as err:  # its text is withheld, its type and place said
        _fail(unexpected(err))
        return 1
    log.info("model ready at %s -> %s", link, os.readlink(link))
    return 0


if __name__ == "__main__":
    sys.exit(main())
