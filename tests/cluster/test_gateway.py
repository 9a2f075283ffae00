"""The gateway against real pieces: a real API server holding ApiKeys, RerankModels and
EndpointSlices, real kuberank-runtime processes (tiny model) as upstreams, real HTTP.

The API server refuses loopback addresses in EndpointSlices, so the runtimes run in network
namespaces joined to bridge krgw0 (10.251.0.0/24) and the tests write the EndpointSlices that
the EndpointSlice controller would write for pods (managed-by set to something else, so that
controller leaves them alone). ApiKey status (keyId, digest) is written through the status
subresource as the operator would, so these tests do not depend on the operator running.
The CRDs come from the session fixture `crds` in tests/cluster/conftest.py.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import cohere
import httpx
import pytest
import yaml
from kuberank.crd.common import GROUP, VERSION, parse_timestamp
from kuberank.crd.keys import digest_secret, generate_key, parse_key
from kuberank.modelkit import paths
from kuberank.modelkit.build import ensure_tiny
from kubernetes import client
from localcluster import free_port
from promtext import sample

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
BRIDGE, HOST_IP = "krgw0", "10.251.0.1"
REPLICA_1, REPLICA_2 = "10.251.0.2", "10.251.0.3"
REFUSING, HANGING = "10.251.0.4", "10.251.0.5"  # nothing listens / accepts and never answers
BUSY = "10.251.0.6"  # answers every rerank as a runtime whose queue is full
SERVED = "tiny"
MAX_DOCUMENTS, MAX_BODY = 8, 64 * 1024
MINTED: list[str] = []  # every key these tests created, checked against the gateway's log

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 15.0, interval: float = 0.1) -> T:
    """Poll ``check`` until it returns without AssertionError; re-raise after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(interval)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


# --------------------------------------------------------------------------- network


@dataclass
class Net:
    namespaces: list[str] = field(default_factory=list)

    def add(self, name: str, *addresses: str) -> None:
        """A network namespace with ``addresses`` on a veth joined to the bridge."""
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "link", "add", f"{name}h", "type", "veth", "peer", "name", "eth0", "netns", name)
        sh("ip", "link", "set", f"{name}h", "master", BRIDGE, "up")
        for address in addresses:
            sh("ip", "-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "-n", name, "link", "set", "eth0", "up")
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def teardown(self) -> None:
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")
    created = Net()
    try:
        created.add("krgw-r1", REPLICA_1)
        created.add("krgw-r2", REPLICA_2)
        created.add("krgw-aux", REFUSING, HANGING, BUSY)
        yield created
    finally:
        created.teardown()


# --------------------------------------------------------------------------- processes


class Process:
    """A child process with its output in a file; stopped by its own pid only."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            argv, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> None:
        assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.tail()}"

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def wait_http_ok(url: str, proc: Process, timeout: float = 120.0) -> None:
    def ok() -> None:
        proc.alive()
        try:
            status = httpx.get(url, timeout=2).status_code
        except httpx.TransportError as err:
            raise AssertionError(f"{url}: {err}") from None
        assert status == 200, f"{url}: {status}"

    eventually(ok, timeout=timeout, interval=0.3)


# Reads each request, never answers, and prints "closed <x-request-id>" when the caller hangs up.
HANGING_SERVER = f"""
import socket, threading

def serve(conn):
    head = b""
    try:
        while b"\\r\\n\\r\\n" not in head and (chunk := conn.recv(65536)):
            head += chunk
        while conn.recv(65536):
            pass
    except OSError:
        pass
    lines = head.decode("latin-1").split("\\r\\n")
    ids = [line.split(":", 1)[1].strip() for line in lines
           if line.lower().startswith("x-request-id:")]
    print("closed", ids[0] if ids else "-", flush=True)

listener = socket.create_server(("{HANGING}", 8080), backlog=64)
while True:
    threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
"""


# What a kuberank-runtime answers when its queue is full, for every request (a real runtime is
# full only while other requests keep it busy, which no test can hold steady).
BUSY_SERVER = f"""
import http.server, json

class Busy(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps({{"error": {{"message": "engine queue is full (8192 pairs waiting)",
                                      "type": "rate_limit_error", "code": "queue_full"}}}}).encode()
        self.send_response(429)
        self.send_header("content-type", "application/json")
        self.send_header("retry-after", "7")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.ThreadingHTTPServer(("{BUSY}", 8080), Busy).serve_forever()
"""


@pytest.fixture(scope="module")
def runtimes(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Process]]:
    """Two tiny-model runtimes (10.251.0.2 and .3), a socket that accepts but never answers
    (10.251.0.5) and a replica whose queue is always full (10.251.0.6); 10.251.0.4 has no
    listener, so connections to it are refused."""
    model = ensure_tiny(paths.models_dir(), lambda _msg: None)
    logs = tmp_path_factory.mktemp("runtimes")
    procs: list[Process] = []
    try:
        for netns in ("krgw-r1", "krgw-r2"):
            procs.append(
                Process(
                    [
                        "ip",
                        "netns",
                        "exec",
                        netns,
                        str(VENV_BIN / "kuberank-runtime"),
                        "--model",
                        str(model),
                        "--served-name",
                        SERVED,
                        "--host",
                        "0.0.0.0",
                        "--port",
                        "8080",
                        "--threads",
                        "1",
                    ],
                    logs / f"{netns}.log",
                )
            )
        procs.append(
            Process(
                ["ip", "netns", "exec", "krgw-aux", sys.executable, "-c", HANGING_SERVER],
                logs / "hang.log",
            )
        )
        procs.append(
            Process(
                ["ip", "netns", "exec", "krgw-aux", sys.executable, "-c", BUSY_SERVER],
                logs / "busy.log",
            )
        )
        for address, proc in ((REPLICA_1, procs[0]), (REPLICA_2, procs[1])):
            wait_http_ok(f"http://{address}:8080/health", proc)
        yield procs
    finally:
        for proc in procs:
            proc.stop()


@dataclass
class Gateway:
    url: str
    process: Process

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics").text


def gateway_process(kubeconfig: Path, log: Path, *args: str) -> tuple[Process, str]:
    """A kuberank-gateway on a free loopback port, and its base URL (not yet waited for)."""
    port = free_port()
    command = [str(VENV_BIN / "kuberank-gateway"), "--kubeconfig", str(kubeconfig),
               "--host", "127.0.0.1", "--port", str(port), *args]
    return Process(command, log), f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def gateway(
    crds: Path, kubeconfig: Path, runtimes: list[Process], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    proc, url = gateway_process(
        kubeconfig, log,
        "--upstream-timeout", "2", "--connect-timeout", "1", "--retry-after", "3",
        "--max-documents", str(MAX_DOCUMENTS), "--max-body-bytes", str(MAX_BODY),
        "--log-level", "debug",
    )
    try:
        wait_http_ok(f"{url}/readyz", proc, timeout=60)
        yield Gateway(url, proc)
    finally:
        proc.stop()


# --------------------------------------------------------------------------- objects


@dataclass
class Tenant:
    """One test's namespace and what it created there."""

    api: client.ApiClient
    namespace: str
    gateway: Gateway

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def model(self, name: str, served: str | None = SERVED, **more: Any) -> None:
        spec: dict[str, Any] = {
            "source": {"url": {"url": "https://models.invalid/tiny.gguf", "sha256": "0" * 64}},
            "resources": {"gpus": 0},
            **more,
        }
        if served:
            spec["servedName"] = served
        self.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "rerankmodels",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "RerankModel",
                "metadata": {"name": name},
                "spec": spec,
            },
        )

    def endpoints(
        self, model: str, *addresses: str, ready: bool = True, slice_name: str | None = None,
        kuberanks: bool = True,
    ) -> None:
        """A slice of the model's Service; with ``kuberanks`` it carries the labels the
        EndpointSlice controller copies from the operator's Service."""
        labels = {
            "kubernetes.io/service-name": f"rrm-{model}",
            "endpointslice.kubernetes.io/managed-by": "kuberank-gateway-tests",
            **({"app.kubernetes.io/managed-by": "kuberank"} if kuberanks else {}),
        }
        body: Any = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": slice_name or f"rrm-{model}-test", "labels": labels},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": ready}} for a in addresses],
        }
        client.DiscoveryV1Api(self.api).create_namespaced_endpoint_slice(self.namespace, body)

    def apikey(self, name: str, **spec: Any) -> str:
        """Create an ApiKey and publish its digest as the operator would; the plain key."""
        self.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "apikeys",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ApiKey",
                "metadata": {"name": name},
                "spec": spec,
            },
        )
        return self.publish(name)

    def publish(self, name: str) -> str:
        key = generate_key()
        MINTED.append(key)
        parsed = parse_key(key)
        assert parsed is not None
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.namespace,
            "apikeys",
            name,
            {"status": {"keyId": parsed.key_id, "digest": digest_secret(parsed.secret)}},
        )
        return key

    def patch_key(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "apikeys", name, {"spec": spec}
        )

    def get_model(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "rerankmodels", name
        )
        return obj

    def delete_key(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, "apikeys", name)

    def post(
        self,
        key: str | None,
        body: Any = None,
        path: str = "/v1/rerank",
        header: str = "authorization",
    ) -> httpx.Response:
        payload = (
            body
            if body is not None
            else {
                "model": SERVED,
                "query": "what is a panda?",
                "documents": ["hi", "the giant panda is a bear native to China"],
            }
        )
        headers = {}
        if key is not None:
            headers[header] = f"Bearer {key}" if header == "authorization" else key
        content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return httpx.post(f"{self.gateway.url}{path}", content=content, headers=headers, timeout=30)


