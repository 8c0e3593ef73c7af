"""Fuzzing ``tael serve`` over real HTTP on loopback: mutated OTLP bodies (protobuf and
JSON: bit flips, truncations, splices, random varints, extreme values, gzip of
garbage, wrong content types and encodings) and random or extreme values for every
parameter of every query route. The server must never answer 500 and never crash:
afterwards it is still ready, stops cleanly on SIGTERM, and the store reopens and
reads. The seed is fixed, so a failure reproduces; each failure names the request.

The default run sends 10,000 bodies and 2,000 queries; the soak run 10 times that."""

from __future__ import annotations

import base64
import gzip
import json
import random
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

import tael

from .test_server import Server

SEED = 20261130
T0 = 1_767_225_600_000_000_000

OTLP_OK = {200, 400, 413, 415}
QUERY_OK = {200, 400, 404, 405}


# ---------------------------------------------------------------- seed bodies


def _kv(key: str, **value: Any) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def seed_traces(rng: random.Random) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", string_value=f"svc{rng.randrange(3)}"), _kv("n", int_value=7)])
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "fuzz", "1.0"
    for i in range(rng.randrange(1, 5)):
        sp = ss.spans.add()
        sp.trace_id = rng.randbytes(16)
        sp.span_id = rng.randbytes(8)
        if i:
            sp.parent_span_id = ss.spans[0].span_id
        sp.name = rng.choice(["GET /", "db.query", "llm.call", "ünïcode"])
        sp.kind = rng.randrange(6)
        sp.start_time_unix_nano = T0 + rng.randrange(10**12)
        sp.end_time_unix_nano = sp.start_time_unix_nano + rng.randrange(10**9)
        sp.attributes.extend(
            [
                _kv("http.status_code", int_value=rng.choice([200, 500])),
                _kv("ratio", double_value=rng.random()),
                _kv("ok", bool_value=True),
                _kv("gen_ai.prompt", string_value="hello world " * rng.randrange(1, 200)),
                _kv("raw", bytes_value=rng.randbytes(4)),
            ]
        )
        ev = sp.events.add()
        ev.name, ev.time_unix_nano = "exception", sp.start_time_unix_nano
        ev.attributes.append(_kv("exception.message", string_value="boom"))
        ln = sp.links.add()
        ln.trace_id, ln.span_id = rng.randbytes(16), rng.randbytes(8)
        sp.status.code = rng.randrange(3)
    return req


def seed_logs(rng: random.Random) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(_kv("service.name", string_value="logsvc"))
    sl = rl.scope_logs.add()
    for _ in range(rng.randrange(1, 5)):
        lr = sl.log_records.add()
        lr.time_unix_nano = T0 + rng.randrange(10**12)
        lr.severity_number = rng.randrange(25)
        lr.severity_text = "INFO"
        lr.body.string_value = "payment failed for order " + str(rng.randrange(10**6))
        lr.trace_id, lr.span_id = rng.randbytes(16), rng.randbytes(8)
        lr.attributes.append(_kv("k", string_value="v"))
    return req


def seed_metrics(rng: random.Random) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.append(_kv("service.name", string_value="metricsvc"))
    sm = rm.scope_metrics.add()
    g = sm.metrics.add()
    g.name = "queue.depth"
    dp = g.gauge.data_points.add()
    dp.time_unix_nano, dp.as_double = T0 + rng.randrange(10**12), rng.random()
    s = sm.metrics.add()
    s.name = "requests"
    s.sum.is_monotonic, s.sum.aggregation_temporality = True, 2
    dp = s.sum.data_points.add()
    dp.time_unix_nano, dp.as_int = T0 + rng.randrange(10**12), rng.randrange(10**6)
    h = sm.metrics.add()
    h.name = "latency"
    h.histogram.aggregation_temporality = 1
    hp = h.histogram.data_points.add()
    hp.time_unix_nano, hp.count, hp.sum = T0 + rng.randrange(10**12), 3, 1.5
    hp.bucket_counts.extend([1, 2, 0])
    hp.explicit_bounds.extend([0.1, 1.0])
    sm_ = sm.metrics.add()
    sm_.name = "summary"
    sp = sm_.summary.data_points.add()
    sp.time_unix_nano, sp.count, sp.sum = T0 + rng.randrange(10**12), 2, 3.0
    q = sp.quantile_values.add()
    q.quantile, q.value = 0.5, 1.0
    return req


SEEDS: dict[str, Callable[[random.Random], Any]] = {"traces": seed_traces, "logs": seed_logs, "metrics": seed_metrics}


def otlp_json(message: Any) -> dict[str, Any]:
    """OTLP JSON: protobuf's JSON mapping with hex trace and span ids."""
    doc: dict[str, Any] = json_format.MessageToDict(message)

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                    node[k] = base64.b64decode(v).hex()
                else:
                    fix(v)
        elif isinstance(node, list):
            for x in node:
                fix(x)

    fix(doc)
    return doc


