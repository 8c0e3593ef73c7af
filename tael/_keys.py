"""The byte budget of every LMDB key that holds text from a record or a setting.

LMDB refuses a key longer than its compile-time maximum (``env.max_key_size()``,
511 bytes in the lmdb builds tael supports; ``HotTier`` refuses to open an
environment with a smaller one) and refuses an empty key. A put that breaks
either rule fails with ``MDB_BAD_VALSIZE`` inside the hot tier's apply, long
after the record was validated and acknowledged, and every replay then fails
the same way. So every value that ends up in a key is checked at validation
against the real layout of every key it ends up in, using the numbers below;
``_codec`` (``Store.insert_*``), ``_otlp`` (OTLP requests) and ``_settings``
all use them, and ``tests/test_key_limits.py`` checks them against LMDB itself.

Inventory of the hot tier's keys (docs/format/hot.md, "Key limits"), by what
varies in them:

- fixed width, built from ids, times, LSNs and digests only: ``spans``,
  ``span_ids``, ``span_lean``, ``logs``, ``log_trace``, ``log_lean``,
  ``metrics``, ``metric_series``, ``metric_lean``, ``comments``,
  ``cold_files``, ``cold_traces``, ``cold_file_blobs``, ``blobs``,
  ``blob_refs``, ``cold_blobs``, ``blob_gc`` (at most 65 bytes). Metric series
  ids are an 8-byte hash of (name, service, kind, attributes), so attribute
  keys and values never reach a key.
- ``services``: ``service`` (spans): 1 to 511 bytes. Logs' and metrics'
  services are stored in values only.
- ``operations``: ``service NUL name`` (spans): service + 1 + name <= 511.
- ``series``: ``name NUL series id(8)`` (metrics): name <= 502.
- ``meta``: fixed names, plus ``replica_acked: URL`` for each of
  ``Settings.replicas`` (a leader's standby positions): URL <= 497.

Service names have a tighter policy limit (``MAX_SERVICE_BYTES``), the same for
every signal, which leaves every span name at least 110 bytes of the
operations key.
"""

from __future__ import annotations

MAX_KEY_BYTES = 511
"""LMDB's largest key (``mdb_env_get_maxkeysize``): the bound of every budget below."""

MAX_SERVICE_BYTES = 400
"""Policy limit on a service name, for every signal (the ``services`` key holds up to 511)."""

OPERATION_KEY_EXTRA = 1
"""The NUL between service and span name in an ``operations`` key."""

SERIES_KEY_EXTRA = 1 + 8
"""The NUL and the 8-byte series id after the metric name in a ``series`` key."""

MAX_METRIC_NAME_BYTES = MAX_KEY_BYTES - SERIES_KEY_EXTRA  # 502

REPLICA_POSITION_PREFIX = b"replica_acked:"
"""``meta`` key prefix of a standby's acknowledged position, followed by its URL."""

MAX_REPLICA_URL_BYTES = MAX_KEY_BYTES - len(REPLICA_POSITION_PREFIX)  # 497


def span_name_budget(service_bytes: int) -> int:
    """Most UTF-8 bytes a span name may have for a service of ``service_bytes`` bytes."""
    return MAX_KEY_BYTES - OPERATION_KEY_EXTRA - service_bytes
