"""Compaction streams a chunk of spans or logs from its blocks (row group by row group,
each block decoded once): the files it writes must hold exactly the chunk's rows, in
file order as a whole, whatever blocks and row groups they come from."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import tael
from tael._coldformat import file_order

from .conftest import make_log, make_span

S = 10**9
DAY = 86_400 * S
T0 = 1_767_225_600 * S  # 2026-01-01


def files(data: Path, dataset: str) -> list[pa.Table]:
    return [pq.read_table(p) for p in sorted((data / "cold" / dataset).rglob("*.parquet"))]


def test_streamed_span_files_hold_every_span_once_in_file_order(tmp_path: Path) -> None:
    rng = random.Random(7)
    settings = tael.Settings(compaction_batch_records=700, cold_row_group_rows=64, cold_merge_min_files=1_000)
    expected = {}
    with tael.Store(tmp_path, settings) as store:
        # traces whose spans arrive in different inserts (blocks), out of time order, over two days
        for batch in range(12):
            spans = []
            for i in range(150):
                trace = f"{rng.randrange(60) + 1:032x}"
                t = T0 + DAY - 3_600 * S + rng.randrange(7_200) * S
                s = make_span(trace_id=trace, span_id=f"{batch * 1000 + i + 1:016x}", start_ns=t, end_ns=t + i)
                spans.append(s)
                expected[(trace, s.span_id)] = t
            store.insert_spans(spans)
        (trace, span), t = next(iter(expected.items()))
        store.insert_spans([make_span(trace_id=trace, span_id=span, start_ns=T0, end_ns=T0)])  # re-sent: a no-op
        store.flush()
        report = store.compact(T0 + 3 * DAY)
        assert report.records["spans"] == len(expected)
        assert store.stats().hot_records["spans"] == 0
    tables = files(tmp_path, "spans")
    assert len(tables) >= 4  # several chunks and both days
    got = {}
    for table in tables:
        order = file_order("spans", table).to_pylist()
        assert order == list(range(table.num_rows)), "a compacted file is in file order as a whole"
        for trace, span, start in zip(
            *(table.column(c).to_pylist() for c in ("trace_id", "span_id", "start_ns")), strict=True
        ):
            assert (trace, span) not in got
            got[(trace, span)] = start
    assert got == expected


def test_streamed_log_files_hold_every_log_in_time_order(tmp_path: Path) -> None:
    rng = random.Random(3)
    settings = tael.Settings(compaction_batch_records=500, cold_row_group_rows=32, cold_merge_min_files=1_000)
    bodies = []
    with tael.Store(tmp_path, settings) as store:
        for batch in range(8):
            logs = [
                make_log(time_ns=T0 + DAY - 600 * S + rng.randrange(1_200) * S, body=f"{batch}-{i}") for i in range(200)
            ]
            bodies += [(r.time_ns, r.body) for r in logs]
            store.insert_logs(logs)
        store.flush()
        assert store.compact(T0 + 3 * DAY).records["logs"] == len(bodies)
    got = []
    for table in files(tmp_path, "logs"):
        assert file_order("logs", table).to_pylist() == list(range(table.num_rows))
        got += list(zip(table.column("time_ns").to_pylist(), table.column("body").to_pylist(), strict=True))
    assert sorted(got) == sorted(bodies)
