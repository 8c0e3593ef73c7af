"""The Jaeger query API as Grafana's Jaeger data source uses it, against ``tael serve`` on
loopback, over spans both hot and compacted to the cold tier.

The requests are the ones Grafana sends, their URL shapes copied from its code:
``public/app/plugins/datasource/jaeger/datasource.ts`` (the search form's
``/api/traces?service=&operation=&tags=<JSON of the logfmt tags>&minDuration=&maxDuration=
&limit=&start=<µs>&end=<µs>&lookback=custom``, ``/api/traces/<id>``),
``components/SearchForm.tsx`` (``/api/services``, ``/api/services/<service>/operations``)
and ``pkg/tsdb/jaeger/client.go`` (``api/traces`` with url.Values-encoded parameters,
``/api/traces/<id>?start=&end=`` in milliseconds, ``/api/dependencies?endTs=&lookback=``
in milliseconds). The Jaeger UI's older ``tag=key:value`` form and the v3-style
``/api/operations?service=&spanKind=`` come from Jaeger's ``cmd/query/app``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest

import tael

from .test_server import Server

NOW = time.time_ns()
OLD = NOW - 3 * 3600 * 10**9  # compacted before the server starts
NEW = NOW - 300 * 10**9  # hot (the hot window is an hour)
MS = 10**6

# four traces, two cold and two hot; ids end in their letter
OLD_ERR, OLD_OK, NEW_ERR, NEW_OK = ("a" * 32, "b" * 32, "c" * 32, "d" * 32)


def _span(
    trace: str, sid: str, service: str, name: str, start: int, *, parent: str | None = None, ms: int = 1, **kw: Any
) -> tael.Span:
    return tael.Span(
        trace_id=trace,
        span_id=trace[0] + sid * 15,
        parent_span_id=trace[0] + parent * 15 if parent else None,
        name=name,
        service=service,
        start_ns=start,
        end_ns=start + ms * MS,
        **kw,
    )


def shop_trace(trace: str, start: int, *, status: str, version: str, db_name: str) -> list[tael.Span]:
    """shop-api (server) -> cart (client) -> db (server) -> db (internal): the service graph
    shop-api->cart, cart->db; the db->db pair is within one service."""
    res = {"service.name": "shop-api", "service.version": version, "host.name": "web-1"}
    return [
        _span(
            trace,
            "1",
            "shop-api",
            "GET /cart",
            start,
            kind="server",
            status=status,
            ms=40,
            resource=res,
            status_message="boom" if status == "error" else "",
            attributes={"http.status_code": 500 if status == "error" else 200, "http.method": "GET"},
        ),
        _span(
            trace,
            "2",
            "cart",
            "load",
            start + 1,
            parent="1",
            kind="client",
            ms=30,
            resource={"service.name": "cart", "host.name": "cart-1"},
        ),
        _span(
            trace,
            "3",
            "db",
            db_name,
            start + 2,
            parent="2",
            kind="server",
            ms=20,
            events=[tael.SpanEvent(time_ns=start + 3, name="retry", attributes={"attempt": 2})],
        ),
        _span(trace, "4", "db", "fetch", start + 3, parent="3", kind="internal", ms=10),
    ]


def dataset() -> dict[str, list[tael.Span]]:
    return {
        OLD_ERR: shop_trace(OLD_ERR, OLD, status="error", version="1.0", db_name="legacy-select"),
        OLD_OK: shop_trace(OLD_OK, OLD + 10 * MS, status="ok", version="1.0", db_name="legacy-select"),
        NEW_ERR: shop_trace(NEW_ERR, NEW, status="error", version="2.0", db_name="select"),
        NEW_OK: shop_trace(NEW_OK, NEW + 10 * MS, status="unset", version="2.0", db_name="select"),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("jaeger") / "data"
    with tael.Store(data) as store:
        store.insert_spans([s for spans in dataset().values() for s in spans])
        report = store.compact(NOW - 3600 * 10**9)
        assert report.records["spans"] == 8  # the two old traces went cold; the new ones stay hot
    s = Server(data)
    try:
        yield s
    finally:
        s.stop()


def grafana_search(server: Server, **query: object) -> set[str]:
    """The frontend's search (datasource.ts): the form's fields without empty ones, logfmt
    tags as a JSON object, the time range in microseconds and ``lookback=custom``."""
    params = {k: v for k, v in query.items() if v}
    if "tags" in params:
        pairs = dict(item.split("=", 1) for item in str(params["tags"]).split())
        params["tags"] = json.dumps(pairs)
    params.setdefault("start", (NOW - 24 * 3600 * 10**9) // 1000)
    params.setdefault("end", NOW // 1000)
    params["lookback"] = "custom"
    r = httpx.get(f"{server.url}/api/traces?{urlencode(params)}")
    assert r.status_code == 200, r.text
    return {t["traceID"] for t in r.json()["data"]}


def test_error_true_finds_error_traces_hot_and_cold(server: Server) -> None:
    assert grafana_search(server, service="shop-api", tags="error=true") == {OLD_ERR, NEW_ERR}


@pytest.mark.parametrize(
    ("service", "tags", "want"),
    [
        ("shop-api", "otel.status_code=ERROR", {OLD_ERR, NEW_ERR}),
        ("shop-api", "otel.status_code=OK", {OLD_OK}),
        ("shop-api", "otel.status_code=UNSET", {NEW_OK}),
        ("shop-api", "otel.status_description=boom", {OLD_ERR, NEW_ERR}),
        ("shop-api", "span.kind=server", {OLD_ERR, OLD_OK, NEW_ERR, NEW_OK}),
        ("shop-api", "span.kind=client", set()),
        ("cart", "span.kind=client", {OLD_ERR, OLD_OK, NEW_ERR, NEW_OK}),
        ("shop-api", "service.version=2.0", {NEW_ERR, NEW_OK}),  # a resource attribute
        ("shop-api", "service.version=1.0 error=true", {OLD_ERR}),
        ("shop-api", "host.name=web-1 http.status_code=500", {OLD_ERR, NEW_ERR}),  # an int, compared as text
        ("shop-api", "http.method=POST", set()),
        ("db", "attempt=2", {OLD_ERR, OLD_OK, NEW_ERR, NEW_OK}),  # an event's attribute (a Jaeger log field)
        ("db", "event=retry span.kind=server", {OLD_ERR, OLD_OK, NEW_ERR, NEW_OK}),
        ("db", "error=true", set()),
    ],
)
def test_grafana_tag_search(server: Server, service: str, tags: str, want: set[str]) -> None:
    assert grafana_search(server, service=service, tags=tags) == want


def test_the_limit_counts_traces_that_match_the_tags(server: Server) -> None:
    """The tags are part of the query (both tiers filter), not applied to a page of spans
    fetched without them: limit=1 is the newest matching trace."""
    assert grafana_search(server, service="shop-api", tags="error=true", limit=1) == {NEW_ERR}
    assert grafana_search(server, service="shop-api", tags="otel.status_code=OK", limit=1) == {OLD_OK}


def test_grafana_search_with_operation_durations_and_time_range(server: Server) -> None:
    hot_only = {"start": (NEW - 60 * 10**9) // 1000, "end": NOW // 1000}
    assert grafana_search(server, service="shop-api", tags="error=true", **hot_only) == {NEW_ERR}
    assert grafana_search(server, service="db", operation="legacy-select", minDuration="15ms") == {OLD_ERR, OLD_OK}
    assert grafana_search(server, service="db", operation="legacy-select", maxDuration="15ms") == set()
    assert grafana_search(server, service="db", operation="select", tags="span.kind=server") == {NEW_ERR, NEW_OK}


def test_backend_search_url_and_the_older_tag_form(server: Server) -> None:
    """pkg/tsdb/jaeger/client.go builds ``api/traces`` with url.Values (sorted keys); the
    Jaeger UI's ``tag=key:value`` may repeat and mixes with ``tags``."""
    start, end = (NOW - 24 * 3600 * 10**9) // 1000, NOW // 1000
    tags = quote(json.dumps({"error": "true"}), safe="")
    url = f"{server.url}/api/traces?end={end}&limit=20&service=shop-api&start={start}&tags={tags}"
    assert {t["traceID"] for t in httpx.get(url).json()["data"]} == {OLD_ERR, NEW_ERR}
    url = f"{server.url}/api/traces?service=shop-api&tag=error:true&tag=service.version:1.0"
    assert {t["traceID"] for t in httpx.get(url).json()["data"]} == {OLD_ERR}
    version = quote(json.dumps({"service.version": "2.0"}), safe="")
    url = f"{server.url}/api/traces?service=shop-api&tag=http.status_code:500&tags={version}"
    assert {t["traceID"] for t in httpx.get(url).json()["data"]} == {NEW_ERR}
    bad = httpx.get(f"{server.url}/api/traces?service=shop-api&tag=error")
    assert bad.status_code == 400 and "tag must be key:value" in bad.json()["errors"][0]["msg"]
    bad = httpx.get(f"{server.url}/api/traces?service=shop-api&tags=%5B1%5D")
    assert bad.status_code == 400 and "tags must be a JSON object" in bad.json()["errors"][0]["msg"]


