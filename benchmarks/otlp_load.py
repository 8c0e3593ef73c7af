"""OTLP/HTTP load: several client processes send protobuf trace exports to ``tael serve``
on loopback; reports spans/s accepted end to end and request latency percentiles.

The numbers in docs/benchmarks.md came from:

    python benchmarks/otlp_load.py

The server runs in its own process with default Settings (durability="fsync"),
started by this script on a free port. Each client process pre-builds its
requests (ExportTraceServiceRequest, protobuf, ``--spans-per-request`` spans of
one service each, 10 attributes per span) before the clock starts, then sends
them back to back over one keep-alive connection. A span counts as accepted when
its request got 200 with no rejected spans. After the run the script opens the
store read-only and checks that it holds exactly the spans sent.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
    t0 = 1_767_225_600_000_000_000
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


def _client(url: str, bodies: list[bytes], per_request: int, start: Any, results: Any) -> None:
    import httpx

    latencies = []
    accepted = 0
    with httpx.Client(timeout=60) as client:
        start.wait()
        for body in bodies:
            began = time.perf_counter()
            r = client.post(url + "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})
            latencies.append(time.perf_counter() - began)
            if r.status_code == 200:
                accepted += per_request
    results.put((accepted, latencies))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=100, help="requests per client")
    ap.add_argument("--spans-per-request", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="a few seconds: 2 clients x 5 requests x 100 spans")
    args = ap.parse_args()
    if args.quick:
        args.clients, args.requests, args.spans_per_request = 2, 5, 100
    import httpx

    import tael
    from benchmarks._common import machine

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        port = _port()
        url = f"http://127.0.0.1:{port}"
        code = f"from tael._server import run_server; run_server({str(data)!r}, port={port})"
        server = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(url + "/health/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.1)
            print(f"building {args.clients} x {args.requests} requests ...", file=sys.stderr)
            bodies = [_requests(c, args.requests, args.spans_per_request) for c in range(args.clients)]
            ctx = mp.get_context("spawn")
            start, results = ctx.Event(), ctx.Queue()
            procs = [
                ctx.Process(target=_client, args=(url, bodies[c], args.spans_per_request, start, results))
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
            server.terminate()
            server.wait(60)
        accepted = sum(a for a, _l in outcomes)
        latencies = sorted(x for _a, lat in outcomes for x in lat)
        sent = args.clients * args.requests * args.spans_per_request
        with tael.Store(data, read_only=True) as store:
            stored = store.stats().signals["spans"].count
        ok = stored == sent == accepted
        print(machine())
        print(
            f"server: tael serve, default Settings (fsync); {args.clients} client processes x {args.requests} "
            f"requests x {args.spans_per_request} spans (protobuf, 10 attributes per span), one keep-alive "
            "connection each"
        )
        print()
        print("| measurement | result |")
        print("|---|---|")
        print(f"| spans accepted end to end | {accepted / elapsed:,.0f} spans/s ({accepted:,} in {elapsed:.2f} s) |")
        print(f"| request latency p50 | {statistics.median(latencies) * 1e3:.1f} ms |")
        p99 = latencies[round(0.99 * (len(latencies) - 1))]
        print(f"| request latency p99 | {p99 * 1e3:.1f} ms |")
        print(f"| spans stored / sent | {stored:,} / {sent:,} |")
        if not ok:
            print(f"PROBLEMS: accepted {accepted}, stored {stored}, sent {sent}")
            raise SystemExit(1)


if __name__ == "__main__":
    main()
