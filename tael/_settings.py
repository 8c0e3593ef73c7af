"""Every tunable of tael, with its unit and default, in one frozen dataclass."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ._keys import MAX_REPLICA_URL_BYTES
from ._payloadkeys import rule_problem
from ._words import plural

_DURABILITY = ("fsync", "os")


@dataclass(frozen=True, slots=True)
class Settings:
    """Tunables for a :class:`tael.Store`. All fields are keyword-only and immutable.

    Sizes are in bytes, times in seconds unless the name says otherwise.

    The fields that shape stored data (payload keys, the blob threshold, retention, the
    hot window, cold file shape: ``tael._datasettings.STORED``) are kept in the data
    directory's ``settings.json``: a field left at its default takes the stored value,
    and a changed one is stored or refused (docs/format/settings.md).
    """

    durability: str = "fsync"
    """``"fsync"``: an insert returns only after its WAL record is fsynced (survives
    power loss). ``"os"``: returns once the record is written to the OS (survives a
    killed process, not a power loss); ``Store.flush()`` fsyncs."""

    wal_segment_bytes: int = 64 << 20
    """WAL segment size (bytes, default 64 MiB). A segment is sealed and a new one
    started once a record would push it past this size."""

    wal_compress_min_bytes: int = 16 << 10
    """Comment frames at least this large (bytes, default 16 KiB) are zstd-compressed. Spans,
    logs and metric points are written as blocks, whose heavy column (attributes, bodies,
    events) is always one zstd frame (level 1) and whose frames are not compressed again
    (docs/format/wal.md, "Compression")."""

    wal_compress_level: int = 1
    """zstd level for compressed comment frames (1 = fastest; the WAL is write-mostly)."""

    wal_max_record_bytes: int = 256 << 20
    """Largest WAL payload accepted (bytes, default 256 MiB); a larger batch is
    refused with ValidationError. Also the bound used when reading frames back."""

    hot_map_size_bytes: int = 16 << 30
    """Initial LMDB map size (bytes, default 16 GiB). Address space only; the file
    grows with the data, and the map doubles automatically when full."""

    hot_sync: bool = True
    """Sync the LMDB data file on every hot-tier commit (metadata is synced at
    checkpoints). ``False`` is faster but a power loss may then corrupt the hot
    tier; a killed process is safe either way."""

    max_unapplied_records: int = 200_000
    """Most records acknowledged (durable in the WAL) but not yet applied to the
    hot tier; past it, inserts wait for the applier. Bounds memory and the work
    a reopen replays."""

    apply_gather_ms: float = 10.0
    """Longest time (milliseconds, default 10) the hot-tier applier waits for more
    acknowledged batches before applying those waiting, while fewer than 4,096
    records wait and no read, flush or throttled insert waits for them (those cut
    the wait short: a caller always reads its own writes). Sequential small inserts
    then share blocks and LMDB transactions. 0 applies each batch at once. Another
    process reading the store sees a write up to this much later."""

    writer_max_queue: int = 100_000
    """Default capacity (records) of a background writer's queue."""

    writer_flush_interval_s: float = 0.05
    """Default longest time (seconds) a background writer holds records before
    committing them."""

    writer_batch_records: int = 5_000
    """Most records a background writer commits in one batch."""

    hot_window_s: float = 3600.0
    """How long records stay in the hot tier (seconds, default 1 hour): each
    maintenance run compacts records older than this to the cold tier."""

    cold_target_file_bytes: int = 64 << 20
    """Target size of a cold Parquet file (bytes, default 64 MiB): a partition's
    files smaller than this are merged together up to about this size."""

    cold_merge_min_files: int = 4
    """A partition is merged once it holds at least this many files below the
    target size (``compact()`` checks the partitions it wrote to; maintenance too)."""

    cold_row_group_rows: int = 2048
    """Rows per Parquet row group (default 2,048): the unit a trace lookup decodes.
    Measured on the synthetic workload (no dictionaries on ids and maps): a
    2,048-row group decodes in ~4.5 ms against ~25 ms for 16,384, at the same
    bytes per span."""

    cold_compression_level: int = 1
    """zstd level for cold Parquet files (1..22, default 1). Measured on 500,000 spans
    of the synthetic workload: level 1 wrote a 4% smaller file than level 3 (41.5 against
    43.4 MB: pages are small, and the JSON columns are plain-encoded) and compacted
    7-12% faster."""

    compaction_batch_records: int = 500_000
    """Most records of one signal moved per compaction step (one LMDB transaction
    and one file per day); bounds compaction memory. Spans and logs are written
    streaming from their blocks, so a step holds its blocks' bytes and ids, not
    their decoded columns; 500,000 spans make a file of ~40 MiB on the synthetic
    workload, which small-file merges leave alone (two exceed
    ``cold_target_file_bytes``): a file written once, not rewritten by a merge."""

    retention_spans_days: float = 7.0
    """Raw spans are dropped once older than this (days, default 7)."""

    retention_logs_days: float = 7.0
    """Log records are dropped once older than this (days, default 7)."""

    retention_metrics_days: float = 7.0
    """Raw metric points are dropped once older than this (days, default 7), never
    before they are rolled up."""

    retention_metrics_5m_days: float = 30.0
    """5-minute metric rollups are dropped once older than this (days, default 30)."""

    retention_metrics_1h_days: float = 365.0
    """1-hour metric rollups are dropped once older than this (days, default 365)."""

    payload_attributes: tuple[str, ...] = (
        # OpenTelemetry GenAI semantic conventions: attributes ...
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.prompt",  # ... the attributes of the gen_ai.content.prompt/completion events (semconv <= 1.27) ...
        "gen_ai.completion",
        "gen_ai.event.content",  # ... the events as span events, their body as JSON in one attribute ...
        "gen_ai.*.message:content",  # ... or their body fields as attributes: user, system, assistant, tool
        "gen_ai.*.message:tool_calls",
        "gen_ai.*.message:tool_calls.*.function.arguments",
        "gen_ai.choice:message",
        "gen_ai.choice:message.content",
        "gen_ai.choice:message.tool_calls.*.function.arguments",
        # OpenLLMetry (traceloop)
        "gen_ai.prompt.*.content",
        "gen_ai.completion.*.content",
        "gen_ai.prompt.*.tool_calls.*.arguments",
        "gen_ai.completion.*.tool_calls.*.arguments",
        "traceloop.entity.input",
        "traceloop.entity.output",
        # OpenInference (Arize Phoenix)
        "input.value",
        "output.value",
        "llm.input_messages.*.message.content",
        "llm.output_messages.*.message.content",
        "llm.input_messages.*.message.contents.*.message_content.text",
        "llm.output_messages.*.message.contents.*.message_content.text",
        "llm.input_messages.*.message.tool_calls.*.tool_call.function.arguments",
        "llm.output_messages.*.message.tool_calls.*.tool_call.function.arguments",
        "tool.parameters",
        # errors
        "exception.message",
        "exception.stacktrace",
    )
    """Rules for the span (and span event) attributes whose string values are payload
    text: indexed for full-text search and, when long, kept in the blob store. A rule is
    an exact key, a pattern where ``*`` matches a run of one or more characters within
    one dotted segment (``gen_ai.prompt.*.content`` matches ``gen_ai.prompt.0.content``,
    never across a ``.``), or ``<event name>:<attribute>`` (each part exact or a
    pattern) for the attributes of span events of that name only. The default covers
    the OpenTelemetry GenAI semantic conventions (attributes and events), OpenLLMetry
    and OpenInference (docs/architecture.md, "Payloads and full-text search", gives the
    source of each) and the exception message and stack trace. Payload values that are
    JSON arrays or objects are indexed by their text (tael/_searchdocs.py
    ``index_texts``)."""

    payload_blob_min_bytes: int = 1024
    """Payload texts (span payload attributes and log bodies) at least this long
    (bytes of UTF-8, default 1 KiB) are stored once in the content-addressed blob
    store and referenced by hash; shorter ones stay inline in the record."""

    blob_compression_level: int = 3
    """zstd level for blob files (1..22, default 3)."""

    index_commit_interval_s: float = 1.0
    """Longest time (seconds, default 1) between an insert returning and its text
    becoming searchable: the full-text index commits at least this often while
    there is something new. ``Store.flush()`` commits at once."""

    index_writer_heap_bytes: int = 64 << 20
    """Memory (bytes, default 64 MiB) Tantivy's index writer buffers before it
    flushes a segment on its own."""

    correlate_margin_s: float = 60.0
    """``Store.correlate`` returns metric points of the trace's services from this long
    (seconds, default 60) before the trace starts to this long after it ends."""

    dependencies_max_spans: int = 2_000_000
    """Most spans one ``Store.dependencies`` call (``/api/dependencies``, Grafana's service
    graph) reads (default 2,000,000: about 0.5 GiB while it joins them); a window holding
    more is refused with ValueError (400 over HTTP) naming this limit, so a long lookback
    from any query token cannot exhaust the server's memory. Narrow the window or raise it."""

    retention_comments_days: float = 90.0
    """Trace comments are dropped once older than this (days, default 90), whether or
    not the trace's spans are still stored."""

    server_max_body_bytes: int = 20 << 20
    """Largest OTLP request body ``tael serve`` accepts (bytes, default 20 MiB), both
    as sent and after gzip/deflate decompression; larger ones get 413."""

    server_max_inflight: int = 64
    """Most OTLP requests ``tael serve`` decodes and writes at once; past it, requests
    get 503 with Retry-After (the client's exporter retries)."""

    server_max_inflight_bytes: int = 512 << 20
    """Memory (bytes, default 512 MiB) that the requests ``tael serve`` is handling may
    hold together: their bodies as received, decompressed, and an estimate of their
    decoding from the body's structure (tael/_limits.py), and the records a query
    response carries. A request reserves its body as the bytes arrive, then its
    decoding; one that does not fit gets 429 (503 on ``/replication/wal``) with
    Retry-After, one that could never fit 413. Bounds the server's memory whatever
    clients send."""

    server_max_response_bytes: int = 32 << 20
    """Most bytes (default 32 MiB, estimated from the records' text) of records one
    query API response (``/api/traces``, ``/api/search/traces``, ``/api/logs``)
    carries: past it the response holds the records that fit and says it was cut
    short (see docs/server.md); ask for a smaller ``limit`` or a narrower range."""

    server_header_timeout_s: float = 10.0
    """A client must send a request's line and headers within this time (seconds,
    default 10) of connecting or of its previous response; else 408 and the
    connection is closed (slow-header clients cannot hold connections open)."""

    server_body_timeout_s: float = 60.0
    """A client must send a whole request body within this time (seconds, default
    60) of its headers; else the connection is closed (tael counts a 408). 60 s is
    a 20 MiB body at 350 KB/s."""

    server_max_compaction_lag_s: float = 120.0
    """When ``tael serve``'s maintenance loop falls this far (seconds, default 120)
    behind the hot window (``Maintenance.lag_s``: its last whole compaction's cutoff
    is older than ``now - hot_window_s`` by more), OTLP writes wait for it to catch
    up, each at most ``server_throttle_wait_s``, then get 503 with Retry-After: the
    hot tier and its disk stay bounded under any load, and clients are slowed to
    what compaction can take (compaction's own memory is another matter:
    docs/benchmarks.md). Passes every 60 s that keep up stay under ~60 s plus a
    pass's duration."""

    server_throttle_wait_s: float = 5.0
    """Longest time (seconds, default 5) an OTLP write waits for compaction to catch
    up (``server_max_compaction_lag_s``) before it gets 503 with Retry-After; below
    the OTLP exporters' default 10 s timeout."""

    health_min_free_bytes: int = 256 << 20
    """``/health/ready`` turns 503 when the data directory's file system has less free
    space than this (bytes, default 256 MiB)."""

    health_max_maintenance_failures: int = 3
    """``/health/ready`` turns 503 after this many maintenance runs in a row failed."""

    replicas: tuple[str, ...] = ()
    """Base URLs of the standbys this store ships its WAL to (for example
    ``("http://10.0.0.2:4318",)``), each a ``tael serve --standby-of`` or a
    ``Store(path, standby=True)`` with ``standby_listen``. Empty: no replication.
    A standby ships to its own ``replicas`` only once promoted."""

    required_acks: int | None = None
    """How many standbys must have a write durable in their WAL before an insert
    returns: ``None`` (default) all of ``replicas``, synchronous; ``0`` none
    (asynchronous, best effort: a failover may lose the last writes); ``N`` at least N."""

    replication_timeout_s: float = 10.0
    """Longest time (seconds, default 10) an insert waits for its standby acks; past
    it the insert raises ReplicationError. The write is then durable on this store
    and is shipped when the standbys answer again, but it was not acknowledged."""

    replication_batch_bytes: int = 4 << 20
    """Most WAL bytes (default 4 MiB) shipped to a standby in one request while it
    catches up."""

    replication_max_retained_bytes: int = 4 << 30
    """WAL kept for a standby that is behind (bytes, default 4 GiB). Past it, segments
    the standby still needs are deleted anyway, so a standby that stays down cannot
    fill the disk; that standby must then be seeded again (docs/scaling.md)."""

    standby_listen: str | None = None
    """``"host:port"`` where ``Store(path, standby=True)`` serves the replication
    endpoint its leader ships to. ``tael serve --standby-of`` serves it on its own
    port instead."""

    standby_leader_store_id: str | None = None
    """The store id (32 hex digits) of the leader a standby takes WAL from: shipments
    of any other store are refused, the very first one included. ``None`` (default):
    a fresh standby adopts the store id of the first shipment it accepts (with
    ``auth_file`` set, only a client holding a ``replication`` token can send one) and
    refuses any other from then on. A leader's id is in ``tael stats``.
    ``tael serve --leader-store-id`` sets it."""

    auth_file: str | None = None
    """A TOML file of bearer tokens and their scopes (``ingest``, ``query``, ``admin``,
    ``replication``; docs/server.md, "Security") that ``tael serve`` and a standby's
    endpoint (``standby_listen``) require of every request except ``/health/*``.
    ``None`` (default): no authentication, allowed only on a loopback address unless
    ``allow_unauthenticated``. Read once at start. ``tael serve --auth-file`` sets it."""

    allow_unauthenticated: bool = False
    """Serve without ``auth_file`` on a non-loopback address (default False: refused).
    Anyone who reaches the port can then write, read and promote; for a network
    trusted entirely or behind a proxy that authenticates. ``--allow-unauthenticated``."""

    allowed_hosts: tuple[str, ...] = ()
    """Host names (or addresses) besides loopback ones that requests may name in their
    ``Host`` header, for example ``("tael.internal",)``. On a loopback bind, or on any
    bind once this is set, other Host headers get 421 (stops DNS rebinding).
    ``tael serve --allowed-host`` (repeatable) adds to it."""

    tls_cert_file: str | None = None
    """PEM certificate chain: ``tael serve`` and the standby endpoint serve HTTPS with it
    and ``tls_key_file`` (both or neither; default plain HTTP). ``--tls-cert``."""

    tls_key_file: str | None = None
    """PEM private key of ``tls_cert_file``. ``--tls-key``."""

    replication_token_file: str | None = None
    """A file holding the bearer token (with the ``replication`` scope in the
    standbys' auth files) this store presents to its ``replicas``; read at open, so
    the token is never on a command line. Default None: no Authorization header.
    ``tael serve --replication-token-file``."""

    replication_ca_file: str | None = None
    """A PEM file of CA certificates that verify ``https://`` standbys (default None:
    the system's trust store). ``tael serve --replication-ca-file``."""

    cold_uri: str | None = None
    """Where the cold tier lives: ``None`` (default) ``<data>/cold``; a local path; or
    ``s3://bucket/prefix`` on S3 or an S3-compatible store (see the ``cold_s3_*``
    settings). Any ``pyarrow.fs`` filesystem works through ``cold_filesystem``."""

    cold_filesystem: Any = None
    """A ``pyarrow.fs.FileSystem`` to hold the cold tier; ``cold_uri`` is then a path
    inside it. Overrides the filesystem ``cold_uri`` would select."""

    cold_s3_endpoint: str | None = None
    """S3 endpoint URL for an S3-compatible store (``http://127.0.0.1:9000``); ``None``
    uses AWS."""

    cold_s3_region: str | None = None
    """S3 region; ``None`` uses the AWS default chain (``AWS_REGION``...)."""

    cold_s3_access_key: str | None = None
    """S3 access key id; ``None`` uses the AWS default credential chain."""

    cold_s3_secret_key: str | None = None
    """S3 secret key; ``None`` uses the AWS default credential chain."""

    cold_request_timeout_s: float = 30.0
    """Connect and request timeout (seconds, default 30) for object-storage calls; an
    upload that times out fails the compaction step, which is retried later with
    nothing evicted from the hot tier."""

    cold_cache_bytes: int = 1 << 30
    """Local cache of remote cold files under ``<data>/cache`` (bytes, default 1 GiB);
    least recently used files are evicted past it. Unused for a local cold tier."""

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> Settings:
        """Settings from a TOML file of field names and values (lists become tuples),
        then ``overrides``; an unknown key or a bad value raises ValueError naming it.
        ``tael --config FILE`` reads its settings this way."""
        try:
            with open(path, "rb") as fh:
                table = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ValueError(f"cannot read settings file {path}: {exc.strerror or exc}") from exc
        names = {f.name for f in fields(cls)} - {"cold_filesystem"}
        unknown = sorted(set(table) - names)
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
        return cls(**{**values, **overrides})

    def __post_init__(self) -> None:
        if self.durability not in _DURABILITY:
            raise ValueError(f"Settings.durability must be one of {_DURABILITY}, got {self.durability!r}")
        _positive("wal_segment_bytes", self.wal_segment_bytes, minimum=4096)
        _positive("wal_compress_min_bytes", self.wal_compress_min_bytes, minimum=0)
        if not 1 <= self.wal_compress_level <= 22:
            raise ValueError(f"Settings.wal_compress_level must be 1..22, got {self.wal_compress_level!r}")
        _positive("wal_max_record_bytes", self.wal_max_record_bytes, minimum=1024)
        if self.wal_max_record_bytes >= 1 << 32:
            raise ValueError("Settings.wal_max_record_bytes must be below 4 GiB (the frame length is 32 bits)")
        _positive("hot_map_size_bytes", self.hot_map_size_bytes, minimum=1 << 20)
        _positive("max_unapplied_records", self.max_unapplied_records, minimum=1)
        gather = self.apply_gather_ms
        if isinstance(gather, bool) or not isinstance(gather, (int, float)) or not 0 <= gather <= 1000:
            raise ValueError(f"Settings.apply_gather_ms must be a number in 0..1000, got {self.apply_gather_ms!r}")
        _positive("writer_max_queue", self.writer_max_queue, minimum=1)
        _positive("writer_batch_records", self.writer_batch_records, minimum=1)
        _positive("cold_target_file_bytes", self.cold_target_file_bytes, minimum=1)
        _positive("cold_merge_min_files", self.cold_merge_min_files, minimum=2)
        _positive("cold_row_group_rows", self.cold_row_group_rows, minimum=1)
        _positive("compaction_batch_records", self.compaction_batch_records, minimum=1)
        if not 1 <= self.cold_compression_level <= 22:
            raise ValueError(f"Settings.cold_compression_level must be 1..22, got {self.cold_compression_level!r}")
        for name in (
            "hot_window_s",
            "retention_spans_days",
            "retention_logs_days",
            "retention_metrics_days",
            "retention_metrics_5m_days",
            "retention_metrics_1h_days",
            "correlate_margin_s",
            "retention_comments_days",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"Settings.{name} must be a positive number, got {value!r}")
        if type(self.payload_attributes) is not tuple:
            raise ValueError(
                f"Settings.payload_attributes must be a tuple of non-empty str keys, got {self.payload_attributes!r}"
            )
        for rule in self.payload_attributes:
            problem = rule_problem(rule)
            if problem is not None:
                raise ValueError(f"Settings.payload_attributes: a rule {problem}")
        _positive("payload_blob_min_bytes", self.payload_blob_min_bytes, minimum=1)
        if not 1 <= self.blob_compression_level <= 22:
            raise ValueError(f"Settings.blob_compression_level must be 1..22, got {self.blob_compression_level!r}")
        _positive("index_writer_heap_bytes", self.index_writer_heap_bytes, minimum=15 << 20)
        _positive("dependencies_max_spans", self.dependencies_max_spans, minimum=1)
        _positive("server_max_body_bytes", self.server_max_body_bytes, minimum=1024)
        _positive("server_max_inflight", self.server_max_inflight, minimum=1)
        _positive("server_max_inflight_bytes", self.server_max_inflight_bytes, minimum=1 << 20)
        _positive("server_max_response_bytes", self.server_max_response_bytes, minimum=64 << 10)
        _positive("health_min_free_bytes", self.health_min_free_bytes, minimum=0)
        _positive("health_max_maintenance_failures", self.health_max_maintenance_failures, minimum=1)
        if type(self.replicas) is not tuple or not all(
            type(r) is str and r.startswith(("http://", "https://")) for r in self.replicas
        ):
            raise ValueError(f"Settings.replicas must be a tuple of http(s):// URLs, got {self.replicas!r}")
        if len(set(self.replicas)) != len(self.replicas):
            raise ValueError(f"Settings.replicas names a standby twice: {self.replicas!r}")
        for r in self.replicas:  # each URL is part of an LMDB key (tael/_keys.py)
            n = len(r.rstrip("/").encode("utf-8", "replace"))
            if n > MAX_REPLICA_URL_BYTES:
                raise ValueError(f"Settings.replicas: a URL must be at most {MAX_REPLICA_URL_BYTES} bytes, got {n}")
        if self.required_acks is not None:
            _positive("required_acks", self.required_acks, minimum=0)
            if self.required_acks > len(self.replicas):
                raise ValueError(
                    f"Settings.required_acks is {self.required_acks} but Settings.replicas names only "
                    f"{plural(len(self.replicas), 'standby', 'standbys')}"
                )
        _positive("replication_batch_bytes", self.replication_batch_bytes, minimum=4096)
        _positive("replication_max_retained_bytes", self.replication_max_retained_bytes, minimum=1)
        if self.standby_listen is not None:
            host, sep, port = self.standby_listen.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"Settings.standby_listen must be 'host:port', got {self.standby_listen!r}")
        for name in ("auth_file", "tls_cert_file", "tls_key_file", "replication_token_file", "replication_ca_file"):
            value = getattr(self, name)
            if value is not None and (type(value) is not str or not value):
                raise ValueError(f"Settings.{name} must be a non-empty str (a file path) or None, got {value!r}")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("Settings.tls_cert_file and Settings.tls_key_file are given together or not at all")
        if type(self.allow_unauthenticated) is not bool:
            raise ValueError(f"Settings.allow_unauthenticated must be a bool, got {self.allow_unauthenticated!r}")
        if type(self.allowed_hosts) is not tuple or not all(type(h) is str and h for h in self.allowed_hosts):
            raise ValueError(f"Settings.allowed_hosts must be a tuple of host names, got {self.allowed_hosts!r}")
        sid = self.standby_leader_store_id
        if sid is not None and (
            type(sid) is not str or len(sid) != 32 or any(c not in "0123456789abcdefABCDEF" for c in sid)
        ):
            raise ValueError(f"Settings.standby_leader_store_id must be 32 hex digits, got {sid!r}")
        if self.cold_uri is not None and (type(self.cold_uri) is not str or not self.cold_uri):
            raise ValueError(f"Settings.cold_uri must be a non-empty str, got {self.cold_uri!r}")
        _positive("cold_cache_bytes", self.cold_cache_bytes, minimum=0)
        for name in (
            "replication_timeout_s",
            "cold_request_timeout_s",
            "server_header_timeout_s",
            "server_body_timeout_s",
            "server_max_compaction_lag_s",
            "server_throttle_wait_s",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"Settings.{name} must be a positive number, got {value!r}")
        if (
            isinstance(self.index_commit_interval_s, bool)
            or not isinstance(self.index_commit_interval_s, (int, float))
            or not self.index_commit_interval_s > 0
        ):
            raise ValueError(f"Settings.index_commit_interval_s must be > 0, got {self.index_commit_interval_s!r}")
        if not self.writer_flush_interval_s > 0:
            raise ValueError(f"Settings.writer_flush_interval_s must be > 0, got {self.writer_flush_interval_s!r}")


def _positive(name: str, value: object, *, minimum: int) -> None:
    if type(value) is not int or value < minimum:
        raise ValueError(f"Settings.{name} must be an int >= {minimum}, got {value!r}")