def test_what_grafana_shows_it_can_search(server: Server) -> None:
    """The trace view's tags (``/api/traces/<id>``, with the ms time range the backend adds)
    hold error, otel.status_code and span.kind as Jaeger shows them, and each searches."""
    r = httpx.get(f"{server.url}/api/traces/{OLD_ERR}?start={(OLD - MS) // MS}&end={NOW // MS}")
    assert r.status_code == 200
    trace = r.json()["data"][0]
    root = next(s for s in trace["spans"] if not s["references"])
    shown = {t["key"]: t["value"] for t in root["tags"]}
    assert shown["error"] is True
    assert shown["otel.status_code"] == "ERROR"
    assert shown["span.kind"] == "server"
    assert shown["otel.status_description"] == "boom"
    process = trace["processes"][root["processID"]]
    assert process["serviceName"] == "shop-api"
    process_tags = {t["key"]: t["value"] for t in process["tags"]}
    assert process_tags["service.version"] == "1.0"
    for key in ("error", "otel.status_code", "span.kind", "otel.status_description"):
        text = str(shown[key]).lower() if isinstance(shown[key], bool) else shown[key]
        assert OLD_ERR in grafana_search(server, service="shop-api", tags=f"{key}={text}"), key
    assert OLD_ERR in grafana_search(server, service="shop-api", tags="service.version=1.0")


