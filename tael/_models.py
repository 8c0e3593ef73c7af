"""Public data model: spans, logs and metric points, plus the report types reads return.

Timestamps are integer Unix nanoseconds; IDs are lowercase hex strings.
Attribute values are JSON-like (str, int, float, bool, None, and lists and
str-keyed dicts of those) and keep their types through storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Attributes = dict[str, Any]

SPAN_KINDS = ("internal", "server", "client", "producer", "consumer")
SPAN_STATUSES = ("unset", "ok", "error")
METRIC_KINDS = ("gauge", "sum", "histogram")
TEMPORALITIES = ("cumulative", "delta")


@dataclass(slots=True, kw_only=True)
class SpanEvent:
    """A timestamped event inside a span (an exception, a retry, a token stream chunk)."""

    time_ns: int
    name: str
    attributes: Attributes = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class SpanLink:
    """A link from a span to another span, possibly in another trace."""

    trace_id: str
    span_id: str
    attributes: Attributes = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class Span:
    """One operation in a trace. Identified by ``(trace_id, span_id)``."""

    trace_id: str
    span_id: str
    name: str
    service: str
    start_ns: int
    end_ns: int
    parent_span_id: str | None = None
    kind: str = "internal"
    status: str = "unset"
    status_message: str = ""
    attributes: Attributes = field(default_factory=dict)
    resource: Attributes = field(default_factory=dict)
    scope_name: str = ""
    scope_version: str = ""
    events: list[SpanEvent] = field(default_factory=list)
    links: list[SpanLink] = field(default_factory=list)
    trace_state: str = ""
    flags: int = 0

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass(slots=True, kw_only=True)
class LogRecord:
    """One log record; ``severity_number`` follows OpenTelemetry (0 unset, 1-24)."""

    time_ns: int
    body: str
    service: str
    severity_number: int = 0
    severity_text: str = ""
    trace_id: str | None = None
    span_id: str | None = None
    attributes: Attributes = field(default_factory=dict)
    resource: Attributes = field(default_factory=dict)
    observed_ns: int | None = None
    scope_name: str = ""


@dataclass(slots=True, kw_only=True)
class MetricPoint:
    """One metric data point. A series is identified by (name, service, kind, attributes)."""

    time_ns: int
    name: str
    service: str
    value: float = 0.0
    kind: str = "gauge"
    unit: str = ""
    attributes: Attributes = field(default_factory=dict)
    monotonic: bool = False
    temporality: str = "cumulative"
    start_ns: int | None = None
    count: int | None = None
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    bucket_counts: list[int] | None = None
    explicit_bounds: list[float] | None = None


@dataclass(slots=True, kw_only=True, frozen=True)
class ServiceInfo:
    """Per-service span statistics, maintained on write (no span scan)."""

    name: str
    span_count: int
    trace_count: int
    error_count: int
    error_rate: float
    avg_duration_ms: float


@dataclass(slots=True, kw_only=True, frozen=True)
class DependencyLink:
    """One edge of the service graph (``Store.dependencies``): spans of ``child`` whose
    parent span is of ``parent``, another service, counted in ``call_count``."""

    parent: str
    child: str
    call_count: int


@dataclass(slots=True, kw_only=True, frozen=True)
class SignalStats:
    """Record count and time range of one signal (times are None when empty)."""

    count: int
    oldest_ns: int | None
    newest_ns: int | None


@dataclass(slots=True, kw_only=True, frozen=True)
class StoreStats:
    """What a store holds, hot and cold together: per signal (``spans``, ``logs``,
    ``metrics``) and bytes on disk per component (``wal``, ``hot``, ``cold``).
    ``hot_records`` and ``cold_records`` split the counts by tier; ``cold_files``
    counts live Parquet files of every dataset, rollups included. ``blobs`` is the
    number of distinct payload texts in the blob store, ``blob_raw_bytes`` their
    UTF-8 size and ``disk_bytes["blobs"]`` what they take on disk;
    ``index_documents`` counts committed full-text index documents. With the cold
    tier on object storage, ``disk_bytes["cold"]`` is the bytes of its live files in
    the bucket and ``disk_bytes["cache"]`` (only then present) the local cache of them. ``replication``
    is the store's role and its standbys' lag (see :class:`ReplicationStatus`)."""

    signals: dict[str, SignalStats]
    disk_bytes: dict[str, int]
    wal_segments: int
    applied_lsn: int
    hot_records: dict[str, int] = field(default_factory=dict)
    cold_records: dict[str, int] = field(default_factory=dict)
    cold_files: int = 0
    blobs: int = 0
    blob_raw_bytes: int = 0
    index_documents: int = 0
    indexed_lsn: int = 0
    replication: ReplicationStatus | None = None

    @property
    def total_disk_bytes(self) -> int:
        return sum(self.disk_bytes.values())


@dataclass(slots=True, kw_only=True, frozen=True)
class ReplicaStatus:
    """One standby as its leader sees it. ``acked_lsn`` is the end of the standby's
    durable WAL (None until it answered since this leader opened); ``lag_bytes`` is
    how much of the leader's durable WAL it does not have yet. ``state`` is
    ``connecting``, ``streaming``, ``down`` (unreachable; retried), ``needs_seed`` (it
    needs WAL the leader no longer keeps) or ``refused`` (another store, a diverged
    history, or promoted past this leader)."""

    url: str
    state: str
    acked_lsn: int | None
    lag_bytes: int | None
    last_error: str | None = None


@dataclass(slots=True, kw_only=True, frozen=True)
class ReplicationStatus:
    """Replication as one store sees it: its ``role`` (``leader`` or ``standby``), its
    ``epoch`` (incremented by every promotion), the standbys it ships to (a leader),
    and for a standby, the leader's durable end as last reported, the lag behind it in
    bytes and seconds since the leader was last heard from."""

    role: str
    epoch: int
    store_id: str | None
    end_lsn: int
    replicas: tuple[ReplicaStatus, ...] = ()
    leader_url: str | None = None
    leader_end_lsn: int | None = None
    lag_bytes: int | None = None
    last_contact_s: float | None = None


@dataclass(slots=True, kw_only=True, frozen=True)
class DamagedRegion:
    """A stretch of a WAL segment that failed verification, or a record that verifies
    but cannot be applied to the hot tier, moved aside."""

    segment: str
    offset: int
    length: int
    quarantined_to: str
    reason: str = "fails verification"


@dataclass(slots=True, kw_only=True, frozen=True)
class RepairReport:
    """What ``tael.repair`` found and did. Records inside ``damaged`` regions are lost."""

    segments_checked: int
    frames_ok: int
    damaged: list[DamagedRegion]
    quarantine_dir: str | None

    @property
    def clean(self) -> bool:
        return not self.damaged


@dataclass(slots=True, kw_only=True, frozen=True)
class MetricBucket:
    """Aggregate of every matching metric point in one step-aligned window.

    ``increase`` is the reset-aware rise of monotonic cumulative sums (the sum of
    values for delta sums) between consecutive points inside the window, summed
    over series; None when no series in the window is a monotonic sum.
    ``hist_count``/``hist_sum`` total histogram points' count and sum (None when
    the window has no histogram points)."""

    start_ns: int
    count: int
    sum: float
    min: float
    max: float
    avg: float
    first: float
    last: float
    increase: float | None
    hist_count: int | None = None
    hist_sum: float | None = None


@dataclass(slots=True, kw_only=True, frozen=True)
class CompactionReport:
    """What ``Store.compact`` moved to the cold tier: records per signal
    (``spans``, ``logs``, ``metrics``), rollup rows written per rollup dataset
    (``metrics_5m``, ``metrics_1h``), and the cold files written (paths relative
    to ``<data>/cold``). ``interrupted``: it was asked to stop (``stop`` or the store
    closing) before it was done; the counts are what it committed, the rest is still hot."""

    before_ns: int
    records: dict[str, int]
    rollup_rows: dict[str, int]
    files_written: list[str]
    files_merged: int = 0
    interrupted: bool = False

    @property
    def total_records(self) -> int:
        return sum(self.records.values())


@dataclass(slots=True, kw_only=True, frozen=True)
class RetentionReport:
    """What ``Store.enforce_retention`` dropped: whole cold partitions per dataset
    (``"spans/date=2026-01-01"``), cold files and rows, and hot records per signal.
    ``cutoffs``: per dataset, the time before which records are past retention.
    ``interrupted``: it was asked to stop before it was done (see ``CompactionReport``).
    ``dry_run``: nothing was dropped; the report says what a pass at ``now_ns`` would drop."""

    now_ns: int
    partitions_dropped: list[str]
    cold_files_dropped: int
    cold_rows_dropped: int
    hot_records_dropped: dict[str, int]
    cutoffs: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    dry_run: bool = False


@dataclass(slots=True, kw_only=True, frozen=True)
class MaintenanceReport:
    """One maintenance run: its compaction, small-file merges, retention and WAL
    checkpoint. ``error`` is the text of the exception that ended the run early;
    ``interrupted`` says ``Maintenance.stop()`` (or the store closing) ended it early
    at a safe point, which is not an error: the next run carries on."""

    compaction: CompactionReport | None
    files_merged: int
    retention: RetentionReport | None
    wal_segments_removed: int
    blobs_removed: int = 0
    error: str | None = None
    interrupted: bool = False


# ---------------------------------------------------------------- analytics


@dataclass(slots=True, kw_only=True, frozen=True)
class TraceSummary:
    """Spans whose start_ns falls in a window. Percentiles are exact, nearest-rank on
    the sorted durations (index ``round((n - 1) * p)``); all zero for an empty window."""

    span_count: int
    trace_count: int
    error_count: int
    error_rate: float
    avg_ms: float
    max_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(slots=True, kw_only=True, frozen=True)
class ServiceSummary:
    service: str
    span_count: int
    error_rate: float
    p95_ms: float


@dataclass(slots=True, kw_only=True, frozen=True)
class ErrorOperation:
    service: str
    operation: str
    error_count: int


@dataclass(slots=True, kw_only=True, frozen=True)
class LogSummary:
    """Log records in a window by OpenTelemetry severity range: trace 1-4, debug 5-8,
    info 9-12, warn 13-16, error 17-20, fatal 21-24 (0, unset, counts in ``total`` only)."""

    total: int
    fatal: int
    error: int
    warn: int
    info: int
    debug: int
    trace: int


@dataclass(slots=True, kw_only=True, frozen=True)
class MetricSummary:
    point_count: int
    unique_names: int


@dataclass(slots=True, kw_only=True, frozen=True)
class SummaryReport:
    """``Store.summary``: the window ``[start_ns, end_ns)`` at a glance."""

    start_ns: int
    end_ns: int
    traces: TraceSummary
    top_services: list[ServiceSummary]
    top_error_operations: list[ErrorOperation]
    logs: LogSummary
    metrics: MetricSummary


@dataclass(slots=True, kw_only=True, frozen=True)
class Anomaly:
    """A service whose error rate (in percentage points) or p95 latency (in ms) rose
    from the baseline window to the current one."""

    service: str
    kind: str
    severity: str
    current: float
    baseline: float
    delta: float
    description: str


@dataclass(slots=True, kw_only=True, frozen=True)
class AnomalyReport:
    """``Store.anomalies``: the current window ``[current_start_ns, end_ns)`` against the
    baseline window ``[baseline_start_ns, current_start_ns)`` just before it."""

    baseline_start_ns: int
    current_start_ns: int
    end_ns: int
    anomalies: list[Anomaly]


@dataclass(slots=True, kw_only=True, frozen=True)
class CorrelateReport:
    """``Store.correlate``: a trace with its logs (any time) and the metric points of its
    services around it."""

    trace_id: str
    spans: list[Span]
    services: list[str]
    start_ns: int
    end_ns: int
    duration_ms: float
    error_count: int
    logs: list[LogRecord]
    metrics: list[MetricPoint]


@dataclass(slots=True, kw_only=True, frozen=True)
class Comment:
    """A note on a trace (or one of its spans), stored durably like any write."""

    id: str
    trace_id: str
    span_id: str | None
    author: str
    body: str
    created_ns: int


@dataclass(slots=True, kw_only=True, frozen=True)
class TraceOverview:
    """One row of ``Store.trace_summaries``: a trace as a search screen lists it. The
    root is the span without a parent (the earliest one if several); ``start_ns`` and
    ``duration_ms`` span the whole trace."""

    trace_id: str
    root_service: str
    root_name: str
    start_ns: int
    duration_ms: float
    span_count: int
    error_count: int
