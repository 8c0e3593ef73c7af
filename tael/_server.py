"""``tael serve``: one Starlette app over one Store, served by uvicorn.

- OTLP/HTTP receiver (``POST /v1/traces``, ``/v1/logs``, ``/v1/metrics``):
  protobuf or JSON, gzip or deflate, size-limited before and after
  decompression. Decoding and the insert run in the thread pool, never on the
  event loop; concurrent requests share the store's group commits.
- The Jaeger query API that Grafana's Jaeger data source reads (its routes
  come from tael/_jaeger.py), plus full-text and log search
  (``/api/search/traces``, ``/api/logs``).
- ``/metrics`` (Prometheus text format) and ``/health/live``, ``/health/ready``.

Status codes follow the OTLP/HTTP specification: 400 with a google.rpc.Status
for a malformed body, 413 for one too large, 415 for an unsupported content
type or encoding, 503 with Retry-After when the store cannot take the write.
Bad input never gets a 500. Layout of the responses: docs/server.md.

The routes share one app's state (store, metrics, limits) through closures in
``create_app``; what grows (decoding, limits, auth, replication, the Jaeger API)
lives in modules of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import shutil
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import _auth, _limits, _otlp, _receiver
from ._errors import (
    ConfigurationError,
    StorageError,
    TaelError,
)
from ._httpargs import MAX_LIMIT as _MAX_LIMIT
from ._httpargs import limit as _limit
from ._httpargs import opt_name as _opt_name
from ._httpargs import params as _params
from ._httpargs import time_bound as _time
from ._httpargs import trace_id as _trace_id
from ._jaeger import NotFound
from ._jaeger import routes as jaeger_routes
from ._maintenance import Maintenance
from ._models import LogRecord
from ._query.args import severity
from ._query.filters import LogFilter, SpanFilter
from ._replication.http import routes as replication_routes
from ._serveradmin import Activity, local_url
from ._serveradmin import publish as publish_serve_info
from ._serveradmin import routes as admin_routes
from ._serveradmin import withdraw as withdraw_serve_info
from ._settings import Settings
from ._store import Store

log = logging.getLogger(__name__)

_RETRY_AFTER_S = str(_receiver.RETRY_AFTER_S)


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
        self.grpc_requests = Counter(
            "tael_grpc_requests",
            "OTLP/gRPC calls by method and status code (tael/_grpcserver.py)",
            ["method", "code"],
            registry=self.registry,
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

    def collect(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        """Gauges from one ``stats()`` of the store (skipped once it is closed)."""
        out: list[GaugeMetricFamily | CounterMetricFamily] = [
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
        late = CounterMetricFamily(
            "tael_records_past_retention",
            "Records accepted that were already past their retention (the next retention pass drops them)",
            labels=["signal"],
        )
        for kind, n in self.store.records_past_retention.items():
            late.add_metric([kind], n)
        out.append(late)
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
    receiver = _receiver.Receiver(
        settings,
        store.insert_checked,
        maintenance.lag_s if maintenance is not None else None,
        _receiver.ReceiverMetrics(metrics.ingested, metrics.rejected, metrics.insert_seconds, metrics.throttled),
        metrics.budget,
    )

    def otlp_route(kind: str) -> Callable[[Request], Awaitable[Response]]:
        """``POST /v1/{kind}``: the HTTP edge of an export (content type and encoding,
        reading the body under its limits, status codes and headers); the export
        itself is tael/_receiver.py's, shared with gRPC."""
        limit = settings.server_max_body_bytes

        async def handler(request: Request) -> Response:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in _otlp.CONTENT_TYPES:
                return _status(415, "application/json", f"unsupported content type {ctype!r}", close=True)
            encoding = request.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in _receiver.ENCODINGS:
                message = f"unsupported content encoding {encoding!r} (gzip, deflate or identity)"
                return _status(415, ctype, message, close=True)
            began = time.perf_counter()
            refused = await receiver.throttle()
            if refused is not None:
                return _refused(refused, ctype, close=True)
            reservation = _limits.request_reservation(request)
            try:
                # a declared length over the limit is 413 before anything is reserved
                # (read_body); one whose body and first decoding estimate do not fit now
                # is 429 before it is read; otherwise the body is reserved as its bytes
                # arrive (declaring much and sending little holds little), its decoding
                # once it is in (the receiver)
                try:
                    declared = _limits.declared_length(request)
                    if declared is not None and declared <= limit:
                        identity = encoding in ("", "identity")
                        reservation.budget.admit(declared + (_limits.otlp_decode_cost(declared) if identity else 0))
                    raw = await _limits.read_body(request, limit, reservation, settings.server_body_timeout_s)
                except (_limits.BodyTooLarge, _limits.OverBudget, _limits.BodyTimeout) as exc:
                    refusal = _receiver.refusal_for(exc)
                    assert refusal is not None
                    return _refused(refusal, ctype, close=True)  # the body was not read: close
                # counted once the body is in, so clients slow to send cannot take the slots
                held = [raw]
                del raw  # the receiver drops the body once it is decompressed
                result = await receiver.export(kind, held, encoding, ctype, reservation, began)
            finally:
                reservation.release()
            if isinstance(result, _receiver.Refusal):
                return _refused(result, ctype)
            return Response(_otlp.encode_response(kind, ctype, result.rejected, result.message), media_type=ctype)

        return handler

    def query(call: str, fn: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            began = time.perf_counter()
            try:
                result = await run_in_threadpool(fn, request)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"data": None, "errors": [{"code": 400, "msg": str(exc)}]}, status_code=400)
            except NotFound as exc:
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
        *jaeger_routes(store, query),
        Route("/api/search/traces", query("search_traces", search_traces), name="api_search_traces"),
        Route("/api/logs", query("logs", logs), name="api_logs"),
        Route("/metrics", prometheus, name="prometheus"),
        Route("/health/live", live, name="health_live"),
        Route("/health/ready", ready, name="health_ready"),
        *replication_routes(store.replication),
        *admin_routes(store),
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
    app.state.receiver = receiver  # the gRPC server (tael/_grpcserver.py) feeds the same one
    return app


