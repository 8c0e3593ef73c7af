"""tael: an embeddable telemetry storage engine for spans, logs and metric points.

Open a :class:`Store` on a directory, insert OpenTelemetry-style records, read
them back. Every write goes through an fsynced write-ahead log before it is
applied to the LMDB hot tier; see docs/architecture.md.
"""

from ._errors import (
    CorruptionError,
    ReadOnlyError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    TaelError,
    ValidationError,
)
from ._maintenance import Maintenance
from ._models import (
    CompactionReport,
    DamagedRegion,
    LogRecord,
    MaintenanceReport,
    MetricBucket,
    MetricPoint,
    RepairReport,
    RetentionReport,
    ServiceInfo,
    SignalStats,
    Span,
    SpanEvent,
    SpanLink,
    StoreStats,
)
from ._settings import Settings
from ._store import Store, rebuild_index, repair
from ._writer import BackgroundWriter

__version__ = "0.1.0"

__all__ = [
    "BackgroundWriter",
    "CompactionReport",
    "CorruptionError",
    "DamagedRegion",
    "LogRecord",
    "Maintenance",
    "MaintenanceReport",
    "MetricBucket",
    "MetricPoint",
    "ReadOnlyError",
    "RepairReport",
    "RetentionReport",
    "ServiceInfo",
    "Settings",
    "SignalStats",
    "Span",
    "SpanEvent",
    "SpanLink",
    "StorageError",
    "Store",
    "StoreClosedError",
    "StoreLockedError",
    "StoreStats",
    "TaelError",
    "ValidationError",
    "rebuild_index",
    "repair",
]