def test_services_and_operations_as_the_search_form_reads_them(server: Server) -> None:
    services = httpx.get(f"{server.url}/api/services").json()
    assert sorted(services["data"]) == ["cart", "db", "shop-api"]
    ops = httpx.get(f"{server.url}/api/services/{quote('db', safe='')}/operations").json()
    assert sorted(ops["data"]) == ["fetch", "legacy-select", "select"]


def test_operations_with_span_kinds(server: Server) -> None:
    r = httpx.get(f"{server.url}/api/operations", params={"service": "db"})
    assert r.status_code == 200
    body = r.json()
    assert body["data"] == [
        {"name": "fetch", "spanKind": "internal"},
        {"name": "legacy-select", "spanKind": "server"},  # cold only
        {"name": "select", "spanKind": "server"},  # hot only
    ]
    assert body["total"] == 3
    r = httpx.get(f"{server.url}/api/operations", params={"service": "db", "spanKind": "server"})
    assert r.json()["data"] == [
        {"name": "legacy-select", "spanKind": "server"},
        {"name": "select", "spanKind": "server"},
    ]
    r = httpx.get(f"{server.url}/api/operations", params={"service": "db", "spanKind": "client"})
    assert r.json()["data"] == [] and r.json()["total"] == 0
    r = httpx.get(f"{server.url}/api/operations", params={"service": "cart", "spanKind": "client"})
    assert r.json()["data"] == [{"name": "load", "spanKind": "client"}]
    r = httpx.get(f"{server.url}/api/operations", params={"service": "db", "spanKind": "SPAN_KIND_SERVER"})
    assert r.status_code == 400 and "spanKind must be one of" in r.json()["errors"][0]["msg"]
    r = httpx.get(f"{server.url}/api/operations")
    assert r.status_code == 400 and "service is required" in r.json()["errors"][0]["msg"]


