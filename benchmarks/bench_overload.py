"""The runtime past its capacity: what polite clients get when they send more than it decodes.

    python benchmarks/bench_overload.py [--model GGUF] [--vocab vocab.txt] [--clients 12]
        [--impatient 0] [--documents 64] [--max-queue-seconds 10] [--seconds 30]
        [--gpu-layers 0] [--log FILE] [--replicas N]

Starts the real runtime with ``--max-queue-seconds`` and a queue of pairs too large to matter,
measures its throughput with one client more than it has contexts (the capacity), then lets
``--clients`` closed-loop clients send ``--documents`` documents each, for ``--seconds``. A
client refused with 429 waits the ``Retry-After`` it was given and sends the same request
again, as Cohere's, OpenAI's and urllib3's retry loops do; ``--impatient`` clients more retry
every 200 ms whatever they are told (and take their share). Prints, side by side:
  goodput      pairs/s answered under overload against the capacity (the ratio is what
               refusing costs; 1.0 is free)
  latency      of admitted requests (queue wait + decode) against the bound the runtime keeps,
               and against the gateway's timeout (twice the bound, as the operator sets it):
               a request it admits must not time out at the gateway
  Retry-After  what it promised against how long a refused request took to be admitted, and
               the share of retries, waited as told, that were admitted the first time
With ``--replicas N`` the clients call a kuberank-gateway in front of N runtimes (on 127.0.0.1,
.2, ...; a fixed objects file, no cluster), which tries up to three of them on a 429.
Without ``--model`` it uses the embedded default (``kuberank-models build`` writes it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from bench_gateway import BIN, spawn, wait_ok
from bench_runtime import start_runtime
from benchkit import QUERY, documents, free_port, percentile_ms
from kuberank.crd.keys import generate_key
from kuberank.modelkit import paths

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import gatewayobjects


@dataclass
class Tally:
    """What the overload clients saw (appended from their threads, under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    admitted: list[float] = field(default_factory=list)  # seconds from send to answer
    whole: list[float] = field(default_factory=list)  # from the first send, 429s included
    pairs: int = 0
    promised: list[int] = field(default_factory=list)  # Retry-After of each 429
    waited: list[float] = field(default_factory=list)  # first send to admission, when refused
    refusals: list[int] = field(default_factory=list)  # 429s before admission, when refused
    other: dict[int, int] = field(default_factory=dict)  # statuses neither 200 nor 429


def _ask(http: httpx.Client, query: str, docs: list[str]) -> httpx.Response:
    return http.post("/v1/rerank", json={"query": query, "documents": docs,
                                         "return_documents": False})


def capacity(url: str, docs: list[str], clients: int, seconds: float,
             headers: dict[str, str]) -> float:
    """Pairs/s with ``clients`` closed-loop clients, nothing refused: what it decodes flat out
    (one more client than contexts keeps each busy while an answer travels)."""
    stop = time.monotonic() + seconds
    done = [0] * clients

    def loop(i: int) -> None:
        with httpx.Client(base_url=url, timeout=600, headers=headers) as http:
            while time.monotonic() < stop:
                r = _ask(http, QUERY, docs)
                if r.status_code == 429:  # the pace not yet measured well: as told
                    time.sleep(int(r.headers["retry-after"]))
                    continue
                r.raise_for_status()
                done[i] += len(docs)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(loop, range(clients)))
    return sum(done) / (time.monotonic() - started)


