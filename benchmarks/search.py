"""Payload blob store and full-text search: ingest with indexing, search latency
over a million indexed log records (hot and cold), and blob-store size against
the raw payload bytes it holds.

The numbers in docs/benchmarks.md came from:

    python benchmarks/search.py

Four measurements, records generated before any clock starts:

1. log ingest with indexing: N log records (default 200,000) with ~200-byte
   bodies, each unique, made of words drawn from a 5,000-word vocabulary with
   Zipf frequencies (so the index holds real terms, common and rare) plus a
   unique request id, inserted in 1,000-record batches with default Settings
   (durability="fsync"); timed from the first insert until ``flush()`` returns
   (flush commits the full-text index, so every record is then searchable).
   Median of 3 runs, each on a fresh store. Target: at least 100,000 logs/s;
2. span ingest with payloads: LLM-call spans carrying, in the OpenTelemetry
   GenAI attributes the store treats as payload text,
   ``gen_ai.system_instructions`` (~1.5 KB, one of 50 system prompts, so it
   repeats), ``gen_ai.prompt`` (~2 KB, unique) and ``gen_ai.completion``
   (~500 bytes, unique, below the 1 KiB blob threshold so kept inline);
   batches of 1,000, default Settings, timed until ``flush()`` returns,
   median of 3 runs;
3. search latency: a store holding D log records (default 1,000,000) built in
   10,000-record batches with Settings(durability="os") (the build is not
   what is measured; ``flush()`` fsyncs at its end), then Q queries
   (default 200) cycling through five kinds: one common word, two common
   words, a quoted phrase, a rare word (a few hundred hits in a million), a
   common word with a service filter; each ``query_logs(text=..., limit=20)``.
   Run once while the records are hot (LMDB), then again after
   ``compact(before=<after the last record>)`` moved them all to the cold
   tier and the store was reopened (no cached Parquet footers), so every hit
   is fetched back from Parquet. Target: hot p50 under 20 ms. The same query
   kinds are also run over the spans of the last span-ingest store (hot);
4. blob store size: from the last span-ingest store, ``stats().blobs`` and
   ``blob_raw_bytes`` (distinct payload texts), the raw payload bytes inserted
   (every payload value of at least ``payload_blob_min_bytes``, duplicates
   included, counted by this script) and ``disk_bytes["blobs"]``.

Every answer is checked: each hit holds every query word (and phrase, as
consecutive tokens) and the service asked for, hits come newest first, a
query returns the full limit or, for rare words, exactly as many as the
generated records hold (up to the limit), and the cold answers equal the hot
ones. The script exits 1 if anything read back is wrong. The OS page cache is
warm (the files were just written). Prints markdown tables; latencies are per
call, in milliseconds.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tael
from benchmarks._common import machine, median, table
from benchmarks.ingest import batches

LOG_INGEST_TARGET = 100_000  # logs/s, at least
SEARCH_TARGET_MS = 20.0  # hot p50, below
LIMIT = 20
BODY_BYTES = 200
SERVICES = ("checkout", "inventory", "payments", "search", "auth", "notifications", "shipping", "llm-gateway")
LLM_SERVICES = ("llm-gateway", "support-bot", "search-assistant", "summarizer")
KINDS = ("common word", "two words", "phrase", "rare word", "word + service")
HOUR_NS = 3_600 * 1_000_000_000

# ---------------------------------------------------------------- text generation

_BASE_TEXT = """
request error timeout connection user service failed retry cache database query response status
completed started upstream downstream latency payload token session order payment account item cart
server client handler worker queue message event batch job task process thread memory disk network
socket host node cluster region zone config update delete create insert select index table record
value limit rate backoff exceeded invalid missing found ready healthy degraded warning critical info
debug trace span metric log audit policy permission denied granted refresh expired renewed login
logout signup email notification delivery shipment warehouse stock reserve release charge refund
invoice receipt customer product catalog price discount coupon checkout search result page model
prompt completion embedding vector inference gpu latency throughput stream chunk buffer flush commit
rollback transaction lock wait deadlock conflict version schema migration backup restore snapshot
"""
_BASE_WORDS = _BASE_TEXT.split()
_PHRASES = (
    "connection reset by peer",
    "upstream request timeout",
    "payment declined by issuer",
    "cache miss for key",
    "rate limit exceeded for tenant",
    "deadlock detected while waiting",
    "session expired for user",
    "retrying after backoff",
    "failed to parse response",
    "database connection pool exhausted",
    "order placed successfully",
    "token refresh failed",
    "circuit breaker opened",
    "health check passed",
    "message acknowledged by broker",
    "schema migration completed",
    "disk usage above threshold",
    "model returned empty completion",
    "invalid signature on webhook",
    "stock reservation released",
)
_USER_PHRASES = (
    "please summarize the following document",
    "what is the status of my order",
    "translate this paragraph into french",
    "write a polite reply to this customer",
    "explain the error in this stack trace",
    "extract the invoice number and total",
    "classify the sentiment of this review",
    "draft a release note for these changes",
    "answer using only the context below",
    "list the action items from this meeting",
)
_PHRASE_WORDS = {w for p in _PHRASES + _USER_PHRASES for w in p.split()}


def vocabulary(size: int = 5_000, seed: int = 42) -> list[str]:
    """Real words first (the most frequent ranks), then pronounceable made-up words."""
    rng = random.Random(seed)
    words = list(dict.fromkeys(_BASE_WORDS))
    seen = set(words) | _PHRASE_WORDS
    onsets = ("b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr", "pl")
    vowels = ("a", "e", "i", "o", "u", "ai", "ou", "ea")
    while len(words) < size:
        w = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(2, 4)))
        if rng.random() < 0.4:
            w += rng.choice(("n", "r", "s", "x", "th", "ck"))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


VOCAB = vocabulary()
CUM = list(itertools.accumulate(1.0 / (r + 1) for r in range(len(VOCAB))))
RARE = VOCAB[3_000:]  # each in ~0.05% of 200-byte bodies
COMMON = VOCAB[:20]  # each in 10-95% of bodies


def words_text(rng: random.Random, budget: int, k: int) -> tuple[str, list[str]]:
    """Zipf-distributed words, at most ``budget`` characters; the text and the words used."""
    words = rng.choices(VOCAB, cum_weights=CUM, k=k)
    text = " ".join(words)
    if len(text) > budget:
        text = text[: text.rfind(" ", 0, budget + 1)]
    return text, words[: text.count(" ") + 1]


class Corpus:
    """Deterministic log records; counts the records holding each rare word."""

    def __init__(self, seed: int, start_ns: int, step_ns: int) -> None:
        self.rng = random.Random(seed)
        self.now = start_ns
        self.step_ns = step_ns
        self.n = 0
        self.body_bytes = 0
        self.rare = set(RARE)
        self.rare_docs: Counter[str] = Counter()

    def logs(self, n: int) -> list[tael.LogRecord]:
        rng = self.rng
        out = []
        for _ in range(n):
            i = self.n
            self.n += 1
            self.now += rng.randrange(self.step_ns // 2, self.step_ns * 3 // 2)
            suffix = f" request_id=r{i:08x}{rng.getrandbits(24):06x}"
            head = rng.choice(_PHRASES) + ": " if rng.random() < 0.5 else ""
            text, used = words_text(rng, BODY_BYTES - len(suffix) - len(head), 40)
            body = head + text + suffix
            self.body_bytes += len(body)
            self.rare_docs.update(self.rare.intersection(used))
            sev = rng.choice((5, 9, 9, 9, 13, 17))
            traced = rng.random() < 0.5
            out.append(
                tael.LogRecord(
                    time_ns=self.now,
                    body=body,
                    service=rng.choice(SERVICES),
                    severity_number=sev,
                    severity_text={5: "DEBUG", 9: "INFO", 13: "WARN", 17: "ERROR"}[sev],
                    trace_id=f"{rng.getrandbits(128) | 1:032x}" if traced else None,
                    span_id=f"{rng.getrandbits(64) | 1:016x}" if traced else None,
                    attributes={"logger": "app", "thread": rng.randrange(8)},
                    resource={"service.name": "x"},
                )
            )
        return out


@dataclass
class SpanData:
    spans: list[tael.Span]
    payload_values: int  # payload values at or over the blob threshold, duplicates included
    payload_raw_bytes: int  # their UTF-8 bytes
    distinct_raw_bytes: int  # bytes of the distinct ones
    distinct: int
    inline_bytes: int  # payload text under the threshold (kept inline)


def llm_spans(n: int, seed: int, start_ns: int, threshold: int) -> SpanData:
    rng = random.Random(seed)
    systems = []
    for k in range(50):
        text, _ = words_text(rng, 1_450, 400)
        systems.append(f"You are assistant number {k}, a helpful assistant for our customers. {text}")
    spans = []
    now = start_ns
    count = raw = inline = 0
    distinct: dict[str, int] = {}
    for i in range(n):
        now += rng.randrange(500_000, 5_000_000)
        head = rng.choice(_USER_PHRASES) + ". " if rng.random() < 0.5 else ""
        user, _ = words_text(rng, 1_950 - len(head), 500)
        completion, _ = words_text(rng, 480, 120)
        attrs: dict[str, Any] = {
            "gen_ai.system": "openai",
            "gen_ai.request.model": rng.choice(("gpt-4o-mini", "gpt-4o", "o3-mini")),
            "gen_ai.usage.input_tokens": rng.randrange(300, 900),
            "gen_ai.usage.output_tokens": rng.randrange(50, 200),
            "gen_ai.system_instructions": rng.choice(systems),
            "gen_ai.prompt": f"conversation c{i:08x}: {head}{user}",
            "gen_ai.completion": completion,
        }
        for key in ("gen_ai.system_instructions", "gen_ai.prompt", "gen_ai.completion"):
            size = len(attrs[key].encode())
            if size >= threshold:
                count += 1
                raw += size
                distinct[attrs[key]] = size
            else:
                inline += size
        error = rng.random() < 0.02
        service = rng.choice(LLM_SERVICES)
        spans.append(
            tael.Span(
                trace_id=f"{rng.getrandbits(128) | 1:032x}",
                span_id=f"{rng.getrandbits(64) | 1:016x}",
                name=f"chat {attrs['gen_ai.request.model']}",
                service=service,
                start_ns=now,
                end_ns=now + rng.randrange(200_000_000, 8_000_000_000),
                kind="client",
                status="error" if error else "ok",
                status_message="upstream failed" if error else "",
                attributes=attrs,
                resource={"service.name": service, "deployment.environment": "prod"},
                scope_name="opentelemetry.instrumentation.openai",
                scope_version="0.48b0",
            )
        )
    return SpanData(spans, count, raw, sum(distinct.values()), len(distinct), inline)


# ---------------------------------------------------------------- queries and checks


@dataclass
class Query:
    kind: str
    text: str
    service: str | None
    expected: int  # results a correct answer holds


_TOKEN = re.compile(r"[^\W_]+")


def tokens(text: str) -> str:
    """The tokens of a text as Tantivy's simple tokenizer + lowercase see them, space-joined and padded."""
    return " " + " ".join(_TOKEN.findall(text.lower())) + " "


