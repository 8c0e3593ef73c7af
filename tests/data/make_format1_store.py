"""Build tests/data/format1-store.tar.gz and format1-expected.json.gz: a data directory in the
on-disk formats tael wrote before the columnar data path (WAL segment version 1, hot tier
format 2, cold Parquet format 1), and every answer that code gave for it.

Issue 16 changes the hot tier and the cold format; a directory written by the previous
release must open and be migrated without loss. tests/test_migration.py opens a copy of
this directory with the current code and checks it answers exactly as recorded here.

Kept as test data, so it is built once, by code that writes those formats (it was
built at commit 185d7ce, the end of issue 15), and never again: running this with
later code would record later formats. The command (from the repository root):

    python -m tests.data.make_format1_store

The directory holds every kind of state an upgrade meets: cold files of every dataset
(spans, logs, metrics and both rollups) with payload blobs; hot spans, logs, metric
points and comments, some with blobs; a full-text index; and WAL frames the hot tier
has not applied (the state a kill -9 leaves), so opening it replays them.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tarfile
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import tael

HERE = Path(__file__).resolve().parent
TARBALL = HERE / "format1-store.tar.gz"
EXPECTED = HERE / "format1-expected.json.gz"
S = 1_000_000_000
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
HOUR = 3600 * S
LONG = "Summarise the attached incident report in three sentences. " * 60  # blob store (>= 2 KiB)
SETTINGS = tael.Settings()


def spans(day: int, n: int) -> list[tael.Span]:
    out = []
    for i in range(n):
        t = T0 + day * 24 * HOUR + i * 60 * S
        trace = f"{day + 1:08x}{i + 1:024x}"
        root = f"{2 * i + 1:016x}"
        out.append(
            tael.Span(
                trace_id=trace,
                span_id=root,
                name="POST /chat",
                service="api",
                start_ns=t,
                end_ns=t + (5 + i % 7) * 10**6,
                kind="server",
                status="error" if i % 5 == 0 else "ok",
                status_message="upstream timeout" if i % 5 == 0 else "",
                attributes={"http.status_code": 500 if i % 5 == 0 else 200, "user": f"u{i % 3}", "ratio": i / 7},
                resource={"host": f"h{i % 2}", "service.version": "1.2.3"},
                scope_name="tael.test",
                scope_version="1",
            )
        )
        out.append(
            tael.Span(
                trace_id=trace,
                span_id=f"{2 * i + 2:016x}",
                parent_span_id=root,
                name="chat gpt-x",
                service="llm",
                start_ns=t + S // 1000,
                end_ns=t + (3 + i % 5) * 10**6,
                kind="client",
                attributes={
                    "gen_ai.prompt": LONG + str(i) if i % 4 == 0 else f"what is the weather in city {i}",
                    "gen_ai.completion": f"it is sunny in city {i}",
                    "tokens": [i, 2 * i],
                },
                events=[tael.SpanEvent(time_ns=t + 2 * 10**6, name="token", attributes={"n": i})],
                links=[tael.SpanLink(trace_id=f"{99:032x}", span_id=f"{7:016x}", attributes={"why": "retry"})]
                if i % 6 == 0
                else [],
            )
        )
    return out


def logs(day: int, n: int) -> list[tael.LogRecord]:
    return [
        tael.LogRecord(
            time_ns=T0 + day * 24 * HOUR + i * 45 * S,
            body=LONG if i % 9 == 0 else f"request {i} handled in {i % 13} ms",
            service="api" if i % 2 else "worker",
            severity_number=(9, 13, 17, 5)[i % 4],
            severity_text=("INFO", "WARN", "ERROR", "DEBUG")[i % 4],
            trace_id=f"{day + 1:08x}{i // 2 + 1:024x}" if i % 3 == 0 else None,
            span_id=f"{i + 1:016x}" if i % 3 == 0 else None,
            attributes={"path": f"/v{i % 3}", "retry": i % 2 == 0},
            resource={"host": "h1"},
        )
        for i in range(n)
    ]


def points(day: int, n: int) -> list[tael.MetricPoint]:
    out = []
    for i in range(n):
        t = T0 + day * 24 * HOUR + i * 30 * S
        out.append(
            tael.MetricPoint(
                time_ns=t, name="cpu", service="api", value=float(i % 17), attributes={"host": f"h{i % 2}"}
            )
        )
        out.append(
            tael.MetricPoint(
                time_ns=t,
                name="requests",
                service="api",
                value=float(i),
                kind="sum",
                monotonic=True,
                temporality="cumulative",
                unit="1",
            )
        )
        if i % 10 == 0:
            out.append(
                tael.MetricPoint(
                    time_ns=t,
                    name="latency",
                    service="llm",
                    value=0.0,
                    kind="histogram",
                    unit="ms",
                    temporality="delta",
                    start_ns=t - 30 * S,
                    count=4,
                    sum=40.0,
                    min=2.0,
                    max=20.0,
                    bucket_counts=[1, 2, 1],
                    explicit_bounds=[5.0, 10.0],
                )
            )
    return out


def answers(store: tael.Store) -> dict[str, Any]:
    """Every read the formats must keep answering, as plain JSON values."""
    everything = {"start": 0, "end": T0 + 10 * 24 * HOUR}
    trace_ids = sorted({s.trace_id for s in store.query_traces(limit=100_000)})
    return {
        "traces": {t: [s.span_id for s in store.get_trace(t)] for t in trace_ids},  # whole spans: query_traces
        "query_traces": [asdict(s) for s in store.query_traces(limit=100_000, **everything)],
        "query_traces_errors_asc": [
            asdict(s) for s in store.query_traces(status="error", limit=7, order="asc", **everything)
        ],
        "query_logs": [asdict(r) for r in store.query_logs(limit=100_000, **everything)],
        "query_logs_of_trace": [asdict(r) for r in store.query_logs(trace_id=trace_ids[0], limit=100)],
        "query_metrics": [asdict(p) for p in store.query_metrics(limit=100_000, **everything)],
        "aggregate_cpu_5m": [
            asdict(b) for b in store.aggregate_metrics("cpu", start=T0, end=T0 + 3 * 24 * HOUR, step="5m")
        ],
        "aggregate_requests_1h": [
            asdict(b) for b in store.aggregate_metrics("requests", start=T0, end=T0 + 3 * 24 * HOUR, step="1h")
        ],
        "text_spans": sorted((s.trace_id, s.span_id) for s in store.query_traces(text='"incident report"', limit=1000)),
        "text_spans_city": sorted((s.trace_id, s.span_id) for s in store.query_traces(text="city 12", limit=1000)),
        "text_logs": sorted((r.time_ns, r.body[:40]) for r in store.query_logs(text="handled", limit=1000)),
        "services": [asdict(s) for s in store.list_services()],
        "operations": {svc: store.list_operations(svc) for svc in ("api", "llm")},
        "comments": {t: [asdict(c) for c in store.comments(t)] for t in trace_ids[:3]},
        "counts": {k: v.count for k, v in store.stats().signals.items()},
    }


def build(root: Path) -> dict[str, Any]:
    data = root / "data"
    with tael.Store(data, SETTINGS) as store:
        for day in (0, 1):  # cold after compaction
            store.insert_spans(spans(day, 40))
            store.insert_logs(logs(day, 60))
            store.insert_metrics(points(day, 200))
        store.compact(T0 + 2 * 24 * HOUR)
        store.insert_spans(spans(2, 30))  # hot
        store.insert_logs(logs(2, 40))
        store.insert_metrics(points(2, 100))
        first = spans(0, 1)[0].trace_id
        store.add_comment(first, "looked at this one", author="ana")
        store.add_comment(spans(2, 1)[0].trace_id, "and this", author="ben", span_id=f"{2:016x}")
        store.flush()
        store.checkpoint()
    before_crash = root / "before-crash"
    shutil.copytree(data, before_crash)
    with tael.Store(data, SETTINGS) as store:  # written to the WAL; the copy's hot tier never sees them
        store.insert_spans(spans(3, 10))
        store.insert_logs(logs(3, 10))
        store.insert_metrics(points(3, 20))
    # The kill -9 state: the WAL holds the last batches, the hot tier and index do not.
    shutil.rmtree(before_crash / "wal")
    shutil.copytree(data / "wal", before_crash / "wal")
    shutil.rmtree(data)
    before_crash.rename(data)
    (data / "LOCK").unlink(missing_ok=True)
    with tarfile.open(TARBALL, "w:gz") as tar:
        tar.add(data, arcname="data")
    scratch = root / "answered"
    shutil.copytree(data, scratch)
    with tael.Store(scratch, SETTINGS) as store:
        assert store.replayed_records == len(spans(3, 10)) + len(logs(3, 10)) + len(points(3, 20))
        return answers(store)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        expected = build(Path(tmp))
    EXPECTED.write_bytes(gzip.compress(json.dumps(expected, sort_keys=True, separators=(",", ":")).encode(), mtime=0))
    print(f"wrote {TARBALL} ({TARBALL.stat().st_size:,} bytes) and {EXPECTED}")


if __name__ == "__main__":
    main()
