"""Column batches and blocks (tael/_block.py): records survive batch -> block -> records
unchanged, for every field and value type tael accepts."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pytest

from tael import LogRecord, MetricPoint, Span, SpanEvent, SpanLink, _block, _codec
from tael._blobs import Payloads
from tael._errors import CorruptionError
from tael._workload import Workload

PAYLOADS = Payloads(("gen_ai.prompt",), 1 << 20)


def _same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN and tells -0.0 from 0.0 and 1 from 1.0."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _roundtrip(signal: str, batch: pa.RecordBatch) -> list[list[Any]]:
    block = _block.decode_block(_block.encode_block(batch, signal), signal)
    assert block.n == batch.num_rows
    return _block.RECORDS_OF[signal](block.batch(), None)


ODD_ATTRS: dict[str, Any] = {
    "s": "text",
    "empty": "",
    "unicode": "naïve ☃ 日本語 \U0001f600",
    "i": -(2**63),
    "u": 2**64 - 1,
    "zero": 0,
    "f": 1.0,
    "negzero": -0.0,
    "nan": float("nan"),
    "inf": float("inf"),
    "ninf": float("-inf"),
    "t": True,
    "b": False,
    "none": None,
    "list": [1, "a", 2.5, None, [True]],
    "map": {"nested": {"deeper": [1, {"x": "y"}]}},
    "null-looking": "null",
}


def _span(i: int, **kw: Any) -> Span:
    base: dict[str, Any] = dict(
        trace_id=f"{i + 1:032x}",
        span_id=f"{i + 1:016x}",
        name=f"op{i % 3}",
        service=f"svc{i % 2}",
        start_ns=1_700_000_000_000_000_000 + i,
        end_ns=1_700_000_000_000_000_000 + 2 * i,
    )
    base.update(kw)
    return Span(**base)


def test_workload_records_survive_a_block() -> None:
    w = Workload(seed=3)
    spans, logs, points = w.spans(600), w.logs(600), w.metrics(600)
    span_rows = _codec.encode_spans(spans, PAYLOADS)
    recs = [_codec.unpackb(r[-1]) for r in span_rows]
    assert _roundtrip("spans", _block.spans_batch(recs)) == recs
    log_recs = [_codec.unpackb(r[-1]) for r in _codec.encode_logs(logs, PAYLOADS)]
    assert _roundtrip("logs", _block.logs_batch(log_recs)) == log_recs
    metric_rows = _codec.encode_metrics(points)
    metric_recs = [_codec.unpackb(r[-1]) for r in metric_rows]
    assert _roundtrip("metrics", _block.metrics_batch(metric_recs, [r[2] for r in metric_rows])) == metric_recs


def test_every_attribute_type_and_optional_field_survives() -> None:
    spans = [
        _span(
            0,
            parent_span_id="00000000000000aa",
            kind="client",
            status="error",
            status_message="boom",
            attributes=dict(ODD_ATTRS),
            resource={"service.name": "svc0", "r": 1.5},
            scope_name="scope",
            scope_version="1.0",
            events=[SpanEvent(time_ns=5, name="e", attributes=dict(ODD_ATTRS)), SpanEvent(time_ns=6, name="")],
            links=[SpanLink(trace_id="ff" * 16, span_id="ee" * 8, attributes={"k": [1, 2]})],
            trace_state="a=b",
            flags=2**32 - 1,
        ),
        _span(1),  # all defaults: nulls, empty maps and lists
    ]
    recs = [_codec.unpackb(r[-1]) for r in _codec.encode_spans(spans, PAYLOADS)]
    back = _roundtrip("spans", _block.spans_batch(recs))
    assert _same(back, recs)
    assert back[1][2] is None  # no parent

    logs = [
        LogRecord(time_ns=1, body="", service="", attributes=dict(ODD_ATTRS), trace_id="ab" * 16, span_id="cd" * 8),
        LogRecord(time_ns=2, body="x" * 5000, service="s", severity_number=24, observed_ns=3, scope_name="sc"),
    ]
    log_recs = [_codec.unpackb(r[-1]) for r in _codec.encode_logs(logs, PAYLOADS)]
    assert _same(_roundtrip("logs", _block.logs_batch(log_recs)), log_recs)

    points = [
        MetricPoint(time_ns=1, name="m", service="s", value=-0.0, attributes=dict(ODD_ATTRS)),
        MetricPoint(
            time_ns=2,
            name="h",
            service="s",
            kind="histogram",
            temporality="delta",
            start_ns=1,
            count=3,
            sum=float("nan"),
            min=0.5,
            max=2.5,
            bucket_counts=[1, 0, 2],
            explicit_bounds=[1.0, 2.0],
        ),
        MetricPoint(time_ns=3, name="c", service="s", kind="sum", monotonic=True, bucket_counts=[], unit="By"),
    ]
    rows = _codec.encode_metrics(points)
    metric_recs = [_codec.unpackb(r[-1]) for r in rows]
    assert _same(_roundtrip("metrics", _block.metrics_batch(metric_recs, [r[2] for r in rows])), metric_recs)


def test_blob_digests_become_refs_and_come_back() -> None:
    digest_a, digest_b = bytes(range(32)), bytes(range(1, 33))
    rec = next(
        _codec.unpackb(r[-1])
        for r in _codec.encode_spans([_span(0, events=[SpanEvent(time_ns=1, name="e")])], PAYLOADS)
    )
    rec[10] = {"gen_ai.prompt": digest_a, "k": "v"}
    rec[14][0][2] = {"gen_ai.completion": digest_b}
    batch = _block.spans_batch([rec])
    assert batch.column("payload_refs").to_pylist() == [
        f'[[-1,"gen_ai.prompt","{digest_a.hex()}"],[0,"gen_ai.completion","{digest_b.hex()}"]]'
    ]
    assert "gen_ai.prompt" in batch.column("attributes")[0].as_py()  # the key stays, its text is not in the block
    assert digest_a.hex() not in batch.column("attributes")[0].as_py()
    assert _roundtrip("spans", batch) == [rec]

    log = [2, digest_a, "svc", 9, "", None, None, {}, {}, None, ""]
    lb = _block.logs_batch([log])
    assert lb.column("body").to_pylist() == [""] and lb.column("body_blob").to_pylist() == [digest_a]
    assert _roundtrip("logs", lb) == [log]


def test_many_distinct_strings_and_sliced_batches() -> None:
    spans = [_span(i, name=f"name-{i}", service=f"service-{i % 300}") for i in range(70_000 // 100)]
    recs = [_codec.unpackb(r[-1]) for r in _codec.encode_spans(spans, PAYLOADS)]
    batch = _block.spans_batch(recs)
    assert _roundtrip("spans", batch) == recs  # 700 names: two-byte codes
    part = batch.slice(3, 17)
    assert _roundtrip("spans", part) == recs[3:20]
    block = _block.decode_block(_block.encode_block(batch, "spans"), "spans")
    assert block.values("service")[:2] == ["service-0", "service-1"]
    assert block.batch(["start_ns"]).column(0).to_pylist() == [r[5] for r in recs]
    assert _block.span_records(block.batch(), [5, 2]) == [recs[5], recs[2]]


def test_an_empty_batch_is_a_block_too() -> None:
    assert _roundtrip("spans", _block.spans_batch([])) == []


@pytest.mark.parametrize("damage", [b"", b"\x00\x01", b"\x81\xa1v\x02"])
def test_a_damaged_block_raises_corruption(damage: bytes) -> None:
    with pytest.raises(CorruptionError):
        _block.decode_block(damage, "spans").batch()


def test_a_damaged_column_raises_corruption_naming_it() -> None:
    recs = [_codec.unpackb(r[-1]) for r in _codec.encode_spans([_span(0), _span(1)], PAYLOADS)]
    raw = _block.encode_block(_block.spans_batch(recs), "spans")
    body = _codec.unpackb(raw)
    body["c"]["start_ns"][0] = b"\x00" * 3  # too short for 2 int64s
    block = _block.decode_block(_codec.packb(body), "spans")
    with pytest.raises(CorruptionError, match="start_ns"):
        block.column("start_ns")
    body["h"] = b"not zstd"
    with pytest.raises(CorruptionError, match="attributes"):
        _block.decode_block(_codec.packb(body), "spans").column("attributes")


def test_json_text_keeps_non_finite_floats() -> None:
    assert _block.dumps({"a": 1.0}) == b'{"a":1.0}'
    text = _block.dumps({"a": float("nan"), "b": [float("inf")], "c": None})
    assert text == b'{"a":NaN,"b":[Infinity],"c":null}'
    back = _block.loads(text)
    assert math.isnan(back["a"]) and back["b"] == [math.inf] and back["c"] is None
    assert _block.dumps({"s": "null"}) == b'{"s":"null"}'
    with pytest.raises(TypeError):
        _block.dumps({"a": 2**64})
