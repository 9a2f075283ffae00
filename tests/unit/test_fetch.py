"""kuberank-fetch against a real HTTP server on loopback (Range resume, checksum) and real files."""

import hashlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kuberank.fetcher.cache import hf_entry, url_entry
from kuberank.fetcher.cli import main, unexpected
from kuberank.fetcher.download import fetch_url, file_name, shown
from kuberank.fetcher.errors import ChecksumMismatchError, FetchError
from kuberank.fetcher.huggingface import is_glob, pick_model_file
from polling import wait_for

pytestmark = pytest.mark.unit

PAYLOAD = os.urandom(3 * 2**20 + 123)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class FileServer(ThreadingHTTPServer):
    """Serves PAYLOAD at /m.gguf, honours Range, and can cut the first full response short."""

    cut_after: int | None = None
    delay_s: float = 0.0
    ranges: list[str | None]
    tokens: list[str | None]  # the Authorization header of each request


class Handler(BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:  # a Hugging Face Hub that has no such file
        self.server.tokens.append(self.headers.get("Authorization"))
        self.send_error(404)

    def do_GET(self) -> None:
        self.server.tokens.append(self.headers.get("Authorization"))
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/m.gguf")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path != "/m.gguf":
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        self.server.ranges.append(rng)
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
        if start >= len(PAYLOAD):
            self.send_response(416)
            self.end_headers()
            return
        body = PAYLOAD[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        time.sleep(self.server.delay_s)
        cut = self.server.cut_after
        if cut is not None:
            self.server.cut_after = None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(2)  # drop the connection mid-body
            return
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[FileServer]:
    srv = FileServer(("127.0.0.1", 0), Handler)
    srv.ranges, srv.tokens = [], []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(autouse=True)
def termination_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the CLI writes its pod termination message; never the host's /dev."""
    path = tmp_path / "termination-log"
    monkeypatch.setenv("KUBERANK_TERMINATION_LOG", str(path))
    return path


def _url(srv: FileServer, path: str = "/m.gguf") -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def test_url_fetch_downloads_verifies_and_links(server: FileServer, tmp_path: Path) -> None:
    rc = main(["url", "--url", _url(server), "--sha256", SHA, "--dest", str(tmp_path)])
    assert rc == 0
    link = tmp_path / "model.gguf"
    assert link.is_symlink() and link.read_bytes() == PAYLOAD
    assert link.resolve() == tmp_path / "url" / SHA / "m.gguf"
    assert not (tmp_path / "url" / SHA / "m.gguf.part").exists()
    # A second run (pod restart) verifies the cached file and downloads nothing.
    assert main(["url", "--url", _url(server), "--sha256", SHA, "--dest", str(tmp_path)]) == 0
    assert len(server.ranges) == 1


def test_pods_sharing_a_cache_fetch_each_file_once(server: FileServer, tmp_path: Path) -> None:
    """Two pods start together on one cache volume: one downloads, the other waits for it; a
    pod started later (or of another model with the same file) downloads nothing."""
    server.delay_s = 3.0  # the first pod's download takes this long to start sending
    cache = tmp_path / "cache"
    fetch = str(Path(sys.executable).with_name("kuberank-fetch"))

    def pod(i: int) -> subprocess.Popen[str]:
        return subprocess.Popen([fetch, "url", "--url", _url(server), "--sha256", SHA,
                                 "--dest", str(tmp_path / f"pod{i}"), "--cache", str(cache)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    pods = [pod(0)]
    wait_for("the first pod's request", lambda: server.ranges, timeout=30, interval=0.02)
    pods.append(pod(1))  # starts while the first one holds the lock and downloads
    outputs = [p.communicate(timeout=60)[0] for p in pods]
    assert [p.returncode for p in pods] == [0, 0], outputs
    assert server.ranges == [None], "the file was downloaded more than once"
    assert sum("waiting for it" in out for out in outputs) == 1
    for i in range(2):
        link = tmp_path / f"pod{i}" / "model.gguf"
        assert link.resolve() == cache / "url" / SHA / "m.gguf"
        assert link.read_bytes() == PAYLOAD
    later = ["url", "--url", _url(server), "--sha256", SHA, "--dest", str(tmp_path / "pod2"),
             "--cache", str(cache)]
    assert main(later) == 0
    assert server.ranges == [None]


def test_url_fetch_resumes_a_partial_file_with_range(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "m.gguf.part").write_bytes(PAYLOAD[:1_000_000])
    path = fetch_url(_url(server), SHA, tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=1000000-"]


def test_url_fetch_resumes_after_a_dropped_connection(server: FileServer, tmp_path: Path) -> None:
    server.cut_after = 2**20
    path = fetch_url(_url(server), SHA, tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert server.ranges[0] is None and server.ranges[1] is not None
    assert server.ranges[1].startswith("bytes=") and server.ranges[1] != "bytes=0-"


def test_checksum_mismatch_fails_clearly_and_leaves_nothing(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], termination_log: Path
) -> None:
    wrong = "0" * 64
    dest = tmp_path / "fetched"
    with pytest.raises(ChecksumMismatchError, match="sha256 mismatch"):
        fetch_url(_url(server), wrong, dest)
    assert not any(dest.iterdir())
    term = termination_log
    rc = main(["url", "--url", _url(server), "--sha256", wrong, "--dest", str(tmp_path / "d")])
    assert rc == 1
    assert "sha256 mismatch" in capsys.readouterr().err
    assert "expected " + wrong in term.read_text()
    assert term.read_text().endswith("check spec.source.url.sha256 or the file on the server")
    assert not (tmp_path / "d" / "model.gguf").exists()


def test_http_error_is_a_fetch_error_that_names_no_spec_field(
    server: FileServer, tmp_path: Path
) -> None:
    with pytest.raises(FetchError, match="HTTP 404") as caught:
        fetch_url(_url(server, "/missing.gguf"), SHA, tmp_path)
    assert "spec." not in str(caught.value)  # callers without a RerankModel reuse fetch_url


def test_a_redirect_to_another_protocol_fails_at_once_without_retries(
    server: FileServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(FetchError, match="only http and https can be fetched"):
        fetch_url(_url(server, "/moved"), SHA, tmp_path, attempts=5)
    assert "attempt" not in caplog.text  # nothing retried what cannot change


def test_cli_http_error_points_at_the_url_field(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], termination_log: Path
) -> None:
    url = _url(server, "/missing.gguf")
    rc = main(["url", "--url", url, "--sha256", SHA, "--dest", str(tmp_path / "d")])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"GET {url}: HTTP 404; check spec.source.url.url" in err
    assert termination_log.read_text().endswith("check spec.source.url.url")
    assert not (tmp_path / "d" / "model.gguf").exists()


def test_credentials_and_signatures_in_a_url_never_reach_a_message(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], termination_log: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The termination message becomes the model's conditions, Events and the gateway's 503;
    the log is what `kubectl logs -c fetch-model` shows."""
    caplog.set_level(logging.DEBUG)
    host = _url(server).removeprefix("http://").split("/")[0]
    url = f"http://reader:hunter2@{host}/m.gguf?X-Amz-Signature=s3cr3t"
    rc = main(["url", "--url", url, "--sha256", SHA, "--dest", str(tmp_path / "d")])
    assert rc == 1
    said = capsys.readouterr().err + termination_log.read_text() + caplog.text
    assert f"GET http://<credentials>@{host}/m.gguf?<redacted>: HTTP 404" in said
    assert "hunter2" not in said and "reader" not in said and "s3cr3t" not in said


def test_a_url_from_the_environment_is_fetched_and_its_failures_name_the_secret(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    termination_log: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBERANK_FETCH_URL", _url(server))
    dest = tmp_path / "d"
    assert main(["url", "--url-env", "KUBERANK_FETCH_URL", "--sha256", SHA,
                 "--dest", str(dest)]) == 0
    assert (dest / "model.gguf").read_bytes() == PAYLOAD
    monkeypatch.setenv("KUBERANK_FETCH_URL", _url(server, "/missing.gguf"))
    assert main(["url", "--url-env", "KUBERANK_FETCH_URL", "--sha256", SHA,
                 "--dest", str(tmp_path / "e")]) == 1
    assert termination_log.read_text().endswith(
        "check the URL in the Secret spec.source.url.urlSecretRef names")
    monkeypatch.setenv("KUBERANK_FETCH_URL", "not a url")
    assert main(["url", "--url-env", "KUBERANK_FETCH_URL", "--sha256", SHA,
                 "--dest", str(tmp_path / "f")]) == 1
    assert "does not hold an http(s) URL" in capsys.readouterr().err


def test_a_url_that_does_not_parse_is_refused_without_quoting_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], termination_log: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unencoded "/" in a password ends the host early: httpx's own error ("Invalid port:
    'Tr0ub4dor'") quoted the password into the model's conditions and clients' 503s."""
    monkeypatch.setenv("KUBERANK_FETCH_URL", "https://svc:Tr0ub4dor/3@models.example/m.gguf")
    assert main(["url", "--url-env", "KUBERANK_FETCH_URL", "--sha256", SHA,
                 "--dest", str(tmp_path / "d")]) == 1
    said = capsys.readouterr().err + termination_log.read_text()
    assert "does not parse as a URL" in said and "percent-encoded" in said
    assert "Tr0ub4dor" not in said


def test_a_password_holding_url_delimiters_is_cut_from_shown_urls() -> None:
    assert shown("http://u:1234/5678@host/m.gguf") == "http://<credentials>@host/m.gguf"
    assert shown("https://u:p@ss@host/m.gguf?sig=x") == (
        "https://<credentials>@host/m.gguf?<redacted>")
    assert shown("https://host/m.gguf") == "https://host/m.gguf"
    assert shown("https://host:8443/m.gguf#part") == "https://host:8443/m.gguf?<redacted>"
    # An "@" in a presigned URL's query is no end of credentials: the signature stays hidden.
    signed = ("https://storage.example/b/m.gguf?X-Goog-Credential=sa@proj.iam.example/2024"
              "&X-Goog-Signature=SECRETSIG")
    assert shown(signed) == "https://storage.example/b/m.gguf?<redacted>"
    # A password holding "?" leaves its first part where a parser reads a port: not shown.
    said = shown("https://u:1234?w@host/m.gguf")
    assert "1234" not in said and "w@" not in said


def test_an_unforeseen_failure_says_its_type_and_place_but_never_its_text() -> None:
    try:
        raise ValueError("Illegal header value b'Bearer hf_s3cr3t'")
    except ValueError as err:
        said = unexpected(err)
    assert said.startswith("unexpected ValueError in test_fetch.py:") and "s3cr3t" not in said
    try:  # the system's own words are said: they quote no credential
        raise OSError(28, "No space left on device", "/cache/url/m.gguf.part")
    except OSError as err:
        said = unexpected(err)
    assert said.endswith("[Errno 28] No space left on device on /cache/url/m.gguf.part")


def _fetch_hf(endpoint: str, token: str, dest: Path) -> subprocess.CompletedProcess[str]:
    """``kuberank-fetch hf`` against a Hub at ``endpoint`` (read when huggingface_hub loads)."""
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_TOKEN": token,
           "HF_HOME": str(dest / "hf-home"), "KUBERANK_TERMINATION_LOG": str(dest / "msg"),
           "HF_HUB_OFFLINE": "0"}  # the training code's default, once it ran in this process
    fetch = str(Path(sys.executable).with_name("kuberank-fetch"))
    return subprocess.run([fetch, "hf", "--repo", "org/m", "--file", "m.gguf", "--dest",
                           str(dest / "d")], env=env, capture_output=True, text=True, timeout=60)


def test_a_hub_token_never_reaches_a_message_and_a_trailing_newline_is_no_error(
    server: FileServer, tmp_path: Path,
) -> None:
    """A token Secret made with ``echo`` ends in a newline: the header it made was refused, and
    the traceback's last line (the termination message, then conditions, Events and clients'
    503s, all readable without reading the Secret) quoted the token."""
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    done = _fetch_hf(endpoint, "hf_s3cr3tTok3n\n", tmp_path)
    assert done.returncode == 1 and "Bearer hf_s3cr3tTok3n" in server.tokens
    said = done.stdout + done.stderr + (tmp_path / "msg").read_text()
    assert "Hugging Face org/m@main: the Hub could not be reached" in said  # not a traceback
    assert "s3cr3tTok3n" not in said and "Traceback" not in said
    broken = _fetch_hf(endpoint, "hf_s3cr3t\nTok3n", tmp_path)  # no header can carry it
    said = broken.stdout + broken.stderr + (tmp_path / "msg").read_text()
    assert broken.returncode == 1 and "unexpected" in said
    assert "s3cr3t" not in said and "Tok3n" not in said


def test_unreachable_server_gives_up_after_attempts(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="after 2 attempts"):
        fetch_url("http://127.0.0.1:9/m.gguf", SHA, tmp_path, attempts=2, timeout_s=1)


def test_pvc_path_is_symlinked(tmp_path: Path) -> None:
    volume = tmp_path / "source" / "models"
    volume.mkdir(parents=True)
    (volume / "r.gguf").write_bytes(b"gguf-bytes")
    dest = tmp_path / "cache"
    assert main(["pvc", "--path", str(volume / "r.gguf"), "--dest", str(dest)]) == 0
    assert os.readlink(dest / "model.gguf") == str(volume / "r.gguf")


def test_missing_pvc_file_fails_with_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], termination_log: Path
) -> None:
    assert main(["pvc", "--path", str(tmp_path / "nope.gguf"), "--dest", str(tmp_path)]) == 1
    assert "nope.gguf not found" in capsys.readouterr().err
    assert termination_log.read_text().endswith("check spec.source.pvc.path")


def test_cache_entries_never_collide_across_sources() -> None:
    assert hf_entry("a/b-c", "main") != hf_entry("a/b", "c-main")
    assert hf_entry("org/model", "refs/pr/1") == Path("hf/org--model@refs--pr--1")
    assert url_entry(SHA.upper()) == Path("url") / SHA


def test_names_and_globs() -> None:
    assert file_name("https://h/x/bge%20m3.Q8_0.gguf?download=1") == "bge_m3.Q8_0.gguf"
    assert file_name("https://h/") == "model.gguf"
    assert is_glob("*Q8_0*.gguf") and not is_glob("model.gguf")
    shards = ["m-00002-of-00002.gguf", "m-00001-of-00002.gguf", "README.md"]
    assert pick_model_file(shards, "m-*.gguf") == "m-00001-of-00002.gguf"
    with pytest.raises(FetchError, match="no file"):
        pick_model_file(shards, "*.bin")
    # The hub's download metadata sorts first and matched too: the runtime got no GGUF.
    listed = [".cache/huggingface/download/m-Q8_0.gguf.metadata", ".cache/huggingface/.gitignore",
              "Q8_0/m-Q8_0.gguf"]
    assert pick_model_file(listed, "*Q8_0*") == "Q8_0/m-Q8_0.gguf"
    assert pick_model_file([*listed, "README.md"], "*") == "Q8_0/m-Q8_0.gguf"
