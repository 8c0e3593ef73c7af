"""Analytics calls: ``summary()``, ``anomalies()`` and ``list_services()`` over a
million spans spread across the hot and cold tiers.

The numbers in docs/benchmarks.md came from:

    python benchmarks/analytics.py

Build (not timed as part of any measurement, reported on its own): S spans
(default 1,000,000) over the 24 hours ending at a fixed ``now``
(2024-06-01 12:30 UTC), generated as traces of 3-7 spans (5 on average) in
time order and inserted in 10,000-span batches with
Settings(durability="os") (the build is not what is measured; ``flush()``
fsyncs at its end). Spans are lean: no events, one attribute
(``http.status_code``). 20 services with 10 operations each, log-normal
durations (median 2-60 ms depending on the service, sigma 0.8) and 3% errors;
in the last 5 minutes one service ("payments") has an incident: it takes a
quarter of the spans, 40% of them errors, 3x slower, so ``anomalies()`` has
something to find. Then ``compact(before=now - 1 h)`` moves everything older
than an hour to the cold tier (Parquet) and leaves the last hour hot, as the
maintenance loop would, and the store is reopened with default Settings (a
fresh process: no cached Parquet footers). The store holds spans only, so the
log and metric parts of a summary are empty.

Five calls, each with ``now=`` passed explicitly so the windows are fixed, each
repeated R times (default 50), in this order:

1. ``summary(last_s=3600)``: the hot hour (~42,000 spans);
2. ``summary(last_s=6 * 3600)``: one hot hour and five cold ones (~250,000 spans);
3. ``summary(last_s=3600, service="checkout")``: the hot hour, one service;
4. ``anomalies()``: the last 5 minutes against the hour before them;
5. ``list_services()``: every service, from counters kept on write.

Targets (from the issue), on p50: under 200 ms for ``summary(last_s=3600)``
(with and without a service filter) and ``anomalies()``, under 10 ms for
``list_services()``; the 6-hour summary has none (reported for reference).

Every answer is checked against statistics computed here from the generated
spans: each summary report in full (span, trace and error counts, error rate,
average, max and exact nearest-rank p50/p95/p99 on the sorted durations at
index ``round((n - 1) * p)``, the top services with their p95, the top error
operations, empty log and metric parts), the anomalies (service, kind and
severity of each, computed with the documented rules, and the incident
service's error-rate rise among them) and every ``list_services()`` row; every
repetition must return the same answer as the first. The script exits 1 if
any answer is wrong. The OS page cache is warm (the files were just written).
Prints markdown tables; latencies are per call, in milliseconds.
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import shutil
import sys
import tempfile
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tael
from benchmarks._common import machine, table

SUMMARY_TARGET_MS = 200.0  # p50, below
ANOMALIES_TARGET_MS = 200.0
SERVICES_TARGET_MS = 10.0
NOW_NS = int(datetime(2024, 6, 1, 12, 30, tzinfo=UTC).timestamp()) * 1_000_000_000
SEC_NS = 1_000_000_000
HOUR_NS = 3_600 * SEC_NS
DAY_NS = 24 * HOUR_NS
INCIDENT_S = 300
SERVICES = (
    "frontend", "api-gateway", "auth", "users", "checkout", "cart", "payments", "inventory", "catalog",
    "search", "recommendations", "reviews", "shipping", "notifications", "email", "pricing", "ads",
    "analytics", "media", "billing",
)  # fmt: skip
OPERATIONS = (
    "GET /api/items", "GET /api/items/{id}", "POST /api/items", "PUT /api/items/{id}", "DELETE /api/items/{id}",
    "db.query", "db.insert", "cache.get", "cache.set", "queue.publish",
)  # fmt: skip
BAD = SERVICES.index("payments")
FILTERED = "checkout"
ERROR_RATE = 0.03
INCIDENT_ERROR_RATE = 0.40
INCIDENT_SHARE = 0.25  # of the spans in the incident window that go to the bad service
INCIDENT_SLOWDOWN = 3.0
SIGMA = 0.8
CHILD_OFFSET_NS = 40_000_000  # children start within 40 ms of their root


def progress(message: str) -> None:
    print(f"[analytics.py {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def check(ok: bool, problems: list[str], message: str) -> None:
    if not ok:
        problems.append(message)


# ---------------------------------------------------------------- data


class Spans:
    """Generates the spans in time order, batch by batch, and keeps the few columns
    needed to compute every expected answer (start, duration, error, service,
    operation, trace number), not the Span objects."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.rng = random.Random(seed)
        self.begin = NOW_NS - DAY_NS
        rng = random.Random(seed + 1)
        self.mu = [math.log(rng.uniform(2.0, 60.0)) for _ in SERVICES]  # log of the median duration, ms
        self.emitted = 0
        self.traces = 0
        self.pending: list[tael.Span] = []
        self.starts = array("q")
        self.durs = array("q")
        self.errs = bytearray()
        self.svcs = bytearray()
        self.ops = bytearray()
        self.trace_no = array("q")

    def batch(self, k: int) -> list[tael.Span]:
        while len(self.pending) < k and self.emitted < self.n:
            self._trace()
        out, self.pending = self.pending[:k], self.pending[k:]
        return out

    def _trace(self) -> None:
        rng = self.rng
        size = min(rng.randint(3, 7), self.n - self.emitted)
        # time advances with the span count, so the n spans cover exactly the 24 hours
        t0 = self.begin + self.emitted * DAY_NS // self.n
        t1 = self.begin + (self.emitted + size) * DAY_NS // self.n
        start = rng.randrange(t0, max(t0 + 1, t1 - CHILD_OFFSET_NS))
        trace_id = f"{rng.getrandbits(128) | 1:032x}"
        tno = self.traces
        self.traces += 1
        incident = start >= NOW_NS - INCIDENT_S * SEC_NS
        root_id = None
        for j in range(size):
            s = start if j == 0 else start + rng.randrange(CHILD_OFFSET_NS)
            assert s < NOW_NS
            svc = BAD if incident and rng.random() < INCIDENT_SHARE else rng.randrange(len(SERVICES))
            bad = incident and svc == BAD
            err = rng.random() < (INCIDENT_ERROR_RATE if bad else ERROR_RATE)
            dur_ms = rng.lognormvariate(self.mu[svc], SIGMA) * (INCIDENT_SLOWDOWN if bad else 1.0)
            dur = max(1, int(dur_ms * 1e6))
            op = rng.randrange(len(OPERATIONS))
            span_id = f"{rng.getrandbits(64) | 1:016x}"
            self.pending.append(
                tael.Span(
                    trace_id=trace_id,
                    span_id=span_id,
                    parent_span_id=root_id,
                    name=OPERATIONS[op],
                    service=SERVICES[svc],
                    start_ns=s,
                    end_ns=s + dur,
                    kind="server" if j == 0 else "client",
                    status="error" if err else "ok",
                    attributes={"http.status_code": 500 if err else 200},
                )
            )
            if j == 0:
                root_id = span_id
            self.starts.append(s)
            self.durs.append(dur)
            self.errs.append(err)
            self.svcs.append(svc)
            self.ops.append(op)
            self.trace_no.append(tno)
        self.emitted += size


