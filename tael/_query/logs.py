"""Log reads by filter (``Store.query_logs``)."""

from __future__ import annotations

from .._codec import decode_log
from .._layout import LogRecordFields
from .._models import LogRecord
from . import args, text
from .context import ReadContext
from .filters import LogFilter


def log_record(reads: ReadContext, f: LogRecordFields) -> LogRecord:
    """A stored log record as the public model, its body restored from the blob store."""
    return decode_log(reads.blobs.restore_log(f))


def query(reads: ReadContext, where: LogFilter, limit: int = 100, order: str = "desc") -> list[LogRecord]:
    """Log records matching every condition of ``where`` (see :class:`~tael.LogFilter`),
    hot and cold, newest first (ties: later insert first), at most ``limit``.

    ``text`` matches bodies holding every word and "quoted phrase" (as in
    ``query_traces``), through the full-text index. ``order="asc"``: oldest first.
    With ``trace_id`` the records are found through the trace indexes of both tiers
    (``correlate`` and ``tael trace`` read a trace's logs so).
    """
    args.check_range(None, None, limit)
    desc = args.newest_first(order)
    return text.read_matching(reads, where.scan(), limit, desc, lambda f: log_record(reads, f))