# ---------------------------------------------------------------- mutations

EXTREME_JSON: list[Any] = [
    None,
    True,
    -1,
    0,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    "9223372036854775808",
    "-1",
    "1e400",
    1e308,
    -0.0,
    "NaN",
    "Infinity",
    "",
    "zz",
    "ü" * 600,
    "n" * 5000,
    [],
    {},
    [[[[[]]]]],
    {"a": {"b": {"c": {}}}},
]


def mutate_json(rng: random.Random, doc: Any, depth: int = 0) -> Any:
    """A copy of ``doc`` with some values replaced by extremes, keys dropped or
    duplicated under the other spelling, lists emptied or repeated."""
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for k, v in doc.items():
            r = rng.random()
            if r < 0.05:
                continue
            if r < 0.15:
                out[k] = rng.choice(EXTREME_JSON)
            else:
                out[k] = mutate_json(rng, v, depth + 1)
            if r > 0.97:
                snake = "".join("_" + c.lower() if c.isupper() else c for c in k)
                out[snake] = rng.choice(EXTREME_JSON)
        return out
    if isinstance(doc, list):
        items = [mutate_json(rng, v, depth + 1) for v in doc]
        if items and rng.random() < 0.1:
            items = items * rng.randrange(2, 5)
        return items
    if rng.random() < 0.1:
        return rng.choice(EXTREME_JSON)
    return doc


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mutate_bytes(rng: random.Random, body: bytes, other: bytes) -> bytes:
    """One to three byte-level mutations: bit flips, random bytes, truncation,
    splices with another body, random varints and tags, repeated chunks."""
    data = bytearray(body)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(8)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:  # bit flips
            for _ in range(rng.randrange(1, 8)):
                i = rng.randrange(len(data))
                data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:  # random bytes
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 2:  # truncation
            data = data[:pos]
        elif op == 3:  # splice with another body
            cut = rng.randrange(len(other) + 1)
            data = data[:pos] + bytearray(other[cut:])
        elif op == 4:  # a random varint, possibly 10 bytes of 0xff
            n = rng.choice([0, 1, 127, 128, 2**31, 2**63 - 1, 2**64 - 1, rng.getrandbits(64)])
            data[pos:pos] = varint(n)
        elif op == 5:  # a random field tag with a huge length
            tag = (rng.randrange(1, 20) << 3) | rng.choice([0, 1, 2, 5, 6, 7])
            data[pos:pos] = bytes([tag]) + varint(rng.choice([2**31, 2**32 - 1, 10**9, 5]))
        elif op == 6 and data:  # repeat a chunk
            a = rng.randrange(len(data))
            b = min(len(data), a + rng.randrange(1, 64))
            data[pos:pos] = data[a:b] * rng.randrange(1, 20)
        else:  # random garbage
            data[pos:pos] = rng.randbytes(rng.randrange(1, 32))
    return bytes(data)


def fuzz_requests(rng: random.Random, n: int) -> Iterator[tuple[str, dict[str, str], bytes, str]]:
    """(path, headers, body, description) of ``n`` mutated OTLP requests."""
    for i in range(n):
        kind = rng.choice(list(SEEDS))
        message = SEEDS[kind](rng)
        other = SEEDS[rng.choice(list(SEEDS))](rng).SerializeToString()
        ctype, encoding = "application/x-protobuf", None
        style = rng.random()
        if style < 0.45:
            body = mutate_bytes(rng, message.SerializeToString(), other)
            what = "protobuf bytes"
        elif style < 0.75:
            doc = mutate_json(rng, otlp_json(message))
            body = json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode()
            if rng.random() < 0.3:
                body = mutate_bytes(rng, body, other)
            ctype, what = "application/json", "json"
        elif style < 0.82:
            body = gzip.compress(rng.randbytes(rng.randrange(0, 512)))
            what = "gzip of garbage"
            encoding = "gzip"
        elif style < 0.88:
            raw = message.SerializeToString()
            compressed = gzip.compress(raw) if rng.random() < 0.5 else zlib.compress(raw)
            body = mutate_bytes(rng, compressed, other) if rng.random() < 0.7 else compressed
            encoding = "gzip" if compressed[:2] == b"\x1f\x8b" else "deflate"
            encoding = rng.choice([encoding, encoding, "deflate", "gzip", "br", "identity"])
            what = "compressed"
        elif style < 0.94:
            body = message.SerializeToString()
            ctype = rng.choice(
                ["text/plain", "application/x-www-form-urlencoded", "", "application/protobuf", "application/JSON"]
            )
            what = "content type"
        else:
            body = rng.choice([b"", b"{}", b"[]", b"null", b"\x00" * 64, b"{" * 10_000, b"[" * 100_000])
            ctype = rng.choice(["application/x-protobuf", "application/json"])
            what = "edge body"
        headers = {"Content-Type": ctype}
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        yield f"/v1/{kind}", headers, body, f"#{i} {kind} {what}"


