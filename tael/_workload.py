"""A realistic synthetic telemetry workload, shared by the demo and the benchmarks.

Three services calling each other, 8-12 attributes per span, a few events,
some errors, LLM-style payloads on the model-calling service, logs tied to
traces and metric series with attributes. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from ._models import LogRecord, MetricPoint, Span, SpanEvent

SERVICES = ("checkout", "inventory", "llm-gateway")
_OPS = {
    "checkout": ("POST /checkout", "GET /cart", "charge_card", "render_receipt"),
    "inventory": ("reserve_items", "SELECT stock", "UPDATE stock"),
    "llm-gateway": ("chat.completions", "embeddings", "moderation"),
}
_REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")
_LOG_LINES = (
    "request completed",
    "cache miss for key cart:{n}",
    "retrying upstream call after connection reset",
    "rate limit reached, backing off {n} ms",
    "payment authorised",
    "model returned {n} tokens",
)


class Workload:
    def __init__(self, seed: int = 7, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self.rng = random.Random(seed)
        self.now = start_ns

    def spans(self, n: int) -> list[Span]:
        out: list[Span] = []
        while len(out) < n:
            out.extend(self._trace())
        return out[:n]

    def _trace(self) -> Iterator[Span]:
        rng = self.rng
        trace_id = f"{rng.getrandbits(128) | 1:032x}"
        self.now += rng.randrange(50_000, 2_000_000)
        parent = None
        start = self.now
        for depth, service in enumerate(SERVICES):
            span_id = f"{rng.getrandbits(64) | 1:016x}"
            duration = rng.randrange(200_000, 80_000_000) // (depth + 1)
            error = rng.random() < 0.03
            attrs: dict[str, object] = {
                "http.method": "POST",
                "http.route": _OPS[service][0],
                "http.status_code": 500 if error else 200,
                "net.peer.port": rng.randrange(1024, 65535),
                "cloud.region": rng.choice(_REGIONS),
                "user.id": f"u{rng.randrange(10_000)}",
                "retry": rng.random() < 0.1,
                "items": rng.randrange(1, 20),
            }
            for k in range(rng.randrange(0, 5)):
                attrs[f"custom.tag{k}"] = rng.random()
            events = [
                SpanEvent(time_ns=start + duration // 2, name="checkpoint", attributes={"step": i})
                for i in range(rng.randrange(1, 4))
            ]
            if service == "llm-gateway":
                attrs["gen_ai.system"] = "openai"
                attrs["gen_ai.request.model"] = "gpt-4o-mini"
                attrs["gen_ai.usage.input_tokens"] = rng.randrange(20, 4000)
            yield Span(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                name=rng.choice(_OPS[service]),
                service=service,
                start_ns=start,
                end_ns=start + duration,
                kind="server" if depth == 0 else "client",
                status="error" if error else "ok",
                status_message="upstream failed" if error else "",
                attributes=attrs,
                resource={"service.name": service, "host.name": f"host-{depth}", "deployment.environment": "prod"},
                scope_name="opentelemetry.instrumentation.asgi",
                scope_version="0.48b0",
                events=events,
            )
            parent = span_id
            start += duration // 10

    def logs(self, n: int) -> list[LogRecord]:
        rng = self.rng
        out = []
        for _ in range(n):
            self.now += rng.randrange(10_000, 500_000)
            sev = rng.choice((5, 9, 9, 9, 13, 17))
            traced = rng.random() < 0.7
            out.append(
                LogRecord(
                    time_ns=self.now,
                    body=rng.choice(_LOG_LINES).format(n=rng.randrange(1000)),
                    service=rng.choice(SERVICES),
                    severity_number=sev,
                    severity_text={5: "DEBUG", 9: "INFO", 13: "WARN", 17: "ERROR"}[sev],
                    trace_id=f"{rng.getrandbits(128) | 1:032x}" if traced else None,
                    span_id=f"{rng.getrandbits(64) | 1:016x}" if traced else None,
                    attributes={"logger": "app", "thread": rng.randrange(8), "region": rng.choice(_REGIONS)},
                    resource={"service.name": "x"},
                )
            )
        return out

    def metrics(self, n: int) -> list[MetricPoint]:
        rng = self.rng
        out = []
        for i in range(n):
            self.now += rng.randrange(1_000, 100_000)
            service = SERVICES[i % 3]
            if i % 5 == 0:
                out.append(
                    MetricPoint(
                        time_ns=self.now,
                        name="http.server.requests",
                        service=service,
                        value=float(i),
                        kind="sum",
                        monotonic=True,
                        unit="1",
                        attributes={"route": _OPS[service][i % 3], "code": 200},
                    )
                )
            else:
                out.append(
                    MetricPoint(
                        time_ns=self.now,
                        name=("cpu.utilization", "memory.rss", "queue.depth", "gen_ai.tokens")[i % 4],
                        service=service,
                        value=rng.random() * 100,
                        unit="%",
                        attributes={"host": f"host-{i % 4}"},
                    )
                )
        return out
