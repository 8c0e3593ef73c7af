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
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import signal
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import _otlp, _replication
from ._errors import ReadOnlyError, StorageError, StoreClosedError, TaelError, ValidationError
from ._maintenance import Maintenance
from ._models import LogRecord, Span
from ._settings import Settings
from ._store import Store

log = logging.getLogger(__name__)

_RETRY_AFTER_S = "5"
_SIGNALS = {"traces": "spans", "logs": "logs", "metrics": "metrics"}
_JAEGER_TRACE_LIMIT = 1_500


class _TooLarge(Exception):
    pass


class _BadEncoding(Exception):
    pass


class ServerMetrics:
    """The self-metrics ``/metrics`` exposes: counters kept by the app, gauges read from
    the store and the maintenance loop at scrape time."""

    def __init__(self, store: Store, maintenance: Maintenance | None) -> None:
        self.store = store
        self.maintenance = maintenance
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
        out: list[GaugeMetricFamily] = []
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
        writers = list(self.store._writers)
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
        return out


def create_app(store: Store, *, maintenance: Maintenance | None = None) -> Starlette:
    """The ASGI app over an open store (``maintenance``: the loop whose health
    ``/health/ready`` reports, if any)."""
    settings = store.settings
    metrics = ServerMetrics(store, maintenance)
    inflight = threading.BoundedSemaphore(settings.server_max_inflight)

    def otlp_route(kind: str) -> Callable[[Request], Awaitable[Response]]:
        signal = _SIGNALS[kind]
        decode: Callable[[bytes, str], _otlp.Decoded[Any]]
        insert: Callable[[Any], int]
        if kind == "traces":
            decode, insert = _otlp.decode_traces, store.insert_spans
        elif kind == "logs":
            decode, insert = _otlp.decode_logs, store.insert_logs
        else:
            decode, insert = _otlp.decode_metrics, store.insert_metrics

        async def handler(request: Request) -> Response:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in _otlp.CONTENT_TYPES:
                return _status(415, "application/json", f"unsupported content type {ctype!r}", metrics, kind)
            try:
                raw = await _read_body(request, settings.server_max_body_bytes)
            except _TooLarge as exc:
                return _status(413, ctype, str(exc), metrics, kind)
            if not inflight.acquire(blocking=False):
                return _status(503, ctype, "too many requests in flight; retry later", metrics, kind, retry=True)
            began = time.perf_counter()
            try:
                encoding = request.headers.get("content-encoding", "identity").strip().lower()
                body = await run_in_threadpool(_decompress, raw, encoding, settings.server_max_body_bytes)
                decoded: _otlp.Decoded[Any] = await run_in_threadpool(decode, body, ctype)
                if decoded.records:
                    await run_in_threadpool(insert, decoded.records)
            except _TooLarge as exc:
                return _status(413, ctype, str(exc), metrics, kind)
            except _BadEncoding as exc:
                return _status(415, ctype, str(exc), metrics, kind)
            except (_otlp.OtlpError, ValidationError, zlib.error, EOFError) as exc:
                return _status(400, ctype, f"malformed request: {exc}", metrics, kind)
            except (StoreClosedError, ReadOnlyError, StorageError) as exc:
                return _status(503, ctype, f"the store cannot take writes: {exc}", metrics, kind, retry=True)
            finally:
                inflight.release()
            metrics.insert_seconds.labels(signal).observe(time.perf_counter() - began)
            metrics.ingested.labels(signal).inc(len(decoded.records))
            if decoded.rejected:
                metrics.rejected.labels(signal).inc(decoded.rejected)
            metrics.requests.labels(kind, "200").inc()
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
                metrics.requests.labels(call, "400").inc()
                return JSONResponse({"data": None, "errors": [{"code": 400, "msg": str(exc)}]}, status_code=400)
            except _NotFound as exc:
                metrics.requests.labels(call, "404").inc()
                return JSONResponse({"data": None, "errors": [{"code": 404, "msg": str(exc)}]}, status_code=404)
            except TaelError as exc:
                metrics.requests.labels(call, "503").inc()
                return JSONResponse(
                    {"data": None, "errors": [{"code": 503, "msg": str(exc)}]},
                    status_code=503,
                    headers={"Retry-After": _RETRY_AFTER_S},
                )
            metrics.query_seconds.labels(call).observe(time.perf_counter() - began)
            metrics.requests.labels(call, "200").inc()
            return JSONResponse(result)

        return handler

    def services(_r: Request) -> dict[str, Any]:
        names = [s.name for s in store.list_services()]
        return _jaeger_list(names)

    def operations(r: Request) -> dict[str, Any]:
        return _jaeger_list(store.list_operations(r.path_params["service"]))

    def traces(r: Request) -> dict[str, Any]:
        q = r.query_params
        limit = _int(q.get("limit"), "limit", 20)
        tags = _tags(q.get("tags"))
        start_us, end_us = _opt_int(q.get("start"), "start"), _opt_int(q.get("end"), "end")
        spans = store.query_traces(
            service=q.get("service") or None,
            name=q.get("operation") or None,
            min_duration_ms=_duration_ms(q.get("minDuration"), "minDuration"),
            max_duration_ms=_duration_ms(q.get("maxDuration"), "maxDuration"),
            start=start_us * 1000 if start_us is not None else None,
            end=(end_us + 1) * 1000 if end_us is not None else None,  # Jaeger's end is inclusive
            limit=min(max(limit * 50, 500), 100_000),
        )
        ids: list[str] = []
        for s in spans:
            if tags and not _tags_match(tags, s):
                continue
            if s.trace_id not in ids:
                ids.append(s.trace_id)
                if len(ids) >= min(limit, _JAEGER_TRACE_LIMIT):
                    break
        out = [_jaeger_trace(tid, store.get_trace(tid)) for tid in ids]
        return {"data": [t for t in out if t is not None], "total": len(out), "limit": 0, "offset": 0, "errors": None}

    def trace(r: Request) -> dict[str, Any]:
        tid = r.path_params["trace_id"].lower().rjust(32, "0")
        found = _jaeger_trace(tid, store.get_trace(tid))
        if found is None:
            raise _NotFound("trace not found")
        return {"data": [found], "total": 1, "limit": 0, "offset": 0, "errors": None}

    def search_traces(r: Request) -> dict[str, Any]:
        q = r.query_params
        text = q.get("q")
        if not text:
            raise ValueError("q (the text to search for) is required")
        spans = store.query_traces(
            text=text,
            service=q.get("service") or None,
            start=_opt_int(q.get("start"), "start"),
            end=_opt_int(q.get("end"), "end"),
            limit=_int(q.get("limit"), "limit", 20),
        )
        return {"data": [dataclasses.asdict(s) for s in spans]}

    def logs(r: Request) -> dict[str, Any]:
        q = r.query_params
        found: list[LogRecord] = store.query_logs(
            text=q.get("q") or None,
            service=q.get("service") or None,
            min_severity=_opt_int(q.get("min_severity"), "min_severity"),
            trace_id=q.get("trace_id") or None,
            start=_opt_int(q.get("start"), "start"),
            end=_opt_int(q.get("end"), "end"),
            limit=_int(q.get("limit"), "limit", 100),
        )
        return {"data": [dataclasses.asdict(x) for x in found]}

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
        Route("/v1/traces", otlp_route("traces"), methods=["POST"]),
        Route("/v1/logs", otlp_route("logs"), methods=["POST"]),
        Route("/v1/metrics", otlp_route("metrics"), methods=["POST"]),
        Route("/api/services", query("services", services)),
        Route("/api/services/{service}/operations", query("operations", operations)),
        Route("/api/traces", query("traces", traces)),
        Route("/api/traces/{trace_id}", query("trace", trace)),
        Route("/api/search/traces", query("search_traces", search_traces)),
        Route("/api/logs", query("logs", logs)),
        Route("/metrics", prometheus),
        Route("/health/live", live),
        Route("/health/ready", ready),
        *_replication.routes(store),
    ]
    app = Starlette(routes=routes)
    app.state.metrics = metrics
    return app


