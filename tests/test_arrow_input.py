"""Arrow input (issue 16): column batches built from model objects and from Arrow tables.

The column builders of tael/_columns.py must refuse exactly what today's encoders
(tael/_codec.py) refuse, with the same error, and build the records the encoders
encode; a pyarrow Table or RecordBatch inserted through ``Store.insert_*`` answers
every read as the model objects it was made of, and a bad one is refused naming its
first bad row and column, with nothing written."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tael
from tael import _block, _codec, _columns
from tael._blobs import Payloads
from tael._columns import objects, per_record
from tael._columns.common import Irregular
from tael._workload import Workload
from tests import test_key_limits, test_validation
from tests.conftest import make_log, make_point, make_span

PAYLOADS = Payloads(("gen_ai.prompt", "exception.message"), 64)


def _same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN and tells -0.0 from 0.0 and 1 from 1.0."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# ---------------------------------------------------------------- model objects: the encoders' errors, exactly

Outcome = tuple[Any, ...]


def _error(exc: tael.ValidationError) -> Outcome:
    return ("refused", type(exc), str(exc), exc.index, exc.field)


def encoded(signal: str, records: Sequence[Any]) -> Outcome:
    """What today's encoder makes of a batch: its error, or (records, flags or series ids)."""
    try:
        if signal == "spans":
            rows: Sequence[Any] = _codec.encode_spans(records, PAYLOADS)
            return ("ok", [_codec.unpackb(r[-1]) for r in rows], [r[7] for r in rows])
        if signal == "logs":
            rows = _codec.encode_logs(records, PAYLOADS)
            return ("ok", [_codec.unpackb(r[-1]) for r in rows], [r[4] for r in rows])
        rows = _codec.encode_metrics(records)
        return ("ok", [_codec.unpackb(r[-1]) for r in rows], [r[2] for r in rows])
    except tael.ValidationError as exc:
        return _error(exc)


def built(signal: str, records: Sequence[Any], build: Callable[..., pa.RecordBatch] | None = None) -> Outcome:
    """What a column builder makes of the same batch, in the same terms."""
    try:
        if signal == "spans":
            batch = (build or _columns.span_columns)(records, PAYLOADS)
            extra = batch.column("payload").to_pylist()
        elif signal == "logs":
            batch = (build or _columns.log_columns)(records, PAYLOADS)
            extra = batch.column("payload").to_pylist()
        else:
            batch = (build or _columns.metric_columns)(records)
            extra = batch.column("series_id").to_pylist()
    except tael.ValidationError as exc:
        return _error(exc)
    assert batch.schema == _block.BLOCK_SCHEMAS[signal]
    batch.validate(full=True)
    return ("ok", _block.RECORDS_OF[signal](batch, None), extra)


def assert_same_outcome(signal: str, records: Sequence[Any]) -> Outcome:
    expected = encoded(signal, records)
    got = built(signal, records)
    assert _same(got, expected), (got, expected)
    by_row = {"spans": per_record.spans_by_row, "logs": per_record.logs_by_row, "metrics": per_record.metrics_by_row}
    assert _same(built(signal, records, by_row[signal]), expected)  # the reference path too
    return expected


MAKE = {"spans": make_span, "logs": make_log, "metrics": make_point}


def _cases(test: Any) -> list[tuple[Any, ...]]:
    """The parameter sets of a parametrized test (its cases, without copying them here)."""
    (mark,) = [m for m in test.pytestmark if m.name == "parametrize"]
    return [tuple(case) for case in mark.args[1]]


def every_invalid_case() -> list[tuple[str, dict[str, Any], str]]:
    """(signal, changed fields, field at fault) of every invalid record in
    tests/test_validation.py and tests/test_key_limits.py."""
    cases = [("spans", change, field) for change, field in test_validation.SPAN_CASES]
    cases += [("logs", change, field) for change, field in test_validation.LOG_CASES]
    cases += [("metrics", change, field) for change, field in test_validation.METRIC_CASES]
    signal_of = {make_span: "spans", make_log: "logs", make_point: "metrics"}
    unicode_test = test_validation.test_text_that_is_not_valid_unicode_is_a_validation_error_naming_its_field
    cases += [(signal_of[make], fields, field) for make, fields, field in _cases(unicode_test)]
    (chars_mark,) = [
        m for m in test_key_limits.test_every_key_text_is_checked_at_its_real_budget.pytestmark if m.args[0] == "char"
    ]
    for char in chars_mark.args[1]:
        for signal, limit, field, make in test_key_limits.CASES.values():
            record = make(test_key_limits.text(limit + 1, char))
            changed = {f: getattr(record, f) for f in ("name", "service") if hasattr(record, f)}
            cases.append((signal, changed, field))
    cases.append(("spans", {"service": ""}, "service"))  # test_a_span_of_an_empty_service_is_refused
    cases.append(("spans", {"name": "n" * 503, "service": "checkout"}, "name"))  # the reported case
    return cases


@pytest.mark.parametrize(("signal", "change", "field"), every_invalid_case())
def test_the_builders_refuse_every_invalid_record_as_the_encoders_do(
    signal: str, change: dict[str, Any], field: str
) -> None:
    make = MAKE[signal]
    for position in (0, 2):
        batch = [make(), make()]
        batch.insert(position, make(**change))
        outcome = assert_same_outcome(signal, batch)
        assert outcome[0] == "refused" and outcome[3:] == (position, field), outcome