@pytest.fixture
def tenant(api_client: client.ApiClient, namespace: str, gateway: Gateway) -> Tenant:
    return Tenant(api_client, namespace, gateway)


def status_of(expected: int, send: Callable[[], httpx.Response]) -> Callable[[], httpx.Response]:
    def check() -> httpx.Response:
        response = send()
        assert response.status_code == expected, (response.status_code, response.text)
        return response

    return check


def served_tenant(tenant: Tenant, *addresses: str, **key_spec: Any) -> str:
    """Model 'tiny' on ``addresses`` (default: both replicas) and a key with ``key_spec``.

    Routing is first proven with an unlimited probe key, so that waiting for the watch to
    deliver the objects spends none of the test key's rate limit; the returned key has
    answered 200 exactly once.
    """
    tenant.model("tiny")
    tenant.endpoints("tiny", *(addresses or (REPLICA_1, REPLICA_2)))
    probe = tenant.apikey("probe")
    eventually(status_of(200, lambda: tenant.post(probe)))
    key = tenant.apikey("app", **key_spec)

    def authenticated() -> httpx.Response:
        response = tenant.post(key)
        assert response.status_code != 401, response.text
        return response

    first = eventually(authenticated)
    assert first.status_code == 200, first.text
    return key


# --------------------------------------------------------------------------- tests


def test_gateway_forwards_all_three_dialects_to_the_runtime(tenant: Tenant) -> None:
    key = served_tenant(tenant)
    jina = tenant.post(key).json()
    assert jina["model"] == SERVED and len(jina["results"]) == 2
    assert jina["usage"]["total_tokens"] > 0
    tei = eventually(
        status_of(
            200, lambda: tenant.post(key, {"query": "q", "texts": ["a", "b", "c"]}, path="/rerank")
        )
    ).json()
    assert sorted(r["index"] for r in tei) == [0, 1, 2]
    cohere = tenant.post(
        key, {"model": SERVED, "query": "q", "documents": ["a", "b"], "top_n": 1}, path="/v2/rerank"
    )
    assert cohere.status_code == 200 and len(cohere.json()["results"]) == 1


def test_a_tei_client_with_a_key_for_two_models_names_one_in_its_base_url(
    tenant: Tenant,
) -> None:
    """A second model in the namespace, even one not running, left TEI clients with 422
    model_required: their body names no model."""
    key = served_tenant(tenant)
    tenant.model("second", served="second")
    tei = {"query": "q", "texts": ["a", "b", "c"]}
    required = eventually(status_of(422, lambda: tenant.post(key, tei, path="/rerank")))
    assert required.json()["error"]["code"] == "model_required"
    answer = tenant.post(key, tei, path=f"/models/{SERVED}/rerank")
    assert answer.status_code == 200, answer.text
    assert sorted(r["index"] for r in answer.json()) == [0, 1, 2]
    jina = tenant.post(key, {"query": "q", "documents": ["a", "b"]},
                       path=f"/models/{SERVED}/v1/rerank")
    assert jina.status_code == 200 and jina.json()["model"] == SERVED


def test_one_request_id_names_the_request_at_the_gateway_and_the_runtime(tenant: Tenant) -> None:
    key = served_tenant(tenant)
    body = {"model": SERVED, "query": "q", "documents": ["a", "b"]}
    auth = {"authorization": f"Bearer {key}"}
    url = f"{tenant.gateway.url}/v2/rerank"
    # A Cohere answer's id is written by the runtime from the id the gateway forwarded.
    mine = httpx.post(url, json=body, headers={**auth, "x-request-id": "trace-7"})
    assert mine.headers["x-request-id"] == mine.json()["id"] == "trace-7"
    chosen = httpx.post(url, json=body, headers=auth)
    assert chosen.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", chosen.headers["x-request-id"])
    assert chosen.json()["id"] == chosen.headers["x-request-id"]
    refused = httpx.post(url, json=body, headers={"x-request-id": "trace-8"})
    assert (refused.status_code, refused.headers["x-request-id"]) == (401, "trace-8")