def deps(server: Server, end_ms: int, lookback_ms: int | None, **extra: str) -> dict[tuple[str, str], int]:
    """client.go's Dependencies: ``/api/dependencies?endTs=<ms>&lookback=<end - start ms>``."""
    params: dict[str, object] = {"endTs": end_ms}
    if lookback_ms is not None:
        params["lookback"] = lookback_ms
    r = httpx.get(f"{server.url}/api/dependencies?{urlencode({**params, **extra})}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["errors"] is None
    assert all(set(d) == {"parent", "child", "callCount"} for d in body["data"])
    return {(d["parent"], d["child"]): d["callCount"] for d in body["data"]}


def test_dependencies_as_grafana_asks_for_them(server: Server) -> None:
    end = NOW // MS
    everything = {("shop-api", "cart"): 4, ("cart", "db"): 4}
    assert deps(server, end, 24 * 3600 * 1000) == everything  # hot and cold
    assert deps(server, end, None) == everything  # Jaeger's default lookback: a day
    assert deps(server, end, 3600 * 1000) == {("shop-api", "cart"): 2, ("cart", "db"): 2}  # hot only
    assert deps(server, (OLD + 60 * 10**9) // MS, 600 * 1000) == {("shop-api", "cart"): 2, ("cart", "db"): 2}
    assert deps(server, (OLD - 60 * 10**9) // MS, 600 * 1000) == {}
    assert deps(server, end, 24 * 3600 * 1000, service="db") == {("cart", "db"): 4}
    bad = httpx.get(f"{server.url}/api/dependencies", params={"endTs": "yesterday"})
    assert bad.status_code == 400 and "endTs must be an integer" in bad.json()["errors"][0]["msg"]
    bad = httpx.get(f"{server.url}/api/dependencies", params={"endTs": end, "lookback": "-5"})
    assert bad.status_code == 400 and "lookback must be between" in bad.json()["errors"][0]["msg"]


def edges(store: tael.Store, start: int, end: int) -> dict[tuple[str, str], int]:
    return {(d.parent, d.child): d.call_count for d in store.dependencies(start, end)}


def test_dependencies_are_the_same_hot_and_after_compaction(tmp_path: Path) -> None:
    """A known graph: a fan-out from gateway, a chain, and calls within one service (not
    edges), and a span whose parent was never stored. Counts are exact hot, with a trace
    split between the tiers, and cold."""
    t0 = NOW - 600 * 10**9
    spans = []
    for i in range(5):
        trace = f"{i + 1:032x}"
        spans += [
            _span(trace, "1", "gateway", "route", t0 + i * MS),
            _span(trace, "2", "users", "get", t0 + i * MS + 1, parent="1"),
            _span(trace, "3", "users", "cache", t0 + i * MS + 2, parent="2"),  # same service: no edge
            _span(trace, "5", "billing", "charge", t0 + i * MS + 4, parent="1"),
        ]
        if i % 2 == 0:
            spans.append(_span(trace, "4", "postgres", "select", t0 + i * MS + 3, parent="3"))
    orphan = _span("f" * 32, "2", "users", "get", t0, parent="9")  # its parent was never stored
    want = {("gateway", "users"): 5, ("gateway", "billing"): 5, ("users", "postgres"): 3}
    with tael.Store(tmp_path / "data") as store:
        store.insert_spans([*spans, orphan])
        assert edges(store, t0, NOW) == want
        assert edges(store, t0 + 2 * MS, NOW) == {
            ("gateway", "users"): 3,
            ("gateway", "billing"): 3,
            ("users", "postgres"): 2,
        }
        # the third trace split between the tiers: its first two spans cold, the rest hot
        assert store.compact(t0 + 2 * MS + 2).records["spans"] == 1 + 5 + 4 + 2
        assert edges(store, t0, NOW) == want
        assert store.compact(NOW).records["spans"] == len(spans) + 1 - 12
        assert store.stats().hot_records["spans"] == 0
        assert edges(store, t0, NOW) == want
        assert edges(store, t0 + 2 * MS, NOW) == {
            ("gateway", "users"): 3,
            ("gateway", "billing"): 3,
            ("users", "postgres"): 2,
        }
        assert edges(store, NOW, NOW + 10**9) == {}
        with pytest.raises(ValueError, match="needs both start and end"):
            store.dependencies(None, NOW)


def test_a_service_graph_over_more_spans_than_the_limit_is_refused(tmp_path: Path) -> None:
    """Settings.dependencies_max_spans bounds what one call holds: counted hot, and cold from
    the row groups the window overlaps, before anything cold is read."""
    t0 = NOW - 600 * 10**9
    spans = []
    for i in range(30):
        trace = f"{i + 1:032x}"
        spans += [
            _span(trace, "1", "gateway", "route", t0 + i * MS),
            _span(trace, "2", "users", "get", t0 + i * MS + 1, parent="1"),
        ]
    settings = tael.Settings(dependencies_max_spans=40, cold_row_group_rows=10)
    with tael.Store(tmp_path / "data", settings) as store:
        store.insert_spans(spans)
        with pytest.raises(ValueError, match=r"more than 40 spans \(up to 60.*dependencies_max_spans"):
            store.dependencies(t0, NOW)  # hot
        assert edges(store, t0, t0 + 20 * MS) == {("gateway", "users"): 20}  # 40 spans: within the limit
        store.compact(NOW)
        with pytest.raises(ValueError, match=r"more than 40 spans \(up to 60"):
            store.dependencies(t0, NOW)  # cold: counted from row groups
        assert edges(store, t0, t0 + 10 * MS) == {("gateway", "users"): 10}
    server = Server(tmp_path / "data", dependencies_max_spans=40)
    try:
        end_ms = NOW // 10**6
        got = httpx.get(f"{server.url}/api/dependencies", params={"endTs": end_ms, "lookback": 3_600_000})
        assert got.status_code == 400 and "dependencies_max_spans" in got.text
    finally:
        server.stop()


def test_tag_filters_through_the_store_api(tmp_path: Path) -> None:
    """``SpanFilter(tags=)`` and ``query_traces(tags=)``: the same filter the route uses,
    values as text (floats as Python or Go's %.10g write them), bad tags refused."""
    t0 = NOW - 60 * 10**9
    spans = [
        _span("1" * 32, "1", "svc", "a", t0, attributes={"ratio": 1.0, "flag": False, "list": [1, "x"]}),
        _span("2" * 32, "1", "svc", "b", t0 + 1, status="error", kind="producer", scope_name="lib"),
    ]
    with tael.Store(tmp_path / "data") as store:
        store.insert_spans(spans)

        def names(**tags: str) -> list[str]:
            return sorted(s.name for s in store.query_traces(tags=tags))

        assert names(ratio="1.0") == names(ratio="1") == ["a"]
        assert names(flag="false") == ["a"]
        assert names(list='[1,"x"]') == ["a"]
        assert names(**{"span.kind": "producer", "otel.scope.name": "lib"}) == ["b"]
        assert names(**{"span.kind": "internal"}) == ["a"]
        assert names(error="false") == []  # Jaeger shows no error=false tag
        assert [s.name for s in store.query_traces(tael.SpanFilter(tags={"error": "true"}))] == ["b"]
        with pytest.raises(ValueError, match="must be a str"):
            tael.SpanFilter(tags={"http.status_code": 500})  # type: ignore[dict-item]
        with pytest.raises(ValueError, match="non-empty str"):
            tael.SpanFilter(tags={"": "x"})
        with pytest.raises(ValueError, match="tags must be a dict"):
            tael.SpanFilter(tags=[("a", "b")])  # type: ignore[arg-type]
