"""OTLP/HTTP and OTLP/gRPC load: several client processes send protobuf trace exports to
``tael serve`` on loopback; reports spans/s accepted end to end and request latency percentiles.

The numbers in docs/benchmarks.md came from:

    python benchmarks/otlp_load.py

The server runs in its own process with default Settings (durability="fsync"),
started by this script on a free port. Each client process pre-builds its
requests (ExportTraceServiceRequest, protobuf, ``--spans-per-request`` spans of
one service each, 10 attributes per span) before the clock starts, then sends
them back to back over one keep-alive connection. A span counts as accepted when
its request got 200 (gRPC: OK) with no rejected spans. After the run the script opens
the store read-only and checks that it holds exactly the spans sent.

``--protocol grpc`` sends the same requests (the same serialized protobuf, built the
same way) from the same client processes over OTLP/gRPC (a raw unary call on one
channel each, as the SDK's gRPC exporter sends them) to the same server's gRPC port;
``--protocol both`` runs OTLP/HTTP and OTLP/gRPC interleaved against one server for
``--rounds`` (3) rounds, fresh span ids every run, and reports each protocol's median
rate and range:

    python benchmarks/otlp_load.py --protocol both --no-hostile

Then a hostile mix against a fresh server (default Settings unless
``--header-timeout``/``--body-timeout`` say otherwise), all at once for
``--hostile-seconds``: ``--big`` clients sending the largest body the server
accepts (protobuf just under ``server_max_body_bytes``, ~19 MiB of minimal
spans) back to back; ``--bombs`` clients sending bodies of that size made of
millions of empty spans (two bytes each, ~200 bytes each once parsed);
``--held`` connections each sending such a body but its last
byte; ``--slow`` connections sending half a request line and nothing more; and
the normal clients. Reported: the server process's peak RSS (VmHWM, sampled
RssAnon too), the normal clients' latency percentiles and answers, what each
kind of attacker got, and the RSS once the attack is over. Target (issue 14):
the server stays under 1 GiB of RSS.

Sustained mode (issue 16), instead of both of the above:

    python benchmarks/otlp_load.py --duration 600

``--clients`` processes send ``--spans-per-request`` requests back to back for
600 s to a server with default Settings but ``hot_window_s=300``
(``--hot-window``) and its maintenance loop on (every 60 s, as ``tael serve``
runs it; ``--maintenance-interval``). Requests are built before the clock from
20 templates per client; each send rewrites its spans' ids (unique per send) and
times (the send time) in place, so the maintenance loop compacts what ages past
the hot window as it would in production. Every ``--sample-every`` (10) s: the
hot tier's spans (``/metrics``), the size of ``hot/data.mdb`` and the server's
RSS. Reported: the samples, the accepted rate against today's figure above, and
whether the hot tier, data.mdb and RSS stayed flat (mean of the last third of the
run within 20% of the middle third). ``--quick --duration`` runs 10 s with a 3 s
hot window and maintenance every second.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import multiprocessing as mp
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

# Spans are timed ten minutes ago: recent enough that the server's own maintenance
# (compaction past the hot window, retention) leaves them alone during a run.
_T0 = time.time_ns() - 600 * 1_000_000_000

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _requests(client: int, n_requests: int, per_request: int) -> list[bytes]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    out = []
    t0 = _T0
    for r in range(n_requests):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=f"svc-{client}")))
        ss = rs.scope_spans.add()
        ss.scope.name = "load"
        for i in range(per_request):
            n = (client << 40) | (r << 16) | i
            sp = ss.spans.add()
            sp.trace_id = (n // 8 + 1).to_bytes(16, "big")
            sp.span_id = (n + 1).to_bytes(8, "big")
            sp.name = f"op{i % 10}"
            sp.kind = Span.SPAN_KIND_SERVER
            sp.start_time_unix_nano = t0 + n
            sp.end_time_unix_nano = t0 + n + 1_000_000 + i
            for k in range(10):
                sp.attributes.append(KeyValue(key=f"attr.{k}", value=AnyValue(string_value=f"value-{k}-{i % 7}")))
        out.append(req.SerializeToString())
    return out


def _client(url: str, bodies: list[bytes], per_request: int, start: Any, results: Any, protocol: str = "http") -> None:
    """One client process: ``bodies`` back to back over one connection, OTLP/HTTP
    (``url`` is the server's base URL) or OTLP/gRPC (``url`` is ``host:port``; the same
    serialized requests through a raw unary call, as the SDK's exporter sends them)."""
    latencies = []
    accepted = 0
    if protocol == "grpc":
        import grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        with grpc.insecure_channel(url) as channel:
            export = channel.unary_unary(GRPC_TRACES)  # bytes in, bytes out
            grpc.channel_ready_future(channel).result(timeout=30)
            start.wait()
            for body in bodies:
                began = time.perf_counter()
                try:
                    reply = ExportTraceServiceResponse.FromString(export(body, timeout=60))
                    ok = not reply.partial_success.rejected_spans
                except grpc.RpcError:
                    ok = False
                latencies.append(time.perf_counter() - began)
                accepted += per_request if ok else 0
        results.put((accepted, latencies))
        return
    import httpx

    with httpx.Client(timeout=60) as client:
        start.wait()
        for body in bodies:
            began = time.perf_counter()
            r = client.post(url + "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})
            latencies.append(time.perf_counter() - began)
            if r.status_code == 200:
                accepted += per_request
    results.put((accepted, latencies))


GRPC_TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTOCOL_NAMES = {"http": "OTLP/HTTP", "grpc": "OTLP/gRPC"}


class RssSampler:
    """Peak RSS and RssAnon of a process, sampled every 20 ms (and its VmHWM)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = self.peak_anon = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def status(self) -> dict[str, int]:
        out = {}
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[key] = int(value.split()[0]) * 1024
        except OSError:
            pass
        return out

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            st = self.status()
            self.peak_rss = max(self.peak_rss, st.get("VmRSS", 0))
            self.peak_anon = max(self.peak_anon, st.get("RssAnon", 0))

    def stop(self) -> dict[str, int]:
        final = self.status()
        self._stop.set()
        self._thread.join()
        return final


def _start_server(
    data: Path, port: int, settings: dict[str, Any], maintenance_interval_s: float | None = None, grpc_port: int = 0
) -> subprocess.Popen[bytes]:
    """``run_server`` (what ``tael serve`` runs) in its own process; returns once it is ready.
    ``maintenance_interval_s`` None keeps run_server's default (what ``tael serve`` uses);
    ``grpc_port`` 0 serves no OTLP/gRPC."""
    import httpx

    every = "" if maintenance_interval_s is None else f", maintenance_interval_s={maintenance_interval_s!r}"
    code = (
        "import tael; from tael._server import run_server; "
        f"run_server({str(data)!r}, port={port}, grpc_port={grpc_port}, "
        f"settings=tael.Settings(**{settings!r}){every})"
    )
    server = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("the server did not start")
        time.sleep(0.1)


def _largest_body(max_body: int) -> tuple[bytes, int]:
    """A protobuf trace export just under ``max_body`` bytes of minimal spans (the
    most records, so the most decoding, per byte); returns it and its span count."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    t0 = _T0
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    ss = rs.scope_spans.add()
    one = 0
    i = 0
    while True:
        sp = ss.spans.add()
        sp.trace_id = (i // 8 + 1).to_bytes(16, "big")
        sp.span_id = (i + 1).to_bytes(8, "big")
        sp.name = "op"
        sp.start_time_unix_nano = t0 + i
        sp.end_time_unix_nano = t0 + i + 1000
        i += 1
        if i == 1000:
            one = req.ByteSize() / 1000
        if one and i % 10_000 == 0 and req.ByteSize() + 20_000 * one > max_body - 4096:
            break
    return req.SerializeToString(), i


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[round(q * (len(s) - 1))]


def _hostile(args: argparse.Namespace, tmp: str, normal_bodies: list[bytes]) -> list[str]:
    """Run the hostile mix against a fresh server; returns the markdown rows."""
    import httpx

    import tael

    defaults = tael.Settings()
    settings: dict[str, Any] = {}
    if args.header_timeout is not None:
        settings["server_header_timeout_s"] = args.header_timeout
    if args.body_timeout is not None:
        settings["server_body_timeout_s"] = args.body_timeout
    if args.max_body_mib is not None:
        settings["server_max_body_bytes"] = int(args.max_body_mib * (1 << 20))
    s = tael.Settings(**settings)
    print("building the largest body ...", file=sys.stderr)
    big, big_spans = _largest_body(s.server_max_body_bytes)
    empty = b"\x12\x00" * ((s.server_max_body_bytes - 64) // 2)  # a scope of millions of empty spans
    scope = b"\x12" + _varint(len(empty)) + empty
    bomb = b"\x0a" + _varint(len(scope)) + scope
    port = _port()
    url = f"http://127.0.0.1:{port}"
    server = _start_server(Path(tmp) / "hostile", port, settings)
    sampler = RssSampler(server.pid)
    start_rss = sampler.status().get("VmRSS", 0)
    stop = threading.Event()
    lock = threading.Lock()
    normal_lat: list[float] = []
    normal_codes: Counter[str] = Counter()
    big_lat: list[float] = []
    big_codes: Counter[str] = Counter()
    held_codes: Counter[str] = Counter()
    held_times: list[float] = []
    slow_codes: Counter[str] = Counter()
    slow_times: list[float] = []

    def normal(bodies: list[bytes]) -> None:
        with httpx.Client(timeout=120) as client:
            k = 0
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    r = client.post(
                        url + "/v1/traces",
                        content=bodies[k % len(bodies)],
                        headers={"Content-Type": "application/x-protobuf"},
                    )
                    code = str(r.status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                with lock:
                    normal_lat.append(time.perf_counter() - began)
                    normal_codes[code] += 1
                k += 1
                if code != "200":
                    time.sleep(0.05)

    def big_sender() -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    r = client.post(url + "/v1/traces", content=big, headers={"Content-Type": "application/x-protobuf"})
                    code = str(r.status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                with lock:
                    big_lat.append(time.perf_counter() - began)
                    big_codes[code] += 1
                if code != "200":
                    time.sleep(0.2)

    bomb_codes: Counter[str] = Counter()

    def bomber() -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                try:
                    r = client.post(
                        url + "/v1/traces", content=bomb, headers={"Content-Type": "application/x-protobuf"}
                    )
                    code = str(r.status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                with lock:
                    bomb_codes[code] += 1

    def first_line(sock: socket.socket) -> str:
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        return data.split(b" ")[1].decode() if data.startswith(b"HTTP/1.1 ") else "closed"

    def held() -> None:
        head = (
            b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
            + f"Content-Length: {len(big)}\r\n\r\n".encode()
        )
        began = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(600)
            with contextlib.suppress(OSError):  # answered (429) and closed while sending
                sock.sendall(head + big[:-1])  # and never the last byte
            code = first_line(sock)
        with lock:
            held_codes[code] += 1
            held_times.append(time.perf_counter() - began)

    def slow() -> None:
        began = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(600)
            sock.sendall(b"POST /v1/tra")
            code = first_line(sock)
        with lock:
            slow_codes[code] += 1
            slow_times.append(time.perf_counter() - began)

    threads = [threading.Thread(target=normal, args=(b,)) for b in normal_bodies]
    threads += [threading.Thread(target=big_sender) for _ in range(args.big)]
    threads += [threading.Thread(target=bomber) for _ in range(args.bombs)]
    attackers = [threading.Thread(target=held) for _ in range(args.held)]
    attackers += [threading.Thread(target=slow) for _ in range(args.slow)]
    print(f"hostile mix for {args.hostile_seconds} s ...", file=sys.stderr)
    began = time.perf_counter()
    for t in [*threads, *attackers]:
        t.start()
    time.sleep(args.hostile_seconds)
    stop.set()
    for t in threads:
        t.join()
    for t in attackers:  # closed by the server's timeouts
        t.join()
    elapsed = time.perf_counter() - began
    time.sleep(1.0)
    after = sampler.stop()
    ready = httpx.get(url + "/health/ready").status_code
    server.terminate()
    server.wait(120)
    mib = 1 << 20
    accepted = normal_codes.get("200", 0) * args.spans_per_request

    def codes(c: Counter[str]) -> str:
        return ", ".join(f"{k}: {v:,}" for k, v in sorted(c.items()))

    return [
        f"server: tael serve, Settings: server_max_body_bytes {s.server_max_body_bytes / mib:.0f} MiB, "
        f"server_max_inflight_bytes {s.server_max_inflight_bytes / mib:.0f} MiB, server_header_timeout_s "
        f"{s.server_header_timeout_s:g} (default {defaults.server_header_timeout_s:g}), server_body_timeout_s "
        f"{s.server_body_timeout_s:g} (default {defaults.server_body_timeout_s:g})",
        f"hostile mix for {args.hostile_seconds} s ({elapsed:.1f} s until every attacker was closed): "
        f"{args.big} clients sending {len(big) / mib:.1f} MiB bodies ({big_spans:,} spans) back to back, "
        f"{args.bombs} clients sending bodies of that size made of empty spans ({len(bomb) // 2:,}), "
        f"{args.held} connections sending such a body but its last byte, {args.slow} connections sending "
        f"half a request line, and the {len(normal_bodies)} normal clients",
        "",
        "| hostile mix | result |",
        "|---|---|",
        f"| server peak RSS (VmHWM) | {after.get('VmHWM', 0) / mib:,.0f} MiB (sampled peak RssAnon "
        f"{sampler.peak_anon / mib:,.0f} MiB; {start_rss / mib:,.0f} MiB at start) |",
        f"| server RSS after the attack | {after.get('VmRSS', 0) / mib:,.0f} MiB (/health/ready: {ready}) |",
        f"| normal clients: answers | {codes(normal_codes)} ({accepted / args.hostile_seconds:,.0f} spans/s "
        "accepted) |",
        f"| normal clients: latency p50 / p99 | {_percentile(normal_lat, 0.5) * 1e3:,.1f} ms / "
        f"{_percentile(normal_lat, 0.99) * 1e3:,.1f} ms |",
        f"| largest bodies: answers | {codes(big_codes)} |",
        f"| largest bodies: latency p50 / p99 | {_percentile(big_lat, 0.5) * 1e3:,.0f} ms / "
        f"{_percentile(big_lat, 0.99) * 1e3:,.0f} ms |",
        f"| empty-span bodies: answers | {codes(bomb_codes)} |",
        f"| held connections: answers | {codes(held_codes)}; closed after p50 {_percentile(held_times, 0.5):.1f} s,"
        f" max {max(held_times, default=0):.1f} s |",
        f"| slow-header connections: answers | {codes(slow_codes)}; closed after p50 "
        f"{_percentile(slow_times, 0.5):.1f} s, max {max(slow_times, default=0):.1f} s |",
    ]


# ---------------------------------------------------------------- sustained load (--duration)

SUSTAINED_FLAT = 0.20  # last third within 20% of the middle third
TODAY_SPANS_S = 21_907  # docs/benchmarks.md, "OTLP/HTTP ingest through `tael serve` (issue 6)": before issue 16
_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")


def _templates(client: int, k: int, per_request: int) -> list[tuple[bytes, list[tuple[int, int, int]]]]:
    """``k`` requests of ``per_request`` spans shaped like :func:`_requests`, each with the
    offsets of its spans' ids and start time, so :func:`_stamp` can give every send fresh
    ids and the current time without building protobuf inside the clock.

    A trace id is 4 bytes of send number, then client, template and span index / 8; a span
    id is 4 bytes of send number, then client, template and index: unique across clients
    and sends (a re-sent (trace id, span id) would be a no-op, not load)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    out = []
    for t in range(k):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=f"svc-{client}")))
        ss = rs.scope_spans.add()
        ss.scope.name = "load"
        ids = []
        for i in range(per_request):
            sp = ss.spans.add()
            sp.trace_id = struct.pack(">IHHII", 0xFFFFFFFF, client, t, i // 8, 1)
            sp.span_id = struct.pack(">IBBH", 0xFFFFFFFF, client & 0xFF, t & 0xFF, i)
            sp.name = f"op{i % 10}"
            sp.kind = Span.SPAN_KIND_SERVER
            sp.start_time_unix_nano = _T0 + i  # unique per request: found below, rewritten per send
            sp.end_time_unix_nano = _T0 + i + 1_000_000 + i
            for a in range(10):
                sp.attributes.append(KeyValue(key=f"attr.{a}", value=AnyValue(string_value=f"value-{a}-{i % 7}")))
            ids.append((sp.trace_id, sp.span_id, sp.start_time_unix_nano))
        body = req.SerializeToString()
        offsets = []
        pos = 0
        for trace_id, span_id, start in ids:
            tid = body.index(b"\x0a\x10" + trace_id, pos) + 2
            sid = body.index(b"\x12\x08" + span_id, tid) + 2
            st = body.index(b"\x39" + struct.pack("<Q", start), sid) + 1
            if body[st + 8] != 0x41:  # end_time_unix_nano (field 8, fixed64) follows start
                raise SystemExit("unexpected protobuf layout of a span")
            offsets.append((tid, sid, st))
            pos = st + 17
        out.append((body, offsets))
    return out


def _stamp(template: tuple[bytes, list[tuple[int, int, int]]], send: int, now_ns: int) -> bytes:
    body = bytearray(template[0])
    tag = struct.pack(">I", send)
    pack = struct.pack_into
    for i, (tid, sid, st) in enumerate(template[1]):
        body[tid : tid + 4] = tag
        body[sid : sid + 4] = tag
        pack("<Q", body, st, now_ns + i)
        pack("<Q", body, st + 9, now_ns + i + 1_000_000 + i)
    return bytes(body)


def _sustained_client(
    url: str,
    templates: list[tuple[bytes, list[tuple[int, int, int]]]],
    per_request: int,
    duration: float,
    start: Any,
    results: Any,
) -> None:
    """Send re-stamped requests back to back for ``duration`` seconds; report what was accepted."""
    import httpx

    latencies = []
    codes: Counter[str] = Counter()
    accepted = 0
    send = 0
    with httpx.Client(timeout=120) as client:
        start.wait()
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            send += 1
            body = _stamp(templates[send % len(templates)], send, time.time_ns() - 2_000_000)
            began = time.perf_counter()
            try:
                r = client.post(url + "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})
                code = str(r.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            latencies.append(time.perf_counter() - began)
            codes[code] += 1
            if code == "200":
                accepted += per_request
            else:
                time.sleep(0.05)
    results.put((accepted, latencies, dict(codes)))


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The server's /metrics as {(name, sorted labels): value}."""
    import httpx

    out = {}
    for line in httpx.get(url + "/metrics", timeout=60).text.splitlines():
        m = _METRIC_LINE.match(line)
        if m is None or line.startswith("#"):
            continue
        name, labels, value = m.groups()
        pairs = tuple(sorted(tuple(p.split("=", 1)) for p in re.findall(r'\w+="[^"]*"', labels or "")))
        out[(name, tuple((k, v.strip('"')) for k, v in pairs))] = float(value)
    return out


def _third_ratio(samples: list[dict[str, float]], key: str, duration: float) -> float | None:
    """Mean of ``key`` over the last third of the run / over the middle third."""
    middle = [s[key] for s in samples if duration / 3 <= s["t"] < 2 * duration / 3]
    last = [s[key] for s in samples if s["t"] >= 2 * duration / 3]
    if not middle or not last or not statistics.fmean(middle):
        return None
    return statistics.fmean(last) / statistics.fmean(middle)


def sustained(
    duration: float,
    *,
    clients: int = 4,
    spans_per_request: int = 500,
    hot_window_s: float = 300.0,
    maintenance_interval_s: float | None = None,
    sample_s: float = 10.0,
    templates: int = 20,
) -> dict[str, Any]:
    """``tael serve`` (run_server, default Settings but ``hot_window_s``, maintenance on) under
    ``clients`` processes sending back to back for ``duration`` seconds, every span stamped
    with the time it is sent; every ``sample_s`` seconds: the hot tier's spans and
    data.mdb size, the server's RSS. Returns the samples, the accepted rate and the
    last-third / middle-third ratios."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        port = _port()
        url = f"http://127.0.0.1:{port}"
        print(f"sustained: building {clients} x {templates} request templates ...", file=sys.stderr)
        bodies = [_templates(c, templates, spans_per_request) for c in range(clients)]
        server = _start_server(data, port, {"hot_window_s": hot_window_s}, maintenance_interval_s)
        rss = RssSampler(server.pid)
        samples: list[dict[str, float]] = []
        try:
            ctx = mp.get_context("spawn")
            start, results = ctx.Event(), ctx.Queue()
            procs = [
                ctx.Process(
                    target=_sustained_client, args=(url, bodies[c], spans_per_request, duration, start, results)
                )
                for c in range(clients)
            ]
            for p in procs:
                p.start()
            time.sleep(1.0)  # let every client start and wait
            print(f"sustained: {duration:g} s of load, a sample every {sample_s:g} s ...", file=sys.stderr)
            began = time.perf_counter()
            start.set()
            while True:
                t = time.perf_counter() - began
                m = _scrape(url)
                st = rss.status()
                mdb = data / "hot" / "data.mdb"
                samples.append(
                    {
                        "t": t,
                        "hot": m.get(("tael_records", (("signal", "spans"), ("tier", "hot"))), 0.0),
                        "cold": m.get(("tael_records", (("signal", "spans"), ("tier", "cold"))), 0.0),
                        "mdb": float(mdb.stat().st_size if mdb.exists() else 0),
                        "rss": float(st.get("VmRSS", 0)),
                        "anon": float(st.get("RssAnon", 0)),
                        "ingested": m.get(("tael_records_ingested_total", (("signal", "spans"),)), 0.0),
                        "runs": m.get(("tael_maintenance_runs", ()), 0.0),
                    }
                )
                print(
                    f"  t={t:5.0f} s: hot {samples[-1]['hot']:,.0f} spans, data.mdb "
                    f"{samples[-1]['mdb'] / 1e6:,.0f} MB, RSS {samples[-1]['rss'] / (1 << 20):,.0f} MiB",
                    file=sys.stderr,
                )
                if t >= duration:
                    break
                time.sleep(max(0.0, min(sample_s * len(samples), duration) - (time.perf_counter() - began)))
            outcomes = [results.get() for _ in procs]
            elapsed = time.perf_counter() - began
            for p in procs:
                p.join()
        finally:
            peak = rss.stop().get("VmHWM", 0)
            server.terminate()
            server.wait(300)
        import tael

        with tael.Store(data, read_only=True) as store:
            st = store.stats()
            stored = st.signals["spans"].count
    accepted = sum(a for a, _l, _c in outcomes)
    latencies = sorted(x for _a, lat, _c in outcomes for x in lat)
    codes: Counter[str] = Counter()
    for _a, _l, c in outcomes:
        codes.update(c)
    ratios = {key: _third_ratio(samples, key, duration) for key in ("hot", "mdb", "rss")}
    return {
        "duration": duration,
        "elapsed": elapsed,
        "clients": clients,
        "spans_per_request": spans_per_request,
        "hot_window_s": hot_window_s,
        "maintenance_interval_s": maintenance_interval_s,
        "accepted": accepted,
        "rate": accepted / duration,
        "stored": stored,
        "codes": dict(codes),
        "p50": _percentile(latencies, 0.5),
        "p99": _percentile(latencies, 0.99),
        "peak_rss": peak,
        "samples": samples,
        "ratios": ratios,
        "flat": {k: v is not None and abs(v - 1) <= SUSTAINED_FLAT for k, v in ratios.items()},
    }


def sustained_report(r: dict[str, Any]) -> list[str]:
    """Markdown: the samples, then the summary."""
    mib = 1 << 20
    every = r["maintenance_interval_s"]
    lines = [
        f"server: tael serve (run_server), default Settings but hot_window_s={r['hot_window_s']:g}, maintenance "
        f"every {'60 (the default)' if every is None else f'{every:g}'} s; {r['clients']} client processes sending "
        f"{r['spans_per_request']}-span requests (protobuf, 10 attributes per span, stamped with the send time) "
        f"back to back for {r['duration']:g} s",
        "",
        "| t (s) | hot spans | cold spans | hot/data.mdb (MB) | server RSS (MiB) | server RssAnon (MiB) "
        "| spans ingested | maintenance runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in r["samples"]:
        lines.append(
            f"| {s['t']:.0f} | {s['hot']:,.0f} | {s['cold']:,.0f} | {s['mdb'] / 1e6:,.1f} | {s['rss'] / mib:,.0f} "
            f"| {s['anon'] / mib:,.0f} | {s['ingested']:,.0f} | {s['runs']:,.0f} |"
        )

    def ratio(key: str) -> str:
        v = r["ratios"][key]
        return "- (too few samples)" if v is None else f"{v:.2f} ({'flat' if r['flat'][key] else 'NOT flat'})"

    codes = ", ".join(f"{k}: {v:,}" for k, v in sorted(r["codes"].items()))
    lines += [
        "",
        "| sustained | result |",
        "|---|---|",
        f"| spans accepted | {r['rate']:,.0f} spans/s ({r['accepted']:,} in {r['duration']:g} s; "
        f"{r['rate'] / TODAY_SPANS_S:.2f}x the {TODAY_SPANS_S:,} spans/s of docs/benchmarks.md) |",
        f"| answers | {codes} |",
        f"| request latency p50 / p99 | {r['p50'] * 1e3:,.1f} ms / {r['p99'] * 1e3:,.1f} ms |",
        f"| spans stored / accepted | {r['stored']:,} / {r['accepted']:,} |",
        f"| hot spans, last third / middle third | {ratio('hot')} |",
        f"| hot/data.mdb bytes, last third / middle third | {ratio('mdb')} |",
        f"| server RSS, last third / middle third | {ratio('rss')} |",
        f"| server peak RSS (VmHWM) | {r['peak_rss'] / mib:,.0f} MiB |",
    ]
    return lines


def _normal_run(
    args: argparse.Namespace, ctx: Any, target: str, protocol: str, batch: int
) -> tuple[int, float, list[float]]:
    """One timed run of ``--clients`` processes sending their requests over ``protocol``;
    batch ``batch`` of spans (fresh ids for every run: the same shape, new spans).
    Returns the spans accepted, the seconds taken and the sorted request latencies."""
    print(f"{protocol}: building {args.clients} x {args.requests} requests ...", file=sys.stderr)
    first = batch * args.clients
    bodies = [_requests(first + c, args.requests, args.spans_per_request) for c in range(args.clients)]
    gc.collect()
    gc.freeze()  # the generated requests are not the collector's business while the clock runs
    try:
        start, results = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=_client, args=(target, bodies[c], args.spans_per_request, start, results, protocol))
            for c in range(args.clients)
        ]
        for p in procs:
            p.start()
        time.sleep(1.0)  # let every client connect and wait
        began = time.perf_counter()
        start.set()
        outcomes = [results.get() for _ in procs]
        elapsed = time.perf_counter() - began
        for p in procs:
            p.join()
    finally:
        gc.unfreeze()
    return sum(a for a, _l in outcomes), elapsed, sorted(x for _a, lat in outcomes for x in lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=100, help="requests per client")
    ap.add_argument("--spans-per-request", type=int, default=500)
    ap.add_argument("--big", type=int, default=8, help="hostile: clients sending the largest bodies")
    ap.add_argument("--bombs", type=int, default=2, help="hostile: clients sending bodies of empty spans")
    ap.add_argument("--held", type=int, default=150, help="hostile: connections holding back a body's last byte")
    ap.add_argument("--slow", type=int, default=1000, help="hostile: connections never finishing their headers")
    ap.add_argument("--hostile-seconds", type=float, default=30.0)
    ap.add_argument("--header-timeout", type=float, default=None, help="server_header_timeout_s (default: Settings')")
    ap.add_argument("--body-timeout", type=float, default=None, help="server_body_timeout_s (default: Settings')")
    ap.add_argument("--max-body-mib", type=float, default=None, help="server_max_body_bytes (default: Settings')")
    ap.add_argument("--no-hostile", action="store_true", help="only the normal run")
    ap.add_argument(
        "--protocol",
        choices=("http", "grpc", "both"),
        default="http",
        help="normal run: OTLP/HTTP, OTLP/gRPC, or both against one server (same spans, same client processes)",
    )
    ap.add_argument("--rounds", type=int, default=None, help="normal run: rounds (default 1; 3 with --protocol both)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds: 2 clients x 5 requests x 100 spans; hostile: 1 big, 1 bomb, 3 held, 20 slow, 3 s, "
        "1 s timeouts, 2 MiB bodies",
    )
    ap.add_argument(
        "--duration",
        type=float,
        nargs="?",
        const=0.0,
        metavar="S",
        help="sustained mode instead: send for S seconds (600; --quick 10) with maintenance on, sampling the hot "
        "tier and the server's RSS",
    )
    ap.add_argument("--hot-window", type=float, default=300.0, help="sustained: Settings.hot_window_s (300 s)")
    ap.add_argument(
        "--maintenance-interval",
        type=float,
        default=None,
        help="sustained: seconds between maintenance runs (default: tael serve's, 60)",
    )
    ap.add_argument("--sample-every", type=float, default=10.0, help="sustained: seconds between samples (10)")
    args = ap.parse_args()
    if args.duration is not None:
        if args.quick:
            args.clients, args.spans_per_request = 2, 100
            args.hot_window, args.maintenance_interval, args.sample_every = 3.0, 1.0, 1.0
        if not args.duration:
            args.duration = 10.0 if args.quick else 600.0
        from benchmarks._common import machine

        r = sustained(
            args.duration,
            clients=args.clients,
            spans_per_request=args.spans_per_request,
            hot_window_s=args.hot_window,
            maintenance_interval_s=args.maintenance_interval,
            sample_s=args.sample_every,
        )
        print(machine())
        print("\n".join(sustained_report(r)))
        if r["stored"] < r["accepted"]:
            print(f"PROBLEMS: {r['accepted']:,} spans accepted, {r['stored']:,} stored")
            raise SystemExit(1)
        return
    if args.quick:
        args.clients, args.requests, args.spans_per_request = 2, 5, 100
        args.big, args.held, args.slow, args.hostile_seconds, args.bombs = 1, 3, 20, 3.0, 1
        args.header_timeout, args.body_timeout, args.max_body_mib = 1.0, 1.0, 2.0

    import tael
    from benchmarks._common import machine

    protocols = ["http", "grpc"] if args.protocol == "both" else [args.protocol]
    rounds = args.rounds if args.rounds is not None else (3 if len(protocols) > 1 else 1)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        port, grpc_port = _port(), (_port() if "grpc" in protocols else 0)
        targets = {"http": f"http://127.0.0.1:{port}", "grpc": f"127.0.0.1:{grpc_port}"}
        server = _start_server(data, port, {}, grpc_port=grpc_port)
        sampler = RssSampler(server.pid)
        runs: dict[str, list[tuple[int, float, list[float]]]] = {p: [] for p in protocols}
        batch = 0
        try:
            ctx = mp.get_context("spawn")
            for _round in range(rounds):
                for protocol in protocols:  # interleaved: http grpc http grpc ...
                    runs[protocol].append(_normal_run(args, ctx, targets[protocol], protocol, batch))
                    batch += 1
        finally:
            peak = sampler.stop().get("VmHWM", 0)
            server.terminate()
            server.wait(60)
        accepted = sum(r[0] for rs in runs.values() for r in rs)
        sent = batch * args.clients * args.requests * args.spans_per_request
        with tael.Store(data, read_only=True) as store:
            stored = store.stats().signals["spans"].count
        ok = stored == sent == accepted
        print(machine())
        print(
            f"server: tael serve, default Settings (fsync); {args.clients} client processes x {args.requests} "
            f"requests x {args.spans_per_request} spans (protobuf, 10 attributes per span), one keep-alive "
            f"connection each ({' and '.join(PROTOCOL_NAMES[p] for p in protocols)}"
            + (f"; {rounds} rounds interleaved: median, and range)" if rounds > 1 else ")")
        )
        print()
        print("| measurement | result |")
        print("|---|---|")
        for protocol in protocols:
            label = "" if len(protocols) == 1 else f", {PROTOCOL_NAMES[protocol]}"
            rates = [a / e for a, e, _l in runs[protocol]]
            latencies = sorted(x for _a, _e, lat in runs[protocol] for x in lat)
            total = sum(a for a, _e, _l in runs[protocol])
            took = sum(e for _a, e, _l in runs[protocol])
            spread = f"; {min(rates):,.0f} to {max(rates):,.0f} over {len(rates)} rounds" if len(rates) > 1 else ""
            print(
                f"| spans accepted end to end{label} | {statistics.median(rates):,.0f} spans/s "
                f"({total:,} in {took:.2f} s{spread}) |"
            )
            print(f"| request latency p50{label} | {statistics.median(latencies) * 1e3:.1f} ms |")
            p99 = latencies[round(0.99 * (len(latencies) - 1))]
            print(f"| request latency p99{label} | {p99 * 1e3:.1f} ms |")
        print(f"| spans stored / sent | {stored:,} / {sent:,} |")
        print(f"| server peak RSS (VmHWM) | {peak / (1 << 20):,.0f} MiB |")
        if not ok:
            print(f"PROBLEMS: accepted {accepted}, stored {stored}, sent {sent}")
            raise SystemExit(1)
        if not args.no_hostile:  # OTLP/HTTP only: its limits and timeouts are tael's (grpc enforces gRPC's)
            print()
            normal = [
                _requests(batch * args.clients + c, args.requests, args.spans_per_request) for c in range(args.clients)
            ]
            print("\n".join(_hostile(args, tmp, normal)))


if __name__ == "__main__":
    main()