class Expected:
    """Answers computed from the generated columns, by the documented rules."""

    def __init__(self, d: Spans) -> None:
        self.d = d
        self.order = sorted(range(len(d.starts)), key=d.starts.__getitem__)
        self.sorted_starts = [d.starts[i] for i in self.order]

    def window(self, lo: int, hi: int, service: str | None = None) -> list[int]:
        a = bisect.bisect_left(self.sorted_starts, lo)
        b = bisect.bisect_left(self.sorted_starts, hi)
        idx = self.order[a:b]
        if service is not None:
            want = SERVICES.index(service)
            idx = [i for i in idx if self.d.svcs[i] == want]
        return idx

    def per_service(self, idx: list[int]) -> dict[str, tuple[int, int, float]]:
        durs: dict[int, list[int]] = defaultdict(list)
        errs: Counter[int] = Counter()
        for i in idx:
            durs[self.d.svcs[i]].append(self.d.durs[i])
            errs[self.d.svcs[i]] += self.d.errs[i]
        out = {}
        for svc, ds in durs.items():
            ds.sort()
            out[SERVICES[svc]] = (len(ds), errs[svc], ds[round((len(ds) - 1) * 0.95)] / 1e6)
        return out

    def summary(self, last_s: float, service: str | None = None) -> tael.SummaryReport:
        lo, hi = NOW_NS - int(last_s * 1e9), NOW_NS
        idx = self.window(lo, hi, service)
        d = self.d
        n = len(idx)
        ds = sorted(d.durs[i] for i in idx)
        errors = sum(d.errs[i] for i in idx)

        def rank(p: float) -> float:
            return ds[round((n - 1) * p)] / 1e6

        traces = tael.TraceSummary(
            span_count=n,
            trace_count=len({d.trace_no[i] for i in idx}),
            error_count=errors,
            error_rate=errors / n,
            avg_ms=sum(ds) / n / 1e6,
            max_ms=ds[-1] / 1e6,
            p50_ms=rank(0.50),
            p95_ms=rank(0.95),
            p99_ms=rank(0.99),
        )
        ranked = sorted(self.per_service(idx).items(), key=lambda kv: (-kv[1][0], kv[0]))[:10]
        top = [
            tael.ServiceSummary(service=svc, span_count=k, error_rate=e / k, p95_ms=p95) for svc, (k, e, p95) in ranked
        ]
        err_ops = Counter((SERVICES[d.svcs[i]], OPERATIONS[d.ops[i]]) for i in idx if d.errs[i])
        ops = sorted(err_ops.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1]))[:10]
        return tael.SummaryReport(
            start_ns=lo,
            end_ns=hi,
            traces=traces,
            top_services=top,
            top_error_operations=[tael.ErrorOperation(service=s, operation=o, error_count=c) for (s, o), c in ops],
            logs=tael.LogSummary(total=0, fatal=0, error=0, warn=0, info=0, debug=0, trace=0),
            metrics=tael.MetricSummary(point_count=0, unique_names=0),
        )

    def anomalies(self, current_s: int = 300, baseline_s: int = 3600) -> list[tuple[str, str, str, float, float]]:
        """(service, kind, severity, current, baseline) by the rules in Store.anomalies' docstring."""
        cur_lo = NOW_NS - current_s * SEC_NS
        current = self.per_service(self.window(cur_lo, NOW_NS))
        baseline = self.per_service(self.window(cur_lo - baseline_s * SEC_NS, cur_lo))
        out = []
        for name in sorted(current.keys() & baseline.keys()):
            (n_c, e_c, p95_c), (n_b, e_b, p95_b) = current[name], baseline[name]
            rate_c, rate_b = 100.0 * e_c / n_c, 100.0 * e_b / n_b
            if rate_c - rate_b > 5:
                out.append((name, "error_rate", "high" if rate_c - rate_b > 20 else "medium", rate_c, rate_b))
            if p95_c > 1.5 * p95_b and p95_c - p95_b > 25:
                out.append((name, "p95_latency", "high" if p95_c > 2 * p95_b else "medium", p95_c, p95_b))
        return out

    def services(self) -> list[tael.ServiceInfo]:
        d = self.d
        spans: Counter[int] = Counter(d.svcs)
        errors: Counter[int] = Counter()
        total: Counter[int] = Counter()
        traces: dict[int, set[int]] = defaultdict(set)
        for i in range(len(d.starts)):
            svc = d.svcs[i]
            errors[svc] += d.errs[i]
            total[svc] += d.durs[i]
            traces[svc].add(d.trace_no[i])
        return [
            tael.ServiceInfo(
                name=SERVICES[svc],
                span_count=spans[svc],
                trace_count=len(traces[svc]),
                error_count=errors[svc],
                error_rate=errors[svc] / spans[svc],
                avg_duration_ms=total[svc] / spans[svc] / 1e6,
            )
            for svc in sorted(spans, key=lambda s: SERVICES[s])
        ]


