"""Analytics calls checked against straightforward computations over plain Python lists
of the same records, with the data split across the hot and cold tiers."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import tael

S = 10**9
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
NOW = T0 + 6 * 3600 * S
SERVICES = ["api", "db", "llm", "web"]
SEVERITIES = [0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24]


def pct(durations: list[int], p: float) -> float:
    ordered = sorted(durations)
    return ordered[round((len(ordered) - 1) * p)] / 1e6 if ordered else 0.0


def model_traces(spans: list[tael.Span]) -> tael.TraceSummary:
    d = [s.end_ns - s.start_ns for s in spans]
    n = len(spans)
    errors = sum(s.status == "error" for s in spans)
    return tael.TraceSummary(
        span_count=n,
        trace_count=len({s.trace_id for s in spans}),
        error_count=errors,
        error_rate=errors / n if n else 0.0,
        avg_ms=sum(d) / n / 1e6 if n else 0.0,
        max_ms=max(d) / 1e6 if n else 0.0,
        p50_ms=pct(d, 0.5),
        p95_ms=pct(d, 0.95),
        p99_ms=pct(d, 0.99),
    )


def model_summary(
    spans: list[tael.Span],
    logs: list[tael.LogRecord],
    points: list[tael.MetricPoint],
    lo: int,
    hi: int,
    svc: str | None,
) -> tael.SummaryReport:
    win = [s for s in spans if lo <= s.start_ns < hi and (svc is None or s.service == svc)]
    per: dict[str, list[tael.Span]] = {}
    for s in win:
        per.setdefault(s.service, []).append(s)
    top = sorted(per.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:10]
    errs: dict[tuple[str, str], int] = {}
    for s in win:
        if s.status == "error":
            errs[(s.service, s.name)] = errs.get((s.service, s.name), 0) + 1
    lwin = [r for r in logs if lo <= r.time_ns < hi and (svc is None or r.service == svc)]

    def sev(a: int, b: int) -> int:
        return sum(a <= r.severity_number <= b for r in lwin)

    pwin = [p for p in points if lo <= p.time_ns < hi and (svc is None or p.service == svc)]
    return tael.SummaryReport(
        start_ns=lo,
        end_ns=hi,
        traces=model_traces(win),
        top_services=[
            tael.ServiceSummary(
                service=name,
                span_count=len(group),
                error_rate=sum(s.status == "error" for s in group) / len(group),
                p95_ms=pct([s.end_ns - s.start_ns for s in group], 0.95),
            )
            for name, group in top
        ],
        top_error_operations=[
            tael.ErrorOperation(service=k[0], operation=k[1], error_count=n)
            for k, n in sorted(errs.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        ],
        logs=tael.LogSummary(
            total=len(lwin),
            fatal=sev(21, 24),
            error=sev(17, 20),
            warn=sev(13, 16),
            info=sev(9, 12),
            debug=sev(5, 8),
            trace=sev(1, 4),
        ),
        metrics=tael.MetricSummary(point_count=len(pwin), unique_names=len({p.name for p in pwin})),
    )


def close(a: Any, b: Any) -> None:
    """Dataclass equality with float tolerance (sums in a different order)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-9)
    elif isinstance(a, list):
        assert len(a) == len(b), (a, b)
        for x, y in zip(a, b, strict=True):
            close(x, y)
    elif hasattr(a, "__dataclass_fields__"):
        assert type(a) is type(b)
        for name in a.__dataclass_fields__:
            close(getattr(a, name), getattr(b, name))
    else:
        assert a == b


def build(rng: random.Random) -> tuple[list[tael.Span], list[tael.LogRecord], list[tael.MetricPoint]]:
    spans = []
    for i in range(400):
        start = T0 + rng.randrange(6 * 3600) * S
        # durations on a coarse grid so percentiles have ties
        dur = rng.choice([1, 2, 2, 3, 5, 8, 8, 8, 13, 40]) * 10**6
        spans.append(
            tael.Span(
                trace_id=f"{i // 4 + 1:032x}",
                span_id=f"{i + 1:016x}",
                parent_span_id=None if i % 4 == 0 else f"{i // 4 * 4 + 1:016x}",
                name=f"op{rng.randrange(12)}",
                service=rng.choice(SERVICES),
                start_ns=start,
                end_ns=start + dur,
                status=rng.choice(["ok", "ok", "ok", "error", "unset"]),
                attributes={"http.status_code": rng.choice([200, 404, 500]), "tier": rng.choice(["a", "b"])},
            )
        )
    logs = [
        tael.LogRecord(
            time_ns=T0 + rng.randrange(6 * 3600) * S + i,
            body=f"log {i}",
            service=rng.choice(SERVICES),
            severity_number=rng.choice(SEVERITIES),
            trace_id=f"{rng.randrange(1, 101):032x}" if i % 2 else None,
        )
        for i in range(300)
    ]
    points = [
        tael.MetricPoint(
            time_ns=T0 + rng.randrange(6 * 3600) * S + i,
            name=f"m{rng.randrange(5)}",
            service=rng.choice(SERVICES),
            value=float(i),
        )
        for i in range(300)
    ]
    return spans, logs, points


