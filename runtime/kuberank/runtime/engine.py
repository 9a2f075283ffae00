"""The scoring engine: llama contexts, each with one owner thread, fed by one queue of pairs.

Requests are parsed and tokenized on worker threads (tokenizing only reads the vocabulary), then
join one scheduler (schedule.py: longest wait per pair first, by default). Each context's owner
thread takes up to `max_batch_pairs` pairs whose tokens fit `n_batch` into a `llama_decode`,
made outside the lock (ctypes releases the GIL), and a request's future is settled when its last
pair is scored, whichever contexts scored its pairs. The contexts share the loaded weights; one
is the default (`--contexts`).

Batching policy, measured with MiniLM-L6 (f32, pairs of ~137 tokens) on the 2-core machine these
were built on, while other jobs kept it busy (load average 6-8), pairs/s:

    threads  flash-attn   1 pair/decode   2      4      8
    1        off          6.8             5.0    4.7    2.5
    1        on           9.8             8.3    7.7    7.1
    2        off          1.7             2.1    2.7    2.1
    2        on           4.7             2.0    2.4    4.7

Packing several sequences into one decode never paid on CPU (attention over the packed batch
grows quadratically and the matrix products are already large enough to keep cores busy), and
flash attention always helped, so the CPU default is one pair per decode with flash attention on.
Threads above the CPUs really available collapse throughput (llama.cpp threads spin at
barriers): with the machine at load average 11-12, bench_runtime.py measured the raw loop at
1.0 pairs/s with 2 threads and 14.1 pairs/s with 1. Hence `default_threads()` reads the cgroup
quota, and `--threads` should not exceed the CPUs a pod is guaranteed.

On a GPU (H200, llama.cpp built for CUDA 13, f16 GGUFs, same pairs; bench_gpu.py), pairs/s of
the engine alone:

    model        flash   1 pair/decode   4      8      16     32     64
    MiniLM-L6    on      214             -      327    -      178    105
    MiniLM-L6    off     538             1558   1420   1185   634    284
    MiniLM-L6    auto    -               1487   1584   1214   -      -
    BERT-large   on      124             473    501    530    265    239
    BERT-large   off     118             -      394    -      244    181
    BERT-large   auto    -               487    598    537    -      -

A decode is cheap on a GPU and its fixed cost dominates one pair, so packing pays up to ~8 pairs;
beyond that llama.cpp's attention over the whole packed batch (its square) wins. Flash attention
is 2.5-4x slower for MiniLM's 32-wide heads and faster for BERT-large's 64-wide ones; llama.cpp's
auto picks right for both. Hence the GPU defaults (settings.engine_choices): 8 pairs per decode,
flash attention auto. CUDA graphs stay off: a decode's shape changes with its pairs' lengths,
and updating the graph aborted the process for BERT-large (GGML_ASSERT in
cudaGraphExecUpdate), while MiniLM measured the same with them or without.

Several contexts (`--contexts`), one owner thread each, over one copy of the weights, measured
with bench_gpu.py (runtime over HTTP, 8 clients x 32 documents; pairs/s):

    where                          1 context      2            4            16
    H200, MiniLM-L6, 8 pairs       1544           2055         2153         -
    H200, XLM-R large, 8 pairs     485            725          938          -
    16 CPU cores, MiniLM-L6, 1     95 (16 thr.)   -            285 (4x4)    281 (16x1)
    2 CPU cores, MiniLM-L6, 1      46-60 (2 thr.) 50-80 (2x1)  -            -

On a GPU a decode of a few pairs leaves it mostly idle (launches, synchronisation and Python
between decodes); contexts on their own threads and CUDA streams overlap that. XLM-R large (the
shape of bge-reranker-v2-m3) gains 1.9x with 4, its p50 under load halved (523 -> 266 ms) and
p99 too (543 -> 327 ms); MiniLM gains 1.4x, with a longer p99 tail (182 -> 631 ms). Hence 4 on
a GPU. On the CPU, llama.cpp's threads meet at a barrier after every operation, which costs more
the more threads there are: 4 contexts of 4 threads gave 3x one context of 16 on 16 cores, and on
2 cores 2 single-threaded contexts were even with one of 2. Hence one context per thread up to
4, the threads shared out beyond that. Each MiniLM context adds ~2 MB (its compute buffers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import anyio
from kuberank.protocol.dialects import RerankRequest
from kuberank.protocol.errors import InternalError, PayloadTooLarge, RateLimited, Unavailable
from kuberank.runtime.backlog import DecodePace, Promises, queue_room, seconds_until_it_fits
from kuberank.runtime.metrics import RuntimeMetrics
from kuberank.runtime.model import (
    ContextParams,
    ModelLoadError,
    RankContext,
    RankModel,
    default_threads,
    gpu_offload_supported,
)
from kuberank.runtime.pairs import Limits, PairBuilder
from kuberank.runtime.schedule import PairScheduler
from kuberank.runtime.settings import RuntimeSettings, engine_choices

log = logging.getLogger(__name__)

State = Literal["loading", "ready", "failed", "stopped"]


@dataclass(frozen=True)
class Scored:
    scores: list[float]
    prompt_tokens: int
    truncated: int


@dataclass(eq=False)
class _Job:
    pairs: list[list[int]]
    future: asyncio.Future[list[float]]
    loop: asyncio.AbstractEventLoop
    scores: list[float] = field(default_factory=list)
    left: int = 0
    abandoned: bool = False
    taken: int = 0  # pairs handed to a context; the rest still count as queued
    queued_at: float = field(default_factory=time.monotonic)
    started: bool = False


class Engine:
    def __init__(
        self,
        settings: RuntimeSettings,
        metrics: RuntimeMetrics | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or RuntimeMetrics()
        self.on_failure = on_failure
        self.state: State = "loading"
        self.error: BaseException | None = None
        self.builder: PairBuilder | None = None
        # One queue for every context: requests wait in the scheduler, under this condition.
        self._ready = threading.Condition()
        self._waiting: PairScheduler[_Job] = PairScheduler(settings.schedule,
                                                           settings.max_wait_seconds)
        self._queued = 0
        self._contexts = 1
        self._stopping = False  # stop was asked for: finish what is queued, then return
        self._thread = threading.Thread(target=self._run, name="llama-owner", daemon=True)
        self._pace = DecodePace()  # seconds per pair lately, for a full queue's Retry-After
        self._promises = Promises()  # pairs refused and told when to come back

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._ask_to_stop()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _ask_to_stop(self) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify_all()

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.state == "loading" and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.state == "ready"

    # -- request side (event loop and worker threads) ----------------------------------------

    async def rerank(self, request: RerankRequest, hold_place: bool = True) -> Scored:
        """Score ``request``'s pairs. ``hold_place``: a refusal (429) keeps its place in line;
        False when the gateway will try another replica instead (it passes on only the last
        refusal, so only that one's place is kept)."""
        if self.state != "ready" or self.builder is None:
            raise Unavailable("model is loading" if self.state == "loading"
                              else f"model is not available ({self.state})", code="model_loading",
                              retry_after=5 if self.state == "loading" else None)
        # The same request when retried, for the 429s' kept places (microseconds for a
        # hundred documents, ~4 ms for 10,000 of 1 KB, after far longer parsing them).
        which = hash((request.query, *request.documents))
        with self._ready:  # a full queue refuses before tokenizing: retries cost it nothing
            if self._queued:
                self._refuse_if_full(len(request.documents), which, hold_place)
        pairs, truncated = await anyio.to_thread.run_sync(self._prepare, request)
        loop = asyncio.get_running_loop()
        job = _Job(pairs=pairs, future=loop.create_future(), loop=loop,
                   scores=[0.0] * len(pairs), left=len(pairs))
        self._submit(job, which, hold_place)
        try:
            scores = await job.future
        except asyncio.CancelledError:
            with self._ready:  # the client went away: what is left is not decoded, nor counted
                self._drop(job)
            raise
        return Scored(scores, sum(len(p) for p in pairs), truncated)

    def _prepare(self, request: RerankRequest) -> tuple[list[list[int]], int]:
        assert self.builder is not None
        truncate = (self.settings.overflow == "truncate" if request.truncate is None
                    else request.truncate)
        query = self.builder.query(request.query, truncate=truncate)
        pairs = []
        for i, doc in enumerate(request.documents):
            try:
                pairs.append(self.builder.pair(query, doc, truncate=truncate,
                                               direction=request.truncation_direction,
                                               max_tokens_per_doc=request.max_tokens_per_doc))
            except PayloadTooLarge as err:  # say which one, among up to 10,000
                raise PayloadTooLarge(f"{request.documents_field}[{i}]: {err.message}",
                                      code=err.code) from None
        return [p.tokens for p in pairs], sum(p.truncated for p in pairs)

    def _submit(self, job: _Job, which: int, hold_place: bool) -> None:
        with self._ready:
            if self._stopping:
                raise Unavailable("shutting down: not taking new work", code="draining")
            # A lone request is always taken (max-documents bounds it): it waits for none.
            if self._queued:
                self._refuse_if_full(len(job.pairs), which, hold_place)
            self._promises.forget(which)
            self._queued += len(job.pairs)
            self.metrics.queue_depth.set(self._queued)
            self._waiting.add(job, job.queued_at)
            self._ready.notify()

    def _refuse_if_full(self, incoming: int, request: int, hold_place: bool) -> None:
        """429 for ``incoming`` pairs that would not fit beside those queued (held lock), told
        to come back once those queued and those refused before it have had their turn (or,
        retried early, the time it was told)."""
        capacity = queue_room(self.settings.effective_max_queued_pairs,
                              self.settings.max_queue_seconds, self._pace, self._contexts)
        now, per_pair, held = time.monotonic(), self._pace.per_pair(), 0
        if self._queued + incoming <= capacity:  # room now, unless it is someone else's
            held = self._promises.held_for_others(request, now, self._contexts / per_pair)
        if self._queued + incoming + held > capacity:
            wait = self._promises.remaining(request, now)
            if wait is None:  # told afresh: behind those told before it, not behind itself
                self._promises.forget(request)
                ahead = self._queued + self._promises.pending(now)
                wait = seconds_until_it_fits(ahead, incoming, capacity, per_pair,
                                             self._contexts)
                if hold_place:
                    self._promises.promise(request, now, wait, incoming)
            held_note = f", {held} held for requests told to come back" if held else ""
            raise RateLimited(f"engine queue is full ({self._queued} pairs waiting{held_note})",
                              code="queue_full", retry_after=wait)

    # -- owner threads -------------------------------------------------------------------------

    def _load(self) -> tuple[RankModel, list[RankContext]]:
        s = self.settings
        offloaded = s.gpu_layers != 0 and gpu_offload_supported()
        if s.gpu_layers != 0 and not offloaded:
            log.warning("gpu_layers is %d but this llama.cpp build has no GPU backend: "
                        "running on the CPU", s.gpu_layers)
        cpus = default_threads()
        choices = engine_choices(s, offloaded, cpus)
        if not offloaded and s.threads is not None and s.threads > cpus:
            log.warning("--threads %d is more than the %d CPU(s) this process may use: llama.cpp "
                        "threads spin at barriers, so that is many times slower, not a little",
                        s.threads, cpus)
        model = RankModel(s.model, gpu_layers=s.gpu_layers, cuda_graphs=s.cuda_graphs)
        threads = choices.threads
        params = ContextParams(ctx_size=s.ctx_size, batch_size=choices.batch_size,
                               threads=threads, gpu_layers=s.gpu_layers,
                               flash_attn=choices.flash_attn, max_seqs=choices.max_batch_pairs)
        if s.threads is not None and s.threads < choices.contexts:
            log.warning("%d thread(s) for %d contexts: each context still gets one, %d in all; "
                        "on the CPU that oversubscribes the cores", s.threads, choices.contexts,
                        choices.contexts)
        contexts: list[RankContext] = []
        try:
            for _ in range(choices.contexts):
                contexts.append(self._new_context(model, params))
        except BaseException as exc:
            if not (isinstance(exc, ModelLoadError) and contexts and s.contexts is None):
                for ctx in contexts:
                    ctx.close()
                model.close()
                raise
            # The default asked for more than the device holds (each context has its own
            # compute buffers): serve with those that fit rather than not at all.
            log.warning("only %d of %d llama contexts could be created, serving with %d (set "
                        "--contexts to choose): %s", len(contexts), choices.contexts,
                        len(contexts), exc)
        first = contexts[0]
        longest = min(first.n_batch, s.ctx_size, model.n_ctx_train or first.n_batch)
        self.builder = PairBuilder(
            model.layout(), model.tokenize,
            Limits(max_pair_tokens=longest, max_query_tokens=s.max_query_tokens,
                   max_document_tokens=s.max_document_tokens),
        )
        self.metrics.engine.info({
            "device": "gpu" if offloaded else "cpu", "flash_attn": choices.flash_attn,
            "max_batch_pairs": str(choices.max_batch_pairs), "batch_tokens": str(first.n_batch),
            "contexts": str(len(contexts))})
        log.info("engine on the %s: %d context(s) of %d thread(s), flash attention %s, at most "
                 "%d pair(s) and %d tokens per decode", "GPU" if offloaded else "CPU",
                 len(contexts), threads, choices.flash_attn, choices.max_batch_pairs,
                 first.n_batch)
        try:
            self._warm_up(contexts, full=offloaded)
        except Exception as exc:
            for ctx in contexts:
                ctx.close()
            model.close()
            raise ModelLoadError(f"the model loaded but could not score a pair: {exc}") from exc
        return model, contexts

    def _warm_up(self, contexts: list[RankContext], full: bool) -> None:
        """A decode on each context before the model is called ready; a model that cannot
        score fails its load instead of its first request.

        On a GPU (``full``) it is the largest a request can bring, as many pairs of as many
        tokens as a decode takes: the first decode of a shape pays for what llama.cpp sets up
        lazily (a GPU loads its kernels then, and JIT-compiles them when it is newer than the
        image's machine code, for minutes), which here falls inside the startup probe's budget,
        not on a client's request after the pod takes traffic. A CPU has nothing to load: one
        short pair each (a full one would cost a large model seconds of start per context)."""
        assert self.builder is not None
        query = self.builder.query("warm up", truncate=True)
        started = time.perf_counter()
        for ctx in contexts:
            count = ctx.max_seqs if full else 1
            room = min(self.builder.limits.max_pair_tokens, ctx.n_batch // count)
            words = max(1, room - self.builder.layout.overhead - len(query.tokens)) if full else 2
            pair = self.builder.pair(query, " ".join(["warm"] * words), truncate=True,
                                     max_tokens_per_doc=words).tokens
            ctx.score([pair] * max(1, min(count, ctx.n_batch // len(pair))))
        log.info("warmed up %d context(s) in %.0f ms", len(contexts),
                 (time.perf_counter() - started) * 1000)

    def _new_context(self, model: RankModel, params: ContextParams) -> RankContext:
        return RankContext(model, params)

    def _run(self) -> None:
        try:
            model, contexts = self._load()
        except BaseException as exc:
            self.error, self.state = exc, "failed"
            log.error("cannot serve %s: %s", self.settings.model, exc)
            if self.on_failure is not None:
                self.on_failure(exc)
            return
        self._contexts = len(contexts)
        helpers = [threading.Thread(target=self._serve, args=(ctx, str(i)), daemon=True,
                                    name=f"llama-owner-{i}")
                   for i, ctx in enumerate(contexts[1:], start=1)]
        self.state = "ready"
        log.info("serving %s (%s, pair limit %d tokens)", model.path, model.arch,
                 self.builder.limits.max_pair_tokens if self.builder else 0)
        for helper in helpers:
            helper.start()
        try:
            self._serve(contexts[0], "0")
        finally:
            self._ask_to_stop()  # a failed first context stops the others too
            for helper in helpers:
                helper.join()
            self.state = "stopped"
            for ctx in contexts:
                ctx.close()
            model.close()

    def _serve(self, ctx: RankContext, name: str) -> None:
        """One context's loop: take the next batch from the shared scheduler, decode it outside
        the lock (llama_decode releases the GIL), settle, repeat until stopped and empty."""
        decoded = self.metrics.context_pairs.labels(context=name)
        while True:
            with self._ready:
                while not self._waiting and not self._stopping:
                    self._ready.wait()
                if not self._waiting:
                    return
                batch = self._waiting.next_batch(ctx.max_seqs, ctx.n_batch, _dropped,
                                                 time.monotonic())
                if self._waiting:
                    self._ready.notify()  # pairs are left: wake an idle context for them
                # batch.skipped needs no bookkeeping: _drop counted those pairs out already.
                for job, _ in batch.pairs:
                    job.taken += 1
                    if not job.started:
                        job.started = True
                        self.metrics.queue_wait.observe(time.monotonic() - job.queued_at)
            if batch.pairs:
                self._decode(ctx, batch.pairs)
                decoded.inc(len(batch.pairs))

    def _decode(self, ctx: RankContext, batch: list[tuple[_Job, int]]) -> None:
        started = time.perf_counter()
        try:
            scores = ctx.score([job.pairs[i] for job, i in batch])
        except Exception as exc:
            log.exception("decode failed")
            with self._ready:
                self._dequeued(len(batch))
                for job, _ in batch:
                    self._drop(job)
                    _settle(job, error=InternalError(f"engine failed to score: {exc}"))
            return
        elapsed = time.perf_counter() - started
        self.metrics.decode_seconds.observe(elapsed)
        self.metrics.batch_pairs.observe(len(batch))
        with self._ready:  # a request's pairs may be decoded by several contexts at once
            self._pace.observe(elapsed, len(batch))
            self._dequeued(len(batch))
            for (job, i), score in zip(batch, scores, strict=True):
                job.scores[i] = score
                job.left -= 1
                if job.left == 0:
                    _settle(job, result=job.scores)

    def _drop(self, job: _Job) -> None:
        """Give up a job's pairs not yet handed to a context (its client left, or it failed): they
        stop counting against the queue at once, not when the scheduler reaches them, so a dead
        request's waiting pairs never earn a live one a 429 (those being decoded count until
        their decode ends). Called holding ``_ready``."""
        if job.abandoned:
            return
        job.abandoned = True
        left, job.taken = len(job.pairs) - job.taken, len(job.pairs)
        if left:
            self._dequeued(left)
            self.metrics.skipped_pairs.inc(left)

    def _dequeued(self, n: int) -> None:
        """Called holding ``_ready``."""
        self._queued -= n
        self.metrics.queue_depth.set(self._queued)


def _dropped(job: _Job) -> bool:
    """The client left, or the request already failed: its remaining pairs are not decoded."""
    return job.abandoned or job.future.done()


def _settle(job: _Job, *, result: list[float] | None = None,
            error: BaseException | None = None) -> None:
    def apply() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result or [])
    with contextlib.suppress(RuntimeError):  # the loop is gone (shutdown): nobody waits
        job.loop.call_soon_threadsafe(apply)