def test_cohere_sdk_reaches_the_model_through_the_gateway_with_its_key(tenant: Tenant) -> None:
    """A real client library: Cohere's SDK sends the key as Bearer and parses our answers."""
    key = served_tenant(tenant, models=[SERVED, "ghost"])
    tenant.model("other", served="other")
    docs = ["hi", "the giant panda is a bear native to China", "bamboo"]
    sdk = cohere.ClientV2(api_key=key, base_url=tenant.gateway.url, timeout=30)
    answer = sdk.rerank(model=SERVED, query="what is a panda?", documents=docs, top_n=2)
    assert len(answer.results) == 2 and {r.index for r in answer.results} <= {0, 1, 2}
    assert answer.results[0].relevance_score >= answer.results[1].relevance_score
    for client_key, model, refused in ((generate_key(), SERVED, cohere.UnauthorizedError),
                                       (key, "other", cohere.ForbiddenError),
                                       (key, "ghost", cohere.NotFoundError)):
        with pytest.raises(refused):
            cohere.ClientV2(api_key=client_key, base_url=tenant.gateway.url, timeout=30).rerank(
                model=model, query="q", documents=docs)


def test_x_api_key_header_authenticates_like_bearer(tenant: Tenant) -> None:
    key = served_tenant(tenant)
    assert tenant.post(key, header="x-api-key").status_code == 200


def test_usage_and_requests_are_exported_by_key_id_tenant_and_model(tenant: Tenant) -> None:
    key = served_tenant(tenant)
    parsed = parse_key(key)
    assert parsed is not None
    tokens = tenant.post(key).json()["usage"]["total_tokens"]
    text = tenant.gateway.metrics()
    assert (
        sample(
            text,
            "kuberank_gateway_requests_total",
            key_id=parsed.key_id,
            namespace=tenant.namespace,
            model=SERVED,
            dialect="jina",
            status="200",
        )
        == 2
    )
    assert (
        sample(text, "kuberank_gateway_usage_tokens_total", key_id=parsed.key_id,
               namespace=tenant.namespace, model=SERVED)
        == 2 * tokens
    )


def test_missing_unknown_and_wrong_keys_get_401(tenant: Tenant) -> None:
    key = served_tenant(tenant)
    parsed = parse_key(key)
    assert parsed is not None
    for presented in (None, "kr_not_a_key", generate_key(), f"kr_{parsed.key_id}_{'f' * 32}"):
        response = tenant.post(presented)
        assert response.status_code == 401, presented
        assert response.json()["error"]["type"] == "authentication_error"


def test_model_outside_the_keys_list_gets_403_and_unserved_model_404(tenant: Tenant) -> None:
    key = served_tenant(tenant, models=[SERVED, "ghost"])
    tenant.model("other", served="other")
    body = {"model": "other", "query": "q", "documents": ["a"]}
    assert tenant.post(key, body).status_code == 403
    assert tenant.post(key, {**body, "model": "ghost"}).status_code == 404


def test_model_in_another_namespace_is_not_reachable(
    tenant: Tenant, api_client: client.ApiClient, gateway: Gateway
) -> None:
    served_tenant(tenant)  # 'tiny' is served in the tenant's namespace ...
    name = f"other-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        stranger = Tenant(api_client, name, gateway)
        key = stranger.apikey("k")  # ... but this key lives where nothing is served
        eventually(status_of(404, lambda: stranger.post(key)))
    finally:
        core.delete_namespace(name)


def test_oversized_body_gets_413_and_too_many_documents_422(tenant: Tenant) -> None:
    key = served_tenant(tenant)
    big = {"model": SERVED, "query": "q", "documents": ["x" * (MAX_BODY + 1)]}
    assert tenant.post(key, big).status_code == 413
    many = {"model": SERVED, "query": "q", "documents": ["d"] * (MAX_DOCUMENTS + 1)}
    response = tenant.post(key, many)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "too_many_documents"


def test_malformed_json_gets_400(tenant: Tenant) -> None:
    key = served_tenant(tenant)
    assert tenant.post(key, b'{"model": "tiny", "query": ').status_code == 400
    assert tenant.post(key, {"model": SERVED, "query": "q", "documents": []}).status_code == 400


def test_revoked_key_is_refused_within_seconds(tenant: Tenant) -> None:
    key = served_tenant(tenant)
    tenant.delete_key("app")
    started = time.monotonic()
    eventually(status_of(401, lambda: tenant.post(key)), timeout=5)
    assert time.monotonic() - started < 5


def test_a_key_deleted_while_its_finalizer_waits_is_refused_at_once(tenant: Tenant) -> None:
    """With the operator down, a deleted ApiKey stays (its finalizer waits for the operator):
    its key must stop working anyway, not when the operator comes back."""
    key = served_tenant(tenant)
    tenant.custom.patch_namespaced_custom_object(
        GROUP, VERSION, tenant.namespace, "apikeys", "app",
        {"metadata": {"finalizers": ["kuberank.io/operator"]}})
    tenant.delete_key("app")
    try:
        eventually(status_of(401, lambda: tenant.post(key)), timeout=5)
        held = tenant.custom.get_namespaced_custom_object(
            GROUP, VERSION, tenant.namespace, "apikeys", "app")
        assert held["metadata"]["deletionTimestamp"]  # still there, only marked
    finally:
        tenant.custom.patch_namespaced_custom_object(
            GROUP, VERSION, tenant.namespace, "apikeys", "app", {"metadata": {"finalizers": []}})


def test_disabling_and_reenabling_a_key_take_effect_while_running(tenant: Tenant) -> None:
    key = served_tenant(tenant)
    tenant.patch_key("app", {"disabled": True})
    response = eventually(status_of(401, lambda: tenant.post(key)), timeout=5)
    assert "disabled" in response.json()["error"]["message"]
    tenant.patch_key("app", {"disabled": False})
    eventually(status_of(200, lambda: tenant.post(key)), timeout=5)


def test_key_stops_working_at_its_expiry_time(tenant: Tenant) -> None:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=6)
    key = served_tenant(tenant, expiresAt=expires.isoformat().replace("+00:00", "Z"))
    response = eventually(status_of(401, lambda: tenant.post(key)), timeout=15)
    assert datetime.now(UTC) >= expires
    assert "expired" in response.json()["error"]["message"]


