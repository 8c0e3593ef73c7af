"""The demo behind ``tael demo``: write a realistic mixed workload, run maintenance, read it back.

:func:`run_demo` returns a :class:`DemoResult` (plain dataclasses, no printing);
the command line renders it as tables or JSON.

The workload is the shared synthetic one (``_workload.Workload``: three services
calling each other, errors, logs, metric series) laid out in bursts over the last
two and a half hours, enriched with what an LLM application records: prompts and
completions on the model-calling service (a few long ones shared by many spans, so
the blob store keeps each once), rate-limit failures with exception messages,
error logs tied to the failing spans, and an incident in the last few minutes.
One maintenance pass then moves everything older than the hot window
(``Settings.hot_window_s``, one hour) to the cold tier, so every read below spans
both tiers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._maintenance import Maintenance
from ._models import (
    AnomalyReport,
    LogRecord,
    MaintenanceReport,
    MetricBucket,
    MetricPoint,
    ServiceInfo,
    Span,
    SpanEvent,
    StoreStats,
    SummaryReport,
)
from ._store import Store
from ._workload import Workload

_MIN_NS = 60 * 10**9
BURSTS = 12
"""Bursts of traffic the workload is split into, evenly spread over ``SPREAD_NS``."""
SPREAD_NS = 150 * _MIN_NS
"""The first burst starts this long before now; the last one 3 minutes before now."""
SPAN_SEARCH = '"refund policy"'
LOG_SEARCH = '"connection reset"'
METRIC = ("cpu.utilization", "checkout")
STEPS = ("generating the workload", "writing spans", "writing logs", "writing metrics", "maintenance", "queries")
"""What ``progress`` is called with, in order."""

_ORDERS = "\n".join(
    f"order {40_000 + i}: {item} x{1 + i % 3}, shipped {3 + i % 9} days ago, status {status}"
    for i, (item, status) in enumerate(
        (item, status)
        for item in ("espresso machine", "grinder", "milk jug", "tamper", "descaler", "filter papers")
        for status in ("delivered", "in transit", "returned")
    )
)
_SYSTEM = (
    "You are the support assistant of an online coffee equipment shop. Answer in at most three "
    "sentences, quote order numbers exactly, never invent tracking codes, and escalate to a human "
    "when the customer mentions a chargeback or a safety problem. The customer's recent orders:\n"
)
_LONG_PROMPTS = tuple(
    _SYSTEM + _ORDERS + "\n\nCustomer question: " + q
    for q in (
        "What is your refund policy for a grinder that arrived damaged?",
        "My espresso machine is late, when will it arrive and can I cancel the order?",
        "My card was declined at checkout but I was charged anyway, what happened?",
        "Do you ship descaler to Norway and how long does it take?",
    )
)
_LONG_COMPLETIONS = (
    "Under our refund policy you can return any item within 30 days of delivery for a full refund; "
    "damaged items are refunded or replaced at no cost, including return shipping. "
    + "I have opened a return for the grinder and emailed you a prepaid label. "
    * 12,
    "Your espresso machine left our warehouse yesterday and the carrier expects to deliver it within "
    "two working days; you can still cancel, and the refund is issued as soon as the parcel is back. "
    + "The tracking page updates every few hours. "
    * 20,
)
_SHORT_QUESTIONS = (
    "Where is order {n}?",
    "Can I change the delivery address of order {n}?",
    "Is the milk jug dishwasher safe?",
    "What is the refund policy for opened filter papers?",
    "Translate order {n}'s invoice to German.",
)
_RATE_LIMIT = "RateLimitError: rate limit reached for gpt-4o-mini in organization org-demo, retry after {n} ms"


@dataclass(slots=True, kw_only=True)
class DemoResult:
    """What ``run_demo`` wrote and read back."""

    data: str
    now_ns: int
    inserted: dict[str, int]
    llm_spans: int
    """Spans carrying ``gen_ai.prompt`` and ``gen_ai.completion`` payloads."""
    payload_texts: int
    """Payload texts written (prompts and completions), against ``stats.blobs`` kept."""
    maintenance: MaintenanceReport
    stats: StoreStats
    services: list[ServiceInfo]
    summary: SummaryReport
    anomalies: AnomalyReport
    span_search: str
    span_hits: list[Span]
    log_search: str
    log_hits: list[LogRecord]
    errors: list[Span]
    """The latest failing spans."""
    error_trace: list[Span]
    """Every span of the first failing span's trace."""
    error_logs: list[LogRecord]
    """The logs of that trace, oldest first."""
    metric: tuple[str, str]
    """(metric name, service) of ``buckets``."""
    buckets: list[MetricBucket]
    """15-minute buckets of ``metric`` over the last three hours: rollups where cold, raw points where hot."""