_HTTP_CODES = {
    _receiver.Reason.MALFORMED: 400,
    _receiver.Reason.TOO_LARGE: 413,
    _receiver.Reason.OVER_BUDGET: 429,
    _receiver.Reason.TIMEOUT: 408,
    _receiver.Reason.BEHIND: 503,
    _receiver.Reason.BUSY: 503,
    _receiver.Reason.UNAVAILABLE: 503,
    _receiver.Reason.UNACKNOWLEDGED: 503,
}
"""An export's refusal -> its HTTP status, as the OTLP/HTTP specification gives them."""


def _refused(refusal: _receiver.Refusal, ctype: str, *, close: bool = False) -> Response:
    """A refused export's answer: its status, Retry-After when it may be retried."""
    return _status(_HTTP_CODES[refusal.reason], ctype, refusal.message, retry=refusal.retryable, close=close)


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

# The checks the Jaeger routes share live in tael/_httpargs.py (imported above under the
# names they had here); these two only the search and log routes use.

_MAX_TEXT_BYTES = 4096  # a full-text query


def _severity(value: str | None, name: str) -> int | None:
    """A number 0..24 or an OpenTelemetry severity name (``error``), as the CLI and the API take it."""
    if value is None or value == "":
        return None
    return severity(value, name)


def _text(value: str, name: str) -> str:
    if len(value.encode("utf-8", "surrogatepass")) > _MAX_TEXT_BYTES:
        raise ValueError(f"{name} is longer than {_MAX_TEXT_BYTES:,} bytes")
    return value


# ---------------------------------------------------------------- answers


def _capped_answer(data: list[Any], cut: str | None) -> dict[str, Any]:
    """A ``/api/search/traces`` or ``/api/logs`` answer; when the response limit cut it
    short, ``truncated`` is true and ``warnings`` says so (the records are the newest)."""
    if cut is None:
        return {"data": data}
    return {"data": data, "truncated": True, "warnings": [cut]}


# ---------------------------------------------------------------- running