# ---------------------------------------------------------------- checks


def diff_fields(got: Any, want: Any, prefix: str = "") -> list[str]:
    """Where two report dataclasses (or lists of them) differ, as 'field: got X, expected Y'."""
    if type(got) is not type(want):
        return [f"{prefix or 'value'}: got {got!r}, expected {want!r}"]
    if isinstance(got, list):
        if len(got) != len(want):
            return [f"{prefix}: got {len(got)} entries, expected {len(want)}: {got!r} vs {want!r}"]
        return [m for k, (g, w) in enumerate(zip(got, want, strict=True)) for m in diff_fields(g, w, f"{prefix}[{k}]")]
    if hasattr(got, "__dataclass_fields__"):
        return [
            m
            for name in got.__dataclass_fields__
            for m in diff_fields(getattr(got, name), getattr(want, name), f"{prefix}.{name}" if prefix else name)
        ]
    same = math.isclose(got, want, rel_tol=1e-12) if isinstance(got, float) else got == want
    return [] if same else [f"{prefix}: got {got!r}, expected {want!r}"]


def check_report(label: str, got: Any, want: Any, problems: list[str]) -> None:
    diffs = diff_fields(got, want)
    check(not diffs, problems, f"{label} is wrong in {len(diffs)} fields: " + "; ".join(diffs[:5]))


