"""Query filters, ordering and limits checked against a plain Python model of the same data."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tael

from .conftest import make_log, make_point, make_span

SERVICES = ["api", "db", "llm"]
NAMES = ["GET /", "query", "chat"]
ATTR_VALUES = [1, 2, "1", True, 1.0, None]

span_st = st.builds(
    lambda t, s, name, svc, start, dur, kind, status, a, r: tael.Span(
        trace_id=f"{t:032x}",
        span_id=f"{s:016x}",
        name=name,
        service=svc,
        start_ns=start,
        end_ns=start + dur,
        kind=kind,
        status=status,
        attributes={"k": a} if a != "absent" else {},
        resource={"r": r},
    ),
    st.integers(1, 6),
    st.integers(1, 10**6),
    st.sampled_from(NAMES),
    st.sampled_from(SERVICES),
    st.integers(0, 50).map(lambda x: x * 1_000_000),
    st.integers(0, 30).map(lambda x: x * 1_000_000),
    st.sampled_from(tael._models.SPAN_KINDS),
    st.sampled_from(tael._models.SPAN_STATUSES),
    st.sampled_from([*ATTR_VALUES, "absent"]),
    st.sampled_from(["x", "y"]),
)

log_st = st.builds(
    lambda t, svc, sev, tr, a: tael.LogRecord(
        time_ns=t,
        body="b",
        service=svc,
        severity_number=sev,
        trace_id=f"{tr:032x}" if tr else None,
        attributes={"k": a},
    ),
    st.integers(0, 40),
    st.sampled_from(SERVICES),
    st.integers(0, 24),
    st.integers(0, 3),
    st.sampled_from(ATTR_VALUES),
)

point_st = st.builds(
    lambda t, name, svc, a, v: tael.MetricPoint(time_ns=t, name=name, service=svc, attributes={"k": a}, value=v),
    st.integers(0, 40),
    st.sampled_from(["cpu", "mem"]),
    st.sampled_from(SERVICES),
    st.sampled_from([1, 2, "1", True, 1.0]),
    st.floats(-5, 5),
)

opt = st.none() | st.integers(0, 60_000_000)


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    return bool(a == b)


def attrs_match(want: dict[str, Any] | None, *maps: dict[str, Any]) -> bool:
    if not want:
        return True
    return all(any(k in m and same(m[k], v) for m in maps) for k, v in want.items())


def in_range(t: int, start: int | None, end: int | None) -> bool:
    return (start is None or t >= start) and (end is None or t < end)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spans=st.lists(span_st, max_size=60),
    queries=st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "service": st.sampled_from(SERVICES),
                "name": st.sampled_from(NAMES),
                "status": st.sampled_from(tael._models.SPAN_STATUSES),
                "kind": st.sampled_from(tael._models.SPAN_KINDS),
                "min_duration_ms": st.integers(0, 30),
                "max_duration_ms": st.integers(0, 30),
                "attributes": st.sampled_from([{"k": v} for v in ATTR_VALUES] + [{"r": "x"}, {"k": 1, "r": "y"}]),
                "start": st.integers(0, 60_000_000),
                "end": st.integers(0, 60_000_000),
                "limit": st.integers(1, 80),
            },
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_query_traces_matches_model(spans: list[tael.Span], queries: list[dict[str, Any]]) -> None:
    model: dict[tuple[str, str], tael.Span] = {}
    for s in spans:
        model.setdefault((s.trace_id, s.span_id), s)  # first write wins
    with tempfile.TemporaryDirectory() as d, tael.Store(Path(d)) as store:
        for i in range(0, len(spans), 7):
            store.insert_spans(spans[i : i + 7])
        for q in queries:
            expected = sorted(
                (
                    s
                    for s in model.values()
                    if (q.get("service") in (None, s.service))
                    and q.get("name") in (None, s.name)
                    and q.get("status") in (None, s.status)
                    and q.get("kind") in (None, s.kind)
                    and (q.get("min_duration_ms") is None or s.duration_ns >= q["min_duration_ms"] * 1e6)
                    and (q.get("max_duration_ms") is None or s.duration_ns <= q["max_duration_ms"] * 1e6)
                    and attrs_match(q.get("attributes"), s.attributes, s.resource)
                    and in_range(s.start_ns, q.get("start"), q.get("end"))
                ),
                key=lambda s: (s.start_ns, s.trace_id, s.span_id),
                reverse=True,
            )[: q.get("limit", 100)]
            assert store.query_traces(**q) == expected, q
            fields = {k: v for k, v in q.items() if k != "limit"}
            assert store.query_traces(tael.SpanFilter(**fields), limit=q.get("limit", 100)) == expected, q
        for tid in {s.trace_id for s in spans}:
            want = sorted((s for s in model.values() if s.trace_id == tid), key=lambda s: (s.start_ns, s.span_id))
            assert store.get_trace(tid) == want
        services = {i.name: i for i in store.list_services()}
        assert set(services) == {s.service for s in model.values()}
        for name, info in services.items():
            mine = [s for s in model.values() if s.service == name]
            assert info.span_count == len(mine)
            assert info.error_count == sum(s.status == "error" for s in mine)
            assert info.trace_count == len({s.trace_id for s in mine})
            assert abs(info.avg_duration_ms - sum(s.duration_ms for s in mine) / len(mine)) < 1e-9
            assert abs(info.error_rate - info.error_count / len(mine)) < 1e-12


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    logs=st.lists(log_st, max_size=60),
    queries=st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "service": st.sampled_from(SERVICES),
                "min_severity": st.integers(0, 24),
                "trace_id": st.integers(1, 3).map(lambda t: f"{t:032x}"),
                "attributes": st.sampled_from([{"k": v} for v in ATTR_VALUES]),
                "start": st.integers(0, 40),
                "end": st.integers(0, 40),
                "limit": st.integers(1, 80),
            },
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_query_logs_matches_model(logs: list[tael.LogRecord], queries: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as d, tael.Store(Path(d)) as store:
        for i in range(0, len(logs), 5):
            store.insert_logs(logs[i : i + 5])
        for q in queries:
            expected = [
                r
                for _seq, r in sorted(
                    (
                        (n, r)
                        for n, r in enumerate(logs)
                        if q.get("service") in (None, r.service)
                        and r.severity_number >= q.get("min_severity", 0)
                        and q.get("trace_id") in (None, r.trace_id)
                        and attrs_match(q.get("attributes"), r.attributes, r.resource)
                        and in_range(r.time_ns, q.get("start"), q.get("end"))
                    ),
                    key=lambda nr: (nr[1].time_ns, nr[0]),
                    reverse=True,
                )
            ][: q.get("limit", 100)]
            assert store.query_logs(**q) == expected, q
            fields = {k: v for k, v in q.items() if k != "limit"}
            assert store.query_logs(tael.LogFilter(**fields), limit=q.get("limit", 100)) == expected, q


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    points=st.lists(point_st, max_size=60),
    queries=st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "name": st.sampled_from(["cpu", "mem", "absent"]),
                "service": st.sampled_from(SERVICES),
                "attributes": st.sampled_from([{"k": 1}, {"k": "1"}, {"k": 2}, {"k": True}]),
                "start": st.integers(0, 40),
                "end": st.integers(0, 40),
                "limit": st.integers(1, 80),
            },
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_query_metrics_matches_model(points: list[tael.MetricPoint], queries: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as d, tael.Store(Path(d)) as store:
        for i in range(0, len(points), 9):
            store.insert_metrics(points[i : i + 9])
        for q in queries:
            expected = [
                p
                for _n, p in sorted(
                    (
                        (n, p)
                        for n, p in enumerate(points)
                        if q.get("name") in (None, p.name)
                        and q.get("service") in (None, p.service)
                        and attrs_match(q.get("attributes"), p.attributes)
                        and in_range(p.time_ns, q.get("start"), q.get("end"))
                    ),
                    key=lambda np: (np[1].time_ns, np[0]),
                )
            ][: q.get("limit", 10_000)]
            assert store.query_metrics(**q) == expected, q
            fields = {k: v for k, v in q.items() if k != "limit"}
            assert store.query_metrics(tael.MetricFilter(**fields), limit=q.get("limit", 10_000)) == expected, q


def test_datetime_bounds_are_exact_to_the_microsecond(store: tael.Store) -> None:
    base = datetime(2025, 3, 1, 12, 0, 0, 250_001, tzinfo=UTC)
    base_ns = 1_740_830_400_250_001_000
    store.insert_logs([tael.LogRecord(time_ns=base_ns + d, body=str(d), service="s") for d in (-1, 0, 1)])
    got = store.query_logs(start=base, end=base_ns + 1)
    assert [r.body for r in got] == ["0"]


def test_stats_counts_and_time_range(store: tael.Store) -> None:
    empty = store.stats()
    assert empty.signals["spans"] == tael.SignalStats(count=0, oldest_ns=None, newest_ns=None)
    store.insert_spans(
        [
            tael.Span(trace_id=f"{i:032x}", span_id=f"{i:016x}", name="n", service="s", start_ns=t, end_ns=t + 5)
            for i, t in ((1, 30), (2, 10), (3, 20))
        ]
    )
    store.insert_logs([tael.LogRecord(time_ns=t, body="", service="s") for t in (7, 3)])
    stats = store.stats()
    assert stats.signals["spans"] == tael.SignalStats(count=3, oldest_ns=10, newest_ns=30)
    assert stats.signals["logs"] == tael.SignalStats(count=2, oldest_ns=3, newest_ns=7)
    assert stats.signals["metrics"].count == 0
    assert stats.disk_bytes["wal"] > 0 and stats.disk_bytes["hot"] > 0
    assert set(stats.disk_bytes) == {"wal", "hot", "cold", "blobs", "index"}
    assert stats.disk_bytes["cold"] == stats.disk_bytes["blobs"] == 0  # nothing compacted, no long payloads
    assert stats.total_disk_bytes == sum(stats.disk_bytes.values())
    assert stats.wal_segments == 1


def test_time_bounds_past_int64_read_as_open_ends_on_every_read(tmp_path: Path) -> None:
    """A bound beyond what int64 nanoseconds hold (a huge int, or a datetime in year
    9999) means "from the beginning" or "to the end", never an OverflowError from the
    tiers or the index (seen: ``query_traces(start=10**30)``)."""
    with tael.Store(tmp_path / "data") as store:
        store.insert_spans([make_span(start_ns=10, end_ns=20, name="payment", attributes={"gen_ai.prompt": "hello"})])
        store.insert_logs([make_log(time_ns=10, body="hello")])
        store.insert_metrics([make_point(time_ns=10, name="m")])
        store.flush()
        far = datetime(9999, 12, 31, tzinfo=UTC)
        for low, high in [(-(10**30), 10**30), (-(2**64), 2**64), (None, far), (-(10**30), None)]:
            bounds = {"start": low, "end": high}
            assert [s.name for s in store.query_traces(**bounds)] == ["payment"]
            assert [s.name for s in store.query_traces(text="hello", **bounds)] == ["payment"]
            assert [r.body for r in store.query_logs(**bounds)] == ["hello"]
            assert [r.body for r in store.query_logs(text="hello", **bounds)] == ["hello"]
            assert [p.value for p in store.query_metrics(name="m", **bounds)] == [1.0]
            assert len(store.trace_summaries(**bounds)) == 1
        for empty in [{"start": 10**30}, {"end": -(10**30)}, {"start": far}]:
            assert store.query_traces(**empty) == []
            assert store.query_logs(**empty) == []
            assert store.query_metrics(name="m", **empty) == []