def run_server(
    data: str,
    *,
    host: str = "127.0.0.1",
    port: int = 4318,
    grpc_port: int = 0,
    settings: Settings | None = None,
    maintenance_interval_s: float = 60.0,
    standby_of: str | None = None,
    access_log: bool = False,
    activity_interval_s: float = 60.0,
) -> None:
    """Serve a store until SIGTERM or SIGINT: OTLP/HTTP and the query API on ``port``,
    OTLP/gRPC on ``grpc_port`` (0: none; ``tael serve`` passes 4317 unless told
    otherwise). At the signal uvicorn stops accepting and finishes the requests in
    flight, then the gRPC server refuses new calls and lets those in flight finish
    (tael/_grpcserver.py), then the maintenance loop stops and the store is flushed and
    closed. Both ports are checked (HTTP's bound) before the data directory is touched:
    a port in use fails with nothing created. Where it listens, the data directory, role
    and main settings are logged at start, a line of activity per ``activity_interval_s``
    in which anything happened, and the shutdown. ``access_log``: one line per request
    (uvicorn's)."""
    import uvicorn

    from ._grpcserver import GrpcServer, check_port

    settings = settings if settings is not None else Settings()
    tokens = _auth.server_tokens(settings, host)  # before the store opens: a refusal leaves nothing behind
    if grpc_port:
        check_port(host, grpc_port, "OTLP/gRPC", "--grpc-port")
    sock = _bind(host, port)
    try:
        store = Store(Path(data), settings, standby=standby_of is not None)
    except BaseException:
        sock.close()
        raise
    if standby_of is not None:
        store.set_leader_url(standby_of)
    maintenance = Maintenance(store, interval_s=maintenance_interval_s).start()
    activity: Activity | None = None
    root = Path(data)
    try:
        app = create_app(store, maintenance=maintenance, tokens=tokens, allowed_hosts=_auth.host_check(settings, host))
        tls = _auth.tls_options(settings)
        config = uvicorn.Config(
            app, log_level="info" if access_log else "warning", access_log=access_log, lifespan="off", **tls
        )
        _limits.configure_uvicorn(config, store.settings)
        server = uvicorn.Server(config)
        grpc_server = None
        if grpc_port:
            grpc_server = GrpcServer(
                app.state.receiver,
                settings,
                host=host,
                port=grpc_port,
                tokens=tokens,
                roots=_auth.data_roots(store.path, store.cold_location),
                requests=app.state.metrics.grpc_requests,
            )
        if threading.current_thread() is threading.main_thread():
            # uvicorn handles SIGTERM/SIGINT itself, then re-raises the signal to the handler
            # that was installed before it: make that one a no-op so the store is closed below
            signal.signal(signal.SIGTERM, lambda *_: None)
        bound_host, bound_port = sock.getsockname()[:2]
        url = local_url("https" if tls else "http", host, bound_port)
        publish_serve_info(root, url, grpc_port=grpc_port or None)
        s = store.settings
        log.info(
            "tael serve: listening on %s://%s:%d (OTLP/HTTP /v1/*, Jaeger API /api/*, /metrics)%s, data %s, role %s",
            "https" if tls else "http",
            bound_host,
            bound_port,
            f" and {host}:{grpc_port} (OTLP/gRPC)" if grpc_port else "",
            root.resolve(),
            store.replication_status().role,
        )
        log.info(
            "settings: hot window %g s, retention spans %g d, logs %g d, metrics %g d; durability %s; "
            "maintenance every %g s; %s",
            s.hot_window_s,
            s.retention_spans_days,
            s.retention_logs_days,
            s.retention_metrics_days,
            s.durability,
            maintenance_interval_s,
            "tokens required" if tokens is not None else "no authentication (loopback)",
        )
        activity = Activity(app.state.metrics.registry, maintenance, activity_interval_s).start()
        asyncio.run(_serve(server, grpc_server, sock))
        log.info("tael serve: stopping (no new requests; in-flight ones finished)")
    finally:
        sock.close()
        if activity is not None:
            activity.stop()
        maintenance.stop()
        if not store.closed:
            try:
                store.flush()
            except StorageError as exc:  # a full disk, say: what is acknowledged is in the WAL
                log.error("flush at shutdown failed, closing anyway (the next open applies and indexes it): %s", exc)
            store.close()
        withdraw_serve_info(root)  # after the lock is released: until then commands are told a server holds it
        log.info("tael serve: %s closed", root)


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket of ``host``:``port``, bound (uvicorn listens on it); a clear
    ConfigurationError when the port is in use or the address is not this machine's."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        why = "the port is in use by another process" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ConfigurationError(f"cannot listen on {host}:{port}: {why}") from None
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts: serve.json may name it at once
    sock.set_inheritable(True)
    return sock


async def _serve(http: Any, grpc_server: Any, sock: socket.socket) -> None:
    """uvicorn's server (on ``sock``) and the gRPC one (if any) in one event loop, until
    uvicorn stops at a signal; the gRPC server then stops too, letting its calls in flight finish."""
    if grpc_server is None:
        await http.serve(sockets=[sock])
        return
    await grpc_server.start()
    try:
        await http.serve(sockets=[sock])
    finally:
        stopping = asyncio.ensure_future(grpc_server.stop())
        cancels = 0
        while not stopping.done():
            try:
                await asyncio.shield(stopping)
            except asyncio.CancelledError:
                # uvicorn re-raises the SIGINT it handled once it has stopped, and asyncio.run
                # cancels this task for it: the gRPC calls in flight still get their grace.
                # Another Ctrl-C (a second cancel) ends the grace: the store still closes.
                cancels += 1
                if cancels > 1:
                    log.warning("tael serve: interrupted again: not waiting for gRPC calls in flight")
                    stopping.cancel()
                    raise
        stopping.result()