def test_rotated_key_replaces_the_old_one(tenant: Tenant) -> None:
    old = served_tenant(tenant)
    new = tenant.publish("app")
    eventually(status_of(200, lambda: tenant.post(new)), timeout=5)
    assert tenant.post(old).status_code == 401


def test_requests_over_the_per_minute_limit_get_429_with_retry_after(tenant: Tenant) -> None:
    key = served_tenant(tenant, rateLimit={"requestsPerMinute": 3})  # one request spent
    answers = [tenant.post(key) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    # Clients can pace themselves: what is left is on every answer (refills may round up).
    assert [a.headers["x-ratelimit-limit-requests"] for a in answers] == ["3", "3"]
    assert [int(a.headers["x-ratelimit-remaining-requests"]) for a in answers] == [1, 0]
    assert "x-ratelimit-limit-tokens" not in answers[0].headers
    response = tenant.post(key)
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(response.headers["retry-after"]) <= 20
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(response.headers["x-ratelimit-reset-requests"].removesuffix("s")) <= 60


def test_each_gateway_replica_enforces_its_share_of_a_keys_limit(
    tenant: Tenant, kubeconfig: Path, tmp_path: Path
) -> None:
    """Two ready replicas behind the gateway's Service: this one admits half the key's limit.
    The Service lives in a namespace the gateway does not watch for keys and models."""
    core = client.CoreV1Api(tenant.api)
    system = f"gw-system-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=system)))
    gateways = Tenant(tenant.api, system, tenant.gateway)
    tenant.model("tiny")
    tenant.endpoints("tiny", REPLICA_1)
    key = tenant.apikey("app", rateLimit={"requestsPerMinute": 10})
    proc, url = gateway_process(kubeconfig, tmp_path / "shared.log", "--namespaces",
                                tenant.namespace, "--peers", f"{system}/gw")
    try:
        gateways.endpoints("gw-never-matches", "10.251.0.9")  # another Service: not counted
        body: Any = {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "gw-a", "labels": {"kubernetes.io/service-name": "gw"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": [a]} for a in ("10.251.0.7", "10.251.0.8")],
        }
        client.DiscoveryV1Api(tenant.api).create_namespaced_endpoint_slice(system, body)
        wait_http_ok(f"{url}/readyz", proc, timeout=60)
        eventually(lambda: routed_at(url, key))  # spends no request of the key's budget

        def post() -> httpx.Response:
            return httpx.post(f"{url}/v1/rerank", headers={"authorization": f"Bearer {key}"},
                              json={"model": SERVED, "query": "q", "documents": ["a"]})

        answers = [post() for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        assert answers[0].headers["x-ratelimit-limit-requests"] == "10"
        assert answers[-1].headers["retry-after"] == "12"  # 5 a minute here: one per 12 s
    finally:
        proc.stop()
        core.delete_namespace(system)


def test_a_key_at_its_cap_of_requests_in_flight_gets_429_until_one_ends(
    tenant: Tenant, kubeconfig: Path, tmp_path: Path
) -> None:
    tenant.model("tiny")
    tenant.endpoints("tiny", HANGING)  # a request stays in flight until its client leaves
    key = tenant.apikey("app", rateLimit={"concurrentRequests": 1})
    proc, url = gateway_process(kubeconfig, tmp_path / "capped.log", "--upstream-timeout", "300")

    def send(timeout: float) -> httpx.Response:
        return httpx.post(f"{url}/v1/rerank", headers={"authorization": f"Bearer {key}"},
                          json={"model": SERVED, "query": "q", "documents": ["a"]},
                          timeout=timeout)

    def refused() -> httpx.Response:
        response = send(5)
        assert response.status_code == 429, response.text
        return response

    def admitted_for(seconds: float) -> None:
        with pytest.raises(httpx.ReadTimeout):  # held by the upstream, so it was let through
            send(seconds)

    def admitted() -> None:
        try:
            admitted_for(0.5)
        except pytest.fail.Exception as refused_again:  # still at the cap: try again
            raise AssertionError(str(refused_again)) from None

    try:
        wait_http_ok(f"{url}/readyz", proc, timeout=60)
        eventually(lambda: routed_at(url, key))
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(admitted_for, 3.0)

            def first_in_flight() -> None:
                page = httpx.get(f"{url}/metrics").text
                assert sample(page, "kuberank_gateway_requests_in_flight", model=SERVED) == 1

            eventually(first_in_flight)
            response = refused()
            assert response.json()["error"]["code"] == "concurrency_limited"
            assert response.headers["retry-after"] == "1"
            first.result(timeout=10)
        eventually(admitted)  # the first client left: its slot is free again
    finally:
        proc.stop()


def test_tokens_over_the_per_minute_limit_get_429(tenant: Tenant) -> None:
    key = served_tenant(tenant, rateLimit={"tokensPerMinute": 5})  # one request overdraws it
    response = tenant.post(key)
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-ratelimit-remaining-tokens"] == "0"


def test_no_ready_replica_gets_503_until_one_becomes_ready(tenant: Tenant) -> None:
    tenant.model("tiny")
    tenant.endpoints("tiny", REPLICA_1, ready=False)
    key = tenant.apikey("app")
    response = eventually(status_of(503, lambda: tenant.post(key)))
    assert response.headers["retry-after"] == "3"
    tenant.endpoints("tiny", REPLICA_2, slice_name="rrm-tiny-ready")
    eventually(status_of(200, lambda: tenant.post(key)))


def routed_at(gateway_url: str, key: str) -> None:
    """The gateway at ``gateway_url`` knows the key and a ready replica of its model."""
    models = httpx.get(f"{gateway_url}/v1/models", headers={"authorization": f"Bearer {key}"})
    assert models.json().get("data") and models.json()["data"][0]["ready"], models.text


def known_to_the_gateway(tenant: Tenant, key: str) -> dict[str, Any]:
    """Wait until the gateway has the key and model 'tiny' (without sending it a request);
    its model card."""

    def listed() -> dict[str, Any]:
        response = httpx.get(f"{tenant.gateway.url}/v1/models",
                             headers={"authorization": f"Bearer {key}"})
        assert [m["id"] for m in response.json().get("data", [])] == [SERVED], response.text
        card: dict[str, Any] = response.json()["data"][0]
        return card

    return eventually(listed)


def test_a_request_wakes_a_model_scaled_to_zero_and_is_held_until_a_replica_is_ready(
    tenant: Tenant,
) -> None:
    wake = {"afterIdleSeconds": 600, "wakeReplicas": 2, "wakeTimeoutSeconds": 60}
    tenant.model("tiny", replicas=0, scaleToZero=wake)
    key = tenant.apikey("app")
    assert known_to_the_gateway(tenant, key)["state"] == "scaled_to_zero"
    before = sample(tenant.gateway.metrics(), "kuberank_gateway_wakeups_total", model=SERVED)
    held_before = sample(tenant.gateway.metrics(), "kuberank_gateway_wake_wait_seconds_count",
                         model=SERVED)

    with ThreadPoolExecutor(3) as pool:
        held = [pool.submit(tenant.post, key) for _ in range(3)]
        def scaled_up() -> dict[str, Any]:
            model = tenant.get_model("tiny")
            assert model["spec"]["replicas"] == 2, model["spec"]
            return model

        woken = eventually(scaled_up)
        assert woken["status"]["lastRequestTime"], "the request was recorded for the idle clock"

        def all_three_held() -> None:  # at the gateway, not still on their way there
            assert sample(tenant.gateway.metrics(), "kuberank_gateway_requests_in_flight",
                          model=SERVED) == 3

        eventually(all_three_held)
        assert not any(f.done() for f in held), "held while no replica is ready"
        tenant.endpoints("tiny", REPLICA_1)  # what the Deployment's first ready pod brings
        answers = [f.result(timeout=30) for f in held]
    assert known_to_the_gateway(tenant, key)["state"] == "ready"
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert answers[0].json()["results"][0]["index"] == 1
    after = sample(tenant.gateway.metrics(), "kuberank_gateway_wakeups_total", model=SERVED)
    assert after - before == 1, "three requests, one wake"
    waits = sample(tenant.gateway.metrics(), "kuberank_gateway_wake_wait_seconds_count",
                   model=SERVED)
    assert waits - held_before == 3, "each held request's wait is recorded"


def test_a_model_that_does_not_wake_in_time_gets_503_and_stays_scaled_up(tenant: Tenant) -> None:
    tenant.model("tiny", replicas=0, scaleToZero={"wakeTimeoutSeconds": 1})
    key = tenant.apikey("app")
    known_to_the_gateway(tenant, key)
    started = time.monotonic()
    response = tenant.post(key)
    assert response.status_code == 503, response.text
    assert time.monotonic() - started >= 1
    assert response.json()["error"]["code"] == "model_waking"
    assert response.headers["retry-after"] == "3"
    assert tenant.get_model("tiny")["spec"]["replicas"] == 1  # still starting for the retry


def test_a_model_scaled_to_zero_while_a_request_waits_is_woken_again(tenant: Tenant) -> None:
    """The request came while the model still had a replica (starting, no endpoint yet); the
    operator's idle clock took it to 0 before any became ready."""
    tenant.model("tiny", replicas=1, scaleToZero={"wakeTimeoutSeconds": 60})
    key = tenant.apikey("app")
    known_to_the_gateway(tenant, key)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(tenant.post, key)

        def arrived() -> None:  # the gateway records each request before it waits
            assert (tenant.get_model("tiny").get("status") or {}).get("lastRequestTime")

        eventually(arrived)
        scale = {"spec": {"replicas": 0}}
        tenant.custom.patch_namespaced_custom_object_scale(
            GROUP, VERSION, tenant.namespace, "rerankmodels", "tiny", scale
        )

        def woken_again() -> None:
            assert tenant.get_model("tiny")["spec"]["replicas"] == 1

        eventually(woken_again)
        tenant.endpoints("tiny", REPLICA_1)
        response = held.result(timeout=30)
    assert response.status_code == 200, response.text


def test_a_model_deleted_while_waking_gets_404(tenant: Tenant) -> None:
    tenant.model("tiny", replicas=0, scaleToZero={"wakeTimeoutSeconds": 60})
    key = tenant.apikey("app")
    known_to_the_gateway(tenant, key)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(tenant.post, key)

        def woken() -> None:
            assert tenant.get_model("tiny")["spec"]["replicas"] == 1

        eventually(woken)
        started = time.monotonic()
        tenant.custom.delete_namespaced_custom_object(
            GROUP, VERSION, tenant.namespace, "rerankmodels", "tiny"
        )
        response = held.result(timeout=30)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "model_not_found"
    assert time.monotonic() - started < 15, "answered when the deletion was seen, not at timeout"


def test_a_waking_model_whose_pods_fail_is_answered_at_once_with_the_reason(
    tenant: Tenant,
) -> None:
    """Held while its pods may still start (no GPU free yet), not while they crash."""
    tenant.model("tiny", replicas=1, scaleToZero={"wakeTimeoutSeconds": 2})
    key = tenant.apikey("app")
    assert known_to_the_gateway(tenant, key)["state"] == "starting"

    def degraded(reason: str) -> None:  # as the operator reports its pods
        conditions = [{"type": "Degraded", "status": "True", "reason": reason,
                       "message": f"Pod rrm-tiny-x: {reason}.",
                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        tenant.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, tenant.namespace, "rerankmodels", "tiny",
            {"status": {"conditions": conditions}},
        )

    degraded("CrashLoop")

    def refused_at_once() -> httpx.Response:
        started = time.monotonic()
        response = tenant.post(key)
        assert response.status_code == 503 and time.monotonic() - started < 1, response.text
        return response

    response = eventually(refused_at_once)
    assert response.json()["error"]["code"] == "no_ready_replica"
    assert "CrashLoop: Pod rrm-tiny-x: CrashLoop." in response.json()["error"]["message"]
    assert "retry-after" not in response.headers  # retrying in 5 s will not fix it
    assert known_to_the_gateway(tenant, key)["state"] == "failing"

    degraded("InsufficientGPU")

    def held_until_timeout() -> None:
        started = time.monotonic()
        response = tenant.post(key)
        assert response.json()["error"]["code"] == "model_waking", response.text
        assert time.monotonic() - started >= 2

    eventually(held_until_timeout)


def test_a_model_at_zero_replicas_without_scale_to_zero_is_not_woken(tenant: Tenant) -> None:
    tenant.model("tiny", replicas=0)
    key = tenant.apikey("app")
    assert known_to_the_gateway(tenant, key)["state"] == "stopped"
    response = tenant.post(key)
    assert response.status_code == 503 and response.json()["error"]["code"] == "no_ready_replica"
    assert (f"spec.replicas is 0 (kubectl scale rrm tiny -n {tenant.namespace} --replicas=1 "
            "serves it)") in response.json()["error"]["message"]
    assert "retry-after" not in response.headers  # nothing brings it back by itself

    def recorded_not_woken() -> None:  # LAST REQUEST is kept for every model
        model = tenant.get_model("tiny")
        assert model["spec"]["replicas"] == 0
        assert (model.get("status") or {}).get("lastRequestTime")

    eventually(recorded_not_woken)


def test_refused_connection_is_retried_on_another_replica(tenant: Tenant) -> None:
    before = sample(
        tenant.gateway.metrics(),
        "kuberank_gateway_upstream_errors_total",
        model=SERVED,
        kind="connect",
    )
    key = served_tenant(tenant, REFUSING, REPLICA_1)
    assert [tenant.post(key).status_code for _ in range(6)] == [200] * 6
    after = sample(
        tenant.gateway.metrics(),
        "kuberank_gateway_upstream_errors_total",
        model=SERVED,
        kind="connect",
    )
    # The refusing replica was tried (and retried elsewhere), then left alone while it cools.
    assert 1 <= after - before <= 3


def test_a_replica_that_refuses_the_work_is_passed_over_for_one_that_does(
    tenant: Tenant,
) -> None:
    def refused() -> float:
        return sample(tenant.gateway.metrics(), "kuberank_gateway_upstream_errors_total",
                      model=SERVED, kind="refused")

    before = refused()
    key = served_tenant(tenant, BUSY, REPLICA_1)
    assert [tenant.post(key).status_code for _ in range(6)] == [200] * 6
    # Ties between idle replicas go round-robin, so the full one was asked about half the time.
    assert refused() - before >= 3


def test_when_every_replica_is_full_the_runtimes_429_reaches_the_client(tenant: Tenant) -> None:
    tenant.model("tiny")
    tenant.endpoints("tiny", BUSY)
    key = tenant.apikey("app")
    response = eventually(status_of(429, lambda: tenant.post(key)))
    assert response.json()["error"]["code"] == "queue_full"
    assert response.headers["retry-after"] == "7"


def test_only_unreachable_replicas_get_503(tenant: Tenant) -> None:
    tenant.model("tiny")
    tenant.endpoints("tiny", REFUSING)
    key = tenant.apikey("app")
    response = eventually(status_of(503, lambda: tenant.post(key)))
    assert "reached" in response.json()["error"]["message"]


def test_a_slice_not_made_for_a_kuberank_service_is_never_routed_to(tenant: Tenant) -> None:
    tenant.model("tiny")
    # Someone else's slice naming the model's Service, with a working replica, written first:
    tenant.endpoints("tiny", REPLICA_1, slice_name="rrm-tiny-foreign", kuberanks=False)
    tenant.endpoints("tiny", REFUSING)  # then the Service's own slice (events keep their order)
    key = tenant.apikey("app")

    def tried_the_services_replicas() -> None:
        response = tenant.post(key)
        assert response.status_code != 200, "routed to the foreign slice's replica"
        assert "could be reached" in response.json()["error"]["message"], response.text

    eventually(tried_the_services_replicas)  # only the refusing replica was ever tried


def test_a_slice_mirrored_from_hand_written_endpoints_is_never_routed_to(
    tenant: Tenant,
) -> None:
    """Whoever may write Endpoints (the `edit` role of clusters from before 1.22) could make a
    selector-less Service of the model's name, with kuberank's labels, and Endpoints naming any
    pod IP: the API server's mirroring controller turns them into a slice the gateway took."""
    tenant.model("tiny")
    core = client.CoreV1Api(tenant.api)
    labels = {"app.kubernetes.io/managed-by": "kuberank"}
    core.create_namespaced_service(tenant.namespace, {
        "metadata": {"name": "rrm-tiny", "labels": labels},
        "spec": {"ports": [{"name": "http", "port": 8080}]},  # no selector: Endpoints by hand
    })
    core.create_namespaced_endpoints(tenant.namespace, {
        "metadata": {"name": "rrm-tiny", "labels": labels},
        "subsets": [{"addresses": [{"ip": REPLICA_1}], "ports": [{"name": "http", "port": 8080}]}],
    })
    mirrored = "endpointslice.kubernetes.io/managed-by=endpointslicemirroring-controller.k8s.io"
    discovery = client.DiscoveryV1Api(tenant.api)

    def mirror_made() -> None:
        assert discovery.list_namespaced_endpoint_slice(
            tenant.namespace, label_selector=mirrored).items, "no mirrored slice yet"

    eventually(mirror_made, timeout=30)
    key = tenant.apikey("app")
    tenant.endpoints("tiny", REFUSING)  # the only slice the gateway may take

    def only_the_refusing_replica_tried() -> None:
        response = tenant.post(key)
        assert response.status_code == 503, "routed to the mirrored slice's replica"
        assert "could be reached" in response.json()["error"]["message"], response.text

    eventually(only_the_refusing_replica_tried)
    for _ in range(5):  # the working replica behind the mirror is never tried
        only_the_refusing_replica_tried()


def test_upstream_that_never_answers_gets_504(tenant: Tenant) -> None:
    tenant.model("tiny")
    tenant.endpoints("tiny", HANGING)
    key = tenant.apikey("app")
    started = time.monotonic()
    response = eventually(status_of(504, lambda: tenant.post(key)))
    assert response.json()["error"]["type"] == "timeout_error"
    assert time.monotonic() - started < 15


def test_a_models_own_timeout_replaces_the_gateways(tenant: Tenant) -> None:
    """This gateway waits 2 s for a replica; a model with limits.timeoutSeconds 1 gets its
    504 after 1 s, and a model with 4 after 4 s."""
    tenant.model("quick", served="quick", limits={"timeoutSeconds": 1})
    tenant.model("patient", served="patient", limits={"timeoutSeconds": 4})
    for name in ("quick", "patient"):
        tenant.endpoints(name, HANGING)
    key = tenant.apikey("app")

    def timed(model: str) -> tuple[float, httpx.Response]:
        started = time.monotonic()
        response = tenant.post(key, {"model": model, "query": "q", "documents": ["a"]})
        return time.monotonic() - started, response

    def gives_504(model: str) -> tuple[float, httpx.Response]:
        elapsed, response = timed(model)
        assert response.status_code == 504, response.text
        return elapsed, response

    eventually(lambda: gives_504("quick"))  # routed (the watch has delivered both)
    eventually(lambda: gives_504("patient"), timeout=30)
    elapsed, response = gives_504("quick")
    assert 1 <= elapsed < 1.9, elapsed
    assert "did not answer within 1 s" in response.json()["error"]["message"]
    elapsed, response = gives_504("patient")
    assert 4 <= elapsed < 4.9, elapsed
    assert "within 4 s" in response.json()["error"]["message"]


def test_client_that_leaves_ends_the_upstream_call(
    tenant: Tenant, runtimes: list[Process], kubeconfig: Path, tmp_path: Path
) -> None:
    """Only the client's leaving can end the call here: the upstream never answers and this
    gateway would wait 300 s for it."""
    tenant.model("tiny")
    tenant.endpoints("tiny", HANGING)
    key = tenant.apikey("app")
    proc, url = gateway_process(kubeconfig, tmp_path / "patient.log", "--upstream-timeout", "300")
    auth = {"authorization": f"Bearer {key}"}
    try:
        wait_http_ok(f"{url}/readyz", proc, timeout=60)
        eventually(lambda: routed_at(url, key))
        request_id = uuid.uuid4().hex
        body = {"model": SERVED, "query": "q", "documents": ["a"]}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/rerank", json=body,
                       headers={**auth, "x-request-id": request_id}, timeout=1)
        hanging_log = next(p.log for p in runtimes if p.log.name == "hang.log")

        def upstream_closed() -> None:
            assert f"closed {request_id}" in hanging_log.read_text()

        eventually(upstream_closed, timeout=30)
        page = httpx.get(f"{url}/metrics").text
        assert sample(page, "kuberank_gateway_requests_total", model=SERVED, status="499") == 1
        proc.alive()
    finally:
        proc.stop()


def test_a_connection_the_gateway_refuses_at_the_door_is_counted(tenant: Tenant) -> None:
    closed = "kuberank_gateway_connections_closed_total"
    before = sample(tenant.gateway.metrics(), closed, reason="headers_too_large")
    port = int(tenant.gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nX-Filler: "
                         + b"y" * (70 << 10) + b"\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]

    def counted() -> None:
        assert sample(tenant.gateway.metrics(), closed, reason="headers_too_large") == before + 1

    eventually(counted)


def test_aliases_reach_the_model_and_change_without_touching_it(tenant: Tenant) -> None:
    tenant.model("tiny", aliases=["rerank-english-v3.0", "old-tiny"])
    tenant.endpoints("tiny", REPLICA_1)
    anyone = tenant.apikey("anyone")
    by_served = tenant.apikey("served", models=[SERVED])
    by_alias = tenant.apikey("alias", models=["old-tiny"])
    eventually(status_of(200, lambda: tenant.post(by_served)))

    def asking(model: str) -> dict[str, Any]:
        return {"model": model, "query": "what is a panda?",
                "documents": ["hi", "the giant panda is a bear native to China"]}

    for path in ("/v1/rerank", "/v2/rerank"):
        answer = tenant.post(by_served, asking("rerank-english-v3.0"), path=path)
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"][0]["index"] == 1
    assert tenant.post(by_served, asking("old-tiny")).json()["model"] == SERVED
    # A key listing one alias may use the model by every name (answers carry the served name).
    for model in ("old-tiny", SERVED, "rerank-english-v3.0"):
        assert tenant.post(by_alias, asking(model)).status_code == 200, model

    def listed(key: str) -> list[tuple[str, str]]:
        cards = httpx.get(f"{tenant.gateway.url}/v1/models",
                          headers={"authorization": f"Bearer {key}"}).json()["data"]
        return [(c["id"], c["root"]) for c in cards]

    assert listed(by_served) == [("old-tiny", SERVED), ("rerank-english-v3.0", SERVED),
                                 (SERVED, SERVED)]
    assert listed(by_alias) == listed(by_served)

    tenant.custom.patch_namespaced_custom_object(
        GROUP, VERSION, tenant.namespace, "rerankmodels", "tiny", {"spec": {"aliases": ["v2"]}}
    )
    eventually(status_of(404, lambda: tenant.post(anyone, asking("old-tiny"))))
    assert tenant.post(anyone, asking("v2")).status_code == 200


def test_gateway_reports_the_requests_in_flight_of_an_autoscaled_model(
    tenant: Tenant, kubeconfig: Path, tmp_path: Path
) -> None:
    tenant.model("tiny", autoscaling={"maxReplicas": 3})
    tenant.endpoints("tiny", HANGING)  # every request stays in flight until its client leaves
    key = tenant.apikey("app")
    proc, url = gateway_process(kubeconfig, tmp_path / "reporting.log", "--instance", "gw-test",
                                "--load-report-seconds", "1", "--upstream-timeout", "300")

    def reported() -> float:
        load = (tenant.get_model("tiny").get("status") or {}).get("gatewayLoad") or {}
        return float(load["gw-test"]["inFlight"]) if "gw-test" in load else -1.0

    try:
        wait_http_ok(f"{url}/readyz", proc, timeout=60)
        eventually(lambda: routed_at(url, key))
        body = {"model": SERVED, "query": "q", "documents": ["a"]}

        def hold() -> None:
            with contextlib.suppress(httpx.ReadTimeout):
                httpx.post(f"{url}/v1/rerank", json=body,
                           headers={"authorization": f"Bearer {key}"}, timeout=6)

        with ThreadPoolExecutor(3) as pool:
            for _ in range(3):
                pool.submit(hold)

            def three_in_flight() -> None:
                assert reported() >= 2.5, reported()

            eventually(three_in_flight, timeout=5)

        def idle() -> None:  # the clients left: the next report says so
            assert reported() == 0.0, reported()

        eventually(idle, timeout=5)
    finally:
        proc.stop()


def test_models_lists_what_the_key_may_use(tenant: Tenant) -> None:
    key = served_tenant(tenant, models=[SERVED])
    tenant.model("other", served="other")
    response = httpx.get(
        f"{tenant.gateway.url}/v1/models", headers={"authorization": f"Bearer {key}"}
    )
    assert [m["id"] for m in response.json()["data"]] == [SERVED]
    assert response.json()["data"][0]["ready"] is True


def test_health_readiness_and_metrics_endpoints(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200
    assert httpx.get(f"{gateway.url}/readyz").json() == {"status": "ready"}
    # (a TYPE line: the histogram has samples only once some test has sent a request)
    assert "# TYPE kuberank_gateway_request_duration_seconds histogram" in gateway.metrics()


def test_an_idle_client_connection_outlives_uvicorns_five_seconds(gateway: Gateway) -> None:
    """A proxy reuses pooled connections for up to 60 s (ingress-nginx): one the gateway closed
    at 5 s idle, as uvicorn does by default, turned the request sent at that moment into a 502."""
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)  # never reconnects by itself
    try:
        conn.request("GET", "/healthz")
        first = conn.getresponse()
        assert (first.status, first.read()) == (200, b'{"status":"ok"}')
        sock = conn.sock
        time.sleep(6)  # the idle spell under test, past uvicorn's default keep-alive
        conn.request("GET", "/healthz")  # on a connection the server closed: RemoteDisconnected
        second = conn.getresponse()
        assert (second.status, second.read()) == (200, b'{"status":"ok"}')
        assert conn.sock is sock, "a new connection was opened"
    finally:
        conn.close()


def test_gateway_logs_never_contain_key_material(tenant: Tenant) -> None:
    """Checked last in the module, over every key the tests above minted and sent."""
    key = served_tenant(tenant)
    tenant.patch_key("app", {"disabled": True})
    eventually(status_of(401, lambda: tenant.post(key)))
    log = tenant.gateway.process.log.read_text(errors="replace")
    assert "GET /readyz" in log or "Uvicorn running" in log  # the log is really captured
    for minted in MINTED:
        assert minted not in log and minted.rsplit("_", 1)[1] not in log


def test_gateway_limited_to_namespaces_ignores_keys_elsewhere(
    tenant: Tenant, api_client: client.ApiClient, kubeconfig: Path, tmp_path: Path
) -> None:
    key = served_tenant(tenant)
    other = f"unwatched-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    proc, url = gateway_process(
        kubeconfig, tmp_path / "scoped.log", "--namespaces", tenant.namespace
    )
    try:
        stranger = Tenant(api_client, other, tenant.gateway).apikey("k")
        eventually(status_of(404, lambda: tenant.post(stranger)))  # the wide gateway knows it
        wait_http_ok(f"{url}/readyz", proc, timeout=60)
        scoped = Tenant(api_client, tenant.namespace, Gateway(url, proc))
        assert scoped.post(key).status_code == 200
        assert scoped.post(stranger).status_code == 401
    finally:
        proc.stop()
        core.delete_namespace(other)


def test_gateway_is_not_ready_before_its_first_lists(
    kubeconfig: Path, crds: Path, tmp_path: Path
) -> None:
    """A gateway pointed at an API server that does not answer stays alive but unready."""
    broken = tmp_path / "kubeconfig"
    broken.write_text(kubeconfig.read_text().replace("https://127.0.0.1", "https://127.0.0.9"))
    proc, url = gateway_process(broken, tmp_path / "gw.log")
    try:
        wait_http_ok(f"{url}/healthz", proc, timeout=30)
        response = httpx.get(f"{url}/readyz")
        assert response.status_code == 503
    finally:
        proc.stop()


class CuttableProxy:
    """A TCP relay in front of the API server that can drop every connection and refuse new
    ones for a while: a real outage as the gateway's watches see it (TLS passes through)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.down = threading.Event()
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                conn.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                s.close()

    def cut(self) -> None:
        self.down.set()
        with self.lock:
            for conn in self.open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self.open.clear()

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_gateway_relists_after_losing_the_api_server(
    tenant: Tenant, kubeconfig: Path, tmp_path: Path
) -> None:
    """A key deleted while the gateway's watches are cut off is refused once they come back."""
    key = served_tenant(tenant)
    config = yaml.safe_load(kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]["server"]
    host, port = server.removeprefix("https://").rsplit(":", 1)
    proxy = CuttableProxy((host, int(port)))
    config["clusters"][0]["cluster"]["server"] = f"https://{host}:{proxy.port}"
    proxied = tmp_path / "kubeconfig"
    proxied.write_text(yaml.safe_dump(config))
    proc, url = gateway_process(proxied, tmp_path / "gw.log", "--namespaces", tenant.namespace)
    try:
        wait_http_ok(f"{url}/readyz", proc, timeout=60)
        behind = Tenant(tenant.api, tenant.namespace, Gateway(url, proc))
        assert behind.post(key).status_code == 200
        proxy.cut()
        tenant.delete_key("app")
        eventually(status_of(401, lambda: tenant.post(key)), timeout=5)  # the direct gateway
        assert behind.post(key).status_code == 200  # cut off: it cannot have heard yet
        proxy.restore()
        eventually(status_of(401, lambda: behind.post(key)), timeout=30)
        assert "relisting" in proc.log.read_text()
    finally:
        proc.stop()
        proxy.close()


def test_sigterm_drains_serving_new_requests_while_readiness_fails(
    tenant: Tenant, kubeconfig: Path, tmp_path: Path
) -> None:
    """A rolling update loses nothing: after SIGTERM the gateway still answers new connections
    for --drain-seconds (load balancers are still moving away) and only then stops."""
    key = served_tenant(tenant)
    proc, url = gateway_process(kubeconfig, tmp_path / "gw.log", "--namespaces",
                                tenant.namespace, "--drain-seconds", "3")
    behind = Tenant(tenant.api, tenant.namespace, Gateway(url, proc))
    try:
        wait_http_ok(f"{url}/readyz", proc, timeout=60)
        proc.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        def draining() -> None:
            answer = httpx.get(f"{url}/readyz", timeout=2)
            assert answer.status_code == 503 and answer.json()["error"]["code"] == "draining"

        eventually(draining, timeout=2)
        with httpx.Client(timeout=5) as fresh:  # a new connection, as a load balancer opens
            assert fresh.get(f"{url}/healthz").status_code == 200
        assert behind.post(key).status_code == 200  # forwarded and ranked while draining
        proc.proc.wait(timeout=15)
        assert time.monotonic() - signalled >= 3
        assert "SIGTERM: still serving" in proc.log.read_text()
    finally:
        proc.stop()

    # A second SIGTERM (or Ctrl-C) does not wait out the drain.
    proc, url = gateway_process(kubeconfig, tmp_path / "gw2.log", "--namespaces",
                                tenant.namespace, "--drain-seconds", "60")
    try:
        wait_http_ok(f"{url}/readyz", proc, timeout=60)
        proc.proc.send_signal(signal.SIGTERM)
        eventually(lambda: assert_status(httpx.get(f"{url}/readyz", timeout=2), 503), timeout=2)
        began = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        proc.proc.wait(timeout=10)
        assert time.monotonic() - began < 10
    finally:
        proc.stop()


def assert_status(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text


def test_each_keys_last_use_is_recorded_in_its_status_and_shown_by_kubectl(
    tenant: Tenant, kubeconfig: Path
) -> None:
    began = datetime.now(UTC).replace(microsecond=0)
    served_tenant(tenant)  # key "app", used once
    tenant.apikey("idle")  # never presented

    def last_used(name: str) -> datetime | None:
        obj = tenant.custom.get_namespaced_custom_object_status(
            GROUP, VERSION, tenant.namespace, "apikeys", name)
        return parse_timestamp((obj.get("status") or {}).get("lastUsedTime"))

    def stamped() -> datetime:
        when = last_used("app")
        assert when is not None, "no lastUsedTime yet"
        return when

    when = eventually(stamped, timeout=10)
    assert began <= when <= datetime.now(UTC)
    assert last_used("idle") is None
    listed = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", "get", "ak", "-n", tenant.namespace],
        capture_output=True, text=True, check=True).stdout.splitlines()
    header = listed[0]
    column = slice(header.index("LAST USED"), header.index("AGE"))
    cells = {line.split()[0]: line[column].strip() for line in listed[1:]}
    assert cells["idle"] == ""
    assert re.fullmatch(r"\d+s", cells["app"]), cells
