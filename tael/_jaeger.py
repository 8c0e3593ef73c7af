"""The Jaeger query API that Grafana's Jaeger data source reads, over a store.

``/api/services``, ``/api/services/{service}/operations``, ``/api/operations``,
``/api/traces``, ``/api/traces/{id}`` and ``/api/dependencies``, in the JSON shapes
of Jaeger's query service
(``cmd/query/app/http_handler.go``). :func:`routes` returns them for ``tael serve``
(tael/_server.py) to mount, as ``tael._replication.http.routes`` does for replication;
they read a :class:`Reader`, not the Store, so this module sits below it. Layout of
the answers: docs/server.md, "Jaeger query API".
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import _httpargs, _limits
from ._codec import MAX_NS
from ._models import SPAN_KINDS, DependencyLink, ServiceInfo, Span
from ._query.filters import SpanFilter
from ._settings import Settings

TRACE_LIMIT = 1_500
"""The most traces one ``/api/traces`` search returns."""
DEFAULT_LOOKBACK_MS = 24 * 3600 * 1000
"""``/api/dependencies`` without ``lookback``: the day before ``endTs``, as Jaeger's default."""

Query = Callable[[str, Callable[[Request], Any]], Callable[[Request], Awaitable[Response]]]
"""The server's wrapper of a query call (named for its metrics): runs it in the thread
pool and answers its result as JSON, its errors as Jaeger's error shape."""


class NotFound(Exception):
    """A query for one thing that does not exist: the wrapper answers 404."""


class Reader(Protocol):
    """What the Jaeger routes read of a store (``tael.Store`` is one)."""

    @property
    def settings(self) -> Settings: ...

    def list_services(self) -> list[ServiceInfo]: ...

    def list_operations(self, service: str) -> list[str]: ...

    def query_traces(self, where: SpanFilter | None = None, *, limit: int = 100) -> list[Span]: ...

    def get_trace(self, trace_id: str) -> list[Span]: ...

    def list_operation_kinds(self, service: str, *, span_kind: str | None = None) -> list[tuple[str, str]]: ...

    def dependencies(self, start: Any, end: Any) -> list[DependencyLink]: ...


def routes(store: Reader, query: Query) -> list[Route]:
    """The Jaeger query routes over ``store``, each wrapped by ``query``."""
    settings = store.settings

    def services(_r: Request) -> dict[str, Any]:
        names = [s.name for s in store.list_services()]
        return jaeger_list(names)

    def operations(r: Request) -> dict[str, Any]:
        return jaeger_list(store.list_operations(_httpargs.name(r.path_params["service"], "service")))

    def traces(r: Request) -> dict[str, Any]:
        q = _httpargs.params(r, ("service", "operation", "tags", "minDuration", "maxDuration", "start", "end", "limit"))
        limit = _httpargs.limit(q.get("limit"), "limit", 20, TRACE_LIMIT)
        tags = parse_tags(r.query_params.getlist("tag"), r.query_params.getlist("tags"))
        start = _httpargs.time_bound(q.get("start"), "start", _httpargs.US)
        end = _httpargs.time_bound(q.get("end"), "end", _httpargs.US)
        where = SpanFilter(
            service=_httpargs.opt_name(q.get("service"), "service"),
            name=_httpargs.opt_name(q.get("operation"), "operation"),
            min_duration_ms=duration_ms(q.get("minDuration"), "minDuration"),
            max_duration_ms=duration_ms(q.get("maxDuration"), "maxDuration"),
            start=start,
            end=min(end + _httpargs.US, MAX_NS) if end is not None else None,  # Jaeger's end is inclusive
            tags=tags or None,
        )
        spans = store.query_traces(where, limit=min(max(limit * 50, 500), 100_000))
        ids: list[str] = []
        for s in spans:
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
            found = jaeger_trace(tid, trace_spans)
            if found is not None:
                out.append(found)
        return {"data": out, "total": len(out), "limit": 0, "offset": 0, "errors": errors}

    def trace(r: Request) -> dict[str, Any]:
        tid = _httpargs.trace_id(r.path_params["trace_id"], "trace_id", pad=True)
        found = jaeger_trace(tid, store.get_trace(tid))
        if found is None:
            raise NotFound("trace not found")
        return {"data": [found], "total": 1, "limit": 0, "offset": 0, "errors": None}

    def kinds(r: Request) -> dict[str, Any]:
        q = _httpargs.params(r, ("service", "spanKind"))
        if not q.get("service"):
            raise ValueError("service is required (the service whose operations to list)")
        service = _httpargs.name(q["service"], "service")
        span_kind = q.get("spanKind") or None
        if span_kind is not None and span_kind not in SPAN_KINDS:
            raise ValueError(f"spanKind must be one of {', '.join(SPAN_KINDS)}, got {span_kind[:60]!r}")
        pairs = store.list_operation_kinds(service, span_kind=span_kind)
        data = [{"name": name, "spanKind": kind} for name, kind in pairs]
        return {"data": data, "total": len(data), "limit": 0, "offset": 0, "errors": None}

    def dependencies(r: Request) -> dict[str, Any]:
        q = _httpargs.params(r, ("endTs", "lookback", "service"))
        end = _httpargs.time_bound(q.get("endTs"), "endTs", _httpargs.MS)
        end = end if end is not None else time.time_ns()
        lookback = q.get("lookback")
        span = _httpargs.integer(lookback, "lookback") if lookback else DEFAULT_LOOKBACK_MS
        if not 0 <= span <= MAX_NS // _httpargs.MS:
            raise ValueError(f"lookback must be between 0 and {MAX_NS // _httpargs.MS:,} milliseconds, got {span:,}")
        service = _httpargs.opt_name(q.get("service"), "service")
        # Jaeger's window is [endTs - lookback, endTs], both ends included
        links = store.dependencies(max(end - span * _httpargs.MS, 0), min(end + 1, MAX_NS))
        data = [
            {"parent": d.parent, "child": d.child, "callCount": d.call_count}
            for d in links
            if service is None or service in (d.parent, d.child)
        ]
        return {"data": data, "total": len(data), "limit": 0, "offset": 0, "errors": None}

    return [
        Route("/api/services", query("services", services), name="api_services"),
        Route("/api/services/{service}/operations", query("operations", operations), name="api_operations"),
        Route("/api/operations", query("operation_kinds", kinds), name="api_operation_kinds"),
        Route("/api/traces", query("traces", traces), name="api_traces"),
        Route("/api/traces/{trace_id}", query("trace", trace), name="api_trace"),
        Route("/api/dependencies", query("dependencies", dependencies), name="api_dependencies"),
    ]


