"""The engine on a real llama.cpp context: pair layout, limits, rejection of non-rerankers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kuberank.protocol.dialects import Dialect, RerankRequest
from kuberank.protocol.errors import PayloadTooLarge, Unavailable
from kuberank.runtime.engine import Engine
from kuberank.runtime.model import (
    ContextParams,
    ModelLoadError,
    NonFiniteScoreError,
    PairBatch,
    RankContext,
    RankModel,
    default_threads,
    head_problem,
)
from kuberank.runtime.pairs import Limits, PairBuilder, template_layout
from kuberank.runtime.settings import RuntimeSettings
from polling import wait_for

pytestmark = pytest.mark.runtime

CLS, SEP = 101, 102


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> RankModel:
    return RankModel(tiny_model)


def builder(model: RankModel, **limits: int) -> PairBuilder:
    return PairBuilder(model.layout(), model.tokenize, Limits(**{"max_pair_tokens": 512, **limits}))


def test_bert_pair_is_cls_query_sep_document_sep(model: RankModel) -> None:
    b = builder(model)
    pair = b.pair(b.query("what is a panda", truncate=True), "a bear", truncate=True)
    q = model.tokenize("what is a panda", False)
    d = model.tokenize("a bear", False)
    assert pair.tokens == [CLS, *q, SEP, *d, SEP]
    assert not pair.truncated


def test_truncation_keeps_the_closing_token(model: RankModel) -> None:
    b = builder(model, max_document_tokens=4)
    doc = "one two three four five six seven eight"
    pair = b.pair(b.query("q", truncate=True), doc, truncate=True)
    assert pair.truncated
    assert pair.tokens[-1] == SEP
    assert pair.tokens[-5:-1] == model.tokenize(doc, False)[:4]


def test_left_truncation_keeps_the_end_of_the_document(model: RankModel) -> None:
    b = builder(model, max_document_tokens=3)
    doc = "one two three four five six"
    pair = b.pair(b.query("q", truncate=True), doc, truncate=True, direction="left")
    assert pair.tokens[-4:] == [*model.tokenize(doc, False)[-3:], SEP]


def test_reject_policy_raises_413_for_a_long_document(model: RankModel) -> None:
    b = builder(model, max_document_tokens=4)
    with pytest.raises(PayloadTooLarge):
        b.pair(b.query("q", truncate=False), "one two three four five", truncate=False)


def test_long_query_is_truncated_or_rejected(model: RankModel) -> None:
    b = builder(model, max_query_tokens=2)
    assert b.query("one two three", truncate=True).tokens == model.tokenize("one two", False)
    with pytest.raises(PayloadTooLarge):
        b.query("one two three", truncate=False)


def test_pair_never_exceeds_the_decode_budget(model: RankModel) -> None:
    b = builder(model)
    pair = b.pair(b.query("word " * 600, truncate=True), "doc " * 600, truncate=True)
    assert len(pair.tokens) == 512
    assert pair.tokens[-1] == SEP


def test_ten_megabyte_document_truncates_without_tokenizing_it_all(model: RankModel) -> None:
    b = builder(model)
    doc = "panda bamboo forest " * (10 * 1024 * 1024 // 20)
    started = time.perf_counter()
    pair = b.pair(b.query("q", truncate=True), doc, truncate=True)
    assert time.perf_counter() - started < 2.0
    assert len(pair.tokens) == 512
    assert pair.tokens[3:-1] == model.tokenize(doc[:20_000], False)[:508]


def test_max_tokens_per_doc_truncates_even_under_reject(model: RankModel) -> None:
    b = builder(model)
    pair = b.pair(b.query("q", truncate=False), "a b c d e f", truncate=False,
                  max_tokens_per_doc=2)
    assert pair.tokens == [CLS, *model.tokenize("q", False), SEP,
                           *model.tokenize("a b", False), SEP]


def test_max_tokens_per_doc_asks_for_cuts_past_the_servers_own_cap_too(model: RankModel) -> None:
    b = builder(model, max_document_tokens=3)
    pair = b.pair(b.query("q", truncate=False), "a b c d e f", truncate=False,
                  max_tokens_per_doc=50)
    assert pair.truncated
    assert pair.tokens[-4:] == [*model.tokenize("a b c", False), SEP]


def test_a_long_query_is_cut_longest_first_so_documents_keep_their_words(model: RankModel) -> None:
    b = builder(model)
    query = b.query("lorem " * 2000, truncate=True)
    for doc in ("apple pie is a dessert", "apple computers make laptops"):
        pair = b.pair(query, doc, truncate=True)
        words = model.tokenize(doc, False)
        assert pair.truncated and len(pair.tokens) == 512
        assert pair.tokens[-len(words) - 2:] == [SEP, *words, SEP]
    both_long = b.pair(query, "bamboo " * 2000, truncate=True)
    assert both_long.tokens.count(model.tokenize("bamboo", False)[0]) == 255
    with pytest.raises(PayloadTooLarge, match="with this query"):
        b.pair(b.query("word " * 400, truncate=False), "bamboo " * 200, truncate=False)


def test_rerank_template_is_tokenized_whole_and_split_for_truncation(model: RankModel) -> None:
    template = "[CLS] query : {query} [SEP] document : {document} [SEP]"
    layout = template_layout(template, model.tokenize)
    b = PairBuilder(layout, model.tokenize, Limits(max_pair_tokens=64, max_document_tokens=3))
    q = b.query("panda", truncate=True)
    short = b.pair(q, "a bear", truncate=True)
    whole = template.replace("{query}", "panda").replace("{document}", "a bear")
    assert short.tokens == model.tokenize(whole, True)
    assert short.tokens[0] == CLS and short.tokens[-1] == SEP
    cut = b.pair(q, "one two three four five", truncate=True)
    assert cut.truncated and cut.tokens[-1] == SEP
    assert cut.tokens[-4:-1] == model.tokenize("one two three", True)
    # Placeholders in the user's own text are text: the query is not rewritten with the document.
    odd = b.pair(b.query("use {document} here", truncate=True), "{query}", truncate=True)
    assert odd.tokens == model.tokenize(
        "[CLS] query : use {document} here [SEP] document : {query} [SEP]", True)


def test_packed_decode_scores_equal_single_decodes(model: RankModel) -> None:
    b = builder(model)
    q = b.query("what is a panda", truncate=True)
    pairs = [b.pair(q, d, truncate=True).tokens for d in ["hi", "a bear", "giant panda bears"]]
    one = RankContext(model, ContextParams(threads=1, max_seqs=1))
    many = RankContext(model, ContextParams(threads=1, max_seqs=4))
    try:
        singles = [one.score([p])[0] for p in pairs]
        assert many.score(pairs) == pytest.approx(singles, abs=1e-4)
    finally:
        one.close()
        many.close()


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        RankModel(tmp_path / "nope.gguf")


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all" * 100)
    with pytest.raises(ModelLoadError, match="could not load"):
        RankModel(bad)


def test_non_rank_model_is_rejected_at_load_time(embedding_only_model: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a reranker"):
        RankModel(embedding_only_model)


def test_a_rank_model_without_a_classification_head_is_rejected(headless_model: Path) -> None:
    """It loaded and answered 200 with a component of the pooled state as the score."""
    with pytest.raises(ModelLoadError, match="no classification head"):
        RankModel(headless_model)


def test_a_head_of_one_cls_projection_is_a_head(cls_only_model: Path) -> None:
    """jina-reranker-v1's layout: llama.cpp scores through ``cls`` alone, so a head it is."""
    model = RankModel(cls_only_model)
    model.close()