EXTREME_PARAMS = [
    "",
    "0",
    "1",
    "-1",
    "-5",
    "20",
    "1500",
    "1501",
    "100000",
    "100001",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "9" * 400,
    "1.5",
    "1e309",
    "inf",
    "-inf",
    "nan",
    "NaN",
    "infs",
    "nanms",
    "1e400h",
    "-5ms",
    "1.2s",
    "300ms",
    "50us",
    "50µs",
    "10m",
    "1h",
    "0x10",
    " 5",
    "5 ",
    "+5",
    "1_000",
    "٣",  # an Arabic-Indic digit: isdigit() but not ASCII
    "abc",
    "\x00",
    "a\x00b",
    "ü" * 300,
    "s" * 3000,
    "{}",
    '{"http.status_code":"500"}',
    '{"a":' * 2000 + "1" + "}" * 2000,
    "[1]",
    "null",
    '"text"',
    "0" * 32,
    "f" * 32,
    "F" * 31,
    "g" * 32,
    "a" * 33,
    '"quoted phrase"',
    "AND OR NOT",
    "*:*",
    "((((",
    "field:value",
]

QUERY_ROUTES: list[tuple[str, list[str]]] = [
    ("/api/services", []),
    ("/api/services/{p}/operations", []),
    ("/api/traces", ["service", "operation", "tags", "minDuration", "maxDuration", "start", "end", "limit"]),
    ("/api/traces/{p}", []),
    ("/api/search/traces", ["q", "service", "start", "end", "limit"]),
    ("/api/logs", ["q", "service", "min_severity", "trace_id", "start", "end", "limit"]),
    ("/metrics", []),
    ("/health/live", []),
    ("/health/ready", []),
    ("/replication/status", []),
]


def fuzz_queries(rng: random.Random, n: int) -> Iterator[str]:
    for _ in range(n):
        path, params = rng.choice(QUERY_ROUTES)
        if "{p}" in path:
            value = rng.choice([*EXTREME_PARAMS, "svc0", "x"])
            path = path.replace("{p}", quote(value, safe="") or "%20")
        chosen = [p for p in params if rng.random() < 0.5]
        if rng.random() < 0.05:
            chosen.append("unknown")
        query = "&".join(
            f"{p}={quote(rng.choice([*EXTREME_PARAMS, 'svc0', 'GET /', 'hello']), safe='')}" for p in chosen
        )
        while len(query) > 30_000:  # httpx refuses URLs over 64 KiB; h11's limit is the server's part
            query = query[: query.rfind("&")] if "&" in query else ""
        yield path + ("?" + query if query else "")


# ---------------------------------------------------------------- the run


def run_fuzz(tmp_path: Path, n_bodies: int, n_queries: int) -> None:
    data = tmp_path / "data"
    server = Server(data, durability="os", index_commit_interval_s=0.2, server_max_body_bytes=1 << 20)
    url = server.url
    problems: list[str] = []
    try:
        rng = random.Random(SEED)
        codes: dict[int, int] = {}
        with httpx.Client(base_url=url, timeout=60) as client:
            for path, headers, body, what in fuzz_requests(rng, n_bodies):
                r = client.post(path, content=body, headers=headers)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                if r.status_code not in OTLP_OK:
                    problems.append(f"{what}: {r.status_code} {r.text[:200]!r} for body {body[:80]!r}")
            for path in fuzz_queries(rng, n_queries):
                r = client.get(path)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                if r.status_code not in QUERY_OK:
                    problems.append(f"GET {path[:300]}: {r.status_code} {r.text[:200]!r}")
            assert client.get("/health/ready").status_code == 200, "the server is not ready after the fuzz"
        print(f"answers by status: {sorted(codes.items())}")
        assert codes.get(200, 0) > n_bodies // 20, f"too few requests were valid enough to be written: {codes}"
    finally:
        rc = server.stop(timeout=60)
        err = server.stderr
    assert not problems, f"{len(problems)} bad answers (seed {SEED}):\n" + "\n".join(problems[:20])
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    with tael.Store(data) as store:  # reopens, reads, and still takes writes
        stats = store.stats()
        assert stats.signals["spans"].count > 0 and stats.signals["logs"].count > 0
        assert stats.signals["metrics"].count > 0
        spans = store.query_traces(limit=100)
        assert spans and all(s.trace_id for s in spans)
        assert store.get_trace(spans[0].trace_id)
        assert store.query_logs(limit=10)
        assert store.query_logs(text="payment", limit=10)


def test_fuzzed_otlp_bodies_and_query_parameters_never_get_a_500(tmp_path: Path) -> None:
    run_fuzz(tmp_path, 10_000, 2_000)


@pytest.mark.soak
def test_fuzz_soak(tmp_path: Path) -> None:
    run_fuzz(tmp_path, 100_000, 20_000)  # ~3 min: under the suite's 300 s faulthandler timeout
