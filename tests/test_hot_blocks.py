"""The hot tier's blocks (format 3): small batches applied together share a block, and
every read answers as it does for one block per batch."""

from __future__ import annotations

import shutil
from pathlib import Path

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
