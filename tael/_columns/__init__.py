"""The validated ways into a column batch: from model objects, and from Arrow tables.

A column batch (tael/_block.py) is what an insert becomes once validated. This package
builds one from either input and refuses bad input naming what is wrong:

- objects.py: from ``tael.Span``/``LogRecord``/``MetricPoint`` (:func:`span_columns`,
  :func:`log_columns`, :func:`metric_columns`), refusing a bad record exactly as
  today's encoders (tael/_codec.py) do; and the public :func:`spans_table`,
  :func:`logs_table`, :func:`metrics_table` built on them;
- tables.py: from a pyarrow Table or RecordBatch in the public schemas
  (:func:`check_table`), checked column-wise; the error names the first bad row and
  its column (docs/format/tables.md);
- per_record.py: the record-by-record builders the column-wise ones fall back to
  (and must equal);
- common.py: what both share (JSON text columns, ids, enum names, series ids).

A package rather than one module: the two ways in share only a few helpers, and
together they are well over the ~800 lines a module should stay under.
"""

from .objects import log_columns, logs_table, metric_columns, metrics_table, span_columns, spans_table
from .per_record import validate_log
from .tables import DEFAULTS, REQUIRED, check_table

__all__ = [
    "DEFAULTS",
    "REQUIRED",
    "check_table",
    "log_columns",
    "logs_table",
    "metric_columns",
    "metrics_table",
    "span_columns",
    "spans_table",
    "validate_log",
]
