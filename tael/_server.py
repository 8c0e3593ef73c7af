"""``tael serve``: one Starlette app over one Store, served by uvicorn.

- OTLP/HTTP receiver (``POST /v1/traces``, ``/v1/logs``, ``/v1/metrics``):
  protobuf or JSON, gzip or deflate, size-limited before and after
  decompression. Decoding and the insert run in the thread pool, never on the
  event loop; concurrent requests share the store's group commits.
- The Jaeger query API that Grafana's Jaeger data source reads
  (``/api/services``, ``/api/services/{service}/operations``, ``/api/traces``,
  ``/api/traces/{id}``), plus full-text and log search
  (``/api/search/traces``, ``/api/logs``).
- ``/metrics`` (Prometheus text format) and ``/health/live``, ``/health/ready``.

Status codes follow the OTLP/HTTP specification: 400 with a google.rpc.Status
for a malformed body, 413 for one too large, 415 for an unsupported content
type or encoding, 503 with Retry-After when the store cannot take the write.
Bad input never gets a 500. Layout of the responses: docs/server.md.

Just over the ~800 lines a module should stay under: the routes share one app's
state (store, metrics, limits) through closures in ``create_app``; what grows
(decoding, limits, auth, replication) already lives in modules of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import math
import shutil
import signal
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import _auth, _limits, _otlp
from ._blobs import Payloads
from ._errors import (
    ReadOnlyError,
    ReplicationError,
    StorageError,
    StoreClosedError,
    TaelError,
    ValidationError,
)
from ._maintenance import Maintenance
from ._models import LogRecord, Span
from ._otlp.combine import Combiner
from ._query.args import severity
from ._query.filters import LogFilter, SpanFilter
from ._replication.http import routes as replication_routes
from ._settings import Settings
from ._store import Store

log = logging.getLogger(__name__)

_RETRY_AFTER_S = "5"
_THROTTLE_POLL_S = 0.05  # how often a write held back for compaction looks again
_SIGNALS = {"traces": "spans", "logs": "logs", "metrics": "metrics"}
_JAEGER_TRACE_LIMIT = 1_500


class ServerMetrics:
    """The self-metrics ``/metrics`` exposes: counters kept by the app, gauges read from
    the store and the maintenance loop at scrape time."""

    def __init__(self, store: Store, maintenance: Maintenance | None) -> None:
        self.store = store
        self.maintenance = maintenance
        self.budget = _limits.MemoryBudget(store.settings.server_max_inflight_bytes)
        """The server's memory budget (tael/_limits.py), reported at scrape time."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.ingested = Counter(
            "tael_records_ingested", "Records written by OTLP requests", ["signal"], registry=self.registry
        )
        self.rejected = Counter(
            "tael_records_rejected",
            "Records of OTLP requests that were not written",
            ["signal"],
            registry=self.registry,
        )
        self.requests = Counter(
            "tael_http_requests", "HTTP requests by route and status code", ["route", "code"], registry=self.registry
        )
        self.insert_seconds = Histogram(
            "tael_insert_seconds",
            "Time to decode and durably write one OTLP request",
            ["signal"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.throttled = Counter(
            "tael_otlp_throttled",
            "OTLP writes that waited for compaction to catch up, by outcome (written or 503)",
            ["outcome"],
            registry=self.registry,
        )
        self.query_seconds = Histogram(
            "tael_query_seconds",
            "Time to answer one query API call",
            ["call"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        self.registry.register(self)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[GaugeMetricFamily]:
        """Gauges from one ``stats()`` of the store (skipped once it is closed)."""
        out: list[GaugeMetricFamily] = [
            GaugeMetricFamily(
                "tael_server_reserved_bytes", "Memory reserved by requests in flight", value=self.budget.used
            ),
            GaugeMetricFamily(
                "tael_server_budget_refusals",
                "Requests refused because the memory budget was full",
                value=self.budget.refused,
            ),
        ]
        if self.store.closed:
            return out
        try:
            stats = self.store.stats()
        except TaelError as exc:
            log.warning("self-metrics: the store's stats are unavailable: %s", exc)
            return out
        disk = GaugeMetricFamily("tael_disk_bytes", "Bytes on disk by component", labels=["component"])
        for component, n in stats.disk_bytes.items():
            disk.add_metric([component], n)
        out.append(disk)
        out.append(GaugeMetricFamily("tael_wal_segments", "WAL segment files", value=stats.wal_segments))
        out.append(
            GaugeMetricFamily("tael_wal_bytes", "Bytes in WAL segment files", value=stats.disk_bytes.get("wal", 0))
        )
        records = GaugeMetricFamily("tael_records", "Records stored by tier and signal", labels=["tier", "signal"])
        for name, n in stats.hot_records.items():
            records.add_metric(["hot", name], n)
        for name, n in stats.cold_records.items():
            records.add_metric(["cold", name], n)
        out.append(records)
        out.append(GaugeMetricFamily("tael_cold_files", "Live cold Parquet files", value=stats.cold_files))
        rep = stats.replication
        if rep is not None:
            role = GaugeMetricFamily("tael_replication_role", "1 for this store's role", labels=["role"])
            role.add_metric([rep.role], 1)
            out.append(role)
            out.append(GaugeMetricFamily("tael_replication_epoch", "Promotions so far, plus one", value=rep.epoch))
            out.append(GaugeMetricFamily("tael_wal_end_lsn", "End of the durable WAL (bytes)", value=rep.end_lsn))
            lag = GaugeMetricFamily(
                "tael_replication_lag_bytes",
                "Durable WAL a standby does not have yet (leader: per standby; standby: behind its leader)",
                labels=["replica"],
            )
            up = GaugeMetricFamily(
                "tael_replication_replica_state", "1 for each standby's shipping state", labels=["replica", "state"]
            )
            for r in rep.replicas:
                if r.lag_bytes is not None:
                    lag.add_metric([r.url], r.lag_bytes)
                up.add_metric([r.url, r.state], 1)
            if rep.role == "standby" and rep.lag_bytes is not None:
                lag.add_metric(["self"], rep.lag_bytes)
            out += [lag, up]
            if rep.last_contact_s is not None:
                out.append(
                    GaugeMetricFamily(
                        "tael_replication_leader_contact_seconds",
                        "Seconds since this standby last heard from its leader",
                        value=rep.last_contact_s,
                    )
                )
        out.append(GaugeMetricFamily("tael_blobs", "Distinct payload blobs", value=stats.blobs))
        out.append(
            GaugeMetricFamily("tael_blob_bytes", "Bytes of the blob store", value=stats.disk_bytes.get("blobs", 0))
        )
        out.append(
            GaugeMetricFamily(
                "tael_index_documents", "Committed full-text index documents", value=stats.index_documents
            )
        )
        writers = self.store.background_writers
        out.append(
            GaugeMetricFamily(
                "tael_writer_dropped", "Records background writers dropped", value=sum(w.dropped for w in writers)
            )
        )
        m = self.maintenance
        if m is not None:
            out.append(GaugeMetricFamily("tael_maintenance_runs", "Maintenance runs", value=m.runs))
            out.append(GaugeMetricFamily("tael_maintenance_failures", "Failed maintenance runs", value=m.errors))
            out.append(
                GaugeMetricFamily("tael_maintenance_seconds", "Time spent in maintenance runs", value=m.seconds_total)
            )
            out.append(
                GaugeMetricFamily("tael_compacted_records", "Records moved to the cold tier", value=m.records_compacted)
            )
            out.append(
                GaugeMetricFamily("tael_retention_dropped_records", "Records retention dropped", value=m.rows_dropped)
            )
            out.append(
                GaugeMetricFamily(
                    "tael_compaction_lag_seconds", "How far compaction is behind the hot window", value=m.lag_s()
                )
            )
        return out


def create_app(
    store: Store,
    *,
    maintenance: Maintenance | None = None,
    tokens: _auth.Tokens | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """The ASGI app over an open store (``maintenance``: the loop whose health
    ``/health/ready`` reports, if any), behind :class:`tael._auth.Guard`: ``tokens``
    (None: no authentication) and ``allowed_hosts`` (None: no Host check; a tuple:
    loopback names and these) as ``run_server`` derives them from Settings."""
    settings = store.settings
    metrics = ServerMetrics(store, maintenance)
    inflight = threading.BoundedSemaphore(settings.server_max_inflight)
    payloads = Payloads(settings.payload_attributes, settings.payload_blob_min_bytes)  # as the store's
    combiners = {
        signal: Combiner(
            functools.partial(store.insert_checked, signal),
            max_rows=_otlp.SLICE_RECORDS,
            max_bytes=settings.wal_max_record_bytes // 4,
        )
        for signal in _SIGNALS.values()
    }

    async def caught_up() -> bool:
        """Whether an OTLP write may go ahead: at once while compaction keeps up; else
        after waiting (``server_throttle_wait_s`` at most) for it to catch up, so that
        writers are slowed to what compaction takes (``server_max_compaction_lag_s``)."""
        if maintenance is None or maintenance.lag_s() <= settings.server_max_compaction_lag_s:
            return True
        deadline = time.monotonic() + settings.server_throttle_wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(_THROTTLE_POLL_S)
            if maintenance.lag_s() <= settings.server_max_compaction_lag_s:
                metrics.throttled.labels("written").inc()
                return True
        metrics.throttled.labels("refused").inc()
        return False

    def otlp_route(kind: str) -> Callable[[Request], Awaitable[Response]]:
        signal = _SIGNALS[kind]
        decode: Any = {"traces": _otlp.decode_traces, "logs": _otlp.decode_logs, "metrics": _otlp.decode_metrics}[kind]
        insert = combiners[signal].insert
        limit = settings.server_max_body_bytes

        descriptor = {
            "traces": ExportTraceServiceRequest.DESCRIPTOR,
            "logs": ExportLogsServiceRequest.DESCRIPTOR,
            "metrics": ExportMetricsServiceRequest.DESCRIPTOR,
        }[kind]

        def prepare(raw: bytes, encoding: str, ctype: str, reservation: _limits.Reservation) -> bytes:
            """The body decompressed, with the memory its decoding will take reserved
            (estimated from its structure: see tael/_limits.py)."""
            body = _decompress(raw, encoding, limit, reservation)
            extra = len(body) if body is not raw else 0
            _limits.reserve_decoding(reservation, len(raw) + extra, body, ctype, descriptor)
            return body

        def ingest(held: list[bytes], encoding: str, ctype: str, reservation: _limits.Reservation) -> Any:
            """Prepare the body (taken out of ``held``, so that the compressed bytes go as
            soon as they are decompressed), then decode and insert a slice of records at a
            time (bounds the request's memory): a request larger than a slice is written in
            several batches. The decoder hands over column batches of records it checked one
            by one, with their payload flags: the store writes them without a second check,
            together with the batches of requests in flight beside it (tael/_otlp/combine.py).
            One trip to the thread pool per request."""
            body = prepare(held.pop(), encoding, ctype, reservation)
            return decode(body, ctype, insert, payloads)

        async def handler(request: Request) -> Response:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in _otlp.CONTENT_TYPES:
                return _status(415, "application/json", f"unsupported content type {ctype!r}", close=True)
            encoding = request.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in _ENCODINGS:
                message = f"unsupported content encoding {encoding!r} (gzip, deflate or identity)"
                return _status(415, ctype, message, close=True)
            began = time.perf_counter()
            if not await caught_up():
                message = f"compaction is {maintenance.lag_s() if maintenance else 0:.0f} s behind; retry later"
                return _status(503, ctype, message, retry=True, close=True)
            reservation = _limits.request_reservation(request)
            unread = True
            acquired = False
            try:
                # a declared length over the limit is 413 before anything is reserved
                # (read_body); one whose body and first decoding estimate do not fit now
                # is 429 before it is read; otherwise the body is reserved as its bytes
                # arrive (declaring much and sending little holds little), its decoding
                # once it is in (prepare)
                declared = _limits.declared_length(request)
                if declared is not None and declared <= limit:
                    identity = encoding in ("", "identity")
                    reservation.budget.admit(declared + (_limits.otlp_decode_cost(declared) if identity else 0))
                raw = await _limits.read_body(request, limit, reservation, settings.server_body_timeout_s)
                unread = False
                # counted once the body is in, so clients slow to send cannot take the slots
                acquired = inflight.acquire(blocking=False)
                if not acquired:
                    return _status(503, ctype, "too many requests in flight; retry later", retry=True)
                held = [raw]
                del raw
                decoded: _otlp.Decoded[Any] = await run_in_threadpool(ingest, held, encoding, ctype, reservation)
            except _limits.BodyTooLarge as exc:
                return _status(413, ctype, str(exc), close=unread)
            except _limits.OverBudget as exc:
                return _status(429, ctype, str(exc), retry=True, close=unread)
            except _limits.BodyTimeout as exc:
                return _status(408, ctype, str(exc), close=True)
            except (_otlp.OtlpError, ValidationError, zlib.error, EOFError) as exc:
                return _status(400, ctype, f"malformed request: {exc}")
            except (StoreClosedError, ReadOnlyError, StorageError) as exc:
                return _status(503, ctype, f"the store cannot take writes: {exc}", retry=True)
            except ReplicationError as exc:
                # durable here, not yet on enough standbys: not acknowledged, so the
                # exporter retries (a span retried is stored once; see docs/server.md)
                return _status(503, ctype, f"the write was not acknowledged by enough standbys: {exc}", retry=True)
            finally:
                if acquired:
                    inflight.release()
                reservation.release()
            metrics.insert_seconds.labels(signal).observe(time.perf_counter() - began)
            metrics.ingested.labels(signal).inc(decoded.accepted)
            if decoded.rejected:
                metrics.rejected.labels(signal).inc(decoded.rejected)
            return Response(
                _otlp.encode_response(kind, ctype, decoded.rejected, decoded.error_message), media_type=ctype
            )

        return handler

    def query(call: str, fn: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            began = time.perf_counter()
            try:
                result = await run_in_threadpool(fn, request)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"data": None, "errors": [{"code": 400, "msg": str(exc)}]}, status_code=400)
            except _NotFound as exc:
                return JSONResponse({"data": None, "errors": [{"code": 404, "msg": str(exc)}]}, status_code=404)
            except _limits.OverBudget as exc:
                return JSONResponse(
                    {"data": None, "errors": [{"code": 429, "msg": str(exc)}]},
                    status_code=429,
                    headers={"Retry-After": _RETRY_AFTER_S},
                )
            except TaelError as exc:
                return JSONResponse(
                    {"data": None, "errors": [{"code": 503, "msg": str(exc)}]},
                    status_code=503,
                    headers={"Retry-After": _RETRY_AFTER_S},
                )
            metrics.query_seconds.labels(call).observe(time.perf_counter() - began)
            return JSONResponse(result)

        return handler

    def services(_r: Request) -> dict[str, Any]:
        names = [s.name for s in store.list_services()]
        return _jaeger_list(names)

    def operations(r: Request) -> dict[str, Any]:
        return _jaeger_list(store.list_operations(_name(r.path_params["service"], "service")))

    def traces(r: Request) -> dict[str, Any]:
        q = _params(r, ("service", "operation", "tags", "minDuration", "maxDuration", "start", "end", "limit"))
        limit = _limit(q.get("limit"), "limit", 20, _JAEGER_TRACE_LIMIT)
        tags = _tags(q.get("tags"))
        start = _time(q.get("start"), "start", _US)
        end = _time(q.get("end"), "end", _US)
        where = SpanFilter(
            service=_opt_name(q.get("service"), "service"),
            name=_opt_name(q.get("operation"), "operation"),
            min_duration_ms=_duration_ms(q.get("minDuration"), "minDuration"),
            max_duration_ms=_duration_ms(q.get("maxDuration"), "maxDuration"),
            start=start,
            end=min(end + _US, _otlp.MAX_NS) if end is not None else None,  # Jaeger's end is inclusive
        )
        spans = store.query_traces(where, limit=min(max(limit * 50, 500), 100_000))
        ids: list[str] = []
        for s in spans:
            if tags and not _tags_match(tags, s):
                continue
            if s.trace_id not in ids:
                ids.append(s.trace_id)
                if len(ids) >= limit:
                    break
        # whole traces, until they reach server_max_response_bytes (reserved as they come)
        cap, reservation = settings.server_max_response_bytes, _limits.request_reservation(r)
        out: list[dict[str, Any]] = []
        size = 0
        errors = None
        for n, tid in enumerate(ids):
            trace_spans = store.get_trace(tid)
            size += _limits.record_bytes(trace_spans)
            if size > cap and out:
                message = (
                    f"the response was cut short at {n:,} of {len(ids):,} traces: they reach the server's {cap:,}-byte "
                    "response limit (Settings.server_max_response_bytes); ask for a smaller limit or a narrower "
                    "time range"
                )
                errors = [{"code": 413, "msg": message}]
                break
            reservation.grow_to(min(size, cap) * _limits.RESPONSE_FACTOR)
            found = _jaeger_trace(tid, trace_spans)
            if found is not None:
                out.append(found)
        return {"data": out, "total": len(out), "limit": 0, "offset": 0, "errors": errors}

    def trace(r: Request) -> dict[str, Any]:
        tid = _trace_id(r.path_params["trace_id"], "trace_id", pad=True)
        found = _jaeger_trace(tid, store.get_trace(tid))
        if found is None:
            raise _NotFound("trace not found")
        return {"data": [found], "total": 1, "limit": 0, "offset": 0, "errors": None}

    def search_traces(r: Request) -> dict[str, Any]:
        q = _params(r, ("q", "service", "start", "end", "limit"))
        text = q.get("q")
        if not text:
            raise ValueError("q (the text to search for) is required")
        fields: dict[str, Any] = {
            "text": _text(text, "q"),
            "service": _opt_name(q.get("service"), "service"),
            "start": _time(q.get("start"), "start", 1),
            "end": _time(q.get("end"), "end", 1),
        }
        limit = _limit(q.get("limit"), "limit", 20, _MAX_LIMIT)
        where = SpanFilter(**fields)
        spans, cut = _limits.capped_records(
            lambda n: store.query_traces(where, limit=n),
            limit,
            settings.server_max_response_bytes,
            _limits.request_reservation(r),
        )
        return _capped_answer([dataclasses.asdict(s) for s in spans], cut)

    def logs(r: Request) -> dict[str, Any]:
        q = _params(r, ("q", "service", "min_severity", "trace_id", "start", "end", "limit"))
        trace_id = q.get("trace_id")
        fields: dict[str, Any] = {
            "text": _text(q["q"], "q") if q.get("q") else None,
            "service": _opt_name(q.get("service"), "service"),
            "min_severity": _severity(q.get("min_severity"), "min_severity"),
            "trace_id": _trace_id(trace_id, "trace_id", pad=False) if trace_id else None,
            "start": _time(q.get("start"), "start", 1),
            "end": _time(q.get("end"), "end", 1),
        }
        limit = _limit(q.get("limit"), "limit", 100, _MAX_LIMIT)
        where = LogFilter(**fields)
        found: list[LogRecord]
        found, cut = _limits.capped_records(
            lambda n: store.query_logs(where, limit=n),
            limit,
            settings.server_max_response_bytes,
            _limits.request_reservation(r),
        )
        return _capped_answer([dataclasses.asdict(x) for x in found], cut)

    async def prometheus(_r: Request) -> Response:
        data = await run_in_threadpool(generate_latest, metrics.registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    async def live(_r: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(_r: Request) -> Response:
        problems = await run_in_threadpool(_readiness, store, maintenance)
        if problems:
            return JSONResponse({"status": "unavailable", "reasons": problems}, status_code=503)
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/v1/traces", otlp_route("traces"), methods=["POST"], name="traces"),
        Route("/v1/logs", otlp_route("logs"), methods=["POST"], name="logs"),
        Route("/v1/metrics", otlp_route("metrics"), methods=["POST"], name="metrics"),
        Route("/api/services", query("services", services), name="api_services"),
        Route("/api/services/{service}/operations", query("operations", operations), name="api_operations"),
        Route("/api/traces", query("traces", traces), name="api_traces"),
        Route("/api/traces/{trace_id}", query("trace", trace), name="api_trace"),
        Route("/api/search/traces", query("search_traces", search_traces), name="api_search_traces"),
        Route("/api/logs", query("logs", logs), name="api_logs"),
        Route("/metrics", prometheus, name="prometheus"),
        Route("/health/live", live, name="health_live"),
        Route("/health/ready", ready, name="health_ready"),
        *replication_routes(store.replication),
    ]
    refused = Counter(
        "tael_http_refused",
        "Requests the guard answered itself (bad Host, no or unknown token, missing scope, wrong content type)",
        ["code"],
        registry=metrics.registry,
    )
    guard = Middleware(
        _auth.Guard,
        tokens=tokens,
        allowed_hosts=allowed_hosts,
        replicating=store.replication.replicating,
        roots=_auth.data_roots(store.path, store.cold_location),
        refused=lambda code: refused.labels(str(code)).inc(),
    )
    count = metrics.requests.labels  # tael_http_requests_total{route,code}: every response
    limits = _limits.guard(settings, routes, lambda r, c: count(r, c).inc(), metrics.budget)
    app = Starlette(routes=routes, middleware=[limits, guard])
    app.state.metrics = metrics
    return app


class _NotFound(Exception):
    pass


_ENCODINGS = ("", "identity", "gzip", "deflate")
_INFLATE_CHUNK = 1 << 20


def _decompress(raw: bytes, encoding: str, limit: int, reservation: _limits.Reservation) -> bytes:
    """The body decompressed, at most ``limit`` bytes, each MiB reserved before it is
    produced (raises OverBudget, BodyTooLarge, zlib.error)."""
    if encoding in ("", "identity"):
        return raw
    if encoding == "gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    else:
        d = zlib.decompressobj()  # zlib-wrapped, as HTTP's "deflate" means
        if raw[:1] and (raw[0] & 0x0F) != 8:
            d = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, which some clients send
    out = bytearray()
    pending = raw
    base = reservation.held
    while True:
        reservation.grow_to(base + len(out) + _INFLATE_CHUNK)
        chunk = d.decompress(pending, _INFLATE_CHUNK)
        out += chunk
        if len(out) > limit:
            raise _limits.BodyTooLarge(f"body decompresses to over the {limit:,}-byte limit")
        pending = d.unconsumed_tail
        if d.eof or (not pending and not chunk):
            break
    if not d.eof:
        raise zlib.error("compressed body is truncated")
    reservation.grow(len(out))  # the copy below, while ``out`` still exists
    return bytes(out)


def _status(code: int, ctype: str, message: str, *, retry: bool = False, close: bool = False) -> Response:
    """An OTLP error answer (google.rpc.Status); ``close``: the body was not read, so the
    connection is closed rather than the rest of the body read and thrown away."""
    media = ctype if ctype in _otlp.CONTENT_TYPES else "application/json"
    headers = {"Retry-After": _RETRY_AFTER_S} if retry else {}
    if close:
        headers["Connection"] = "close"
    return Response(_otlp.encode_status(media, code, message), status_code=code, media_type=media, headers=headers)


def _readiness(store: Store, maintenance: Maintenance | None) -> list[str]:
    problems = []
    if store.closed:
        return ["the store is closed"]
    if store.read_only:
        problems.append("the store is open read-only")
    fault = store.fault
    if fault is not None:
        problems.append(f"the store refuses writes and reads until repaired: {fault}")
    free = shutil.disk_usage(store.path).free
    if free < store.settings.health_min_free_bytes:
        problems.append(f"the disk is nearly full: {free:,} bytes free")
    limit = store.settings.health_max_maintenance_failures
    if maintenance is not None and maintenance.consecutive_errors >= limit:
        problems.append(f"the last {maintenance.consecutive_errors} maintenance runs failed: {maintenance.last_error}")
    return problems


# ---------------------------------------------------------------- query parameters


# Every parameter is checked here, before the store sees it, so that any value a client
# sends gets a 400 naming the parameter, never an OverflowError or a 500 from below.

_US = 1_000  # Jaeger times are in microseconds; tael's are nanoseconds
_MAX_LIMIT = 100_000  # Store.query_* refuse more
_MAX_NAME_BYTES = 1024  # longer service or span names than any store keeps (LMDB keys are under 512 bytes)
_MAX_TEXT_BYTES = 4096  # a full-text query


def _params(r: Request, known: tuple[str, ...]) -> dict[str, str]:
    """The query parameters (the last of repeated ones, as Starlette does), each
    checked to be text without NUL characters."""
    out = dict(r.query_params)
    for name, value in out.items():
        if name in known and "\x00" in value:
            raise ValueError(f"{name} must not contain NUL characters")
    return out


def _integer(value: str, name: str) -> int:
    text = value.strip()
    if not text or len(text) > 40 or not (text.isdigit() or (text[0] in "+-" and text[1:].isdigit())):
        raise ValueError(f"{name} must be an integer, got {value[:60]!r}")
    return int(text)


def _limit(value: str | None, name: str, default: int, maximum: int) -> int:
    if value is None or value == "":
        return default
    n = _integer(value, name)
    if not 1 <= n <= maximum:
        raise ValueError(f"{name} must be between 1 and {maximum:,}, got {n:,}")
    return n


def _time(value: str | None, name: str, unit_ns: int) -> int | None:
    """A time bound in ``unit_ns`` nanoseconds, converted to nanoseconds; it must fall
    in tael's time range, 0 to 2**63-1 ns."""
    if value is None or value == "":
        return None
    n = _integer(value, name)
    top = _otlp.MAX_NS // unit_ns
    if not 0 <= n <= top:
        unit = "microseconds" if unit_ns == _US else "nanoseconds"
        raise ValueError(f"{name} must be between 0 and {top:,} ({unit} since the Unix epoch), got {n:,}")
    return n * unit_ns


def _severity(value: str | None, name: str) -> int | None:
    """A number 0..24 or an OpenTelemetry severity name (``error``), as the CLI and the API take it."""
    if value is None or value == "":
        return None
    return severity(value, name)


def _name(value: str, name: str) -> str:
    if not value:
        raise ValueError(f"{name} must not be empty")
    if "\x00" in value:
        raise ValueError(f"{name} must not contain NUL characters")
    if len(value.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
        raise ValueError(f"{name} is longer than {_MAX_NAME_BYTES:,} bytes")
    return value


def _opt_name(value: str | None, name: str) -> str | None:
    return _name(value, name) if value else None


def _text(value: str, name: str) -> str:
    if len(value.encode("utf-8", "surrogatepass")) > _MAX_TEXT_BYTES:
        raise ValueError(f"{name} is longer than {_MAX_TEXT_BYTES:,} bytes")
    return value


_HEX = frozenset("0123456789abcdefABCDEF")


def _trace_id(value: str, name: str, *, pad: bool) -> str:
    """A trace id: 32 hex digits (``pad``: 1 to 32, left-padded with zeros, as Jaeger allows)."""
    if not value or not set(value) <= _HEX or len(value) > 32 or (not pad and len(value) != 32):
        size = "1 to 32" if pad else "32"
        raise ValueError(f"{name} must be {size} hex digits, got {value[:60]!r}")
    return value.lower().rjust(32, "0")


_UNITS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_MAX_DURATION_MS = _otlp.MAX_NS / 1e6


def _duration_ms(value: str | None, name: str) -> float | None:
    """Jaeger durations: a number and a unit (``1.2s``, ``300ms``, ``50us``), finite,
    not negative and at most 2**63-1 ns."""
    if not value:
        return None
    for unit in sorted(_UNITS, key=len, reverse=True):
        if value.endswith(unit):
            number = value[: -len(unit)]
            if number.strip() and all(c in "0123456789.eE+-" for c in number):
                try:
                    ms = float(number) * _UNITS[unit]
                except ValueError:
                    break
                if not math.isfinite(ms) or not 0 <= ms <= _MAX_DURATION_MS:
                    raise ValueError(f"{name} must be between 0 and {_MAX_DURATION_MS:,.0f}ms, got {value[:60]!r}")
                return ms
            break
    raise ValueError(f"{name} must be a duration such as 1.2s, 300ms or 50us, got {value[:60]!r}")


def _tags(value: str | None) -> dict[str, str]:
    if not value:
        return {}
    try:
        parsed = json.loads(value)
        if not isinstance(parsed, dict):
            raise ValueError
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in parsed.items()}
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise ValueError(f"tags must be a JSON object of tag names and values, got {value[:60]!r}") from None


def _tags_match(tags: dict[str, str], span: Span) -> bool:
    """Jaeger compares tag values as text: ``500`` matches the int 500 and the string."""
    for key, want in tags.items():
        got = span.attributes.get(key, span.resource.get(key))
        if got is None and key not in span.attributes and key not in span.resource:
            return False
        if _tag_text(got) != want:
            return False
    return True


def _tag_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# ---------------------------------------------------------------- Jaeger JSON


def _capped_answer(data: list[Any], cut: str | None) -> dict[str, Any]:
    """A ``/api/search/traces`` or ``/api/logs`` answer; when the response limit cut it
    short, ``truncated`` is true and ``warnings`` says so (the records are the newest)."""
    if cut is None:
        return {"data": data}
    return {"data": data, "truncated": True, "warnings": [cut]}


def _jaeger_list(items: list[str]) -> dict[str, Any]:
    return {"data": items, "total": len(items), "limit": 0, "offset": 0, "errors": None}


def _jaeger_tag(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, str):
        return {"key": key, "type": "string", "value": value}
    return {"key": key, "type": "string", "value": json.dumps(value, separators=(",", ":"))}


def _jaeger_trace(trace_id: str, spans: list[Span]) -> dict[str, Any] | None:
    """One trace in the JSON shape of Jaeger's query service (``/api/traces/{id}``)."""
    if not spans:
        return None
    processes: dict[str, dict[str, Any]] = {}
    process_of: dict[tuple[str, str], str] = {}
    out = []
    for s in spans:
        resource = json.dumps(s.resource, sort_keys=True, default=str)
        pid = process_of.get((s.service, resource))
        if pid is None:
            pid = process_of[(s.service, resource)] = f"p{len(process_of) + 1}"
            processes[pid] = {
                "serviceName": s.service,
                "tags": [_jaeger_tag(k, v) for k, v in s.resource.items() if k != "service.name"],
            }
        tags = [_jaeger_tag(k, v) for k, v in s.attributes.items()]
        tags.append({"key": "span.kind", "type": "string", "value": s.kind})
        if s.status != "unset":
            tags.append({"key": "otel.status_code", "type": "string", "value": s.status.upper()})
        if s.status == "error":
            tags.append({"key": "error", "type": "bool", "value": True})
        if s.status_message:
            tags.append({"key": "otel.status_description", "type": "string", "value": s.status_message})
        if s.scope_name:
            tags.append({"key": "otel.scope.name", "type": "string", "value": s.scope_name})
        if s.scope_version:
            tags.append({"key": "otel.scope.version", "type": "string", "value": s.scope_version})
        refs = []
        if s.parent_span_id:
            refs.append({"refType": "CHILD_OF", "traceID": s.trace_id, "spanID": s.parent_span_id})
        refs += [{"refType": "FOLLOWS_FROM", "traceID": ln.trace_id, "spanID": ln.span_id} for ln in s.links]
        out.append(
            {
                "traceID": s.trace_id,
                "spanID": s.span_id,
                "operationName": s.name,
                "references": refs,
                "startTime": s.start_ns // 1000,
                "duration": (s.end_ns - s.start_ns) // 1000,
                "tags": tags,
                "logs": [
                    {
                        "timestamp": ev.time_ns // 1000,
                        "fields": [{"key": "event", "type": "string", "value": ev.name}]
                        + [_jaeger_tag(k, v) for k, v in ev.attributes.items()],
                    }
                    for ev in s.events
                ],
                "processID": pid,
                "warnings": None,
                "flags": s.flags,
            }
        )
    return {"traceID": trace_id, "spans": out, "processes": processes, "warnings": None}


# ---------------------------------------------------------------- running


def run_server(
    data: str,
    *,
    host: str = "127.0.0.1",
    port: int = 4318,
    settings: Settings | None = None,
    maintenance_interval_s: float = 60.0,
    standby_of: str | None = None,
) -> None:
    """Serve a store until SIGTERM or SIGINT: uvicorn stops accepting and finishes the
    requests in flight, then the maintenance loop stops and the store is flushed and
    closed."""
    import uvicorn

    settings = settings if settings is not None else Settings()
    tokens = _auth.server_tokens(settings, host)  # before the store opens: a refusal leaves nothing behind
    store = Store(Path(data), settings, standby=standby_of is not None)
    if standby_of is not None:
        store.set_leader_url(standby_of)
    maintenance = Maintenance(store, interval_s=maintenance_interval_s).start()
    try:
        app = create_app(store, maintenance=maintenance, tokens=tokens, allowed_hosts=_auth.host_check(settings, host))
        tls = _auth.tls_options(settings)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off", **tls)
        _limits.configure_uvicorn(config, store.settings)
        server = uvicorn.Server(config)
        if threading.current_thread() is threading.main_thread():
            # uvicorn handles SIGTERM/SIGINT itself, then re-raises the signal to the handler
            # that was installed before it: make that one a no-op so the store is closed below
            signal.signal(signal.SIGTERM, lambda *_: None)
        log.info("tael serving %s on %s://%s:%d", data, "https" if tls else "http", host, port)
        asyncio.run(server.serve())
    finally:
        maintenance.stop()
        if not store.closed:
            try:
                store.flush()
            except StorageError as exc:  # a full disk, say: what is acknowledged is in the WAL
                log.error("flush at shutdown failed, closing anyway (the next open applies and indexes it): %s", exc)
            store.close()
