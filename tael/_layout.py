"""The record layout: what each position of a decoded record holds.

A record is a msgpack array (docs/format/wal.md, "Record layouts"); decoded it is
a plain ``list`` indexed by position, which is what every tier and query works
on because a list index is the cheapest field access Python has (a NamedTuple or
dataclass per record costs several times more on the insert and scan paths).
These names are that layout, written once: code reads ``f[SPAN_START]``, never
``f[5]``. The aliases below name which layout a list follows; mypy cannot check
positions inside a ``list[Any]``, so the names are the check.

The layout is part of the WAL and hot-tier formats (version 1): a position never
changes meaning; a new field is appended.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TypeAlias

SpanRecord: TypeAlias = list[Any]
"""A decoded span: positions ``SPAN_*``."""
LogRecordFields: TypeAlias = list[Any]
"""A decoded log record: positions ``LOG_*``."""
MetricRecord: TypeAlias = list[Any]
"""A decoded metric point: positions ``METRIC_*``."""
CommentRecord: TypeAlias = list[Any]
"""A decoded comment: positions ``COMMENT_*``."""

# ---------------------------------------------------------------- spans
SPAN_TRACE = 0  # bytes(16)
SPAN_ID = 1  # bytes(8)
SPAN_PARENT = 2  # bytes(8) or None
SPAN_NAME = 3  # str
SPAN_SERVICE = 4  # str
SPAN_START = 5  # int ns
SPAN_END = 6  # int ns
SPAN_KIND = 7  # int: index into tael.SPAN_KINDS
SPAN_STATUS = 8  # int: index into tael.SPAN_STATUSES
SPAN_STATUS_MESSAGE = 9  # str ("" when none)
SPAN_ATTRS = 10  # dict
SPAN_RESOURCE = 11  # dict
SPAN_SCOPE_NAME = 12  # str ("" when none)
SPAN_SCOPE_VERSION = 13  # str ("" when none)
SPAN_EVENTS = 14  # list of events (EVENT_*)
SPAN_LINKS = 15  # list of links (LINK_*)
SPAN_TRACE_STATE = 16  # str ("" when none)
SPAN_FLAGS = 17  # int

EVENT_TIME = 0  # int ns
EVENT_NAME = 1  # str
EVENT_ATTRS = 2  # dict

LINK_TRACE = 0  # bytes(16)
LINK_SPAN = 1  # bytes(8)
LINK_ATTRS = 2  # dict

# ---------------------------------------------------------------- logs
LOG_TIME = 0  # int ns
LOG_BODY = 1  # str ("" when none), or a blob reference (docs/format/blobs.md)
LOG_SERVICE = 2  # str
LOG_SEVERITY = 3  # int 0..24
LOG_SEVERITY_TEXT = 4  # str ("" when none)
LOG_TRACE = 5  # bytes(16) or None
LOG_SPAN = 6  # bytes(8) or None
LOG_ATTRS = 7  # dict
LOG_RESOURCE = 8  # dict
LOG_OBSERVED = 9  # int ns or None
LOG_SCOPE_NAME = 10  # str ("" when none)

# ---------------------------------------------------------------- metric points
METRIC_TIME = 0  # int ns
METRIC_NAME = 1  # str
METRIC_SERVICE = 2  # str
METRIC_VALUE = 3  # float
METRIC_KIND = 4  # int: index into tael.METRIC_KINDS
METRIC_UNIT = 5  # str
METRIC_ATTRS = 6  # dict
METRIC_MONOTONIC = 7  # bool
METRIC_TEMPORALITY = 8  # int: index into tael.TEMPORALITIES
METRIC_START = 9  # int ns or None
METRIC_COUNT = 10  # int or None
METRIC_SUM = 11  # float or None
METRIC_MIN = 12  # float or None
METRIC_MAX = 13  # float or None
METRIC_BUCKETS = 14  # list of int or None
METRIC_BOUNDS = 15  # list of float or None

SERIES_SERVICE = 0  # a series descriptor (the hot tier's series catalog): [service, kind, attributes]
SERIES_KIND = 1
SERIES_ATTRS = 2

# ---------------------------------------------------------------- comments
COMMENT_ID = 0  # bytes(16)
COMMENT_TRACE = 1  # bytes(16)
COMMENT_SPAN = 2  # bytes(8) or None
COMMENT_AUTHOR = 3  # str
COMMENT_BODY = 4  # str
COMMENT_CREATED = 5  # int ns

# ---------------------------------------------------------------- rows
# A row is what an encoder hands the commit pipeline: a tuple of the fields the hot
# tier keys and indexes on, then the packed record (always last: ROW_PACKED). The
# tuple types (``SpanRow`` and friends in tael/_codec.py) let mypy check them: the names are
# ``Final`` so that mypy reads ``row[SPAN_ROW_START]`` as the literal index it is (indexing a
# tuple by a plain ``int`` gives the union of all its field types).
ROW_PACKED: Final = -1

SPAN_ROW_START: Final = 0
SPAN_ROW_TRACE: Final = 1
SPAN_ROW_ID: Final = 2
SPAN_ROW_SERVICE: Final = 3
SPAN_ROW_DURATION: Final = 4
SPAN_ROW_ERROR: Final = 5
SPAN_ROW_NAME: Final = 6
SPAN_ROW_FLAG: Final = 7  # payload flag: 0 none, 1 short text to index, 2 text for the blob store
SPAN_ROW_PACKED: Final = 8  # ROW_PACKED counted from the front: CPython 3.11 indexes a tuple by a negative
# constant ~12 ns slower, which the apply and index paths would pay per record (also *_ROW_PACKED below)

LOG_ROW_TIME: Final = 0
LOG_ROW_TRACE: Final = 1
LOG_ROW_SEVERITY: Final = 2
LOG_ROW_SERVICE: Final = 3
LOG_ROW_FLAG: Final = 4
LOG_ROW_PACKED: Final = 5

METRIC_ROW_TIME: Final = 0
METRIC_ROW_NAME: Final = 1
METRIC_ROW_SERIES: Final = 2  # 8-byte series id
METRIC_ROW_DESC: Final = 3  # packed series descriptor (SERIES_*)
METRIC_ROW_PACKED: Final = 4

COMMENT_ROW_TRACE: Final = 0
COMMENT_ROW_CREATED: Final = 1
COMMENT_ROW_ID: Final = 2
COMMENT_ROW_PACKED: Final = 3

# ---------------------------------------------------------------- batches
Group: TypeAlias = tuple[int, Sequence[Any], int, int]
"""One applied batch, as the applier hands it on: (record type, rows, lsn, end lsn)."""
GROUP_TYPE: Final = 0
GROUP_ROWS: Final = 1
GROUP_LSN: Final = 2
GROUP_END: Final = 3  # the WAL position after the batch's frame