@pytest.fixture(params=[3, 4])
def loaded(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    rng = random.Random(request.param)
    spans, logs, points = build(rng)
    with tael.Store(tmp_path / "data") as store:
        store.insert_spans(spans)
        store.insert_logs(logs)
        store.insert_metrics(points)
        store.compact(T0 + 3 * 3600 * S)  # the first half is cold
        stats = store.stats()
        assert all(stats.hot_records[s] and stats.cold_records[s] for s in ("spans", "logs", "metrics"))
        yield store, spans, logs, points


def test_summary_matches_the_model_over_windows_and_services(loaded: Any) -> None:
    store, spans, logs, points = loaded
    for last_s in (60, 1800, 3 * 3600 + 7, 6 * 3600, 24 * 3600):
        for now in (NOW, T0 + 3 * 3600 * S + 123 * S, T0 - S):  # the last: an empty window
            for svc in (None, "llm"):
                got = store.summary(last_s=last_s, service=svc, now=now)
                close(got, model_summary(spans, logs, points, now - last_s * S, now, svc))
    assert store.summary(last_s=3600, now=T0 - S).traces.span_count == 0


def test_summary_of_a_single_span_and_of_ties(tmp_path: Path) -> None:
    with tael.Store(tmp_path / "data") as store:
        one = tael.Span(
            trace_id=f"{1:032x}", span_id=f"{1:016x}", name="x", service="s", start_ns=T0, end_ns=T0 + 7 * 10**6
        )
        store.insert_spans([one])
        r = store.summary(last_s=60, now=T0 + S)
        assert (r.traces.p50_ms, r.traces.p95_ms, r.traces.p99_ms, r.traces.max_ms) == (7.0, 7.0, 7.0, 7.0)
        assert r.top_services == [tael.ServiceSummary(service="s", span_count=1, error_rate=0.0, p95_ms=7.0)]
        # four spans: 1, 2, 2, 3 ms. p50 is index round(1.5) = 2 (banker's rounding) -> 2 ms
        store.insert_spans(
            [
                tael.Span(
                    trace_id=f"{2:032x}",
                    span_id=f"{i + 2:016x}",
                    name="y",
                    service="t",
                    start_ns=T0 + 10 * S,
                    end_ns=T0 + 10 * S + d * 10**6,
                )
                for i, d in enumerate([3, 2, 1, 2])
            ]
        )
        t = store.summary(last_s=60, service="t", now=T0 + 20 * S).traces
        assert (t.p50_ms, t.p95_ms, t.p99_ms) == (2.0, 3.0, 3.0)


def test_anomalies_compare_adjacent_windows(tmp_path: Path) -> None:
    def span(n: int, svc: str, start: int, ms: int, err: bool) -> tael.Span:
        return tael.Span(
            trace_id=f"{n:032x}",
            span_id=f"{n:016x}",
            name="op",
            service=svc,
            start_ns=start,
            end_ns=start + ms * 10**6,
            status="error" if err else "ok",
        )

    base, cur = NOW - 3900 * S, NOW - 300 * S
    spans = []
    n = 0
    for i in range(100):  # baseline: 2% errors, ~20 ms; current: see per service
        for svc in ("pay", "cart", "auth", "slow"):
            n += 1
            spans.append(span(n, svc, base + i * 30 * S, 20, i < 2))
    for i in range(20):
        for svc, ms, err_every in (("pay", 20, 2), ("cart", 21, 8), ("auth", 45, 0), ("slow", 200, 0)):
            n += 1
            spans.append(span(n, svc, cur + i * 10 * S, ms, err_every > 0 and i % err_every == 0))
    n += 1
    spans.append(span(n, "newcomer", cur, 999, True))  # only in the current window: never compared
    with tael.Store(tmp_path / "data") as store:
        store.insert_spans(spans)
        store.compact(cur)  # the baseline window is cold, the current one hot
        report = store.anomalies(now=NOW)
        assert (report.baseline_start_ns, report.current_start_ns, report.end_ns) == (base, cur, NOW)
        got = {(a.service, a.kind): a for a in report.anomalies}
        assert set(got) == {("pay", "error_rate"), ("cart", "error_rate"), ("slow", "p95_latency")}
        assert got[("pay", "error_rate")].severity == "high"  # 2% -> 50%
        assert got[("pay", "error_rate")].delta == pytest.approx(48.0)
        assert got[("cart", "error_rate")].severity == "medium"  # 2% -> 15%
        assert got[("slow", "p95_latency")].severity == "high"
        assert (got[("slow", "p95_latency")].current, got[("slow", "p95_latency")].baseline) == (200.0, 20.0)
        # auth: 45 ms > 1.5 x 20 ms, but only 25 ms more: not flagged (more than 25 ms is required)
        assert store.anomalies(now=NOW, service="auth").anomalies == []
        assert [a.service for a in store.anomalies(now=NOW, service="pay").anomalies] == ["pay"]


def test_correlate_collects_logs_at_any_time_and_nearby_metrics(loaded: Any) -> None:
    store, spans, logs, points = loaded
    margin = store.settings.correlate_margin_s * S
    for n in (1, 2, 50):
        trace = f"{n:032x}"
        mine = sorted((s for s in spans if s.trace_id == trace), key=lambda s: (s.start_ns, s.span_id))
        report = store.correlate(trace)
        assert report is not None
        assert report.spans == mine
        start, end = min(s.start_ns for s in mine), max(s.end_ns for s in mine)
        assert (report.start_ns, report.end_ns, report.duration_ms) == (start, end, (end - start) / 1e6)
        assert report.services == sorted({s.service for s in mine})
        assert report.error_count == sum(s.status == "error" for s in mine)
        assert report.logs == sorted((r for r in logs if r.trace_id == trace), key=lambda r: r.time_ns)
        want = [p for p in points if p.service in report.services and start - margin <= p.time_ns < end + margin]
        assert sorted(report.metrics, key=lambda p: p.value) == sorted(want, key=lambda p: p.value)
    assert store.correlate(f"{999_999:032x}") is None


def test_comments_are_durable_and_outlive_the_trace_until_their_retention(tmp_path: Path) -> None:
    data = tmp_path / "data"
    trace = f"{7:032x}"
    settings = tael.Settings(retention_spans_days=1)
    with tael.Store(data, settings) as store:
        store.insert_spans(
            [tael.Span(trace_id=trace, span_id=f"{1:016x}", name="x", service="s", start_ns=T0, end_ns=T0 + 1)]
        )
        c1 = store.add_comment(trace, "slow because of the retry storm", author="ann")
        c2 = store.add_comment(trace, "fixed in 1.2.3", author="bob", span_id=f"{1:016x}")
        assert (c1.trace_id, c1.author, c1.span_id, c2.span_id) == (trace, "ann", None, f"{1:016x}")
        assert c1.id != c2.id and len(c1.id) == 32
    with tael.Store(data, settings) as store:  # replayed or applied: either way, kept
        assert store.comments(trace) == [c1, c2]
        store.compact(T0 + S)
        store.enforce_retention(T0 + 3 * 86_400 * S)  # the trace's spans are gone
        assert store.get_trace(trace) == []
        assert store.comments(trace) == [c1, c2]
        store.enforce_retention(c2.created_ns + 91 * 86_400 * S)  # past the 90-day comment retention
        assert store.comments(trace) == []
    with pytest.raises(tael.ValidationError, match="body"):
        tael.Store(data).__enter__().add_comment(trace, "  ", author="ann")


def test_comment_validation(store: tael.Store) -> None:
    with pytest.raises(tael.ValidationError, match="trace_id"):
        store.add_comment("nothex", "x", author="a")
    with pytest.raises(tael.ValidationError, match="author"):
        store.add_comment(f"{1:032x}", "x", author="")
    with pytest.raises(tael.ValidationError, match="span_id"):
        store.add_comment(f"{1:032x}", "x", author="a", span_id="xyz")
    assert store.comments(f"{1:032x}") == []


def test_operations_and_attribute_choices(loaded: Any) -> None:
    store, spans, _logs, _points = loaded
    for svc in SERVICES:
        assert store.list_operations(svc) == sorted({s.name for s in spans if s.service == svc})
    assert store.list_operations("nobody") == []
    assert store.list_attribute_keys("spans") == ["http.status_code", "tier"]
    assert store.list_attribute_keys("logs") == []
    values = store.list_attribute_values("spans", "http.status_code")
    counts = {v: sum(s.attributes["http.status_code"] == v for s in spans) for v in (200, 404, 500)}
    assert values == sorted(counts, key=lambda v: (-counts[v], repr(("int", v))))
    assert store.list_attribute_values("spans", "tier", service="db", limit=1) in (["a"], ["b"])
    with pytest.raises(ValueError, match="signal"):
        store.list_attribute_keys("traces")


def test_order_and_trace_summaries_match_the_model(loaded: Any) -> None:
    store, spans, logs, _points = loaded
    key = lambda s: (s.start_ns, s.trace_id, s.span_id)  # noqa: E731
    for order in ("desc", "asc"):
        for svc in (None, "api"):
            want = sorted((s for s in spans if svc is None or s.service == svc), key=key, reverse=order == "desc")
            assert store.query_traces(service=svc, order=order, limit=37) == want[:37]
        want_logs = sorted(logs, key=lambda r: r.time_ns, reverse=order == "desc")
        assert store.query_logs(order=order, limit=50) == want_logs[:50]
        traced = [r for r in want_logs if r.trace_id == f"{3:032x}"]
        assert store.query_logs(trace_id=f"{3:032x}", order=order, limit=1000) == traced
    with pytest.raises(ValueError, match="order"):
        store.query_traces(order="newest")

    for status in (None, "error"):
        matching = sorted((s for s in spans if status is None or s.status == status), key=key, reverse=True)
        ids = list(dict.fromkeys(s.trace_id for s in matching))[:15]
        want_rows = []
        for t in ids:
            whole = [s for s in spans if s.trace_id == t]
            root = next(s for s in whole if s.parent_span_id is None)
            first = min(s.start_ns for s in whole)
            want_rows.append(
                tael.TraceOverview(
                    trace_id=t,
                    root_service=root.service,
                    root_name=root.name,
                    start_ns=first,
                    duration_ms=(max(s.end_ns for s in whole) - first) / 1e6,
                    span_count=len(whole),
                    error_count=sum(s.status == "error" for s in whole),
                )
            )
        assert store.trace_summaries(status=status, limit=15) == want_rows


def test_attribute_values_of_a_payload_key_are_the_texts(store: tael.Store) -> None:
    prompt = "system prompt " * 200  # past the blob threshold
    store.insert_spans(
        [
            tael.Span(
                trace_id=f"{1:032x}",
                span_id=f"{i + 1:016x}",
                name="chat",
                service="llm",
                start_ns=T0 + i,
                end_ns=T0 + i + 1,
                attributes={"gen_ai.prompt": prompt if i else "short"},
            )
            for i in range(3)
        ]
    )
    assert store.list_attribute_values("spans", "gen_ai.prompt") == [prompt, "short"]
    store.compact(T0 + S)
    assert store.list_attribute_values("spans", "gen_ai.prompt") == [prompt, "short"]
    with pytest.raises(ValueError, match="service"):
        store.list_operations(None)  # type: ignore[arg-type]


def test_a_hot_tier_of_another_format_is_refused_untouched(tmp_path: Path) -> None:
    import lmdb

    data = tmp_path / "data"
    with tael.Store(data) as store:
        store.insert_spans(
            [tael.Span(trace_id=f"{1:032x}", span_id=f"{1:016x}", name="x", service="s", start_ns=1, end_ns=2)]
        )
    env = lmdb.open(str(data / "hot"), max_dbs=32)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(b"format_version", (1).to_bytes(8, "big"), db=meta)
    env.close()
    before = (data / "hot" / "data.mdb").read_bytes()
    for read_only in (False, True):
        with pytest.raises(tael.StorageError, match="format 1 is not supported"):
            tael.Store(data, read_only=read_only)
    assert (data / "hot" / "data.mdb").read_bytes() == before