# ---------------------------------------------------------------- parameters


_UNITS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_MAX_DURATION_MS = MAX_NS / 1e6


def duration_ms(value: str | None, name: str) -> float | None:
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


def parse_tags(simple: list[str], documents: list[str]) -> dict[str, str]:
    """The tags a trace search asks for, as Jaeger's query service reads them: each
    ``tag=key:value`` (split at the first colon), then each ``tags=`` JSON object
    (what Grafana's data source sends), later ones overriding. A JSON value that is
    not a string is taken as its JSON text (``200`` asks for "200")."""
    out: dict[str, str] = {}
    for item in simple:
        if "\x00" in item:
            raise ValueError("tag must not contain NUL characters")
        key, colon, value = item.partition(":")
        if not colon or not key:
            raise ValueError(f"tag must be key:value, got {item[:60]!r}")
        out[key] = value
    for doc in documents:
        try:
            parsed = json.loads(doc)
            if not isinstance(parsed, dict):
                raise ValueError
            given = {k: v if isinstance(v, str) else json.dumps(v) for k, v in parsed.items()}
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
            raise ValueError(f"tags must be a JSON object of tag names and values, got {doc[:60]!r}") from None
        if "" in given:
            raise ValueError("tags: a tag name must not be empty")
        out.update(given)
    for k, v in out.items():
        if "\x00" in k or "\x00" in v:
            raise ValueError(f"tags must not contain NUL characters (tag {k[:60]!r})")
    return out


# ---------------------------------------------------------------- Jaeger JSON


def jaeger_list(items: list[str]) -> dict[str, Any]:
    return {"data": items, "total": len(items), "limit": 0, "offset": 0, "errors": None}


def jaeger_tag(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, str):
        return {"key": key, "type": "string", "value": value}
    return {"key": key, "type": "string", "value": json.dumps(value, separators=(",", ":"))}


def jaeger_trace(trace_id: str, spans: list[Span]) -> dict[str, Any] | None:
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
                "tags": [jaeger_tag(k, v) for k, v in s.resource.items() if k != "service.name"],
            }
        tags = [jaeger_tag(k, v) for k, v in s.attributes.items()]
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
                        + [jaeger_tag(k, v) for k, v in ev.attributes.items()],
                    }
                    for ev in s.events
                ],
                "processID": pid,
                "warnings": None,
                "flags": s.flags,
            }
        )
    return {"traceID": trace_id, "spans": out, "processes": processes, "warnings": None}