def test_the_builders_refuse_a_record_of_the_wrong_type() -> None:
    for signal in ("spans", "logs", "metrics"):
        other = make_log() if signal != "logs" else make_span()
        outcome = assert_same_outcome(signal, [MAKE[signal](), other])
        assert outcome[0] == "refused" and outcome[3] == 1


def test_the_first_bad_record_is_named_whatever_is_wrong_with_later_ones() -> None:
    """Two bad records: the first one's error, though the later one's fault is one the
    column-wise path checks earlier (ids before attributes)."""
    bad_attrs = make_span(attributes={"k": 2**64})
    bad_id = make_span(trace_id="0" * 32)
    for batch in ([make_span(), bad_attrs, bad_id], [make_span(), bad_id, bad_attrs]):
        assert assert_same_outcome("spans", batch)[0] == "refused"
    bad_name = make_span(name="caf\udce9")
    assert assert_same_outcome("spans", [bad_name, make_span(start_ns=-1)])[3:] == (0, "name")
    assert assert_same_outcome("logs", [make_log(body="caf\udce9"), make_log(time_ns=-1)])[3:] == (0, "body")
    nested = make_point(attributes={"k": [{"x": 2**64}]})
    assert assert_same_outcome("metrics", [nested, make_point(value=math.nan)])[3:] == (0, "attributes.k[0].x")


def test_the_builders_build_the_records_the_encoders_encode() -> None:
    w = Workload(seed=1)
    for signal, records in (("spans", w.spans(600)), ("logs", w.logs(600)), ("metrics", w.metrics(600))):
        assert assert_same_outcome(signal, records)[0] == "ok"
    # the column-wise path took these (the record-by-record one is the reference above)
    objects.spans_at_once(w.spans(50), PAYLOADS)
    objects.logs_at_once(w.logs(50), PAYLOADS)
    objects.metrics_at_once(w.metrics(50))


class Sub(str):
    pass


class SubFloat(float):
    pass


UNUSUAL_SPANS: list[dict[str, Any]] = [
    {"attributes": {"nested": {"a": [1, {"b": None}]}, "list": [1.5, "x"]}},
    {"attributes": {"nan": math.nan, "inf": -math.inf, "none": None, "s": "null"}},
    {"attributes": {"k": SubFloat(1.5)}},
    {"attributes": {"k": np.float64(2.5)}},
    {"attributes": {"big": 2**64 - 1, "small": -(2**63)}},
    {"resource": {"r": [1, 2]}},
    {"name": Sub("op"), "service": Sub("svc")},
    {"kind": Sub("server")},
    {"events": (tael.SpanEvent(time_ns=5, name="e", attributes={"gen_ai.prompt": "p" * 100}),)},
    {"events": [tael.SpanEvent(time_ns=5, name="é", attributes={"x": {"y": math.nan}})]},
    {"links": [tael.SpanLink(trace_id="AB" * 16, span_id="CD" * 8, attributes={"k": 1})]},
    {"attributes": {"gen_ai.prompt": "short"}, "parent_span_id": ""},
    {"attributes": {"exception.message": "long " * 20}},
    {"status_message": "naïve ☃", "trace_state": "a=b", "scope_name": "日本語", "flags": 2**32 - 1},
    {"name": "\x00\x01tael\x02", "events": [tael.SpanEvent(time_ns=1, name="\x00\x01tael\x02")]},
    {"attributes": {"k": ["\x00\x01tael\x02", "\x00\x01tael\x02", 1]}},
]


@pytest.mark.parametrize("change", UNUSUAL_SPANS)
def test_unusual_but_valid_spans_build_as_they_encode(change: dict[str, Any]) -> None:
    shared = {"service.name": "svc"}
    batch = [make_span(resource=shared), make_span(**change), make_span(resource=shared)]
    assert assert_same_outcome("spans", batch)[0] == "ok"


UNUSUAL_LOGS: list[dict[str, Any]] = [
    {"attributes": {"nested": [1, [2]]}, "resource": {"r": {"x": 1}}},
    {"body": "b" * 100, "trace_id": "AB" * 16, "span_id": ""},
    {"body": "", "service": "", "observed_ns": 5},
    {"body": Sub("sub body"), "severity_number": 24},
    {"attributes": {"nan": math.nan}},
]


@pytest.mark.parametrize("change", UNUSUAL_LOGS)
def test_unusual_but_valid_logs_build_as_they_encode(change: dict[str, Any]) -> None:
    assert assert_same_outcome("logs", [make_log(), make_log(**change), make_log()])[0] == "ok"


UNUSUAL_POINTS: list[dict[str, Any]] = [
    {"value": 3},
    {"value": SubFloat(2.0)},
    {"attributes": {"nested": {"a": 1}}},
    {"attributes": {"b": 1, "a": 2}},
    {"attributes": {"a": 2, "b": 1}},
    {
        "kind": "histogram",
        "count": 3,
        "sum": 1,
        "min": 0.5,
        "max": math.nan,
        "bucket_counts": [1, 2],
        "explicit_bounds": [1],
    },
    {"bucket_counts": (1, 2)},
    {"start_ns": 0, "temporality": "delta", "monotonic": True, "kind": "sum", "unit": "By"},
]


@pytest.mark.parametrize("change", UNUSUAL_POINTS)
def test_unusual_but_valid_points_build_as_they_encode(change: dict[str, Any]) -> None:
    assert assert_same_outcome("metrics", [make_point(), make_point(**change), make_point()])[0] == "ok"


