"""Every field of every model survives a write, a read and a reopen, with attribute types intact."""

from __future__ import annotations

import math
from pathlib import Path

import tael

from .conftest import make_log, make_point, make_span, span_id, trace_id

ATTRS = {
    "str": "héllo ☃",
    "empty": "",
    "int": 42,
    "neg": -7,
    "big": 2**63 - 1,
    "ubig": 2**64 - 1,
    "float": 1.5,
    "float_int": 2.0,
    "true": True,
    "false": False,
    "none": None,
    "list": [1, "two", 3.0, None, [True]],
    "dict": {"nested": {"deep": [1, {"x": "y"}]}, "n": 0},
}


def full_span() -> tael.Span:
    t = trace_id()
    return tael.Span(
        trace_id=t,
        span_id=span_id(),
        parent_span_id=span_id(),
        name="chat.completions",
        service="llm-gateway",
        start_ns=1_700_000_000_123_456_789,
        end_ns=1_700_000_000_987_654_321,
        kind="client",
        status="error",
        status_message="upstream timed out",
        attributes=dict(ATTRS),
        resource={"service.name": "llm-gateway", "host.cpu": 8},
        scope_name="openai.instrumentation",
        scope_version="1.2.3",
        events=[
            tael.SpanEvent(
                time_ns=1_700_000_000_200_000_000, name="exception", attributes={"exception.type": "Timeout"}
            ),
            tael.SpanEvent(time_ns=1_700_000_000_300_000_000, name="retry"),
        ],
        links=[tael.SpanLink(trace_id=trace_id(), span_id=span_id(), attributes={"link.kind": "follows", "n": 1})],
        trace_state="vendor=abc",
        flags=1,
    )


def full_log() -> tael.LogRecord:
    return tael.LogRecord(
        time_ns=1_700_000_000_500_000_000,
        body="connection reset by peer\nsecond line",
        service="checkout",
        severity_number=17,
        severity_text="ERROR",
        trace_id=trace_id(),
        span_id=span_id(),
        attributes=dict(ATTRS),
        resource={"k8s.pod.name": "checkout-1"},
        observed_ns=1_700_000_000_500_000_999,
        scope_name="app.logger",
    )


def full_point() -> tael.MetricPoint:
    return tael.MetricPoint(
        time_ns=1_700_000_000_600_000_000,
        name="http.server.duration",
        service="checkout",
        value=12.5,
        kind="histogram",
        unit="ms",
        attributes={"route": "/pay", "code": 200, "ok": True},
        monotonic=False,
        temporality="delta",
        start_ns=1_700_000_000_000_000_000,
        count=10,
        sum=125.0,
        min=1.0,
        max=40.0,
        bucket_counts=[1, 4, 5],
        explicit_bounds=[5.0, 20.0],
    )


def _assert_types_equal(a: object, b: object) -> None:
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _assert_types_equal(a[k], b[k])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_types_equal(x, y)
    else:
        assert a == b


def test_every_field_round_trips_through_write_read_and_reopen(data_dir: Path) -> None:
    span, log, point = full_span(), full_log(), full_point()
    with tael.Store(data_dir) as store:
        store.insert_spans([span])
        store.insert_logs([log])
        store.insert_metrics([point])
        got = store.get_trace(span.trace_id)
        assert got == [span]
        _assert_types_equal(got[0].attributes, span.attributes)
        assert store.query_logs() == [log]
        assert store.query_metrics() == [point]
    with tael.Store(data_dir) as store:
        (again,) = store.get_trace(span.trace_id)
        assert again == span
        _assert_types_equal(again.attributes, ATTRS)
        _assert_types_equal(again.events[0].attributes, span.events[0].attributes)
        _assert_types_equal(again.links[0].attributes, {"link.kind": "follows", "n": 1})
        (log_again,) = store.query_logs()
        assert log_again == log
        _assert_types_equal(log_again.attributes, ATTRS)
        assert store.query_metrics() == [point]


def test_duration_properties() -> None:
    span = make_span(start_ns=1_000, end_ns=2_501_000)
    assert span.duration_ns == 2_500_000
    assert span.duration_ms == 2.5


def test_defaults_round_trip(store: tael.Store) -> None:
    span, log, point = make_span(), make_log(), make_point()
    store.insert_spans([span])
    store.insert_logs([log])
    store.insert_metrics([point])
    assert store.get_trace(span.trace_id) == [span]
    assert store.query_logs() == [log]
    assert store.query_metrics() == [point]


def test_uppercase_ids_are_stored_lowercase(store: tael.Store) -> None:
    span = make_span(trace_id="AB" * 16, span_id="CD" * 8)
    store.insert_spans([span])
    (got,) = store.get_trace("ab" * 16)
    assert (got.trace_id, got.span_id) == ("ab" * 16, "cd" * 8)


def test_nan_attribute_survives(store: tael.Store) -> None:
    store.insert_spans([make_span(attributes={"x": math.nan, "inf": math.inf})])
    (got,) = store.query_traces()
    assert math.isnan(got.attributes["x"]) and got.attributes["inf"] == math.inf


def test_reinserting_a_span_is_idempotent(store: tael.Store) -> None:
    span = make_span(status="error", start_ns=0, end_ns=4_000_000)
    store.insert_spans([span])
    store.insert_spans([span, span])
    assert store.get_trace(span.trace_id) == [span]
    (svc,) = store.list_services()
    assert (svc.span_count, svc.error_count, svc.trace_count) == (1, 1, 1)
    assert store.stats().signals["spans"].count == 1


def test_insert_returns_batch_size_and_accepts_iterables(store: tael.Store) -> None:
    assert store.insert_spans(make_span() for _ in range(3)) == 3
    assert store.insert_logs([]) == 0
    assert store.stats().signals["spans"].count == 3