def check_anomalies(
    got: tael.AnomalyReport, want: list[tuple[str, str, str, float, float]], problems: list[str]
) -> None:
    cur_lo = NOW_NS - INCIDENT_S * SEC_NS
    check(
        (got.baseline_start_ns, got.current_start_ns, got.end_ns) == (cur_lo - HOUR_NS, cur_lo, NOW_NS),
        problems,
        f"anomalies() windows are {got.baseline_start_ns}, {got.current_start_ns}, {got.end_ns}, expected "
        f"{cur_lo - HOUR_NS}, {cur_lo}, {NOW_NS}",
    )
    seen = [(a.service, a.kind, a.severity) for a in got.anomalies]
    check(
        seen == [w[:3] for w in want],
        problems,
        f"anomalies() found {seen}, expected {[w[:3] for w in want]}",
    )
    for a in got.anomalies:
        for w in want:
            if (a.service, a.kind) == w[:2]:
                check(
                    math.isclose(a.current, w[3], rel_tol=1e-9)
                    and math.isclose(a.baseline, w[4], rel_tol=1e-9)
                    and math.isclose(a.delta, w[3] - w[4], rel_tol=1e-9, abs_tol=1e-9),
                    problems,
                    f"anomalies() {a.service} {a.kind}: current {a.current}, baseline {a.baseline}, delta "
                    f"{a.delta}, expected {w[3]}, {w[4]}, {w[3] - w[4]}",
                )
    check(
        (SERVICES[BAD], "error_rate", "high") in seen,
        problems,
        f"anomalies() did not flag the error-rate rise of {SERVICES[BAD]!r} as high: {seen}",
    )


# ---------------------------------------------------------------- build and measure


def build(path: Path, data: Spans, size: int) -> dict[str, Any]:
    store = tael.Store(path, tael.Settings(durability="os"))
    try:
        progress(f"build: {data.n:,} spans in batches of {size:,} (durability='os')")
        t0 = time.perf_counter()
        done = 0
        while batch := data.batch(size):
            store.insert_spans(batch)
            done += len(batch)
            if done % 100_000 < size or done == data.n:
                progress(f"  {done:,} inserted")
        store.flush()
        build_s = time.perf_counter() - t0
        progress("compacting everything older than an hour to the cold tier")
        t0 = time.perf_counter()
        report = store.compact(before=NOW_NS - HOUR_NS)
        compact_s = time.perf_counter() - t0
    finally:
        store.close()
    return {"build_s": build_s, "compact_s": compact_s, "moved": report.records.get("spans", 0)}


