"""tael: an embeddable telemetry storage engine for spans, logs and metric points.

Open a :class:`Store` on a directory, insert OpenTelemetry-style records, read
them back. Every write goes through an fsynced write-ahead log before it is
applied to the LMDB hot tier; see docs/architecture.md.
"""

from typing import TYPE_CHECKING, Any

from ._errors import (
    ConfigurationError,
    CorruptionError,
    ReadOnlyError,
    ReplicationError,
    SettingsConflictError,
    StandbyError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    TaelError,
    ValidationError,
)
from ._models import (
    Anomaly,
    AnomalyReport,
    Comment,
    CompactionReport,
    CorrelateReport,
    DamagedRegion,
    DependencyLink,
    ErrorOperation,
    LogRecord,
    LogSummary,
    MaintenanceReport,
    MetricBucket,
    MetricPoint,
    MetricSummary,
    RepairReport,
    ReplicaStatus,
    ReplicationStatus,
    RetentionReport,
    ServiceInfo,
    ServiceSummary,
    SignalStats,
    Span,
    SpanEvent,
    SpanLink,
    StoreStats,
    SummaryReport,
    TraceOverview,
    TraceSummary,
)
from ._settings import Settings

if TYPE_CHECKING:
    from ._admin import rebuild_index
    from ._block import LOG_SCHEMA, METRIC_SCHEMA, SPAN_SCHEMA
    from ._columns import logs_table, metrics_table, spans_table
    from ._maintenance import Maintenance
    from ._query.filters import LogFilter, MetricFilter, SpanFilter
    from ._repair import repair
    from ._store import Store
    from ._writer import BackgroundWriter

# The store, the query filters, the Arrow tables and what they drag in (pyarrow, tantivy, lmdb) load on
# first use, so that ``tael --help`` and ``import tael`` for the record types stay instant.
_LAZY = {
    "SPAN_SCHEMA": "._block",
    "LOG_SCHEMA": "._block",
    "METRIC_SCHEMA": "._block",
    "spans_table": "._columns",
    "logs_table": "._columns",
    "metrics_table": "._columns",
    "Maintenance": "._maintenance",
    "SpanFilter": "._query.filters",
    "LogFilter": "._query.filters",
    "MetricFilter": "._query.filters",
    "Store": "._store",
    "rebuild_index": "._admin",
    "repair": "._repair",
    "BackgroundWriter": "._writer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tael' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "Anomaly",
    "AnomalyReport",
    "BackgroundWriter",
    "Comment",
    "CompactionReport",
    "ConfigurationError",
    "CorrelateReport",
    "CorruptionError",
    "DamagedRegion",
    "DependencyLink",
    "ErrorOperation",
    "LOG_SCHEMA",
    "LogFilter",
    "LogRecord",
    "LogSummary",
    "METRIC_SCHEMA",
    "Maintenance",
    "MaintenanceReport",
    "MetricBucket",
    "MetricFilter",
    "MetricPoint",
    "MetricSummary",
    "ReadOnlyError",
    "ReplicaStatus",
    "ReplicationError",
    "SettingsConflictError",
    "ReplicationStatus",
    "RepairReport",
    "RetentionReport",
    "SPAN_SCHEMA",
    "ServiceSummary",
    "ServiceInfo",
    "Settings",
    "SignalStats",
    "Span",
    "SpanEvent",
    "SpanFilter",
    "SpanLink",
    "StandbyError",
    "StorageError",
    "Store",
    "StoreClosedError",
    "StoreLockedError",
    "StoreStats",
    "SummaryReport",
    "TaelError",
    "TraceOverview",
    "TraceSummary",
    "ValidationError",
    "logs_table",
    "metrics_table",
    "rebuild_index",
    "repair",
    "spans_table",
]