def make_queries(
    n: int, seed: int, rare_docs: Counter[str], services: Sequence[str], phrases: Sequence[str], limit: int
) -> list[Query]:
    rng = random.Random(seed)
    rare = sorted(w for w, c in rare_docs.items() if c > 0)
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        if kind == "common word":
            out.append(Query(kind, rng.choice(COMMON), None, limit))
        elif kind == "two words":
            a, b = rng.sample(COMMON, 2)
            out.append(Query(kind, f"{a} {b}", None, limit))
        elif kind == "phrase":
            out.append(Query(kind, f'"{rng.choice(phrases)}"', None, limit))
        elif kind == "rare word":
            w = rng.choice(rare)
            out.append(Query(kind, w, None, min(limit, rare_docs[w])))
        else:
            out.append(Query(kind, rng.choice(COMMON), rng.choice(services), limit))
    return out


def check_hits(q: Query, texts: list[str], services: list[str], times: list[int]) -> str | None:
    """What is wrong with one answer, or None."""
    if len(texts) != q.expected:
        return f"{q.kind} {q.text!r} (service={q.service}): {len(texts)} results, expected {q.expected}"
    pieces = [p or w for p, w in re.findall(r'"([^"]*)"|(\S+)', q.text)]
    for text, service in zip(texts, services, strict=True):
        toks = tokens(text)
        for piece in pieces:
            if tokens(piece) not in toks:
                return f"{q.kind} {q.text!r}: a hit does not hold {piece!r}: {text[:80]!r}"
        if q.service is not None and service != q.service:
            return f"{q.kind} {q.text!r}: a hit is from service {service!r}, expected {q.service!r}"
    if times != sorted(times, reverse=True):
        return f"{q.kind} {q.text!r}: hits are not newest first"
    return None