def test_a_rank_head_of_several_labels_is_rejected(two_label_model: Path) -> None:
    """llama.cpp scores label 0 alone: a two-class relevance model would rank backwards."""
    with pytest.raises(ModelLoadError, match="head has 2 outputs"):
        RankModel(two_label_model)


def test_several_outputs_are_a_reranker_where_llama_cpp_turns_them_into_probabilities(
    two_label_model: Path,
) -> None:
    """Qwen3 rerankers carry two outputs ("yes", "no") and llama.cpp takes their softmax, whose
    first is the score: they stay served."""
    assert head_problem(two_label_model, "qwen3", 2) is None
    assert "2 outputs" in (head_problem(two_label_model, "bert", 2) or "")


def test_a_truncated_gguf_says_what_llama_cpp_found(tiny_model: Path, tmp_path: Path) -> None:
    """The reason was only in the log; the status and 503s showed "not a valid GGUF model?"."""
    half = tmp_path / "half.gguf"
    half.write_bytes(tiny_model.read_bytes()[: tiny_model.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="not within the file bounds"):
        RankModel(half)


def test_a_directory_is_not_called_missing(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="is a directory, not a GGUF file"):
        RankModel(tmp_path)


def test_engine_answers_concurrent_requests_like_sequential_ones(tiny_model: Path) -> None:
    engine = Engine(RuntimeSettings(model=tiny_model, threads=1))
    engine.start()
    try:
        assert engine.wait_ready(30)
        requests = [RerankRequest(dialect=Dialect.JINA, query=f"query {i}",
                                  documents=[f"doc {j} of {i}" for j in range(5)])
                    for i in range(8)]

        async def run() -> tuple[list[list[float]], list[list[float]]]:
            sequential = [(await engine.rerank(r)).scores for r in requests]
            together = await asyncio.gather(*(engine.rerank(r) for r in requests))
            return sequential, [s.scores for s in together]

        sequential, together = asyncio.run(run())
        assert together == sequential
    finally:
        engine.stop()



def context_pairs(engine: Engine, context: str) -> float:
    return engine.metrics.registry.get_sample_value(
        "kuberank_runtime_context_pairs_total", {"context": context}) or 0.0


def test_several_contexts_share_the_queue_and_score_like_one(tiny_model: Path) -> None:
    """Three contexts over one set of weights: every context decodes, and each request gets the
    same scores as from a single context (one pair per decode, so the arithmetic is identical)."""
    requests = [RerankRequest(dialect=Dialect.JINA, query=f"query {i}",
                              documents=[f"doc {j} of {i}" for j in range(40)])
                for i in range(6)]

    def scores(contexts: int) -> tuple[Engine, list[list[float]]]:
        engine = Engine(RuntimeSettings(model=tiny_model, threads=1, contexts=contexts))
        engine.start()
        try:
            assert engine.wait_ready(30)

            async def run() -> list[list[float]]:
                return [s.scores for s in await asyncio.gather(*map(engine.rerank, requests))]

            return engine, asyncio.run(run())
        finally:
            engine.stop()

    single, expected = scores(1)
    several, got = scores(3)
    assert got == expected
    assert several.state == "stopped"
    assert several.metrics.registry.get_sample_value(
        "kuberank_runtime_engine_info", {"device": "cpu", "flash_attn": "on",
                                         "max_batch_pairs": "1", "batch_tokens": "512",
                                         "contexts": "3"}) == 1
    per_context = [context_pairs(several, str(i)) for i in range(3)]
    assert sum(per_context) == 240 and all(n > 0 for n in per_context), per_context
    assert context_pairs(single, "0") == 240


def test_one_large_request_is_spread_over_every_context(tiny_model: Path) -> None:
    """A single request wakes one context; each context that takes pairs and sees more left
    wakes the next, so the others do not sleep through it."""
    engine = Engine(RuntimeSettings(model=tiny_model, threads=1, contexts=3))
    engine.start()
    try:
        assert engine.wait_ready(30)
        request = RerankRequest(dialect=Dialect.JINA, query="panda",
                                documents=[f"document number {i}" for i in range(600)])
        assert len(asyncio.run(engine.rerank(request)).scores) == 600
    finally:
        engine.stop()
    per_context = [context_pairs(engine, str(i)) for i in range(3)]
    assert sum(per_context) == 600 and all(n > 0 for n in per_context), per_context


def test_pairs_of_a_request_whose_client_left_stop_counting_at_once(tiny_model: Path) -> None:
    """The queue bound counts live work only: the moment a waiting request is cancelled its
    pairs leave the queue depth, so the next request is not refused for a dead one's pairs."""
    engine = Engine(RuntimeSettings(model=tiny_model, threads=1, schedule="fifo",
                                    max_documents=300, max_queued_pairs=300))
    engine.start()
    try:
        assert engine.wait_ready(30)
        big = RerankRequest(dialect=Dialect.JINA, query="panda",
                            documents=[f"document number {i}" for i in range(300)])
        small = RerankRequest(dialect=Dialect.JINA, query="panda", documents=["a", "b"])

        async def run() -> tuple[float, float, int]:
            waiting = asyncio.ensure_future(engine.rerank(big))
            while queue_depth(engine) < 250:  # noqa: ASYNC110 - a gauge has no event to await
                await asyncio.sleep(0.001)
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            depth_after_cancel = queue_depth(engine)
            answered = await engine.rerank(small)
            skipped = engine.metrics.registry.get_sample_value(
                "kuberank_runtime_skipped_pairs_total") or 0.0
            return depth_after_cancel, skipped, len(answered.scores)

        depth_after_cancel, skipped, answered = asyncio.run(run())
    finally:
        engine.stop()
    assert depth_after_cancel <= 1  # at most the pair being decoded when the client left
    assert answered == 2
    assert 0 < skipped <= 300 and skipped + context_pairs(engine, "0") == 302


class TwoContextsFit(Engine):
    """The real engine on a device that holds only two contexts' compute buffers."""

    def _new_context(self, model: RankModel, params: ContextParams) -> RankContext:
        self.made = getattr(self, "made", 0) + 1
        if self.made > 2:
            raise ModelLoadError("llama.cpp could not create a context (out of memory)")
        return super()._new_context(model, params)


def test_default_contexts_that_do_not_fit_leave_those_that_do(
    tiny_model: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The default (4 for 4 threads) is a wish: two that fit serve, with a warning. A count the
    operator set is a requirement: the engine fails to load, saying why."""
    by_default = TwoContextsFit(RuntimeSettings(model=tiny_model, threads=4))
    by_default.start()
    try:
        assert by_default.wait_ready(30)
        request = RerankRequest(dialect=Dialect.JINA, query="q", documents=["a", "b", "c"])
        assert len(asyncio.run(by_default.rerank(request)).scores) == 3
    finally:
        by_default.stop()
    assert "only 2 of 4 llama contexts could be created" in caplog.text
    assert by_default.metrics.registry.get_sample_value(
        "kuberank_runtime_engine_info", {"device": "cpu", "flash_attn": "on",
                                         "max_batch_pairs": "1", "batch_tokens": "512",
                                         "contexts": "2"}) == 1

    required = TwoContextsFit(RuntimeSettings(model=tiny_model, threads=4, contexts=4))
    required.start()
    assert not required.wait_ready(30)
    assert required.state == "failed"
    assert "out of memory" in str(required.error)


class RecordingContext(RankContext):
    """A real context that remembers the size of each decode it was given."""

    fail = False

    def __init__(self, model: RankModel, params: ContextParams) -> None:
        super().__init__(model, params)
        self.decodes: list[int] = []
        self.tokens: list[int] = []

    def score(self, pairs: list[list[int]]) -> list[float]:
        self.decodes.append(len(pairs))
        self.tokens.append(sum(map(len, pairs)))
        if self.fail:
            raise RuntimeError("llama_decode failed with status -3")
        return super().score(pairs)


class Recording(Engine):
    def _new_context(self, model: RankModel, params: ContextParams) -> RankContext:
        ctx = RecordingContext(model, params)
        self.made = [*getattr(self, "made", []), ctx]
        return ctx


def test_every_context_decodes_before_the_engine_is_ready(
    tiny_model: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A CPU decodes one short pair per context; on a GPU (``full``) each decodes the largest
    batch a request can bring, as many pairs of as many tokens as fit, so its kernels are
    loaded before readiness, not by the first request. The warm-up is no client's work: no
    metric counts it."""
    caplog.set_level("INFO")
    engine = Recording(RuntimeSettings(model=tiny_model, threads=1, contexts=2,
                                       max_batch_pairs=4))
    engine.start()
    try:
        assert engine.wait_ready(30)
        assert [ctx.decodes for ctx in engine.made] == [[1], [1]]
        assert all(tokens < 16 for ctx in engine.made for tokens in ctx.tokens)
        assert "warmed up 2 context(s)" in caplog.text
        assert engine.metrics.registry.get_sample_value(
            "kuberank_runtime_batch_pairs_count") == 0
        assert context_pairs(engine, "0") == context_pairs(engine, "1") == 0

        engine._warm_up(engine.made, full=True)  # as on a GPU (no requests are in flight)
        assert [ctx.decodes[1:] for ctx in engine.made] == [[4], [4]]
        assert all(ctx.tokens[1] > ctx.n_batch * 3 // 4 for ctx in engine.made), [
            (ctx.tokens, ctx.n_batch) for ctx in engine.made]
    finally:
        engine.stop()


def test_a_model_that_cannot_score_fails_its_load_instead_of_its_first_request(
    tiny_model: Path,
) -> None:
    RecordingContext.fail = True
    try:
        engine = Recording(RuntimeSettings(model=tiny_model, threads=1))
        engine.start()
        assert not engine.wait_ready(30)
    finally:
        RecordingContext.fail = False
    assert engine.state == "failed"
    assert "could not score a pair: llama_decode failed with status -3" in str(engine.error)


def test_a_model_scoring_nan_fails_its_load_saying_so(nan_model: Path) -> None:
    """It was ready, then every request was a 500 "internal server error" (JSON has no NaN)."""
    engine = Engine(RuntimeSettings(model=nan_model, threads=1))
    engine.start()
    assert not engine.wait_ready(30)
    assert engine.state == "failed"
    assert "could not score a pair: the model scored a pair nan" in str(engine.error)


def test_a_pair_scored_nan_fails_its_request_saying_so(nan_model: Path) -> None:
    """Only some inputs may come out non-finite (f16 overflow): that request fails in words."""
    model = RankModel(nan_model)
    try:
        context = RankContext(model, ContextParams(threads=1))
        with pytest.raises(NonFiniteScoreError, match="scored a pair nan"):
            context.score([[101, 2054, 102, 2003, 102]])
        context.close()
    finally:
        model.close()


def queue_depth(engine: Engine) -> float:
    return engine.metrics.registry.get_sample_value("kuberank_runtime_queue_depth") or 0.0


class GatedEngine(Engine):
    """Its contexts decode only while ``gate`` is open, so a test can line requests up in the
    queue before any of them is scored (on a fast model the queue moves in milliseconds)."""

    def __init__(self, settings: RuntimeSettings, gate: threading.Event) -> None:
        self.gate = gate
        super().__init__(settings)

    def _new_context(self, model: RankModel, params: ContextParams) -> RankContext:
        gate = self.gate

        class GatedContext(RankContext):
            def score(self, pairs: list[list[int]]) -> list[float]:
                assert gate.wait(60), "the test never opened the gate"
                return super().score(pairs)

        return GatedContext(model, params)


@pytest.mark.parametrize("contexts", [1, 2])
def test_packing_engine_finishes_queued_work_then_stops_promptly(tiny_model: Path,
                                                                 contexts: int) -> None:
    """Stop arrives while a packed batch is being filled (402 pairs leave 2 for the last one):
    the request is still answered, every owner thread ends at once, not 10 s later, and the
    stopped engine refuses new work with a 503."""
    gate = threading.Event()
    gate.set()  # the warm-up decodes
    engine = GatedEngine(RuntimeSettings(model=tiny_model, threads=1, max_batch_pairs=4,
                                         contexts=contexts), gate)
    engine.start()
    assert engine.wait_ready(30)
    gate.clear()
    request = RerankRequest(dialect=Dialect.JINA, query="panda",
                            documents=[f"document number {i}" for i in range(402)])

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(asyncio.run, engine.rerank(request))
        wait_for("the request to be queued", lambda: queue_depth(engine) == 402, timeout=30)
        started = time.monotonic()
        stopping = threading.Thread(target=engine.stop, kwargs={"timeout": 10})
        stopping.start()  # asked to stop with all 402 pairs still to score
        gate.set()
        stopping.join()
        stop_seconds = time.monotonic() - started
        scores = answer.result(timeout=30).scores
    assert len(scores) == 402
    assert engine.state == "stopped"
    assert stop_seconds < 5
    assert queue_depth(engine) == 0
    with pytest.raises(Unavailable, match=r"not available \(stopped\)") as refused:
        asyncio.run(engine.rerank(request))
    assert refused.value.status == 503


@pytest.mark.parametrize(("cuda_graphs", "expected"), [(False, "1"), (True, "None")])
def test_cuda_graphs_are_off_unless_asked_for(tiny_model: Path, cuda_graphs: bool,
                                              expected: str) -> None:
    """ggml reads GGML_CUDA_DISABLE_GRAPHS once per process, so each case gets a fresh one."""
    code = ("import os, sys; from pathlib import Path;"
            " from kuberank.runtime.model import RankModel;"
            f" RankModel(Path(sys.argv[1]), cuda_graphs={cuda_graphs}).close();"
            " print(os.environ.get('GGML_CUDA_DISABLE_GRAPHS'))")
    env = {k: v for k, v in os.environ.items() if k != "GGML_CUDA_DISABLE_GRAPHS"}
    done = subprocess.run([sys.executable, "-c", code, str(tiny_model)], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == expected


@pytest.mark.parametrize(("schedule", "max_wait", "overtakes"),
                         [("shortest", 10.0, True), ("fifo", 10.0, False),
                          ("shortest", 0.001, False)],  # the large one is overdue at once
                         ids=["shortest", "fifo", "shortest-large-one-overdue"])
def test_a_small_request_overtakes_a_large_one_unless_fifo_or_overdue(
        tiny_model: Path, schedule: str, max_wait: float, overtakes: bool) -> None:
    """How much of the large request is still waiting when the small one is answered; both
    are queued before the engine scores anything."""
    gate = threading.Event()
    gate.set()  # the warm-up decodes
    engine = GatedEngine(RuntimeSettings(model=tiny_model, threads=1, schedule=schedule,
                                         max_wait_seconds=max_wait, max_documents=4000), gate)
    engine.start()
    try:
        assert engine.wait_ready(30)
        gate.clear()
        big = RerankRequest(dialect=Dialect.JINA, query="panda",
                            documents=[f"document number {i}" for i in range(4000)])
        small = RerankRequest(dialect=Dialect.JINA, query="panda", documents=["a bear"])

        async def small_then_queue_depth() -> float:
            await engine.rerank(small)
            return queue_depth(engine)

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            big_done = pool.submit(asyncio.run, engine.rerank(big))
            wait_for("the large request to be queued", lambda: queue_depth(engine) == 4000,
                     timeout=30)
            small_done = pool.submit(asyncio.run, small_then_queue_depth())
            wait_for("the small one to be queued behind it",
                     lambda: queue_depth(engine) == 4001, timeout=30)
            gate.set()
            left_of_big = small_done.result(timeout=60)
            assert len(big_done.result(timeout=60).scores) == 4000
        assert (left_of_big > 1000) is overtakes, left_of_big
        assert overtakes or left_of_big == 0
    finally:
        gate.set()
        engine.stop()


def test_pair_batch_lays_pairs_out_as_llama_decode_reads_them() -> None:
    """Read back through the llama_batch struct itself, as llama.cpp sees it."""
    batch = PairBatch(16, 4)
    try:
        for pairs in ([[7, 8, 9], [5, 6]], [[1, 2], [3], [4, 5, 6, 7]]):
            total = sum(map(len, pairs))
            batch.fill(pairs, total)
            raw = batch.raw
            assert raw.n_tokens == total
            assert [raw.token[i] for i in range(total)] == [t for p in pairs for t in p]
            assert [raw.pos[i] for i in range(total)] == [i for p in pairs for i in range(len(p))]
            assert [raw.seq_id[i][0] for i in range(total)] == [
                s for s, p in enumerate(pairs) for _ in p]
            assert all(raw.n_seq_id[i] == 1 and raw.logits[i] for i in range(total))
    finally:
        batch.free()  # hands llama.cpp back its own seq_id arrays: no double free, no abort


def test_more_threads_than_cpus_is_said_at_load(
    tiny_model: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Threads over the CPUs a process may use are many times slower (llama.cpp spins at
    barriers); 64 on 2 CPUs loaded without a word."""
    too_many = default_threads() + 3
    engine = Engine(RuntimeSettings(model=tiny_model, threads=too_many, contexts=1))
    engine.start()
    try:
        assert engine.wait_ready(30)
        assert f"--threads {too_many} is more than the {default_threads()} CPU(s)" in caplog.text
    finally:
        engine.stop()
