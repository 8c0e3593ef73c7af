"""The query package's composed reads, without a store: the rollup choice, and
``trace_summaries``/``correlate`` over the reads they are handed as callables."""

from __future__ import annotations

from typing import Any

import pytest

from tael import LogRecord, MetricPoint, Span
from tael._query import aggregate, analytics, args

T1, T2, T3 = "01" * 16, "02" * 16, "03" * 16


def test_rollup_for_picks_the_coarsest_rollup_whose_window_divides_the_step() -> None:
    assert aggregate.rollup_for(args.step_ns("1d")) == ("metrics_1h", args.HOUR_NS)
    assert aggregate.rollup_for(args.step_ns("1h")) == ("metrics_1h", args.HOUR_NS)
    assert aggregate.rollup_for(2 * args.HOUR_NS + args.FIVE_MIN_NS) == ("metrics_5m", args.FIVE_MIN_NS)
    assert aggregate.rollup_for(args.step_ns("5m")) == ("metrics_5m", args.FIVE_MIN_NS)
    assert aggregate.rollup_for(args.step_ns("1m")) is None
    assert aggregate.rollup_for(7 * args.FIVE_MIN_NS + 1) is None


def span(trace: str, span_id: str, start: int, end: int, parent: str | None = None, status: str = "ok") -> Span:
    return Span(
        trace_id=trace,
        span_id=span_id,
        name=f"op-{span_id}",
        service=f"svc-{span_id}",
        start_ns=start,
        end_ns=end,
        parent_span_id=parent,
        status=status,
    )


TRACES = {
    T1: [span(T1, "a" * 16, 100, 900), span(T1, "b" * 16, 200, 300, parent="a" * 16, status="error")],
    T2: [span(T2, "c" * 16, 50, 60, parent="f" * 16)],  # its parent is not stored: a root all the same
    T3: [],  # gone between the search and the fetch
}


def test_trace_summaries_passes_every_filter_through_and_widens_the_search_until_limit_traces() -> None:
    calls: list[dict[str, Any]] = []
    # what the search finds, best first: four spans of T1, then T3 and T2
    found = [*(TRACES[T1] * 2), span(T3, "d" * 16, 1, 2), span(T2, "c" * 16, 50, 60)]

    def query_traces(**kw: Any) -> list[Span]:
        calls.append(kw)
        return found[: kw["limit"]]

    filters = dict(
        service="s",
        name="n",
        status="ok",
        kind="server",
        min_duration_ms=1.0,
        max_duration_ms=2.0,
        attributes={"k": 1},
        start=10,
        end=20,
        text="word",
        order="asc",
    )
    out = analytics.trace_summaries(query_traces, TRACES.__getitem__, limit=3, **filters)
    assert [c["limit"] for c in calls] == [3, 12]  # 3 spans held one trace: four times as many
    assert all({k: v for k, v in c.items() if k != "limit"} == filters for c in calls)
    assert [o.trace_id for o in out] == [T1, T2]  # T3 went away
    one, two = out
    assert (one.root_service, one.root_name, one.start_ns, one.span_count, one.error_count) == (
        "svc-" + "a" * 16,
        "op-" + "a" * 16,
        100,
        2,
        1,
    )
    assert one.duration_ms == 800 / 1e6
    assert (two.root_name, two.span_count, two.error_count) == ("op-" + "c" * 16, 1, 0)


def test_trace_summaries_checks_its_range_before_searching() -> None:
    def query_traces(**kw: Any) -> list[Span]:
        raise AssertionError("searched")

    with pytest.raises(ValueError, match="limit must be a positive int"):
        analytics.trace_summaries(query_traces, TRACES.__getitem__, limit=0)
    with pytest.raises(TypeError, match="start must be"):
        analytics.trace_summaries(query_traces, TRACES.__getitem__, limit=5, start="yesterday")


def test_correlate_reads_the_trace_its_logs_and_its_services_points_around_it() -> None:
    asked: list[tuple[str, Any]] = []

    def query_logs(*, trace_id: str | None = None, limit: int = 100, order: str = "desc") -> list[LogRecord]:
        asked.append(("logs", (trace_id, limit, order)))
        return [LogRecord(time_ns=5, body="x", service="s", trace_id=trace_id)]

    def query_metrics(
        *, service: str | None = None, start: Any = None, end: Any = None, limit: int = 10_000
    ) -> list[MetricPoint]:
        asked.append(("metrics", (service, start, end, limit)))
        return [MetricPoint(time_ns=end - i, name="m", service=service or "", value=1.0) for i in (1, 2)]

    report = analytics.correlate(
        T1, margin_s=1e-7, get_trace=TRACES.__getitem__, query_logs=query_logs, query_metrics=query_metrics
    )
    assert report is not None
    assert (report.start_ns, report.end_ns, report.error_count) == (100, 900, 1)
    assert report.services == ["svc-" + "a" * 16, "svc-" + "b" * 16]
    assert asked == [
        ("logs", (T1, args.MAX_LIMIT, "asc")),
        ("metrics", ("svc-" + "a" * 16, 0, 1000, args.MAX_LIMIT)),
        ("metrics", ("svc-" + "b" * 16, 0, 1000, args.MAX_LIMIT)),
    ]
    assert [(p.time_ns, p.service) for p in report.metrics] == sorted((p.time_ns, p.service) for p in report.metrics)
    assert (
        analytics.correlate(
            T3, margin_s=1.0, get_trace=TRACES.__getitem__, query_logs=query_logs, query_metrics=query_metrics
        )
        is None
    )
