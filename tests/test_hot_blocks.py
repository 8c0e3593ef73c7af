"""The hot tier's blocks (format 3): small batches applied together share a block, and
every read answers as it does for one block per batch."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tael
from tael._hot import COALESCE_ROWS

from .conftest import make_log, make_point, make_span
from .readall import all_logs, all_points, all_spans


def _blocks(store: tael.Store, table: str) -> int:
    with store._hot.reader() as txn:
        return int(txn.stat(store._hot.db[table])["entries"])


def test_small_batches_applied_together_share_blocks_and_answer_the_same(data_dir: Path) -> None:
    spans = [make_span(trace_id=f"{i // 3 + 1:032x}", span_id=f"{i + 1:016x}", start_ns=10 + i) for i in range(300)]
    logs = [make_log(time_ns=5 + i, body=f"log {i}", trace_id=f"{i // 3 + 1:032x}") for i in range(300)]
    points = [make_point(time_ns=7 + i, value=float(i)) for i in range(300)]
    trace = f"{7:032x}"
    with tael.Store(data_dir) as store, store.writer(flush_interval_s=0.001) as writer:
        for i in range(0, 300, 3):  # 100 small batches each, many applied by one transaction
            store.insert_spans(spans[i : i + 3])
            writer.write_logs(logs[i : i + 3])
            store.insert_metrics(points[i : i + 3])
        store.insert_spans(spans[:6])  # re-sent: nothing changes
        writer.flush()
        assert sorted(s.span_id for s in all_spans(store)) == sorted(s.span_id for s in spans)
        assert sorted(r.body for r in all_logs(store)) == sorted(r.body for r in logs)
        assert sorted(p.value for p in all_points(store)) == [float(i) for i in range(300)]
        assert [s.span_id for s in store.get_trace(trace)] == [f"{i + 1:016x}" for i in range(18, 21)]
        assert sorted(r.body for r in store.query_logs(trace_id=trace)) == ["log 18", "log 19", "log 20"]
        store.flush()
        assert [r.body for r in store.query_logs(text='"log 150"', limit=5)] == ["log 150"]
        assert store.stats().signals["spans"].count == 300
        assert [s.span_count for s in store.list_services()] == [300]
    # Replay applies thousands of records per transaction: the small batches become a few blocks.
    shutil.rmtree(data_dir / "hot")
    with tael.Store(data_dir) as again:
        assert COALESCE_ROWS > 3
        assert _blocks(again, "span_blocks") < 10 and _blocks(again, "metric_blocks") < 10
        assert sorted(s.span_id for s in all_spans(again)) == sorted(s.span_id for s in spans)
        assert sorted(r.body for r in all_logs(again)) == sorted(r.body for r in logs)
        assert sorted(p.value for p in all_points(again)) == [float(i) for i in range(300)]
        assert [s.span_id for s in again.get_trace(trace)] == [f"{i + 1:016x}" for i in range(18, 21)]
        assert sorted(r.body for r in again.query_logs(trace_id=trace)) == ["log 18", "log 19", "log 20"]
        assert [r.body for r in again.query_logs(text='"log 150"', limit=5)] == ["log 150"]
        assert [s.span_count for s in again.list_services()] == [300]


def test_a_span_re_sent_after_it_was_compacted_changes_nothing(data_dir: Path) -> None:
    """The applier reads the span ids the cold trace index keeps: a re-sent span (an
    exporter retry after its first copy moved to the cold tier) is not stored again, so
    no read, counter or summary sees it twice (issue 16, "Semantics unchanged")."""
    t0 = 1_767_225_600 * 10**9  # 2026-01-01
    spans = [
        make_span(
            trace_id=f"{i // 4 + 1:032x}",
            span_id=f"{i + 1:016x}",
            start_ns=t0 + i * 10**6,
            end_ns=t0 + i * 10**6 + 5 * 10**6,
            status="error" if i % 5 == 0 else "ok",
            service=f"svc{i % 2}",
        )
        for i in range(40)
    ]
    with tael.Store(data_dir) as store:
        store.insert_spans(spans)
        store.compact(t0 + 10**12)
        assert store.stats().hot_records["spans"] == 0

        def answers() -> tuple[object, ...]:
            return (
                store.list_services(),
                store.stats().signals["spans"],
                store.stats().cold_records,
                store.get_trace(f"{3:032x}"),
                all_spans(store),
                store.trace_summaries(limit=100),
                store.summary(now=t0 + 10**9, last_s=3600),
            )

        before = answers()
        store.insert_spans(spans[:10])  # re-sent as they were
        changed = dataclasses.replace(spans[10], name="renamed", status="error")
        store.insert_spans([changed, spans[11]])  # re-sent with changes: the first write wins
        assert store.stats().hot_records["spans"] == 0, "nothing re-sent is stored hot"
        assert answers() == before
        store.compact(t0 + 10**12)
        assert answers() == before
    with tael.Store(data_dir) as again:
        store = again
        assert again.stats().hot_records["spans"] == 0


_SPAN_KEYS = st.tuples(st.integers(1, 4), st.integers(1, 6), st.sampled_from(("a", "b", "c")), st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(_SPAN_KEYS, min_size=1, max_size=25), min_size=1, max_size=6), split=st.data())
def test_apply_keeps_the_first_copy_of_each_span_and_counts_like_a_model(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[tuple[int, int, str, bool]]], split: st.DataObject
) -> None:
    """Batches with repeated (trace id, span id) pairs, within a batch and across batches,
    some applied after the first copies were compacted: exactly the first copy of each span
    is stored, and the per-service counters (spans, traces, errors, durations) and the
    span-name catalog are those of the first copies (a plain-Python model)."""
    path = tmp_path_factory.mktemp("apply")
    compact_after = split.draw(st.integers(0, len(batches)), label="compact_after")
    first: dict[tuple[int, int], tael.Span] = {}
    with tael.Store(path) as store:
        for b, batch in enumerate(batches):
            if b == compact_after:
                store.compact(before=10**12)
            spans = [
                make_span(
                    trace_id=f"{trace:032x}",
                    span_id=f"{sid:016x}",
                    service=service,
                    name=f"op{sid % 3}",
                    start_ns=1_000 + 10 * b + i,
                    end_ns=1_000 + 10 * b + i + 7 * sid + b,
                    status="error" if err else "ok",
                )
                for i, (trace, sid, service, err) in enumerate(batch)
            ]
            store.insert_spans(spans)
            for s in spans:
                first.setdefault((int(s.trace_id, 16), int(s.span_id, 16)), s)
        stored = sorted((s.trace_id, s.span_id, s.service, s.start_ns, s.end_ns) for s in all_spans(store))
        assert stored == sorted((s.trace_id, s.span_id, s.service, s.start_ns, s.end_ns) for s in first.values())
        services = {s.name: s for s in store.list_services()}
        assert sorted(services) == sorted({s.service for s in first.values()})
        for name, info in services.items():
            mine = [s for s in first.values() if s.service == name]
            assert info.span_count == len(mine)
            assert info.trace_count == len({s.trace_id for s in mine})
            assert info.error_count == sum(s.status == "error" for s in mine)
            assert info.avg_duration_ms == pytest.approx(sum(s.end_ns - s.start_ns for s in mine) / len(mine) / 1e6)
            assert store.list_operations(name) == sorted({s.name for s in mine})
        trace = next(iter(first.values())).trace_id
        assert sorted(s.span_id for s in store.get_trace(trace)) == sorted(
            s.span_id for s in first.values() if s.trace_id == trace
        )