def run_log_queries(
    store: tael.Store, queries: Sequence[Query], problems: list[str]
) -> tuple[list[float], list[list[tuple[int, str]]]]:
    times, answers = [], []
    for q in queries:
        t0 = time.perf_counter()
        got = store.query_logs(text=q.text, service=q.service, limit=LIMIT)
        times.append(time.perf_counter() - t0)
        bad = check_hits(q, [r.body for r in got], [r.service for r in got], [r.time_ns for r in got])
        if bad:
            problems.append(bad)
        answers.append([(r.time_ns, r.body) for r in got])
    return times, answers


_PAYLOAD_KEYS = ("gen_ai.system_instructions", "gen_ai.prompt", "gen_ai.completion")


def run_span_queries(store: tael.Store, queries: Sequence[Query], problems: list[str]) -> list[float]:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        got = store.query_traces(text=q.text, service=q.service, limit=LIMIT)
        times.append(time.perf_counter() - t0)
        texts = [" \n ".join(str(s.attributes.get(k, "")) for k in _PAYLOAD_KEYS) for s in got]
        bad = check_hits(q, texts, [s.service for s in got], [s.start_ns for s in got])
        if bad:
            problems.append("spans: " + bad)
    return times


# ---------------------------------------------------------------- helpers


def day_ns(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp()) * 1_000_000_000


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def progress(message: str) -> None:
    print(f"[search.py {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def allocated_bytes(path: Path) -> int:
    """Blocks allocated under ``path`` (a small file still takes a whole file-system block)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


def timed_ingest(
    root: Path, insert_name: str, data: list[Sequence[Any]], keep: bool = False
) -> tuple[float, Path, tael.Store | None]:
    """Insert every batch into a fresh default store; seconds until ``flush()`` returns."""
    path = Path(tempfile.mkdtemp(dir=root))
    store = tael.Store(path, tael.Settings())
    insert: Callable[[Sequence[Any]], int] = getattr(store, insert_name)
    t0 = time.perf_counter()
    for b in data:
        insert(b)
    store.flush()
    elapsed = time.perf_counter() - t0
    if keep:
        return elapsed, path, store
    store.close()
    shutil.rmtree(path)
    return elapsed, path, None


def check(ok: bool, problems: list[str], message: str) -> None:
    if not ok:
        problems.append(message)


# ---------------------------------------------------------------- 1: log ingest


def bench_log_ingest(root: Path, n: int, size: int, repeats: int, problems: list[str]) -> dict[str, Any]:
    corpus = Corpus(seed=1, start_ns=day_ns(2024, 1, 1) + HOUR_NS, step_ns=100_000_000)
    data = batches(corpus.logs(n), size)
    runs = []
    for k in range(repeats):
        progress(f"log ingest run {k + 1}/{repeats}: {n:,} logs")
        elapsed, path, store = timed_ingest(root, "insert_logs", data, keep=True)
        assert store is not None
        st = store.stats()
        store.close()
        shutil.rmtree(path)
        check(st.signals["logs"].count == n, problems, f"log ingest stored {st.signals['logs'].count}, expected {n}")
        check(st.index_documents == n, problems, f"log ingest indexed {st.index_documents} documents, expected {n}")
        runs.append(elapsed)
        progress(f"  {n / elapsed:,.0f} logs/s")
    return {"n": n, "runs": runs, "rate": n / median(runs), "body": corpus.body_bytes / n}


# ---------------------------------------------------------------- 2 + 4: span ingest, blob store size


def bench_span_ingest(
    root: Path, n: int, size: int, repeats: int, queries: int, seed: int, problems: list[str]
) -> dict[str, Any]:
    settings = tael.Settings()
    sd = llm_spans(n, seed=2, start_ns=day_ns(2024, 1, 2) + HOUR_NS, threshold=settings.payload_blob_min_bytes)
    data = batches(sd.spans, size)
    runs = []
    out: dict[str, Any] = {"n": n, "data": sd}
    for k in range(repeats):
        progress(f"span ingest run {k + 1}/{repeats}: {n:,} spans")
        last = k == repeats - 1
        elapsed, path, store = timed_ingest(root, "insert_spans", data, keep=last)
        runs.append(elapsed)
        progress(f"  {n / elapsed:,.0f} spans/s")
        if store is None:
            continue
        try:
            st = store.stats()
            check(st.signals["spans"].count == n, problems, f"span ingest stored {st.signals['spans'].count} spans")
            check(st.index_documents == n, problems, f"span ingest indexed {st.index_documents} documents")
            check(
                st.blobs == sd.distinct and st.blob_raw_bytes == sd.distinct_raw_bytes,
                problems,
                f"stats() says {st.blobs} blobs of {st.blob_raw_bytes} raw bytes, expected {sd.distinct} "
                f"distinct payloads of {sd.distinct_raw_bytes} bytes",
            )
            out.update(stats=st, allocated=allocated_bytes(path / "blobs"))
            # search over the spans too (hot): word counts are not tracked here, so rare
            # words are checked for holding the word and for not exceeding the limit
            rare_docs: Counter[str] = Counter()
            for s in sd.spans[: min(n, 5_000)]:
                rare_docs.update(set(RARE).intersection(_TOKEN.findall(s.attributes["gen_ai.prompt"])))
            qs = make_queries(queries, seed, rare_docs, LLM_SERVICES, _USER_PHRASES, LIMIT)
            rare_words = {q.text for q in qs if q.kind == "rare word"}
            exact: Counter[str] = Counter()
            for s in sd.spans:
                text = tokens(" ".join(s.attributes[k] for k in _PAYLOAD_KEYS))
                exact.update(w for w in rare_words if f" {w} " in text)
            for q in qs:
                if q.kind == "rare word":
                    q.expected = min(LIMIT, exact[q.text])
            progress(f"span search: {len(qs)} queries over {n:,} spans")
            out["search"] = run_span_queries(store, qs, problems)
        finally:
            store.close()
            shutil.rmtree(path)
    out["runs"] = runs
    out["rate"] = n / median(runs)
    return out


# ---------------------------------------------------------------- 3: search over D log records


def bench_search(root: Path, docs: int, size: int, queries: int, seed: int, problems: list[str]) -> dict[str, Any]:
    base = day_ns(2024, 1, 3)
    corpus = Corpus(seed=3, start_ns=base + HOUR_NS, step_ns=max(1, 20 * HOUR_NS // docs))
    path = Path(tempfile.mkdtemp(dir=root))
    store = tael.Store(path, tael.Settings(durability="os"))
    try:
        progress(f"search build: {docs:,} logs in batches of {size:,} (durability='os')")
        t0 = time.perf_counter()
        done = 0
        while done < docs:
            k = min(size, docs - done)
            store.insert_logs(corpus.logs(k))
            done += k
            if done % 100_000 == 0 or done == docs:
                progress(f"  {done:,} inserted")
        store.flush()
        build_s = time.perf_counter() - t0
        st = store.stats()
        check(st.index_documents == docs, problems, f"search store indexed {st.index_documents}, expected {docs}")
        qs = make_queries(queries, seed, corpus.rare_docs, SERVICES, _PHRASES, LIMIT)
        progress(f"hot search: {len(qs)} queries")
        hot_times, hot_answers = run_log_queries(store, qs, problems)
        progress("compacting every record to the cold tier")
        t0 = time.perf_counter()
        report = store.compact(before=corpus.now + 1)
        compact_s = time.perf_counter() - t0
        store.close()
        store = tael.Store(path, tael.Settings())  # a fresh process: no cached Parquet footers
        after = store.stats()
        check(
            after.cold_records.get("logs") == docs and after.hot_records.get("logs") == 0,
            problems,
            f"after compaction: cold={after.cold_records.get('logs')} hot={after.hot_records.get('logs')} logs",
        )
        progress(f"cold search: {len(qs)} queries")
        cold_times, cold_answers = run_log_queries(store, qs, problems)
        differ = [q.text for q, h, c in zip(qs, hot_answers, cold_answers, strict=True) if h != c]
        check(not differ, problems, f"{len(differ)} queries answer differently cold and hot, e.g. {differ[:3]}")
    finally:
        store.close()
        shutil.rmtree(path, ignore_errors=True)
    return {
        "docs": docs,
        "queries": qs,
        "build_s": build_s,
        "compact_s": compact_s,
        "moved": report.records.get("logs", 0),
        "cold_files": after.cold_files,
        "index_bytes": st.disk_bytes["index"],
        "hot": hot_times,
        "cold": cold_times,
        "body": corpus.body_bytes / docs,
        "rare_hits": sorted(corpus.rare_docs[q.text] for q in qs if q.kind == "rare word"),
    }


# ---------------------------------------------------------------- main


def by_kind(queries: Sequence[Query], times: Sequence[float]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in KINDS}
    for q, t in zip(queries, times, strict=True):
        out[q.kind].append(t)
    return out


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logs", type=int, default=200_000, help="log records for the ingest runs (200,000)")
    ap.add_argument("--spans", type=int, default=50_000, help="spans for the payload ingest runs (50,000)")
    ap.add_argument("--batch", type=int, default=1000, help="records per insert batch (default 1,000)")
    ap.add_argument("--repeats", type=int, default=3, help="ingest runs; the median is reported (3)")
    ap.add_argument("--docs", type=int, default=1_000_000, help="log records in the search store (1,000,000)")
    ap.add_argument("--build-batch", type=int, default=10_000, help="batch size for the search store (10,000)")
    ap.add_argument("--queries", type=int, default=200, help="search queries timed, per tier (200)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default=".bench-data", help="scratch directory (on the disk being measured)")
    ap.add_argument("--quick", action="store_true", help="a few seconds: tiny sizes, 1 run (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.logs, args.spans, args.repeats, args.docs, args.queries = 5_000, 2_000, 1, 20_000, 20
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=root))
    problems: list[str] = []
    wall0 = time.perf_counter()
    try:
        li = bench_log_ingest(scratch, args.logs, args.batch, args.repeats, problems)
        si = bench_span_ingest(scratch, args.spans, args.batch, args.repeats, args.queries, args.seed, problems)
        se = bench_search(scratch, args.docs, args.build_batch, args.queries, args.seed, problems)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if root.exists() and not any(root.iterdir()):
            root.rmdir()
    wall = time.perf_counter() - wall0

    sd: SpanData = si["data"]
    st: tael.StoreStats = si["stats"]
    blobs_disk = st.disk_bytes["blobs"]
    ratio = sd.payload_raw_bytes / blobs_disk
    hot50, hot99 = pct(se["hot"], 50), pct(se["hot"], 99)
    cold50, cold99 = pct(se["cold"], 50), pct(se["cold"], 99)
    sp50, sp99 = pct(si["search"], 50), pct(si["search"], 99)
    rep = f"median of {args.repeats}"
    summary = [
        [
            f"log ingest + indexing ({li['n']:,} logs, ~{li['body']:.0f} B bodies, batch {args.batch:,}, fsync, {rep})",
            f"{li['rate']:,.0f} logs/s",
            f">= {LOG_INGEST_TARGET:,} logs/s",
            "PASS" if li["rate"] >= LOG_INGEST_TARGET else "MISS",
        ],
        [
            f"span ingest with payloads ({si['n']:,} spans, ~{sd.payload_raw_bytes / si['n'] / 1e3:.1f} KB "
            f"blob payload + ~{sd.inline_bytes / si['n']:.0f} B inline each, batch {args.batch:,}, fsync, {rep})",
            f"{si['rate']:,.0f} spans/s",
            "-",
            "",
        ],
        [
            f"search, hot ({se['docs']:,} log docs, {len(se['hot'])} queries, limit {LIMIT})",
            f"p50 {ms(hot50)} ms, p99 {ms(hot99)} ms",
            f"p50 < {SEARCH_TARGET_MS:g} ms",
            "PASS" if hot50 * 1e3 < SEARCH_TARGET_MS else "MISS",
        ],
        [
            "search, cold (same queries after compaction to Parquet, store reopened)",
            f"p50 {ms(cold50)} ms, p99 {ms(cold99)} ms",
            "-",
            "",
        ],
        [
            f"search spans, hot ({si['n']:,} span docs, {len(si['search'])} queries, limit {LIMIT})",
            f"p50 {ms(sp50)} ms, p99 {ms(sp99)} ms",
            "-",
            "",
        ],
        [
            "blob store: raw payload bytes inserted / blob bytes on disk",
            f"{ratio:.2f}x",
            "-",
            "",
        ],
    ]
    hot_k, cold_k = by_kind(se["queries"], se["hot"]), by_kind(se["queries"], se["cold"])
    kind_rows = []
    for kind in KINDS:
        h, c = hot_k[kind], cold_k[kind]
        kind_rows.append([kind, str(len(h)), ms(pct(h, 50)), ms(pct(h, 99)), ms(pct(c, 50)), ms(pct(c, 99))])
    blob_rows = [
        ["payload values >= threshold inserted (duplicates included)", f"{sd.payload_values:,}"],
        ["raw payload bytes inserted (duplicates included)", f"{sd.payload_raw_bytes:,}"],
        ["distinct payload texts: stats().blobs", f"{st.blobs:,}"],
        ["distinct raw bytes: stats().blob_raw_bytes", f"{st.blob_raw_bytes:,}"],
        ['blob bytes on disk: stats().disk_bytes["blobs"]', f"{blobs_disk:,}"],
        ["blob bytes allocated (file-system blocks, measured here)", f"{si['allocated']:,}"],
        ["raw inserted / on disk", f"{ratio:.2f}x"],
        ["distinct raw / on disk (compression alone)", f"{st.blob_raw_bytes / blobs_disk:.2f}x"],
        ["raw inserted / allocated blocks", f"{sd.payload_raw_bytes / si['allocated']:.2f}x"],
        ['full-text index of the span store: disk_bytes["index"]', f"{st.disk_bytes['index']:,}"],
    ]
    rare = se["rare_hits"]
    lines = [
        f"machine: {machine()}",
        f"default Settings (payload_blob_min_bytes {tael.Settings().payload_blob_min_bytes:,}, "
        f"index_commit_interval_s {tael.Settings().index_commit_interval_s:g}) unless stated; "
        f"search store built with Settings(durability='os') in {args.build_batch:,}-record batches "
        f"in {se['build_s']:.1f} s ({se['docs'] / se['build_s']:,.0f} logs/s incl. generation), "
        f"index {se['index_bytes'] / 1e6:,.1f} MB ({se['index_bytes'] / se['docs']:.1f} B/doc); "
        f"compacted ({se['moved']:,} logs) in {se['compact_s']:.1f} s into {se['cold_files']} cold files",
        "",
        table(["measurement", "result", "target", "verdict"], summary),
        "",
        f"Search latency by query kind ({se['docs']:,} log docs, ~{se['body']:.0f} B bodies, "
        f"rare words hit {rare[0]:,}-{rare[-1]:,} docs), ms:",
        "",
        table(["query kind", "queries", "hot p50", "hot p99", "cold p50", "cold p99"], kind_rows),
        "",
        f"Blob store after the last span ingest run ({si['n']:,} spans):",
        "",
        table(["quantity", "value"], blob_rows),
        "",
        f"wall time: {wall:.1f} s",
    ]
    if problems:
        lines += ["", "PROBLEMS (results read back were wrong):", *(f"- {p}" for p in problems[:20])]
        if len(problems) > 20:
            lines.append(f"- ... and {len(problems) - 20} more")
    out = "\n".join(lines)
    print(out)
    if problems:
        raise SystemExit(1)
    return out


if __name__ == "__main__":
    main()
