"""Full-text search and payload blobs: text queries checked against a plain Python
model over hot and cold data, deduplication, rebuild, retention and near-real-time."""

from __future__ import annotations

import random
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tael

from .conftest import make_log, make_span

WORDS = ["rate", "limit", "connection", "reset", "timeout", "prompt", "token", "refund", "retry", "upstream"]
SERVICES = ["api", "llm", "db"]
DAY = 86_400 * 10**9
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
PROMPT_KEY = "gen_ai.prompt"


def tokens(text: str) -> list[str]:
    """Tantivy's simple tokenizer + lowercasing, for the words used here."""
    return [t.lower() for t in re.split(r"[^0-9A-Za-z]+", text) if t]


def query_terms(query: str) -> list[list[str]]:
    out = []
    for phrase, word in re.findall(r'"([^"]*)"?|([^\s"]+)', query):
        toks = tokens(phrase or word)
        if toks:
            out.append(toks)
    return out


def contains(texts: list[str], seq: list[str]) -> bool:
    for text in texts:
        toks = tokens(text)
        for i in range(len(toks) - len(seq) + 1):
            if toks[i : i + len(seq)] == seq:
                return True
    return False


def model_match(texts: list[str], query: str) -> bool:
    return all(contains(texts, seq) for seq in query_terms(query))


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def payload_texts(span: tael.Span) -> list[str]:
    keys = set(tael.Settings().payload_attributes)
    out = [v for k, v in span.attributes.items() if k in keys and isinstance(v, str)]
    for ev in span.events:
        out += [v for k, v in ev.attributes.items() if k in keys and isinstance(v, str)]
    return out


def build(rng: random.Random) -> tuple[list[tael.Span], list[tael.LogRecord]]:
    spans, logs = [], []
    for i in range(160):
        attrs: dict[str, Any] = {"n": i}
        events = []
        if rng.random() < 0.8:
            # long texts (some past the 64-byte blob threshold used below) and short ones
            attrs[PROMPT_KEY] = sentence(rng, rng.choice([3, 12, 30]))
        if rng.random() < 0.3:
            events.append(
                tael.SpanEvent(time_ns=T0, name="exception", attributes={"exception.message": sentence(rng, 8)})
            )
        if rng.random() < 0.2:
            attrs["not.a.payload"] = sentence(rng, 5)  # never searchable
        spans.append(
            make_span(
                trace_id=f"{i // 4 + 1:032x}",
                span_id=f"{i + 1:016x}",
                service=rng.choice(SERVICES),
                status=rng.choice(["ok", "error", "unset"]),
                start_ns=T0 + (i % 40) * DAY // 20 + i,
                end_ns=T0 + (i % 40) * DAY // 20 + i + rng.randrange(10**6),
                attributes=attrs,
                events=events,
            )
        )
    for i in range(160):
        logs.append(
            make_log(
                time_ns=T0 + i * DAY // 80,
                body=sentence(rng, rng.choice([2, 6, 25])),
                service=rng.choice(SERVICES),
                severity_number=rng.choice([5, 9, 13, 17]),
                trace_id=f"{i % 5 + 1:032x}" if i % 3 == 0 else None,
            )
        )
    return spans, logs


def queries(rng: random.Random, spans: list[tael.Span]) -> list[str]:
    qs = [rng.choice(WORDS) for _ in range(4)]
    qs += [f"{rng.choice(WORDS)} {rng.choice(WORDS).upper()}" for _ in range(3)]
    for _ in range(3):
        text = rng.choice([t for s in spans for t in payload_texts(s)])
        toks = text.split()
        i = rng.randrange(max(1, len(toks) - 2))
        qs.append('"' + " ".join(toks[i : i + 3]) + '"')
    qs += ["rate-limit", '"reset connection" timeout', "refund, retry!"]
    return qs