def overload(url: str, docs: list[str], clients: int, seconds: float, impatient: int,
             headers: dict[str, str]) -> tuple[Tally, float]:
    """``clients`` polite closed-loop clients for ``seconds`` (and ``impatient`` ones, which
    retry every 200 ms whatever they are told); the polite ones' tally and the time it took."""
    tally, stop = Tally(), time.monotonic() + seconds

    def rude(i: int) -> None:
        with httpx.Client(base_url=url, timeout=600, headers=headers) as http:
            while time.monotonic() < stop:
                r = _ask(http, f"{QUERY} ({i})", docs)
                if r.status_code == 429:
                    time.sleep(0.2)

    def loop(i: int) -> None:  # each client its own query: distinct requests, as users send
        with httpx.Client(base_url=url, timeout=600, headers=headers) as http:
            while time.monotonic() < stop:
                first_sent, refusals = time.monotonic(), 0
                while True:
                    sent = time.monotonic()
                    r = _ask(http, f"{QUERY} [{i}]", docs)
                    answered = time.monotonic()
                    with tally.lock:
                        if r.status_code == 200:
                            tally.admitted.append(answered - sent)
                            tally.whole.append(answered - first_sent)
                            tally.pairs += len(docs)
                            if refusals:
                                tally.waited.append(sent - first_sent)
                                tally.refusals.append(refusals)
                            break
                        if r.status_code != 429:
                            tally.other[r.status_code] = tally.other.get(r.status_code, 0) + 1
                            break
                        tally.promised.append(int(r.headers["retry-after"]))
                    refusals += 1
                    time.sleep(int(r.headers["retry-after"]))

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    threads += [threading.Thread(target=rude, args=(i,)) for i in range(impatient)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally, time.monotonic() - started


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(30)


@contextlib.contextmanager
def behind_a_gateway(model: Path, replicas: int,
                     flags: list[str]) -> Iterator[tuple[str, dict[str, str], str]]:
    """``replicas`` runtimes on 127.0.0.1, .2, ... and a kuberank-gateway serving a fixed objects
    file (as bench_gateway.py does): the gateway's URL, the headers with its key, a runtime's URL.
    The gateway tries up to three replicas on a 429, marking the tries it will pass over."""
    port, gateway_port, key = free_port(), free_port(), generate_key()
    addresses = [f"127.0.0.{i + 1}" for i in range(replicas)]
    objects = gatewayobjects.one_model(key, "bench", port, addresses)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-overload-") as tmp:
        objects_file = Path(tmp) / "objects.yaml"
        gatewayobjects.write(objects_file, objects)
        try:
            for address in addresses:
                procs.append(spawn([str(BIN / "kuberank-runtime"), "--model", str(model),
                                    "--served-name", "bench", "--host", address,
                                    "--port", str(port), *flags]))
            procs.append(spawn([str(BIN / "kuberank-gateway"), "--objects-file",
                                str(objects_file), "--host", "127.0.0.1", "--port",
                                str(gateway_port), "--log-level", "warning"]))
            for address, proc in zip(addresses, procs, strict=False):
                wait_ok(f"http://{address}:{port}/health", proc)
            gateway = f"http://127.0.0.1:{gateway_port}"
            wait_ok(f"{gateway}/readyz", procs[-1])
            yield gateway, {"authorization": f"Bearer {key}"}, f"http://{addresses[0]}:{port}"
        finally:
            for proc in procs:
                _stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--vocab", type=Path, default=None)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--impatient", type=int, default=0,
                        help="clients more that retry every 200 ms, ignoring Retry-After")
    parser.add_argument("--documents", type=int, default=64)
    parser.add_argument("--max-queue-seconds", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--gpu-layers", default="0")
    parser.add_argument("--log", type=Path, default=None)
    parser.add_argument("--replicas", type=int, default=0,
                        help="runtimes behind a kuberank-gateway (0: one runtime, called directly)")
    args = parser.parse_args()

    model = args.model or paths.models_dir() / paths.DEFAULT
    docs = documents(args.documents, vocab_file=args.vocab)
    flags = ["--max-queue-seconds", str(args.max_queue_seconds), "--max-queued-pairs", "1000000",
             "--gpu-layers", args.gpu_layers]
    with contextlib.ExitStack() as stack:
        if args.replicas:
            url, headers, first = stack.enter_context(behind_a_gateway(model, args.replicas, flags))
        else:
            proc, url = start_runtime(model, *flags, log=args.log)
            stack.callback(_stop, proc)
            headers, first = {}, url
        found = re.search(r'contexts="(\d+)"', httpx.get(first + "/metrics").text)
        contexts = (int(found.group(1)) if found else 1) * max(args.replicas, 1)
        flat_out = capacity(url, docs, contexts + 1, min(10.0, args.seconds / 3), headers)
        tally, took = overload(url, docs, args.clients, args.seconds, args.impatient, headers)

    bound, gateway = args.max_queue_seconds, 2 * args.max_queue_seconds
    goodput = tally.pairs / took
    where = f"{args.replicas} replicas behind the gateway" if args.replicas else "1 replica"
    print(f"model {model.name}, {where}, {contexts} context(s), {args.clients} clients "
          f"(+{args.impatient} impatient) x {args.documents} documents, --max-queue-seconds "
          f"{bound:g}, {took:.0f} s; figures below are the polite clients'")
    print(f"capacity ({contexts + 1} clients, nothing refused)    {flat_out:8.1f} pairs/s")
    print(f"goodput under overload                {goodput:8.1f} pairs/s  "
          f"({goodput / flat_out:.2f}x capacity)")
    lat = tally.admitted
    print(f"admitted requests                     {len(lat)}; latency p50 "
          f"{percentile_ms(lat, 0.5):.0f} ms, p99 {percentile_ms(lat, 0.99):.0f} ms, max "
          f"{max(lat) * 1000:.0f} ms (bound {bound:g} s + one request's decode; gateway "
          f"timeout {gateway:g} s: {sum(x > gateway for x in lat)} over)")
    print(f"each request, first send to answer    p50 {percentile_ms(tally.whole, 0.5) / 1000:.1f}"
          f" s, p90 {percentile_ms(tally.whole, 0.9) / 1000:.1f} s, max "
          f"{max(tally.whole):.1f} s (what a polite client waits, its 429s included)")
    if tally.promised:
        print(f"429s                                  {len(tally.promised)}; Retry-After p50 "
              f"{statistics.median(tally.promised):g} s, max {max(tally.promised)} s")
    if tally.waited:
        print(f"refused, then admitted                {len(tally.waited)}; first send to "
              f"admission p50 {statistics.median(tally.waited):.1f} s, max "
              f"{max(tally.waited):.1f} s; admitted at the first retry, waited as told: "
              f"{tally.refusals.count(1) / len(tally.refusals):.0%}")
    print(f"other statuses                        {tally.other or 'none'}")


if __name__ == "__main__":
    main()