# ---------------------------------------------------------------- hypothesis: any mix of good and bad records


class Weird:
    pass


ID32 = st.sampled_from(["ab" * 16, "AB" * 16, "0" * 32, "ab" * 15, "zz" * 16, "ab cd" + "a" * 27, "", None, 12])
ID16 = st.sampled_from(["cd" * 8, "CD" * 8, "0" * 16, "cd" * 7, "gg" * 8, "", None])
NS = st.sampled_from([0, 1_000, 2**63 - 1, 2**63, -1, 1.5, True, None])
TEXT = st.sampled_from(["", "op", "é" * 300, "caf\udce9", "a\x00b", "x" * 401, "n" * 600, Sub("s"), 5, None])
VALUE = st.recursive(
    st.sampled_from([1, -1, 2**64, -(2**63) - 1, 1.5, math.nan, True, None, "s", "caf\udce9", b"raw", Weird(), (1,)]),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from(["k", "gen_ai.prompt"]), inner, max_size=2)
    ),
    max_leaves=4,
)
MAPS = st.dictionaries(
    st.sampled_from(["k", "gen_ai.prompt", "exception.message", "x.y"]), VALUE, max_size=3
) | st.sampled_from([{}, {1: "int key"}, "not a map", {"gen_ai.prompt": "p" * 80}])


@st.composite
def any_span(draw: st.DrawFn) -> Any:
    fields = {
        "trace_id": draw(ID32),
        "span_id": draw(ID16),
        "parent_span_id": draw(ID16),
        "name": draw(TEXT),
        "service": draw(TEXT | st.just("svc")),
        "start_ns": draw(NS),
        "end_ns": draw(NS),
        "kind": draw(st.sampled_from(["internal", "server", "sideways", Sub("client"), None, ["server"]])),
        "status": draw(st.sampled_from(["unset", "error", "fine", {"error": 1}])),
        "status_message": draw(TEXT),
        "attributes": draw(MAPS),
        "resource": draw(MAPS),
        "events": draw(
            st.lists(st.builds(tael.SpanEvent, time_ns=NS, name=TEXT, attributes=MAPS), max_size=2)
            | st.sampled_from([(), "x", [Weird()]])
        ),
        "links": draw(st.lists(st.builds(tael.SpanLink, trace_id=ID32, span_id=ID16, attributes=MAPS), max_size=1)),
        "trace_state": draw(TEXT),
        "flags": draw(st.sampled_from([0, 1, 2**32 - 1, 2**32, -1, True])),
    }
    good = make_span()
    keep = draw(st.sets(st.sampled_from(sorted(fields))))  # the fields left valid
    for name in keep:
        fields[name] = getattr(good, name)
    return tael.Span(**fields) if draw(st.booleans()) or len(keep) < 10 else make_log()


@st.composite
def any_log(draw: st.DrawFn) -> Any:
    fields = {
        "time_ns": draw(NS),
        "body": draw(TEXT),
        "service": draw(TEXT),
        "severity_number": draw(st.sampled_from([0, 9, 24, 25, -1, "ERROR", True])),
        "severity_text": draw(TEXT),
        "trace_id": draw(ID32),
        "span_id": draw(ID16),
        "attributes": draw(MAPS),
        "resource": draw(MAPS | st.sampled_from([[], 0])),
        "observed_ns": draw(NS),
        "scope_name": draw(TEXT),
    }
    good = make_log()
    for name in draw(st.sets(st.sampled_from(sorted(fields)))):
        fields[name] = getattr(good, name)
    return tael.LogRecord(**fields)


@st.composite
def any_point(draw: st.DrawFn) -> Any:
    number = st.sampled_from([1.0, 0, -2.5, math.nan, math.inf, "1", None, True, 2**70])
    fields = {
        "time_ns": draw(NS),
        "name": draw(TEXT),
        "service": draw(TEXT),
        "value": draw(number),
        "kind": draw(st.sampled_from(["gauge", "sum", "histogram", "summary", ["sum"]])),
        "unit": draw(TEXT),
        "attributes": draw(MAPS),
        "monotonic": draw(st.sampled_from([False, True, 1])),
        "temporality": draw(st.sampled_from(["cumulative", "delta", "sometimes", ["delta"]])),
        "start_ns": draw(NS),
        "count": draw(st.sampled_from([None, 0, 3, -1, 2**63, 1.0])),
        "sum": draw(number),
        "min": draw(number),
        "max": draw(number),
        "bucket_counts": draw(st.sampled_from([None, [], [1, 2], [1, -1], [1.0], (1, 2), "x"])),
        "explicit_bounds": draw(st.sampled_from([None, [], [1.0], [math.nan], [1], ["a"]])),
    }
    good = make_point()
    for name in draw(st.sets(st.sampled_from(sorted(fields)))):
        fields[name] = getattr(good, name)
    return tael.MetricPoint(**fields)