def repeat(fn: Callable[[], Any], reps: int, label: str, problems: list[str]) -> tuple[list[float], Any]:
    times: list[float] = []
    first: Any = None
    wrong = 0
    for k in range(reps):
        t0 = time.perf_counter()
        got = fn()
        times.append(time.perf_counter() - t0)
        if k == 0:
            first = got
        elif got != first:
            wrong += 1
    check(not wrong, problems, f"{label}: {wrong} of {reps} repetitions answered differently from the first")
    return times, first


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=1_000_000, help="spans in the store, over 24 hours (1,000,000)")
    ap.add_argument("--batch", type=int, default=10_000, help="spans per insert batch for the build (10,000)")
    ap.add_argument("--repeats", type=int, default=50, help="calls timed per measurement (50)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default=".bench-data", help="scratch directory (on the disk being measured)")
    ap.add_argument("--quick", action="store_true", help="a few seconds: 20,000 spans, 5 calls (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.spans, args.repeats = 20_000, 5
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=root))
    problems: list[str] = []
    wall0 = time.perf_counter()
    data = Spans(args.spans, args.seed)
    calls: list[tuple[str, Callable[[tael.Store], Any]]] = [
        ("summary(last_s=3600)", lambda s: s.summary(last_s=3600, now=NOW_NS)),
        ("summary(last_s=6*3600)", lambda s: s.summary(last_s=6 * 3600, now=NOW_NS)),
        (f'summary(last_s=3600, service="{FILTERED}")', lambda s: s.summary(last_s=3600, service=FILTERED, now=NOW_NS)),
        ("anomalies()", lambda s: s.anomalies(now=NOW_NS)),
        ("list_services()", lambda s: s.list_services()),
    ]
    times: dict[str, list[float]] = {}
    answers: dict[str, Any] = {}
    try:
        path = scratch / "store"
        built = build(path, data, args.batch)
        store = tael.Store(path, tael.Settings())  # a fresh process: no cached Parquet footers
        try:
            st = store.stats()
            for label, fn in calls:
                progress(f"{label}: {args.repeats} calls")
                times[label], answers[label] = repeat(lambda fn=fn: fn(store), args.repeats, label, problems)  # type: ignore[misc]
        finally:
            store.close()
        cold_bytes = st.disk_bytes["cold"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if root.exists() and not any(root.iterdir()):
            root.rmdir()

    progress("computing the expected answers from the generated spans")
    exp = Expected(data)
    cutoff = NOW_NS - HOUR_NS
    hot_n = len(exp.window(cutoff, NOW_NS))
    check(
        st.hot_records.get("spans") == hot_n and st.cold_records.get("spans") == data.n - hot_n,
        problems,
        f"after compaction stats() says hot={st.hot_records.get('spans')} cold={st.cold_records.get('spans')} "
        f"spans, expected {hot_n} hot, {data.n - hot_n} cold",
    )
    check(built["moved"] == data.n - hot_n, problems, f"compact() moved {built['moved']}, expected {data.n - hot_n}")
    labels = [label for label, _ in calls]
    check_report(labels[0], answers[labels[0]], exp.summary(3600), problems)
    check_report(labels[1], answers[labels[1]], exp.summary(6 * 3600), problems)
    check_report(labels[2], answers[labels[2]], exp.summary(3600, FILTERED), problems)
    want_anomalies = exp.anomalies()
    check_anomalies(answers[labels[3]], want_anomalies, problems)
    check_report(labels[4], answers[labels[4]], exp.services(), problems)
    wall = time.perf_counter() - wall0

    sizes = {
        labels[0]: f"{answers[labels[0]].traces.span_count:,} spans, hot",
        labels[1]: f"{answers[labels[1]].traces.span_count:,} spans, hot + cold",
        labels[2]: f"{answers[labels[2]].traces.span_count:,} spans, hot",
        labels[3]: f"{len(exp.window(NOW_NS - INCIDENT_S * SEC_NS - HOUR_NS, NOW_NS)):,} spans, hot + 5 min cold",
        labels[4]: f"{len(answers[labels[4]])} services",
    }
    targets = {
        labels[0]: SUMMARY_TARGET_MS,
        labels[1]: None,
        labels[2]: SUMMARY_TARGET_MS,
        labels[3]: ANOMALIES_TARGET_MS,
        labels[4]: SERVICES_TARGET_MS,
    }
    rows = []
    for label in labels:
        t = times[label]
        p50, p99 = pct(t, 50), pct(t, 99)
        target = targets[label]
        rows.append(
            [
                f"{label} ({sizes[label]}, {len(t)} calls)",
                f"p50 {ms(p50)} ms, p99 {ms(p99)} ms, first {ms(t[0])} ms",
                "-" if target is None else f"p50 < {target:g} ms",
                "" if target is None else ("PASS" if p50 * 1e3 < target else "MISS"),
            ]
        )
    found = "; ".join(a.description for a in answers[labels[3]].anomalies) or "none"
    lines = [
        f"machine: {machine()}",
        f"store: {data.n:,} spans ({data.traces:,} traces, {len(SERVICES)} services x {len(OPERATIONS)} operations) "
        f"over the 24 h before {datetime.fromtimestamp(NOW_NS / 1e9, UTC):%Y-%m-%d %H:%M} UTC, built with "
        f"Settings(durability='os') in {args.batch:,}-span batches in {built['build_s']:.1f} s "
        f"({data.n / built['build_s']:,.0f} spans/s incl. generation); compact(before=now - 1 h) moved "
        f"{built['moved']:,} spans to the cold tier in {built['compact_s']:.1f} s "
        f"({built['moved'] / built['compact_s']:,.0f} spans/s) into {st.cold_files} cold files "
        f"({cold_bytes / 1e6:,.1f} MB), {hot_n:,} spans stay hot; "
        "store reopened with default Settings before the calls",
        "",
        table(["measurement", "result", "target", "verdict"], rows),
        "",
        f"anomalies() found: {found}",
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