class _NotFound(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(f"body of {int(declared):,} bytes is over the {limit:,}-byte limit")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge(f"body is over the {limit:,}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _decompress(raw: bytes, encoding: str, limit: int) -> bytes:
    if encoding in ("", "identity"):
        return raw
    if encoding == "gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        d = zlib.decompressobj()  # zlib-wrapped, as HTTP's "deflate" means
        if raw[:1] and (raw[0] & 0x0F) != 8:
            d = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, which some clients send
    else:
        raise _BadEncoding(f"unsupported content encoding {encoding!r} (gzip, deflate or identity)")
    out = d.decompress(raw, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise _TooLarge(f"body decompresses to over the {limit:,}-byte limit")
    if not d.eof:
        raise zlib.error("compressed body is truncated")
    return out


def _status(
    code: int, ctype: str, message: str, metrics: ServerMetrics, route: str, *, retry: bool = False
) -> Response:
    metrics.requests.labels(route, str(code)).inc()
    media = ctype if ctype in _otlp.CONTENT_TYPES else "application/json"
    headers = {"Retry-After": _RETRY_AFTER_S} if retry else None
    return Response(_otlp.encode_status(media, code, message), status_code=code, media_type=media, headers=headers)


def _readiness(store: Store, maintenance: Maintenance | None) -> list[str]:
    problems = []
    if store.closed:
        return ["the store is closed"]
    if store.read_only:
        problems.append("the store is open read-only")
    free = shutil.disk_usage(store.path).free
    if free < store.settings.health_min_free_bytes:
        problems.append(f"the disk is nearly full: {free:,} bytes free")
    limit = store.settings.health_max_maintenance_failures
    if maintenance is not None and maintenance.consecutive_errors >= limit:
        problems.append(f"the last {maintenance.consecutive_errors} maintenance runs failed: {maintenance.last_error}")
    return problems


# ---------------------------------------------------------------- query parameters


def _int(value: str | None, name: str, default: int) -> int:
    parsed = _opt_int(value, name)
    return default if parsed is None else parsed


def _opt_int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


_UNITS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _duration_ms(value: str | None, name: str) -> float | None:
    """Jaeger durations: a number and a unit (``1.2s``, ``300ms``, ``50us``)."""
    if not value:
        return None
    for unit in sorted(_UNITS, key=len, reverse=True):
        if value.endswith(unit):
            try:
                return float(value[: -len(unit)]) * _UNITS[unit]
            except ValueError:
                break
    raise ValueError(f"{name} must be a duration such as 1.2s, 300ms or 50us, got {value!r}")


def _tags(value: str | None) -> dict[str, str]:
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        raise ValueError(f"tags must be a JSON object, got {value!r}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"tags must be a JSON object, got {value!r}")
    return {str(k): str(v) for k, v in parsed.items()}


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

    store = Store(Path(data), settings, standby=standby_of is not None)
    if standby_of is not None:
        store.set_leader_url(standby_of)
    maintenance = Maintenance(store, interval_s=maintenance_interval_s).start()
    try:
        app = create_app(store, maintenance=maintenance)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        if threading.current_thread() is threading.main_thread():
            # uvicorn handles SIGTERM/SIGINT itself, then re-raises the signal to the handler
            # that was installed before it: make that one a no-op so the store is closed below
            signal.signal(signal.SIGTERM, lambda *_: None)
        log.info("tael serving %s on http://%s:%d", data, host, port)
        asyncio.run(server.serve())
    finally:
        maintenance.stop()
        if not store.closed:
            try:
                store.flush()
            except StorageError as exc:  # a full disk, say: what is acknowledged is in the WAL
                log.error("flush at shutdown failed, closing anyway (the next open applies and indexes it): %s", exc)
            store.close()
