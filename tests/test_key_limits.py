"""Values that become part of LMDB keys: every one is checked at validation against the
real layout of every key it ends up in (tael/_keys.py), so a record that passes
validation can always be applied; a record that cannot be applied (written
bypassing validation: an older version, a bug) never makes the store unopenable.

Issue 14, fault 1: a span named "n" * 503 in service "checkout" was acknowledged,
then every read failed with MDB_BAD_VALSIZE and the store refused to reopen."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import lmdb
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tael
from tael import _codec, _keys
from tael._blobs import Payloads
from tael._cli import main as cli
from tael._otlp import decode_metrics, decode_traces
from tael._wal import RecordType, encode_frame, list_segments
from tests.conftest import make_log, make_point, make_span, span_id, trace_id
from tests.test_server_limits import serving
from tests.test_wal_damage import frames

PAYLOADS = Payloads(tael.Settings().payload_attributes, tael.Settings().payload_blob_min_bytes)


def text(nbytes: int, char: str = "n") -> str:
    """Exactly ``nbytes`` of UTF-8: as many ``char`` as fit, then ASCII."""
    width = len(char.encode())
    return char * (nbytes // width) + "a" * (nbytes % width)


# ---------------------------------------------------------------- the reported case


def test_the_reported_span_is_refused_and_the_store_keeps_working(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tael.Store(data) as store:
        bad = make_span(name="n" * 503, service="checkout")
        good = make_span(name="n" * 502, service="checkout")
        with pytest.raises(tael.ValidationError) as info:
            store.insert_spans([good, bad])
        assert info.value.index == 1 and info.value.field == "name"
        assert "at most 502 bytes" in str(info.value) and "511" in str(info.value)
        assert store.list_operations("checkout") == []  # all or nothing: the good span was not written
        store.insert_spans([good])
        assert store.list_operations("checkout") == ["n" * 502]
        assert store.get_trace(good.trace_id) == [good]
        store.insert_logs([make_log(body="still writable")])
    with tael.Store(data) as store:
        assert store.list_operations("checkout") == ["n" * 502]
        assert [r.body for r in store.query_logs()] == ["still writable"]


def test_a_span_of_an_empty_service_is_refused(store: tael.Store) -> None:
    # The services key is the service name, and LMDB refuses an empty key: this
    # bricked the store exactly like a long name.
    with pytest.raises(tael.ValidationError) as info:
        store.insert_spans([make_span(service="")])
    assert info.value.index == 0 and info.value.field == "service" and "empty" in str(info.value)
    store.insert_logs([make_log(service="")])  # logs and metrics keep their service in values only
    store.insert_metrics([make_point(service="")])
    assert [r.service for r in store.query_logs()] == [""]


# ---------------------------------------------------------------- every key budget, at and past its limit

Make = Callable[[str], Any]


def _span_named(service: str) -> Make:
    return lambda s: make_span(name=s, service=service)


CASES: dict[str, tuple[str, int, str, Make]] = {
    # case: (signal, limit in bytes, field at fault, record with that text)
    "span name, short service": ("spans", 502, "name", _span_named("checkout")),
    "span name, 400-byte service": ("spans", 110, "name", _span_named("s" * 400)),
    "span name, 2-byte service chars": ("spans", 510 - 200, "name", _span_named("é" * 100)),
    "span service": ("spans", 400, "service", lambda s: make_span(service=s, name="op")),
    "log service": ("logs", 400, "service", lambda s: make_log(service=s)),
    "metric name": ("metrics", 502, "name", lambda s: make_point(name=s)),
    "metric service": ("metrics", 400, "service", lambda s: make_point(service=s)),
}
INSERT = {"spans": "insert_spans", "logs": "insert_logs", "metrics": "insert_metrics"}


def read_back(store: tael.Store, signal: str, record: Any) -> list[Any]:
    if signal == "spans":
        return store.get_trace(record.trace_id)
    if signal == "logs":
        return store.query_logs(service=record.service)
    return store.query_metrics(name=record.name, service=record.service)


@pytest.mark.parametrize("char", ["n", "é", "€", "𝄞"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_key_text_is_checked_at_its_real_budget(tmp_path: Path, case: str, char: str) -> None:
    signal, limit, fieldname, make = CASES[case]
    data = tmp_path / "data"
    at_limit = make(text(limit, char))
    with tael.Store(data) as store:
        insert = getattr(store, INSERT[signal])
        with pytest.raises(tael.ValidationError) as info:
            insert([make(text(1, char)), make(text(limit + 1, char))])
        assert info.value.index == 1 and info.value.field == fieldname
        assert f"at most {limit} bytes" in str(info.value)
        insert([at_limit])  # exactly at the budget: the key is exactly as long as LMDB allows
        assert read_back(store, signal, at_limit) == [at_limit]
    with tael.Store(data) as store:
        assert read_back(store, signal, at_limit) == [at_limit]
        if signal == "spans":
            assert store.list_operations(at_limit.service) == [at_limit.name]


def test_the_budgets_match_lmdb(tmp_path: Path) -> None:
    env = lmdb.open(str(tmp_path / "env"), max_dbs=1)
    try:
        assert env.max_key_size() == _keys.MAX_KEY_BYTES
        with env.begin(write=True) as txn:
            assert txn.put(b"k" * _keys.MAX_KEY_BYTES, b"")
            with pytest.raises(lmdb.BadValsizeError):
                txn.put(b"k" * (_keys.MAX_KEY_BYTES + 1), b"")
            with pytest.raises(lmdb.BadValsizeError):
                txn.put(b"", b"")
    finally:
        env.close()
    assert _keys.MAX_METRIC_NAME_BYTES + len(b"\x00") + 8 == _keys.MAX_KEY_BYTES
    assert _keys.span_name_budget(len(b"checkout")) == 502  # the issue: 502 bytes pass, 503 do not


def test_reads_with_text_longer_than_any_key_find_nothing(store: tael.Store) -> None:
    store.insert_spans([make_span()])
    store.insert_metrics([make_point()])
    assert store.list_operations("s" * 600) == []
    assert store.query_metrics(name="m" * 600) == []


def test_a_replica_url_longer_than_its_meta_key_is_refused() -> None:
    url = "http://" + "h" * (_keys.MAX_REPLICA_URL_BYTES - len("http://"))
    assert tael.Settings(replicas=(url,)).replicas == (url,)
    with pytest.raises(ValueError, match=f"at most {_keys.MAX_REPLICA_URL_BYTES} bytes"):
        tael.Settings(replicas=(url + "h",))


# ---------------------------------------------------------------- OTLP: the same limits, record by record


def _trace_body(*names: str, service: str = "checkout") -> bytes:
    from tests.test_otlp import pb_span, trace_request

    spans = [pb_span(name=n, span_id=(i + 1).to_bytes(8, "big")) for i, n in enumerate(names)]
    return bytes(trace_request(*spans, service=service).SerializeToString())


def test_otlp_decoder_rejects_each_record_over_a_key_budget() -> None:
    from tests.test_otlp import gauge, metrics_request, number_point

    decoded = decode_traces(_trace_body("n" * 502, "n" * 503, "é" * 252), "application/x-protobuf")
    assert [s.name for s in decoded.records] == ["n" * 502]
    assert decoded.rejected == 2 and "span name must be at most 502 bytes" in decoded.error_message
    _codec.encode_spans(decoded.records, PAYLOADS)  # what the decoder keeps, the store takes
    request = metrics_request(gauge("m" * 502, number_point()), gauge("m" * 503, number_point()))
    points = decode_metrics(bytes(request.SerializeToString()), "application/x-protobuf")
    assert [p.name for p in points.records] == ["m" * 502]
    assert points.rejected == 1 and "at most 502 bytes" in points.error_message
    _codec.encode_metrics(points.records)


def test_otlp_route_rejects_the_long_name_and_the_server_keeps_serving(tmp_path: Path) -> None:
    import httpx
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    from tests.test_server import Server

    server = Server(tmp_path / "data", index_commit_interval_s=0.1)
    try:
        r = httpx.post(
            server.url + "/v1/traces",
            content=_trace_body("GET /cart", "n" * 503),
            headers={"content-type": "application/x-protobuf"},
        )
        assert r.status_code == 200
        reply = ExportTraceServiceResponse.FromString(r.content)
        assert reply.partial_success.rejected_spans == 1
        assert "span name must be at most 502 bytes" in reply.partial_success.error_message
        ops = httpx.get(server.url + "/api/services/checkout/operations")
        assert ops.status_code == 200 and ops.json()["data"] == ["GET /cart"]
        assert httpx.get(server.url + "/health/ready").status_code == 200
    finally:
        assert server.stop() == 0, server.stderr
    with tael.Store(tmp_path / "data") as store:
        assert store.list_operations("checkout") == ["GET /cart"]


# ---------------------------------------------------------------- records that verify but cannot be applied


def _bad_span_value(name: str = "n" * 600) -> bytes:
    """A packed span record that never went through validation (an older version wrote it)."""
    ((*_head, value),) = _codec.encode_spans([make_span(service="checkout")], PAYLOADS)
    record = _codec.unpackb(value)
    record[3] = name
    return _codec.packb(record)


def _frame(rtype: int, values: list[bytes]) -> bytes:
    s = tael.Settings()
    return encode_frame(
        rtype,
        values,
        compress_min=s.wal_compress_min_bytes,
        level=s.wal_compress_level,
        max_bytes=s.wal_max_record_bytes,
    )


def _log_frame(body: str) -> bytes:
    return _frame(RecordType.LOGS, [row[-1] for row in _codec.encode_logs([make_log(body=body)], PAYLOADS)])


BAD_FRAMES: dict[str, Callable[[], bytes]] = {
    "operation key too long": lambda: _frame(RecordType.SPANS, [_bad_span_value()]),
    "empty services key": lambda: _frame(RecordType.SPANS, [_empty_service()]),
    "does not decode": lambda: _frame(RecordType.LOGS, [b"\xc1not msgpack"]),
}


def _empty_service() -> bytes:
    ((*_head, value),) = _codec.encode_spans([make_span(service="checkout")], PAYLOADS)
    record = _codec.unpackb(value)
    record[4] = ""
    return _codec.packb(record)


@pytest.mark.parametrize("drop_hot", [False, True], ids=["hot tier kept", "whole WAL replayed"])
@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_an_unappliable_frame_is_reported_and_repair_moves_it_aside(tmp_path: Path, case: str, drop_hot: bool) -> None:
    data = tmp_path / "data"
    with tael.Store(data) as store:
        store.insert_logs([make_log(body="before")])
    if drop_hot:  # replay applies everything, in groups: the bad record is in the middle of one
        import shutil

        shutil.rmtree(data / "hot")
    ((_base, segment),) = list_segments(data / "wal")
    bad = BAD_FRAMES[case]()
    offset = segment.stat().st_size
    with segment.open("ab") as f:  # as an older version would have written them
        f.write(bad + _log_frame("after"))
    before = segment.read_bytes()

    for _attempt in range(2):  # the failed open leaves the directory unlocked and unchanged
        with pytest.raises(tael.CorruptionError) as info:
            tael.Store(data)
        assert info.value.path == str(segment) and info.value.offset == offset
        assert segment.name in str(info.value) and f"byte offset {offset}" in str(info.value)
        assert "tael repair" in str(info.value)
        assert segment.read_bytes() == before
    assert not (data / "quarantine").exists()

    report = tael.repair(data)
    (region,) = report.damaged
    assert (region.segment, region.offset, region.length) == (segment.name, offset, len(bad))
    assert "cannot be applied" in region.reason or "does not decode" in region.reason
    assert Path(region.quarantined_to).read_bytes() == bad
    assert report.frames_ok == len(frames(segment)) - 1
    assert [o for o, _n in frames(segment)][-2] == offset  # a PAD in its place: later LSNs did not move
    with tael.Store(data) as store:
        assert [r.body for r in store.query_logs(order="asc")] == ["before", "after"]
        assert store.list_operations("checkout") == []
    assert tael.repair(data).clean


def test_check_finds_an_unappliable_frame_and_the_repair_commands_move_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tael.Store(data) as store:
        store.insert_logs([make_log(body="kept")])
    ((_base, segment),) = list_segments(data / "wal")
    offset = segment.stat().st_size
    bad = _frame(RecordType.SPANS, [_bad_span_value()])
    with segment.open("ab") as f:
        f.write(bad)
    runner = CliRunner()

    checked = runner.invoke(cli, ["check", "--data", str(data), "--output", "json"])
    assert checked.exit_code == 1, checked.output
    (problem,) = json.loads(checked.output)["problems"]
    assert problem["part"] == "wal" and problem["path"] == str(segment)
    assert (problem["offset"], problem["length"]) == (offset, len(bad))
    assert "verifies but cannot be applied" in problem["message"] and "511" in problem["message"]
    assert segment.stat().st_size == offset + len(bad)  # check changes nothing

    result = runner.invoke(cli, ["repair", str(data)])
    assert result.exit_code == 1, result.output
    (region,) = json.loads(result.output)["damaged"]
    assert region["segment"] == segment.name and "cannot be applied" in region["reason"]
    assert "MDB_BAD_VALSIZE" in region["reason"]
    with tael.Store(data) as store:
        assert [r.body for r in store.query_logs()] == ["kept"]
    again = runner.invoke(cli, ["check", "--data", str(data), "--output", "json"])
    assert again.exit_code == 0 and json.loads(again.output)["ok"] is True, again.output


def test_an_unappliable_batch_at_run_time_stops_acknowledging_writes(tmp_path: Path) -> None:
    """The live path: a batch that reached the WAL without validation (a bug) fails its
    apply. The store applies what came before it, then refuses every write and read
    loudly instead of acknowledging writes it could never make readable."""
    data = tmp_path / "data"
    store = tael.Store(data)
    try:
        store.insert_logs([make_log(body="before")])
        value = _bad_span_value()
        f = _codec.unpackb(value)
        row = (f[5], f[0], f[1], f[4], f[6] - f[5], False, f[3], 0, value)
        assert store._ingest is not None
        pipeline = store._ingest.pipeline
        lsn, _end = pipeline.commit(RecordType.SPANS, [row], _frame(RecordType.SPANS, [value]))
        deadline = time.monotonic() + 30
        while pipeline.failed is None:
            assert time.monotonic() < deadline, "the applier never gave up on the unappliable batch"
            time.sleep(0.01)
        assert pipeline.applied_lsn == lsn  # everything before it is applied, nothing after
        with pytest.raises(tael.StorageError, match="refuses writes") as info:
            store.insert_logs([make_log(body="refused")])
        assert "tael repair" in str(info.value) and "byte offset" in str(info.value)
        with pytest.raises(tael.StorageError, match="refuses writes"):
            store.query_logs()
        assert store.fault is not None and "byte offset" in store.fault
        with serving(store) as url:  # and a load balancer takes it out of rotation
            ready = httpx.get(url + "/health/ready")
        assert ready.status_code == 503
        assert any("refuses writes and reads until repaired" in r for r in ready.json()["reasons"])
    finally:
        closer = threading.Thread(target=store.close)
        closer.start()
        closer.join(60)
        assert not closer.is_alive(), "close() hung after the applier stopped"
    with pytest.raises(tael.CorruptionError) as opened:
        tael.Store(data)
    ((_base, segment),) = list_segments(data / "wal")
    assert opened.value.path == str(segment)
    assert tael.repair(data).damaged[0].offset == opened.value.offset
    with tael.Store(data) as store:
        assert [r.body for r in store.query_logs()] == ["before"]


# ---------------------------------------------------------------- property: validate or round-trip, always reopen

CHARS = ["a", "é", "€", "𝄞", "\x00"]
BOUNDARIES = [0, 1, 109, 110, 111, 399, 400, 401, 501, 502, 503, 510, 511, 512]


@st.composite
def key_texts(draw: st.DrawFn) -> str:
    """0 to 100,000 bytes of text, mostly near a key budget, in 1- to 4-byte characters."""
    nbytes = draw(st.one_of(st.sampled_from(BOUNDARIES), st.integers(0, 100_000), st.integers(0, 1_200)))
    head = draw(st.text(max_size=3))
    return head + text(max(nbytes - len(head.encode()), 0), draw(st.sampled_from(CHARS)))


class _Model:
    """What was acknowledged, to read back after each insert and after reopening."""

    def __init__(self) -> None:
        self.spans: list[tael.Span] = []
        self.logs: list[tael.LogRecord] = []
        self.points: list[tael.MetricPoint] = []
        self.comments: list[tael.Comment] = []
        self.t = 1_000

    def check(self, store: tael.Store) -> None:
        for s in self.spans:
            assert store.get_trace(s.trace_id) == [s]
        for r in self.logs:
            assert store.query_logs(trace_id=r.trace_id) == [r]
        for p in self.points:
            assert p in store.query_metrics(name=p.name, service=p.service, start=p.time_ns, end=p.time_ns + 1)
        for c in self.comments:
            assert store.comments(c.trace_id) == [c]


def _one(store: tael.Store, model: _Model, signal: str, name: str, service: str, key: str) -> None:
    model.t += 1
    t = model.t
    try:
        if signal == "spans":
            span = make_span(
                name=name, service=service, start_ns=t, end_ns=t + 1, attributes={key: 1}, resource={key: "r"}
            )
            store.insert_spans([span])
            model.spans.append(span)
            assert store.get_trace(span.trace_id) == [span]
            assert name in store.list_operations(service)
        elif signal == "logs":
            log = make_log(
                time_ns=t, service=service, body=name, trace_id=trace_id(), attributes={key: "v"}, resource={key: 2}
            )
            store.insert_logs([log])
            model.logs.append(log)
            assert store.query_logs(trace_id=log.trace_id) == [log]
        elif signal == "metrics":
            point = make_point(time_ns=t, name=name, service=service, attributes={key: "v"})
            store.insert_metrics([point])
            model.points.append(point)
            assert point in store.query_metrics(name=name, service=service, start=t, end=t + 1)
        else:
            c = store.add_comment(trace_id(), name or "-", author=service or "-", span_id=span_id())
            model.comments.append(c)
            assert store.comments(c.trace_id) == [c]
    except tael.ValidationError as exc:
        assert exc.field in ("name", "service", "body", "author"), exc


def _run_property(tmp_path: Path, examples: int) -> None:
    data = tmp_path / "data"
    cfg = tael.Settings(durability="os")
    model = _Model()
    store = tael.Store(data, cfg)
    try:

        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(
            signal=st.sampled_from(["spans", "logs", "metrics", "comments"]),
            name=st.one_of(key_texts(), st.sampled_from(["op", "n" * 110, "é" * 55])),
            service=st.one_of(key_texts(), st.sampled_from(["checkout", "s" * 400, "é" * 200])),
            key=key_texts(),
        )
        def insert(signal: str, name: str, service: str, key: str) -> None:
            _one(store, model, signal, name, service, key)

        insert()
    finally:
        store.close()
    with tael.Store(data, cfg) as store:  # always reopens, and everything acknowledged reads back equal
        model.check(store)
        store.compact(model.t + 10)  # and through the cold tier
        model.check(store)
    with tael.Store(data, cfg) as store:
        model.check(store)
    assert tael.repair(data).clean


def test_any_name_service_or_attribute_key_is_refused_or_round_trips(tmp_path: Path) -> None:
    _run_property(tmp_path, examples=150)


@pytest.mark.soak
def test_any_name_service_or_attribute_key_is_refused_or_round_trips_soak(tmp_path: Path) -> None:
    _run_property(tmp_path, examples=3_000)
