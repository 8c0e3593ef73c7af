"""Blob garbage collection never removes a referenced blob and leaves none unreferenced:
property-based over sequences of inserts, compactions, merges, retention and collection."""

from __future__ import annotations

import hashlib
import itertools
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import tael

DAY = 86_400 * 10**9
T0 = 1_767_225_600 * 10**9
# long texts (past the 64-byte threshold used here), shared between records, and one short one
TEXTS = [f"system prompt {i} " * 10 for i in range(4)] + ["short text"]

op = st.one_of(
    st.tuples(st.just("spans"), st.integers(0, 6), st.lists(st.integers(0, len(TEXTS) - 1), min_size=1, max_size=4)),
    st.tuples(st.just("logs"), st.integers(0, 6), st.lists(st.integers(0, len(TEXTS) - 1), min_size=1, max_size=4)),
    st.tuples(st.just("compact"), st.integers(0, 7), st.just([])),
    st.tuples(st.just("retain"), st.integers(2, 9), st.just([])),
    st.tuples(st.just("merge"), st.just(0), st.just([])),
    st.tuples(st.just("collect"), st.just(0), st.just([])),
)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def blob_files(data: Path) -> set[str]:
    return {p.parent.name + p.name for p in (data / "blobs").rglob("*") if p.is_file()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=12))
@example([("spans", 0, [0]), ("logs", 0, [1]), ("compact", 1, []), ("collect", 0, [])])
@example([("spans", 0, [0, 0]), ("compact", 1, []), ("spans", 2, [0]), ("retain", 4, []), ("collect", 0, [])])
def test_collection_keeps_exactly_the_referenced_blobs(ops: list[tuple[str, int, list[int]]]) -> None:
    ids = itertools.count(1)
    s = tael.Settings(payload_blob_min_bytes=64, retention_spans_days=3, retention_logs_days=3, cold_merge_min_files=2)
    with tempfile.TemporaryDirectory() as tmp, tael.Store(Path(tmp) / "d", s) as store:
        data = Path(tmp) / "d"
        for kind, day, texts in [*ops, ("collect", 0, [])]:
            if kind == "spans":
                store.insert_spans(
                    [
                        tael.Span(
                            trace_id=f"{n:032x}",
                            span_id=f"{n:016x}",
                            name="chat",
                            service="llm",
                            start_ns=T0 + day * DAY + n,
                            end_ns=T0 + day * DAY + n + 1,
                            attributes={"gen_ai.prompt": TEXTS[t]},
                            events=[
                                tael.SpanEvent(time_ns=1, name="e", attributes={"exception.message": TEXTS[-1 - t]})
                            ],
                        )
                        for t in texts
                        for n in [next(ids)]
                    ]
                )
            elif kind == "logs":
                store.insert_logs(
                    [tael.LogRecord(time_ns=T0 + day * DAY + next(ids), body=TEXTS[t], service="api") for t in texts]
                )
            elif kind == "compact":
                store.compact(T0 + day * DAY)
            elif kind == "retain":
                store.enforce_retention(T0 + day * DAY)
            elif kind == "merge":
                store.merge_small_files()
            else:
                store.collect_blobs()
            # every read restores its payloads: a referenced blob was never removed
            spans = store.query_traces(limit=100_000)
            logs = store.query_logs(limit=100_000)
            assert all(sp.attributes["gen_ai.prompt"] in TEXTS for sp in spans)
            assert all(sp.events[0].attributes["exception.message"] in TEXTS for sp in spans)
            assert all(r.body in TEXTS for r in logs)
            live = {
                digest(t)
                for t in [sp.attributes["gen_ai.prompt"] for sp in spans]
                + [sp.events[0].attributes["exception.message"] for sp in spans]
                + [r.body for r in logs]
                if len(t) >= 64
            }
            assert live <= blob_files(data), "every referenced blob is on disk"
            if kind == "collect":
                assert blob_files(data) == live, "collection leaves no unreferenced blob"
                assert store.stats().blobs == len(live)