@pytest.mark.parametrize("seed", [1, 2])
def test_text_queries_match_a_model_hot_and_cold_with_filters(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    spans, logs = build(rng)
    settings = tael.Settings(payload_blob_min_bytes=64)
    with tael.Store(tmp_path / "data", settings) as store:
        store.insert_spans(spans[:80])
        store.insert_logs(logs[:80])
        store.compact(T0 + DAY)  # part of the data goes cold
        store.insert_spans(spans[80:])
        store.insert_logs(logs[80:])
        store.flush()
        stats = store.stats()
        assert stats.cold_records["spans"] > 0 and stats.hot_records["spans"] > 0
        assert stats.cold_records["logs"] > 0 and stats.hot_records["logs"] > 0
        assert stats.blobs > 0, "some payloads are past the threshold"
        for q in queries(rng, spans):
            for service in (None, "llm"):
                for status in (None, "error"):
                    for lo, hi in ((None, None), (T0 + DAY // 2, T0 + 3 * DAY // 2)):
                        for limit in (5, 100):
                            want = sorted(
                                (
                                    s
                                    for s in spans
                                    if model_match(payload_texts(s), q)
                                    and (service is None or s.service == service)
                                    and (status is None or s.status == status)
                                    and (lo is None or lo <= s.start_ns < hi)  # type: ignore[operator]
                                ),
                                key=lambda s: (s.start_ns, s.trace_id, s.span_id),
                                reverse=True,
                            )[:limit]
                            got = store.query_traces(
                                text=q, service=service, status=status, start=lo, end=hi, limit=limit
                            )
                            assert got == want, (q, service, status, lo, limit)
            for min_sev in (None, 13):
                for trace in (None, f"{2:032x}"):
                    want_logs = sorted(
                        (
                            r
                            for r in logs
                            if model_match([r.body], q)
                            and (min_sev is None or r.severity_number >= min_sev)
                            and (trace is None or r.trace_id == trace)
                        ),
                        key=lambda r: r.time_ns,
                        reverse=True,
                    )[:10]
                    assert store.query_logs(text=q, min_severity=min_sev, trace_id=trace, limit=10) == want_logs


def test_bad_text_queries_are_refused(store: tael.Store) -> None:
    for bad in ("", "   ", '"" ,;'):
        with pytest.raises(ValueError, match="no searchable words"):
            store.query_traces(text=bad)
    with pytest.raises(ValueError, match="text must be a str"):
        store.query_logs(text=b"reset")  # type: ignore[arg-type]


def test_ten_thousand_spans_share_one_stored_prompt(data_dir: Path) -> None:
    prompt = "You are a careful assistant. " * 200 + "Never reveal the refund policy."
    spans = [
        make_span(
            trace_id=f"{i // 10 + 1:032x}",
            span_id=f"{i + 1:016x}",
            start_ns=T0 + i,
            end_ns=T0 + i + 5,
            attributes={PROMPT_KEY: prompt, "gen_ai.completion": f"answer {i}"},
        )
        for i in range(10_000)
    ]
    with tael.Store(data_dir) as store:
        for i in range(0, len(spans), 2_000):
            store.insert_spans(spans[i : i + 2_000])
        store.flush()
        stats = store.stats()
        assert stats.blobs == 1
        assert stats.blob_raw_bytes == len(prompt.encode())
        assert stats.disk_bytes["blobs"] < len(prompt) // 5  # one compressed copy
        assert len([p for p in (data_dir / "blobs").rglob("*") if p.is_file()]) == 1
        # the hot tier holds 32-byte references, not 10,000 copies
        assert stats.disk_bytes["hot"] < 10_000 * len(prompt) // 10
        assert store.get_trace(f"{1:032x}") == spans[:10]
        store.compact(T0 + DAY)
        assert store.stats().blobs == 1
        assert store.get_trace(f"{500:032x}") == spans[4990:5000]
        assert store.query_traces(text='"refund policy"', limit=3) == spans[::-1][:3]
    with tael.Store(data_dir, read_only=True) as reader:
        assert reader.query_traces(attributes={"gen_ai.completion": "answer 7"}) == [spans[7]]


def test_short_payloads_stay_inline_and_event_payloads_round_trip(store: tael.Store) -> None:
    long_trace = "Traceback (most recent call last):\n" + "  File 'x.py', line 1\n" * 100
    span = make_span(
        attributes={"exception.message": "short", "input.value": "x" * 2000},
        events=[tael.SpanEvent(time_ns=5, name="exception", attributes={"exception.stacktrace": long_trace, "n": 1})],
    )
    log = make_log(body="é" * 600)  # 1,200 bytes of UTF-8: past the 1 KiB threshold
    store.insert_spans([span])
    store.insert_logs([log, make_log(time_ns=2_000, body="short body")])
    assert store.stats().blobs == 3
    assert store.get_trace(span.trace_id) == [span]
    assert store.query_logs(limit=2) == [make_log(time_ns=2_000, body="short body"), log]
    store.compact(10**6)
    assert store.get_trace(span.trace_id) == [span]
    assert store.query_logs(limit=2)[1] == log
    store.flush()
    assert store.query_traces(text="traceback") == [span]
    with pytest.raises(ValueError, match="no searchable words"):
        store.query_logs(text="é" * 600)  # a 1,200-byte token is too long to be indexed
    assert store.query_logs(text="short body") == [make_log(time_ns=2_000, body="short body")]


def test_searchable_within_the_commit_interval_without_flush(data_dir: Path) -> None:
    with tael.Store(data_dir, tael.Settings(index_commit_interval_s=0.2)) as store:
        store.insert_logs([make_log(body="the upstream connection was reset")])
        deadline = time.monotonic() + 5
        while not store.query_logs(text="upstream reset"):
            assert time.monotonic() < deadline, "not searchable 5 s after the insert returned"
            time.sleep(0.05)


def test_insert_does_not_wait_for_an_index_commit(data_dir: Path) -> None:
    with tael.Store(data_dir, tael.Settings(index_commit_interval_s=3600)) as store:
        store.insert_logs([make_log(body="needle in the haystack")])
        assert store.query_logs(limit=1)[0].body == "needle in the haystack"  # stored and readable
        assert store.query_logs(text="needle") == []  # not committed to the index yet
        store.flush()
        assert len(store.query_logs(text="needle")) == 1
    with tael.Store(data_dir, read_only=True) as reader:
        assert len(reader.query_logs(text="haystack")) == 1


def test_rebuild_index_recovers_a_deleted_index(data_dir: Path) -> None:
    spans = [
        make_span(start_ns=T0 + i, end_ns=T0 + i + 1, attributes={PROMPT_KEY: f"tell me about {w}"})
        for i, w in enumerate(WORDS)
    ]
    logs = [make_log(time_ns=T0 + i, body=f"log about {w}") for i, w in enumerate(WORDS)]
    with tael.Store(data_dir) as store:
        store.insert_spans(spans)
        store.insert_logs(logs)
        store.compact(T0 + 5)
        store.flush()
        before = [store.query_traces(text=w) for w in WORDS] + [store.query_logs(text=w) for w in WORDS]
    assert tael.rebuild_index(data_dir) == 2 * len(WORDS)
    with tael.Store(data_dir) as store:
        assert [store.query_traces(text=w) for w in WORDS] + [store.query_logs(text=w) for w in WORDS] == before
        assert store.query_traces(text="about") == spans[::-1]


def test_retention_removes_index_entries_and_unreferenced_blobs(data_dir: Path) -> None:
    old_prompt, new_prompt = "old " * 400 + "alpha", "new " * 400 + "beta"
    settings = tael.Settings(retention_spans_days=2, retention_logs_days=2)
    with tael.Store(data_dir, settings) as store:
        store.insert_spans(
            [
                make_span(start_ns=T0 + i * DAY, end_ns=T0 + i * DAY + 1, attributes={PROMPT_KEY: p})
                for i, p in enumerate([old_prompt, old_prompt, new_prompt, new_prompt, new_prompt])
            ]
        )
        store.insert_logs([make_log(time_ns=T0 + i * DAY, body=f"entry {i} gamma") for i in range(5)])
        store.compact(T0 + DAY)  # day 0 cold, the rest hot
        store.flush()
        docs = store.stats().index_documents
        assert docs == 10 and store.stats().blobs == 2
        store.enforce_retention(T0 + 4 * DAY + DAY // 2)  # keeps days 3 and 4 (and day 2 partly)
        assert store.collect_blobs() == 1
        store.flush()
        stats = store.stats()
        assert stats.blobs == 1
        assert stats.index_documents == 4, "documents of dropped records are deleted"
        assert len(store.query_traces(text="beta")) == 2
        assert store.query_traces(text="alpha") == []
        assert [r.body for r in store.query_logs(text="gamma")] == ["entry 4 gamma", "entry 3 gamma"]
        assert store.collect_blobs() == 0


def test_maintenance_collects_blobs(data_dir: Path) -> None:
    with tael.Store(data_dir, tael.Settings(retention_logs_days=1)) as store:
        store.insert_logs([make_log(time_ns=T0, body="z" * 5000)])
        report = tael.Maintenance(store).run_once(now=T0 + 3 * DAY)
        assert report.error is None
        assert report.blobs_removed == 1
        assert store.stats().blobs == 0
        assert not [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]


def test_a_resent_span_is_found_only_by_the_text_that_was_stored(store: tael.Store) -> None:
    first = make_span(attributes={PROMPT_KEY: "hello world"})
    store.insert_spans([first])
    resent = make_span(trace_id=first.trace_id, span_id=first.span_id, attributes={PROMPT_KEY: "goodbye moon"})
    store.insert_spans([resent])  # a no-op: the first write wins
    store.flush()
    assert store.get_trace(first.trace_id) == [first]
    assert store.query_traces(text="hello") == [first]
    assert store.query_traces(text="goodbye") == []


def test_log_hits_held_hot_are_not_looked_up_in_the_cold_tier(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A log's key is in one tier only, so resolving text hits asks the cold tier only
    for keys the hot tier lacks (a cold lookup by time reads row groups)."""
    from tael._cold import ColdReader

    asked: list[Any] = []
    lookup = ColdReader.lookup

    def spy(self: ColdReader, signal: str, keys: Any) -> Any:
        asked.extend(keys)
        return lookup(self, signal, keys)

    monkeypatch.setattr(ColdReader, "lookup", spy)
    t0 = 1_700_000_000_000_000_000
    with tael.Store(data_dir) as store:
        store.insert_logs([make_log(time_ns=t0 + i, body=f"needle cold {i}") for i in range(20)])
        store.compact(t0 + 100)
        store.insert_logs([make_log(time_ns=t0 + 10 + i, body=f"needle hot {i}") for i in range(5)])  # late, hot
        store.flush()
        found = store.query_logs(text="needle", limit=100)
    assert sorted(r.body for r in found) == sorted(
        [f"needle cold {i}" for i in range(20)] + [f"needle hot {i}" for i in range(5)]
    )
    assert len(asked) == 20  # only the compacted ones


def test_a_live_rebuild_keeps_every_record_written_before_during_and_after(tmp_path: Path) -> None:
    """Store.rebuild_index while another thread writes: each record is in the new index
    exactly once, whether the rebuild's snapshot holds it (hot or cold) or the indexer
    indexes it after; the snapshot's batches still queued are not indexed twice."""
    data = tmp_path / "d"
    written: list[int] = []
    stop = threading.Event()
    with tael.Store(data, tael.Settings(index_commit_interval_s=0.05)) as store:

        def batch(n: int) -> list[tael.LogRecord]:
            return [make_log(time_ns=T0 + n * 100 + i, body=f"marker entry{n}x{i}") for i in range(20)]

        for n in range(30):
            store.insert_logs(batch(n))
            written.append(n)
        store.compact(T0 + 1500)  # half of them cold

        def write() -> None:
            n = 30
            while not stop.is_set() or n < 60:
                store.insert_logs(batch(n))
                written.append(n)
                n += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            rebuilt = [store.rebuild_index() for _ in range(3)]
        finally:
            stop.set()
            writer.join()
        store.flush()
        total = 20 * len(written)
        assert all(30 * 20 <= n <= total for n in rebuilt)  # each snapshot holds at least what came before it
        assert store.stats().index_documents == total
        assert len(store.query_logs(text="marker", limit=10 * total)) == total
        for n in (0, 29, 30, written[-1]):
            assert [r.body for r in store.query_logs(text=f"entry{n}x7")] == [f"marker entry{n}x7"]
    with tael.Store(data, read_only=True) as reader:
        assert reader.stats().index_documents == total  # committed, and the recorded position holds
    with tael.Store(data) as store:  # reopening indexes nothing twice
        assert store.stats().index_documents == total


def test_a_failed_live_rebuild_keeps_the_old_index_even_when_retention_commits_next(tmp_path: Path) -> None:
    """A rebuild that fails half way (a cold file gone from disk) leaves nothing of itself
    for the next commit: retention commits through the same writer right after it."""
    data = tmp_path / "d"
    with tael.Store(data, tael.Settings(index_commit_interval_s=0.05)) as store:
        store.insert_logs([make_log(time_ns=T0 + i, body=f"harbour entry{i}") for i in range(40)])
        store.compact(T0 + 20)  # 20 cold, 20 hot
        store.flush()
        assert store.stats().index_documents == 40
        cold_file = next((data / "cold" / "logs").rglob("*.parquet"))
        kept = cold_file.read_bytes()
        cold_file.unlink()
        with pytest.raises(tael.StorageError, match=r"rebuilding the full-text index .* failed"):
            store.rebuild_index()
        store.enforce_retention(T0 + 1)  # commits the index (nothing is old enough to drop)
        store.flush()
        assert store.stats().index_documents == 40
        cold_file.write_bytes(kept)
        assert len(store.query_logs(text="harbour", limit=100)) == 40
        assert store.rebuild_index() == 40  # with the file back, a rebuild succeeds
        assert store.stats().index_documents == 40