def generate(
    n_spans: int, n_logs: int, n_metrics: int, *, now_ns: int, seed: int
) -> tuple[list[Span], list[LogRecord], list[MetricPoint], int]:
    """The demo workload ending a few minutes before ``now_ns`` and the number of payload texts in it."""
    rng = random.Random(seed)
    spans: list[Span] = []
    logs: list[LogRecord] = []
    metrics: list[MetricPoint] = []
    first = now_ns - SPREAD_NS
    gap = (SPREAD_NS - 3 * _MIN_NS) // (BURSTS - 1)
    for k in range(BURSTS):
        wl = Workload(seed=seed * 1_000 + k, start_ns=first + k * gap)
        share = [(n * (k + 1)) // BURSTS - (n * k) // BURSTS for n in (n_spans, n_logs, n_metrics)]
        burst = wl.spans(share[0])
        incident = k == BURSTS - 1  # the model provider rate-limits in the last burst
        for sp in burst:
            _enrich(rng, sp, incident)
        spans.extend(burst)
        logs.extend(wl.logs(share[1]))
        metrics.extend(wl.metrics(share[2]))
    texts = sum(1 for sp in spans for key in ("gen_ai.prompt", "gen_ai.completion") if key in sp.attributes)
    _tie_logs(rng, spans, logs)
    return spans, logs, metrics, texts


def _enrich(rng: random.Random, sp: Span, incident: bool) -> None:
    """Give a model call its prompt and completion (and sometimes a rate-limit failure)."""
    if sp.service != "llm-gateway":
        return
    n = rng.randrange(10_000, 99_999)
    prompt = rng.choice(_LONG_PROMPTS) if rng.random() < 0.5 else rng.choice(_SHORT_QUESTIONS).format(n=n)
    if rng.random() < 0.3:
        completion = rng.choice(_LONG_COMPLETIONS)
    else:
        completion = f"Order {n} is in transit; the carrier expects delivery in {rng.randrange(1, 6)} days."
    sp.name = "chat.completions"
    sp.attributes["gen_ai.operation.name"] = "chat"
    sp.attributes["gen_ai.prompt"] = prompt
    sp.attributes["gen_ai.completion"] = completion
    sp.attributes["gen_ai.usage.output_tokens"] = rng.randrange(10, 400)
    if rng.random() < (0.5 if incident else 0.04):
        message = _RATE_LIMIT.format(n=rng.randrange(200, 20_000))
        sp.status, sp.status_message = "error", "rate limit exceeded"
        sp.attributes["http.status_code"] = 429
        sp.attributes["exception.message"] = message
        sp.attributes.pop("gen_ai.completion")
        sp.events.append(
            SpanEvent(
                time_ns=sp.end_ns,
                name="exception",
                attributes={"exception.type": "RateLimitError", "exception.message": message},
            )
        )


def _tie_logs(rng: random.Random, spans: list[Span], logs: list[LogRecord]) -> None:
    """Turn some log records into the error logs of the failing spans (same trace and span)."""
    failing = [sp for sp in spans if sp.status == "error"]
    for rec, sp in zip(rng.sample(logs, min(len(logs) // 5, len(failing))), failing, strict=False):
        rec.time_ns = sp.end_ns
        rec.service = sp.service
        rec.trace_id, rec.span_id = sp.trace_id, sp.span_id
        rec.severity_number, rec.severity_text = 17, "ERROR"
        rec.body = f"{sp.name} failed: {sp.status_message or 'error'}"


def run_demo(
    data: str | Path,
    *,
    n_spans: int,
    n_logs: int,
    n_metrics: int,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Write the demo workload into ``data`` (adding to what is there), run one
    maintenance pass and read it back. ``progress`` is called with each of ``STEPS``."""
    step = progress if progress is not None else (lambda _s: None)
    for name, n in (("n_spans", n_spans), ("n_logs", n_logs), ("n_metrics", n_metrics)):
        if type(n) is not int or n < 0:
            raise ValueError(f"{name} must be an int >= 0, got {n!r}")
    now = time.time_ns()
    step(STEPS[0])
    spans, logs, metrics, texts = generate(
        n_spans, n_logs, n_metrics, now_ns=now, seed=seed if seed is not None else now
    )
    with Store(data) as store:
        step(STEPS[1])
        for i in range(0, len(spans), 500):
            store.insert_spans(spans[i : i + 500])
        step(STEPS[2])
        with store.writer() as writer:  # many small writes, batched in the background
            for i in range(0, len(logs), 10):
                writer.write_logs(logs[i : i + 10])
        step(STEPS[3])
        for i in range(0, len(metrics), 1000):
            store.insert_metrics(metrics[i : i + 1000])
        step(STEPS[4])
        report = Maintenance(store).run_once(now=now)
        store.flush()  # everything applied and searchable
        step(STEPS[5])
        errors = store.query_traces(status="error", limit=5)
        trace = store.get_trace(errors[0].trace_id) if errors else []
        return DemoResult(
            data=str(Path(data).resolve()),
            now_ns=now,
            inserted={"spans": len(spans), "logs": len(logs), "metrics": len(metrics)},
            llm_spans=sum(1 for sp in spans if "gen_ai.prompt" in sp.attributes),
            payload_texts=texts,
            maintenance=report,
            stats=store.stats(),
            services=store.list_services(),
            summary=store.summary(last_s=SPREAD_NS / 1e9 + 60, now=now),
            anomalies=store.anomalies(now=now),
            span_search=SPAN_SEARCH,
            span_hits=store.query_traces(text=SPAN_SEARCH, limit=5),
            log_search=LOG_SEARCH,
            log_hits=store.query_logs(text=LOG_SEARCH, limit=5),
            errors=errors,
            error_trace=trace,
            error_logs=store.query_logs(trace_id=errors[0].trace_id, order="asc", limit=20) if errors else [],
            metric=METRIC,
            buckets=store.aggregate_metrics(
                METRIC[0], service=METRIC[1], start=now - 3 * 60 * _MIN_NS, end=now, step=15 * _MIN_NS
            ),
        )