def _batches(record: st.SearchStrategy[Any], good: Callable[[], Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(record | st.builds(good), min_size=1, max_size=5)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(
    spans=_batches(any_span(), make_span), logs=_batches(any_log(), make_log), points=_batches(any_point(), make_point)
)
def test_any_mix_of_records_builds_or_fails_as_it_encodes(spans: list[Any], logs: list[Any], points: list[Any]) -> None:
    assert_same_outcome("spans", spans)
    assert_same_outcome("logs", logs)
    assert_same_outcome("metrics", points)


@st.composite
def one_change(draw: st.DrawFn, record: st.SearchStrategy[Any], good: Callable[[], Any]) -> Any:
    """A good record with at most one field taken from ``record`` (mostly valid batches:
    the column-wise path is only taken when every record has the common shape)."""
    base, other = good(), draw(record)
    if type(other) is type(base) and draw(st.booleans()):
        name = draw(st.sampled_from([f for f in base.__slots__ if not f.startswith("_")]))
        setattr(base, name, getattr(other, name))
    return base


AT_ONCE = {
    "spans": lambda r: objects.spans_at_once(r, PAYLOADS),
    "logs": lambda r: objects.logs_at_once(r, PAYLOADS),
    "metrics": objects.metrics_at_once,
}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(
    spans=st.lists(one_change(any_span(), make_span), min_size=1, max_size=4),
    logs=st.lists(one_change(any_log(), make_log), min_size=1, max_size=4),
    points=st.lists(one_change(any_point(), make_point), min_size=1, max_size=4),
)
def test_the_column_wise_path_takes_only_what_the_encoders_take(
    spans: list[Any], logs: list[Any], points: list[Any]
) -> None:
    """Whatever the column-wise path accepts, the encoder accepts too and encodes the same
    records; what it does not take (``_Irregular``) goes record by record."""
    for signal, records in (("spans", spans), ("logs", logs), ("metrics", points)):
        expected = assert_same_outcome(signal, records)
        try:
            batch = AT_ONCE[signal](records)
        except Irregular:
            continue
        assert expected[0] == "ok", (records, expected)
        extra = batch.column("series_id" if signal == "metrics" else "payload").to_pylist()
        assert _same(("ok", _block.RECORDS_OF[signal](batch, None), extra), expected)
        TAKEN[signal] += 1


TAKEN = {"spans": 0, "logs": 0, "metrics": 0}


# ---------------------------------------------------------------- tables: every read answers as the model objects do

TABLE_OF = {"spans": tael.spans_table, "logs": tael.logs_table, "metrics": tael.metrics_table}
INSERT = {"spans": "insert_spans", "logs": "insert_logs", "metrics": "insert_metrics"}
SCHEMA = {"spans": tael.SPAN_SCHEMA, "logs": tael.LOG_SCHEMA, "metrics": tael.METRIC_SCHEMA}


def _day(day: int) -> dict[str, list[Any]]:
    from tests.data import make_format1_store as f1

    return {"spans": f1.spans(day, 30), "logs": f1.logs(day, 40), "metrics": f1.points(day, 60)}


def _chunked(table: pa.Table) -> pa.Table:
    """The same rows in several chunks, one of them empty, the others slices of one batch."""
    (batch,) = table.combine_chunks().to_batches()
    n = batch.num_rows
    return pa.Table.from_batches([batch.slice(0, 3), batch.slice(3, 0), batch.slice(3, n - 3)], schema=table.schema)


FORMS: dict[str, Callable[[pa.Table], Any]] = {
    "table": lambda t: t,
    "record batch": lambda t: t.combine_chunks().to_batches()[0],
    "chunked table": _chunked,
    "sliced batch": lambda t: pa.concat_tables([t.slice(0, 2), t]).combine_chunks().to_batches()[0].slice(2),
}


def _answers(store: tael.Store) -> dict[str, Any]:
    import json

    from tests.data.make_format1_store import answers

    return json.loads(json.dumps(answers(store)))


@pytest.mark.parametrize("form", sorted(FORMS))
def test_tables_answer_every_read_as_the_model_objects_do(tmp_path: Path, form: str) -> None:
    from tests.data.make_format1_store import HOUR, SETTINGS, T0

    with tael.Store(tmp_path / "objects", SETTINGS) as objects, tael.Store(tmp_path / "tables", SETTINGS) as tables:
        for day in (0, 1, 2):
            for signal, records in _day(day).items():
                assert getattr(objects, INSERT[signal])(records) == len(records)
                table = TABLE_OF[signal](records)
                assert table.schema == SCHEMA[signal]
                assert getattr(tables, INSERT[signal])(FORMS[form](table)) == len(records)
            if day == 1:
                objects.compact(T0 + 2 * 24 * HOUR)
                tables.compact(T0 + 2 * 24 * HOUR)
        for store in (objects, tables):
            store.flush()
        assert _answers(tables) == _answers(objects)
        assert tables.stats().signals == objects.stats().signals
        assert tables.stats().blobs == objects.stats().blobs > 0  # the long payloads went to the blob store
    with tael.Store(tmp_path / "tables", SETTINGS) as tables, tael.Store(tmp_path / "objects", SETTINGS) as objects:
        assert _answers(tables) == _answers(objects)  # replayed and reopened alike


# ---------------------------------------------------------------- tables: each rule names the first bad row, column


def three(signal: str) -> pa.Table:
    """A good table of three records."""
    return TABLE_OF[signal]([MAKE[signal]() for _ in range(3)])


def with_value(table: pa.Table, column: str, row: int, value: Any, type_: pa.DataType | None = None) -> pa.Table:
    """``table`` with one value replaced (and the column given ``type_``, when given)."""
    values = table.column(column).to_pylist() if column in table.column_names else [None] * table.num_rows
    if type_ is not None and pa.types.is_string(type_) and column.endswith("_id"):
        values = [v.hex() if isinstance(v, bytes) else v for v in values]
    values[row] = value
    field_type = type_ or table.schema.field(column).type
    arr = pa.array(values, field_type)
    if column in table.column_names:
        return table.set_column(table.schema.get_field_index(column), column, arr)
    return table.append_column(column, arr)


NOT_UTF8 = pa.Array.from_buffers(
    pa.string(), 1, [None, pa.py_buffer(b"\x00\x00\x00\x00\x02\x00\x00\x00"), pa.py_buffer(b"\xc3(")]
)
DEEP = '{"k": ' + "[" * 33 + "1" + "]" * 33 + "}"

RULES: list[tuple[str, str, Any, pa.DataType | None, str]] = [
    # (signal, column, bad value in row 1, column type or None for the public one, in the message)
    ("spans", "trace_id", None, None, "must not be null"),
    ("spans", "trace_id", bytes(16), None, "all zeros"),
    ("spans", "trace_id", "zz" * 16, pa.string(), "is not hex"),
    ("spans", "trace_id", "ab" * 15, pa.string(), "must be 32 hex characters, got 30"),
    ("spans", "trace_id", b"short", pa.binary(), "must be 16 bytes"),
    ("spans", "span_id", bytes(8), None, "all zeros"),
    ("spans", "span_id", "", pa.string(), "must not be null"),
    ("spans", "parent_span_id", bytes(8), None, "all zeros"),
    ("spans", "parent_span_id", "abc", pa.large_string(), "must be 16 hex characters"),
    ("spans", "name", None, None, "must not be null"),
    ("spans", "name", "n" * 508, None, "at most 507 bytes of UTF-8 for a service name of 3 bytes"),
    ("spans", "service", "", None, "must not be empty"),
    ("spans", "service", "a\x00b", None, "NUL"),
    ("spans", "service", "x" * 401, None, "at most 400 bytes"),
    ("spans", "start_ns", -1, None, "in 0..2**63-1, got -1"),
    ("spans", "start_ns", 2**63, pa.uint64(), "must fit in int64"),
    ("spans", "end_ns", 5, None, "must be >= start_ns (1000), got 5"),
    ("spans", "kind", "sideways", None, "must be one of ('internal'"),
    ("spans", "status", "fine", None, "must be one of ('unset'"),
    ("spans", "status_message", None, NOT_UTF8, "is not valid UTF-8"),
    ("spans", "attributes", "not json", None, "is not valid JSON"),
    ("spans", "attributes", "[1]", None, "must be a JSON object, got an array"),
    ("spans", "attributes", '{"k": 18446744073709551616}', None, "does not fit in 64 bits at attributes.k"),
    ("spans", "attributes", '{"k": -9223372036854775809}', None, "does not fit in 64 bits at attributes.k"),
    ("spans", "attributes", DEEP, None, "nested more than 32 levels"),
    ("spans", "attributes", '{"k": "\\ud800"}', None, "not valid Unicode at attributes.k"),
    ("spans", "resource", "null", None, "must be a JSON object, got null"),
    ("spans", "events", "{}", None, "must be a JSON array of events"),
    ("spans", "events", '[{"time_ns": -1, "name": "e"}]', None, "events[0].time_ns"),
    ("spans", "events", '[{"time_ns": 1, "name": 5}]', None, "events[0].name"),
    ("spans", "events", '[{"time_ns": 1, "name": "e", "when": 2}]', None, "keys other than"),
    ("spans", "events", '[{"time_ns": 1, "name": "e", "attributes": []}]', None, "attributes must be an object"),
    ("spans", "links", '[{"trace_id": "' + "0" * 32 + '", "span_id": "' + "1" * 16 + '"}]', None, "links[0].trace_id"),
    ("spans", "links", '[{"trace_id": "' + "1" * 32 + '", "span_id": "x"}]', None, "links[0].span_id"),
    ("spans", "flags", 2**32, None, "0..2**32-1"),
    ("spans", "flags", -1, None, "0..2**32-1"),
    ("logs", "time_ns", None, None, "must not be null"),
    ("logs", "time_ns", -5, None, "0..2**63-1"),
    ("logs", "body", None, None, "must not be null"),
    ("logs", "service", "x" * 401, None, "at most 400 bytes"),
    ("logs", "severity_number", 25, None, "0..24"),
    ("logs", "severity_number", -1, pa.int8(), "0..24"),
    ("logs", "trace_id", bytes(16), None, "all zeros"),
    ("logs", "trace_id", "xy" * 16, pa.string(), "is not hex"),
    ("logs", "span_id", bytes(8), None, "all zeros"),
    ("logs", "attributes", '"text"', None, "must be a JSON object, got a string"),
    ("logs", "observed_ns", -1, None, "0..2**63-1"),
    ("metrics", "time_ns", -1, None, "0..2**63-1"),
    ("metrics", "name", "", None, "must not be empty"),
    ("metrics", "name", "m" * 503, None, "at most 502 bytes"),
    ("metrics", "name", "a\x00b", None, "NUL"),
    ("metrics", "service", "x" * 401, None, "at most 400 bytes"),
    ("metrics", "value", math.nan, None, "must be finite"),
    ("metrics", "value", -math.inf, None, "must be finite"),
    ("metrics", "value", None, None, "must not be null"),
    ("metrics", "kind", "summary", None, "must be one of ('gauge'"),
    ("metrics", "temporality", "sometimes", None, "must be one of ('cumulative'"),
    ("metrics", "attributes", "[]", None, "must be a JSON object"),
    ("metrics", "start_ns", -1, None, "0..2**63-1"),
    ("metrics", "count", -1, None, "non-negative"),
    ("metrics", "bucket_counts", [1, -1], None, "ints >= 0"),
    ("metrics", "bucket_counts", [1, None], None, "ints >= 0"),
    ("metrics", "explicit_bounds", [math.nan], None, "finite numbers"),
    ("metrics", "bucket_counts", [1, 2], None, "len(explicit_bounds) + 1 = 3 entries, got 2"),
]


def _rule_id(case: tuple[Any, ...]) -> str:
    return f"{case[0]}.{case[1]}={str(case[2])[:20]!r}"


@pytest.mark.parametrize("case", RULES, ids=_rule_id)
def test_each_rule_names_the_first_bad_row_and_its_column(store: tael.Store, case: tuple[Any, ...]) -> None:
    signal, column, value, type_, fragment = case
    if isinstance(type_, pa.Array):  # a value pyarrow cannot make from Python (invalid UTF-8)
        table = three(signal)
        values = table.column(column).combine_chunks()
        arr = pa.concat_arrays([values.slice(0, 1), type_, values.slice(2)])
        table = table.set_column(table.schema.get_field_index(column), column, arr)
    else:
        table = with_value(three(signal), column, 1, value, type_)
    if fragment.startswith("len(explicit_bounds)"):  # the model's rule: reported on bucket_counts
        table = with_value(table, "explicit_bounds", 1, [1.0, 2.0])
    with pytest.raises(tael.ValidationError) as info:
        getattr(store, INSERT[signal])(table)
    err = info.value
    assert (err.index, err.field) == (1, column), str(err)
    assert str(err).startswith(f"row 1: column {column!r} ")
    if fragment is not None:
        assert fragment in str(err)
    assert store.stats().signals[signal].count == 0


def _wal_bytes(store: tael.Store) -> int:
    return sum(p.stat().st_size for p in (store.path / "wal").iterdir())


def test_a_bad_table_writes_nothing(store: tael.Store) -> None:
    store.insert_spans(three("spans"))
    store.flush()
    stats, wal = store.stats(), _wal_bytes(store)
    bad = with_value(three("spans"), "end_ns", 2, 5)
    writer = store.writer()
    for form in FORMS.values():
        with pytest.raises(tael.ValidationError):
            store.insert_spans(form(bad))
        with pytest.raises(tael.ValidationError):
            writer.write_spans(form(bad))  # a background writer checks on the caller's thread too
    writer.close()
    with pytest.raises(tael.ValidationError):
        store.insert_logs(with_value(three("logs"), "severity_number", 0, 99))
    with pytest.raises(tael.ValidationError):
        store.insert_metrics(three("spans"))  # a table of another signal: its columns are unknown here
    store.flush()
    assert store.stats().signals == stats.signals
    assert store.stats().applied_lsn == stats.applied_lsn
    assert _wal_bytes(store) == wal


def test_the_first_bad_row_wins_then_the_first_column_in_schema_order(store: tael.Store) -> None:
    table = with_value(three("spans"), "flags", 1, -1)  # flags: the last column
    table = with_value(table, "kind", 2, "sideways")
    with pytest.raises(tael.ValidationError) as info:
        store.insert_spans(table)
    assert (info.value.index, info.value.field) == (1, "flags")
    table = with_value(table, "name", 1, None)  # the same row: name comes first in the schema
    with pytest.raises(tael.ValidationError) as info:
        store.insert_spans(table)
    assert (info.value.index, info.value.field) == (1, "name")
    table = with_value(table, "trace_id", 2, "xx" * 16, pa.string())  # a cast problem in row 2 does not beat row 1
    with pytest.raises(tael.ValidationError) as info:
        store.insert_spans(table)
    assert (info.value.index, info.value.field) == (1, "name")


def retyped(table: pa.Table, column: str, value: Any, type_: pa.DataType) -> pa.Table:
    """``table`` with ``column`` of another type, every row holding ``value``."""
    arr = pa.array([value] * table.num_rows, type_)
    return table.set_column(table.schema.get_field_index(column), column, arr)


@pytest.mark.parametrize(
    ("signal", "change", "message"),
    [
        ("spans", lambda t: t.drop_columns(["service"]), "column 'service' is required in a table of spans"),
        ("spans", lambda t: t.drop_columns(["trace_id"]), "column 'trace_id' is required"),
        ("logs", lambda t: t.drop_columns(["body"]), "column 'body' is required"),
        ("metrics", lambda t: t.drop_columns(["value"]), "column 'value' is required"),
        (
            "spans",
            lambda t: t.append_column("colour", pa.array(["red"] * 3)),
            "column 'colour' is not a column of spans",
        ),
        ("spans", lambda t: t.append_column("payload", pa.array([0] * 3)), "column 'payload' is not a column"),
        ("spans", lambda t: t.append_column("name", pa.array(["x"] * 3)), "column 'name' appears twice"),
        ("spans", lambda t: retyped(t, "start_ns", "1000", pa.string()), "column 'start_ns' has type string"),
        (
            "spans",
            lambda t: retyped(t, "start_ns", 1.5, pa.float64()),
            "column .start_ns. has type double, which is not an integer",
        ),
        ("spans", lambda t: retyped(t, "trace_id", 5, pa.int64()), "column 'trace_id' has type int64"),
        (
            "spans",
            lambda t: retyped(t, "trace_id", b"x" * 8, pa.binary(8)),
            "column .trace_id. has type fixed_size_binary\\[8\\], but",
        ),
        ("spans", lambda t: retyped(t, "attributes", 5, pa.int64()), "column 'attributes' has type int64"),
        ("metrics", lambda t: retyped(t, "monotonic", 1, pa.int8()), "column 'monotonic' has type int8"),
        (
            "metrics",
            lambda t: retyped(t, "value", "1", pa.string()),
            "column .value. has type string, which is not a number",
        ),
        (
            "metrics",
            lambda t: retyped(t, "bucket_counts", [1.5], pa.list_(pa.float64())),
            "column .bucket_counts. has type list<item: double>",
        ),
    ],
)
def test_a_schema_problem_names_the_column(
    store: tael.Store, signal: str, change: Callable[[pa.Table], pa.Table], message: str
) -> None:
    table = change(three(signal))
    for form in (table, table.combine_chunks().to_batches()[0]):
        with pytest.raises(tael.ValidationError, match=message) as info:
            getattr(store, INSERT[signal])(form)
        column = re.search(r"column .(\w+).", message)
        assert column is not None and info.value.index is None and info.value.field == column.group(1)
    assert store.stats().signals[signal].count == 0


def test_not_a_table_is_a_type_error(store: tael.Store) -> None:
    with pytest.raises(TypeError, match="pyarrow Table"):
        store.insert_spans(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _columns.check_table("spans", [make_span()], PAYLOADS)  # type: ignore[arg-type]


def test_an_empty_table_inserts_nothing(store: tael.Store) -> None:
    for signal in ("spans", "logs", "metrics"):
        empty = TABLE_OF[signal]([])
        assert empty.num_rows == 0 and empty.schema == SCHEMA[signal]
        assert getattr(store, INSERT[signal])(empty) == 0
        assert getattr(store, INSERT[signal])(empty.combine_chunks().to_batches()[0] if empty.num_rows else empty) == 0
        required = pa.table({n: pa.array([], SCHEMA[signal].field(n).type) for n in _columns.REQUIRED[signal]})
        assert getattr(store, INSERT[signal])(required) == 0
        batch = _columns.check_table(signal, required, PAYLOADS)
        assert batch.num_rows == 0 and batch.schema == _block.BLOCK_SCHEMAS[signal]
    assert all(s.count == 0 for s in store.stats().signals.values())


def test_casts_defaults_and_hex_ids(store: tael.Store) -> None:
    """Only the required columns, of other types: hex ids in either case, dictionary and
    large strings, unsigned and narrow ints, timestamps; the rest takes its defaults."""
    spans = [make_span(start_ns=1_000_000 * (i + 1), end_ns=1_000_000 * (i + 2)) for i in range(4)]
    spans[1].parent_span_id = spans[0].span_id
    table = pa.table(
        {
            "trace_id": pa.array([s.trace_id.upper() for s in spans], pa.large_string()),
            "span_id": pa.array([bytes.fromhex(s.span_id) for s in spans], pa.binary()),
            "parent_span_id": pa.array([None, spans[0].span_id, "", None], pa.string()).dictionary_encode(),
            "name": pa.array([s.name for s in spans]).dictionary_encode(),
            "service": pa.array([s.service for s in spans], pa.large_string()),
            "start_ns": pa.array([s.start_ns // 1000 for s in spans], pa.timestamp("us", tz="UTC")),
            "end_ns": pa.array([s.end_ns for s in spans], pa.uint64()),
            "flags": pa.array([0, 1, None, 3], pa.int8()),
            "kind": pa.array(["server", None, "client", "internal"]),
        }
    )
    spans[1].kind = "internal"  # null: the default
    spans[1].flags, spans[3].flags = 1, 3
    spans[2].kind = "client"
    spans[0].kind = "server"
    assert store.insert_spans(table) == 4
    assert [store.get_trace(s.trace_id) for s in spans] == [[s] for s in spans]

    logs = [make_log(time_ns=5_000 + i, severity_number=i, observed_ns=7_000 + i) for i in range(3)]
    log_table = pa.table(
        {
            "time_ns": pa.array([r.time_ns for r in logs], pa.int32()),
            "body": pa.array([r.body for r in logs], pa.large_string()),
            "service": pa.array([r.service for r in logs]).dictionary_encode(),
            "severity_number": pa.array([r.severity_number for r in logs], pa.uint8()),
            "observed_ns": pa.array([r.observed_ns for r in logs], pa.timestamp("ns")),
        }
    )
    assert store.insert_logs(log_table) == 3
    assert store.query_logs(order="asc") == logs

    points = [
        make_point(time_ns=9_000, value=1.5, count=2, bucket_counts=[1, 1], explicit_bounds=[2.5], kind="histogram"),
        make_point(time_ns=9_001, value=3.0),
    ]
    point_table = pa.table(
        {
            "time_ns": pa.array([p.time_ns for p in points], pa.uint16()),
            "name": pa.array([p.name for p in points], pa.large_string()),
            "service": pa.array([p.service for p in points]),
            "value": pa.array([1.5, 3], pa.float32()),
            "kind": pa.array(["histogram", None]),
            "count": pa.array([2, None], pa.uint8()),
            "bucket_counts": pa.array([[1, 1], None], pa.large_list(pa.int16())),
            "explicit_bounds": pa.array([[2.5], None], pa.list_(pa.float32(), 1)),
        }
    )
    assert store.insert_metrics(point_table) == 2
    assert store.query_metrics(start=9_000, end=9_002) == points


def test_json_is_rewritten_only_to_its_canonical_form(store: tael.Store) -> None:
    """Event attributes and link attributes may be left out and link ids may be uppercase:
    the stored text is then canonical (what a read gives back); other text is kept as given."""
    table = three("spans")
    events = '[{"name": "e", "time_ns": 7}]'  # another key order: kept; attributes added
    links = '[{"trace_id": "' + "AB" * 16 + '", "span_id": "' + "CD" * 8 + '"}]'
    attrs = '{ "k" : [1, 2.5, null, "x"], "nan": NaN }'
    table = with_value(with_value(with_value(table, "events", 0, events), "links", 0, links), "attributes", 0, attrs)
    batch = _columns.check_table("spans", table, PAYLOADS)
    assert batch.column("events")[0].as_py() == '[{"time_ns":7,"name":"e","attributes":{}}]'
    assert (
        batch.column("links")[0].as_py()
        == '[{"trace_id":"' + "ab" * 16 + '","span_id":"' + "cd" * 8 + '","attributes":{}}]'
    )
    assert batch.column("attributes")[0].as_py() == attrs
    store.insert_spans(table)
    (span,) = store.get_trace(table.column("trace_id")[0].as_py().hex())
    assert span.events == [tael.SpanEvent(time_ns=7, name="e")]
    assert span.links == [tael.SpanLink(trace_id="ab" * 16, span_id="cd" * 8)]
    assert span.attributes["k"] == [1, 2.5, None, "x"] and math.isnan(span.attributes["nan"])


def test_payload_flags_and_series_ids_are_computed_column_wise() -> None:
    spans = [
        make_span(attributes={"gen_ai.prompt": "short"}),
        make_span(events=[tael.SpanEvent(time_ns=1, name="e", attributes={"exception.message": "x" * 100})]),
        make_span(attributes={"gen_ai.prompt": 5}),
        make_span(),
    ]
    batch = _columns.check_table("spans", tael.spans_table(spans), PAYLOADS)
    assert batch.column("payload").to_pylist() == [r[7] for r in _codec.encode_spans(spans, PAYLOADS)] == [1, 2, 0, 0]
    logs = [make_log(body=""), make_log(body="x" * 63), make_log(body="é" * 32)]
    batch = _columns.check_table("logs", tael.logs_table(logs), PAYLOADS)
    assert batch.column("payload").to_pylist() == [r[4] for r in _codec.encode_logs(logs, PAYLOADS)] == [0, 1, 2]
    points = [
        make_point(attributes={"a": 1, "b": 2}),
        make_point(attributes={"b": 2, "a": 1}),  # the same series, other key order
        make_point(attributes={"a": 1.0, "b": 2}),  # another series: a float
        make_point(name="other", attributes={"a": 1, "b": 2}),
        make_point(kind="sum", attributes={"a": 1, "b": 2}),
    ]
    batch = _columns.check_table("metrics", tael.metrics_table(points), PAYLOADS)
    ids = batch.column("series_id").to_pylist()
    assert ids == [r[2] for r in _codec.encode_metrics(points)]
    assert ids[0] == ids[1] and len(set(ids)) == 4


@st.composite
def valid_batch(draw: st.DrawFn, signal: str) -> list[Any]:
    strategy = {"spans": any_span(), "logs": any_log(), "metrics": any_point()}[signal]
    records = draw(st.lists(one_change(strategy, MAKE[signal]), max_size=5))
    from hypothesis import assume

    assume(encoded(signal, records)[0] == "ok")
    return records


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,
)
@given(spans=valid_batch("spans"), logs=valid_batch("logs"), points=valid_batch("metrics"))
def test_a_table_of_valid_records_checks_into_the_batch_the_records_make(
    spans: list[Any], logs: list[Any], points: list[Any]
) -> None:
    for signal, records in (("spans", spans), ("logs", logs), ("metrics", points)):
        expected = encoded(signal, records)
        table = TABLE_OF[signal](records)
        for form in (table, _chunked(table) if table.num_rows > 3 else table):
            batch = _columns.check_table(signal, form, PAYLOADS)
            extra = batch.column("series_id" if signal == "metrics" else "payload").to_pylist()
            assert _same(("ok", _block.RECORDS_OF[signal](batch, None), extra), expected)
            block = _block.Block(_block.Block.of(batch, signal).data, signal)  # the bytes the WAL gets
            assert _same(_block.RECORDS_OF[signal](block.batch(), None), expected[1])


def test_the_examples_of_the_tables_page_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/format/tables.md stays true: each of its Python examples runs (in a fresh
    directory, each with its own store) and its assertions hold."""
    page = (Path(__file__).parent.parent / "docs" / "format" / "tables.md").read_text()
    examples = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(examples) == 3
    for i, code in enumerate(examples):
        (tmp_path / str(i)).mkdir()
        monkeypatch.chdir(tmp_path / str(i))
        exec(compile(code, f"tables.md example {i + 1}", "exec"), {})
