"""Bad records are refused with an error naming the record and field; nothing of the batch is written."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime
from typing import Any

import pytest

import tael

from .conftest import make_log, make_point, make_span


class Weird:
    pass


SPAN_CASES: list[tuple[dict[str, Any], str]] = [
    ({"trace_id": "ab" * 15}, "trace_id"),
    ({"trace_id": "zz" * 16}, "trace_id"),
    ({"trace_id": "ab cd" + "a" * 27}, "trace_id"),
    ({"trace_id": "0" * 32}, "trace_id"),
    ({"trace_id": 12}, "trace_id"),
    ({"span_id": "ab" * 9}, "span_id"),
    ({"span_id": "g" * 16}, "span_id"),
    ({"parent_span_id": "xyz"}, "parent_span_id"),
    ({"start_ns": 10, "end_ns": 5}, "end_ns"),
    ({"start_ns": -1}, "start_ns"),
    ({"start_ns": 1.5}, "start_ns"),
    ({"start_ns": True}, "start_ns"),
    ({"end_ns": 2**63}, "end_ns"),
    ({"kind": "sideways"}, "kind"),
    ({"status": "fine"}, "status"),
    ({"name": 5}, "name"),
    ({"service": None}, "service"),
    ({"service": "a\x00b"}, "service"),
    ({"service": "x" * 401}, "service"),
    ({"status_message": b"bytes"}, "status_message"),
    ({"attributes": {"k": Weird()}}, "attributes.k"),
    ({"attributes": {"k": b"raw"}}, "attributes.k"),
    ({"attributes": {"k": (1, 2)}}, "attributes.k"),
    ({"attributes": {"k": {"inner": {1, 2}}}}, "attributes.k.inner"),
    ({"attributes": {1: "int key"}}, "attributes"),
    ({"attributes": {"k": 2**64}}, "attributes.k"),
    ({"attributes": {"k": [1, -(2**63) - 1]}}, "attributes.k[1]"),
    ({"attributes": "not a dict"}, "attributes"),
    ({"resource": {"k": object()}}, "resource.k"),
    ({"events": [tael.SpanEvent(time_ns=-5, name="e")]}, "events[0].time_ns"),
    ({"events": [tael.SpanEvent(time_ns=5, name=None)]}, "events[0].name"),  # type: ignore[arg-type]
    ({"events": [tael.SpanEvent(time_ns=5, name="e", attributes={"x": Weird()})]}, "events[0].attributes.x"),
    ({"events": ["not an event"]}, "events[0]"),
    ({"links": [tael.SpanLink(trace_id="nothex", span_id="ab" * 8)]}, "links[0].trace_id"),
    ({"flags": -1}, "flags"),
]


@pytest.mark.parametrize(("change", "field"), SPAN_CASES)
def test_bad_span_is_refused_and_batch_not_written(store: tael.Store, change: dict[str, Any], field: str) -> None:
    batch = [make_span(), make_span(), make_span(**change)]
    with pytest.raises(tael.ValidationError) as info:
        store.insert_spans(batch)
    assert info.value.index == 2
    assert info.value.field == field
    assert "record 2" in str(info.value) and field in str(info.value)
    assert store.stats().signals["spans"].count == 0
    assert store.list_services() == []


LOG_CASES: list[tuple[dict[str, Any], str]] = [
    ({"severity_number": 25}, "severity_number"),
    ({"severity_number": -1}, "severity_number"),
    ({"severity_number": "ERROR"}, "severity_number"),
    ({"time_ns": "now"}, "time_ns"),
    ({"body": 3}, "body"),
    ({"service": 3}, "service"),
    ({"trace_id": "abc"}, "trace_id"),
    ({"span_id": "q" * 16}, "span_id"),
    ({"attributes": {"k": Weird()}}, "attributes.k"),
    ({"observed_ns": -3}, "observed_ns"),
]


@pytest.mark.parametrize(("change", "field"), LOG_CASES)
def test_bad_log_is_refused(store: tael.Store, change: dict[str, Any], field: str) -> None:
    with pytest.raises(tael.ValidationError) as info:
        store.insert_logs([make_log(), make_log(**change)])
    assert (info.value.index, info.value.field) == (1, field)
    assert store.stats().signals["logs"].count == 0


METRIC_CASES: list[tuple[dict[str, Any], str]] = [
    ({"value": math.nan}, "value"),
    ({"value": math.inf}, "value"),
    ({"value": "1"}, "value"),
    ({"kind": "summary"}, "kind"),
    ({"temporality": "sometimes"}, "temporality"),
    ({"name": ""}, "name"),
    ({"name": 7}, "name"),
    ({"monotonic": 1}, "monotonic"),
    ({"count": -1}, "count"),
    ({"count": 2**63}, "count"),
    ({"bucket_counts": [1, 2], "explicit_bounds": [1.0, 2.0]}, "bucket_counts"),
    ({"explicit_bounds": [math.nan]}, "explicit_bounds[0]"),
    ({"attributes": {"k": [Weird()]}}, "attributes.k[0]"),
]


@pytest.mark.parametrize(("change", "field"), METRIC_CASES)
def test_bad_metric_is_refused(store: tael.Store, change: dict[str, Any], field: str) -> None:
    with pytest.raises(tael.ValidationError) as info:
        store.insert_metrics([make_point(), make_point(), make_point(), make_point(**change)])
    assert (info.value.index, info.value.field) == (3, field)
    assert store.stats().signals["metrics"].count == 0


def test_wrong_record_type_is_refused(store: tael.Store) -> None:
    with pytest.raises(tael.ValidationError, match=r"expected tael\.Span"):
        store.insert_spans([make_log()])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        store.insert_spans("not a list")  # type: ignore[arg-type]


def test_validation_error_is_a_value_error_and_tael_error() -> None:
    assert issubclass(tael.ValidationError, ValueError)
    assert issubclass(tael.ValidationError, tael.TaelError)
    for exc in (tael.StorageError, tael.CorruptionError, tael.StoreLockedError, tael.StoreClosedError):
        assert issubclass(exc, tael.TaelError)


def test_query_arguments_are_checked(store: tael.Store) -> None:
    from datetime import datetime

    with pytest.raises(ValueError, match="100,000"):
        store.query_traces(limit=100_001)
    with pytest.raises(ValueError, match="positive"):
        store.query_logs(limit=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.query_traces(start=datetime(2024, 1, 1))
    with pytest.raises(TypeError, match="start"):
        store.query_traces(start="yesterday")
    with pytest.raises(ValueError, match="status"):
        store.query_traces(status="bad")
    with pytest.raises(ValueError, match="trace_id"):
        store.get_trace("nothex")
    with pytest.raises(ValueError, match="min_severity"):
        store.query_logs(min_severity=30)


@pytest.mark.parametrize(
    ("method", "cls", "kw"),
    [
        ("query_traces", tael.SpanFilter, {"status": "bad"}),
        ("query_traces", tael.SpanFilter, {"kind": "middle"}),
        ("query_traces", tael.SpanFilter, {"min_duration_ms": "5"}),
        ("query_traces", tael.SpanFilter, {"max_duration_ms": True}),
        ("query_traces", tael.SpanFilter, {"attributes": ["k"]}),
        ("query_traces", tael.SpanFilter, {"text": "  "}),
        ("query_traces", tael.SpanFilter, {"text": "", "status": "bad"}),  # the first check wins, as before
        ("query_traces", tael.SpanFilter, {"end": "later"}),
        ("query_logs", tael.LogFilter, {"min_severity": 30}),
        ("query_logs", tael.LogFilter, {"trace_id": "xyz"}),
        ("query_logs", tael.LogFilter, {"trace_id": "g" * 32}),
        ("query_logs", tael.LogFilter, {"min_severity": -1, "trace_id": "xyz"}),
        ("query_logs", tael.LogFilter, {"attributes": 3}),
        ("query_metrics", tael.MetricFilter, {"attributes": "host=a"}),
        ("query_metrics", tael.MetricFilter, {"start": datetime(2024, 1, 1)}),
    ],
)
def test_a_filter_object_is_checked_when_made_as_the_keywords_are(
    store: tael.Store, method: str, cls: type, kw: dict[str, Any]
) -> None:
    with pytest.raises((ValueError, TypeError)) as by_keywords:
        getattr(store, method)(**kw)
    with pytest.raises(type(by_keywords.value)) as by_object:
        cls(**kw)
    assert str(by_object.value) == str(by_keywords.value)


def test_a_query_takes_a_filter_object_or_keyword_filters_not_both(store: tael.Store) -> None:
    with pytest.raises(ValueError, match="either a SpanFilter or keyword filters, not both"):
        store.query_traces(tael.SpanFilter(service="a"), name="b")
    with pytest.raises(ValueError, match="either a LogFilter or keyword filters, not both"):
        store.query_logs(tael.LogFilter(), attributes={})
    with pytest.raises(ValueError, match="either a MetricFilter or keyword filters, not both"):
        store.query_metrics(tael.MetricFilter(name="m"), start=5)
    with pytest.raises(TypeError, match="must be a SpanFilter, got LogFilter"):
        store.query_traces(tael.LogFilter())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a MetricFilter, got dict"):
        store.query_metrics({"name": "m"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a SpanFilter, got str"):
        store.trace_summaries("checkout")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="100,000"):  # limit and order are still the query's
        store.query_traces(tael.SpanFilter(), limit=100_001)
    with pytest.raises(ValueError, match="order"):
        store.query_logs(tael.LogFilter(), order="newest")
    with pytest.raises(TypeError):
        store.query_traces(service="a", where=tael.SpanFilter())  # type: ignore[call-arg]
    assert store.query_traces(tael.SpanFilter(service="a"), limit=5, order="asc") == []


@pytest.mark.parametrize("method", ["query_traces", "query_logs", "query_metrics", "trace_summaries"])
def test_an_unknown_keyword_is_a_type_error_before_any_value_is_checked(store: tael.Store, method: str) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        getattr(store, method)(bogus=1, limit=0)  # limit=0 alone is a ValueError: the unknown name comes first
    with pytest.raises(ValueError, match="limit"):
        getattr(store, method)(limit=0)


def test_the_keyword_filter_types_name_exactly_the_filter_fields() -> None:
    from tael._query.filters import LogArgs, MetricArgs, SpanArgs

    for args, cls in ((SpanArgs, tael.SpanFilter), (LogArgs, tael.LogFilter), (MetricArgs, tael.MetricFilter)):
        fields = [f.name for f in dataclasses.fields(cls) if f.init]
        assert list(args.__annotations__) == fields, cls.__name__


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="durability"):
        tael.Settings(durability="maybe")
    with pytest.raises(ValueError, match="wal_segment_bytes"):
        tael.Settings(wal_segment_bytes=10)
    with pytest.raises(AttributeError):
        tael.Settings().durability = "os"  # type: ignore[misc]
    for bad, match in (
        ({"payload_attributes": ["gen_ai.prompt"]}, "payload_attributes"),
        ({"payload_attributes": ("",)}, "payload_attributes"),
        ({"payload_blob_min_bytes": 0}, "payload_blob_min_bytes"),
        ({"blob_compression_level": 23}, "blob_compression_level"),
        ({"index_commit_interval_s": 0}, "index_commit_interval_s"),
        ({"index_writer_heap_bytes": 1 << 20}, "index_writer_heap_bytes"),
    ):
        with pytest.raises(ValueError, match=match):
            tael.Settings(**bad)  # type: ignore[arg-type]
    for bad, match in (
        ({"replicas": ["http://a"]}, "replicas"),
        ({"replicas": ("ftp://a",)}, "replicas"),
        ({"replicas": ("http://a", "http://a")}, "twice"),
        ({"replicas": ("http://a",), "required_acks": 2}, "required_acks"),
        ({"required_acks": -1}, "required_acks"),
        ({"replication_timeout_s": 0}, "replication_timeout_s"),
        ({"standby_listen": "nohost"}, "standby_listen"),
        ({"cold_uri": ""}, "cold_uri"),
        ({"cold_cache_bytes": -1}, "cold_cache_bytes"),
    ):
        with pytest.raises(ValueError, match=match):
            tael.Settings(**bad)  # type: ignore[arg-type]


def test_settings_from_a_toml_file(tmp_path: Any) -> None:
    good = tmp_path / "good.toml"
    good.write_text('replicas = ["http://10.0.0.2:4318"]\nrequired_acks = 1\nretention_logs_days = 2.5\n')
    s = tael.Settings.from_file(good, durability="os")
    assert s.replicas == ("http://10.0.0.2:4318",) and s.required_acks == 1
    assert s.retention_logs_days == 2.5 and s.durability == "os" and s.hot_window_s == tael.Settings().hot_window_s
    two = tmp_path / "two.toml"
    two.write_text("required_acks = 2\n")
    assert tael.Settings.from_file(two, replicas=("http://a", "http://b")).required_acks == 2, "overrides first"
    for text, match in (
        ("retention_log_days = 2\n", "unknown setting.*retention_log_days"),
        ("replicas = [\n", "not valid TOML"),
        ("durability = 'maybe'\n", "durability"),
        ("cold_filesystem = 'x'\n", "unknown setting.*cold_filesystem"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=match):
            tael.Settings.from_file(bad)
    with pytest.raises(ValueError, match="cannot read settings file"):
        tael.Settings.from_file(tmp_path / "missing.toml")


BAD = "caf\udce9"  # a lone surrogate, as os.fsdecode or a bad decoder leaves behind: not encodable as UTF-8


@pytest.mark.parametrize(
    ("make", "fields", "field"),
    [
        (make_span, {"service": BAD}, "service"),
        (make_span, {"name": BAD}, "name"),
        (make_span, {"status_message": BAD}, "status_message"),
        (make_span, {"trace_state": BAD}, "trace_state"),
        (make_span, {"attributes": {BAD: 1}}, "attributes"),
        (make_span, {"attributes": {"k": BAD}}, "attributes.k"),
        (make_span, {"resource": {"r": [BAD]}}, "resource.r[0]"),
        (make_log, {"body": BAD}, "body"),
        (make_log, {"service": BAD}, "service"),
        (make_log, {"severity_text": BAD}, "severity_text"),
        (make_log, {"scope_name": BAD}, "scope_name"),
        (make_log, {"attributes": {BAD: "v"}}, "attributes"),
        (make_point, {"name": BAD}, "name"),
        (make_point, {"service": BAD}, "service"),
        (make_point, {"unit": BAD}, "unit"),
        (make_point, {"attributes": {"k": BAD}}, "attributes.k"),
    ],
)
def test_text_that_is_not_valid_unicode_is_a_validation_error_naming_its_field(
    store: tael.Store, make: Any, fields: dict[str, Any], field: str
) -> None:
    """A str holding a lone surrogate cannot be stored (msgpack and LMDB need UTF-8):
    a ValidationError naming the field, not a UnicodeEncodeError from deep inside."""
    insert = {make_span: store.insert_spans, make_log: store.insert_logs, make_point: store.insert_metrics}[make]
    with pytest.raises(tael.ValidationError) as info:
        insert([make(), make(**fields)])
    assert info.value.index == 1 and info.value.field == field, str(info.value)
    assert "Unicode" in str(info.value)
    assert store.query_traces() == [] and store.query_logs() == [] and store.query_metrics() == []
