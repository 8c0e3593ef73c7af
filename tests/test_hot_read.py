"""Hot reads that decode only what they need (issue 16): blocks skipped by their metadata,
filter columns compared by dictionary code, records built row by row from a block's
bytes. Every answer must be the one a whole-block decode gives."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import pyarrow as pa
import pytest

import tael
from tael._block import READABLE_VERSIONS, RECORDS_OF, Block, encode_block, spans_batch
from tael._blockwalk import heavy_map, walk_body
from tael._hotblocks import BLOCKS, blocks

from .conftest import make_log, make_point, make_span

SERVICES = ("api", "db", "cache")


def _stored_blocks(store: tael.Store, signal: str) -> list[Block]:
    with store._hot.reader() as txn:
        db = store._hot.db
        return [Block(bytes(txn.get(bkey, db=db[BLOCKS[signal]])), signal) for bkey, _meta in blocks(txn, db, signal)]


def _varied_spans(n: int, seed: int) -> list[tael.Span]:
    rng = random.Random(seed)
    spans = []
    for i in range(n):
        attrs: dict[str, Any] = {"i": i, "f": rng.random(), "ok": i % 2 == 0, "nested": {"l": [1, "x", None]}}
        if i % 17 == 0:
            attrs["nan"] = math.nan
        if i % 11 == 0:
            attrs["input.value"] = "payload text " * (200 + i)  # long: moved to the blob store
        spans.append(
            make_span(
                trace_id=f"{i // 4 + 1:032x}",
                span_id=f"{i + 1:016x}",
                parent_span_id=None if i % 4 == 0 else f"{i:016x}",
                name=f"op-{i % 300}-é",  # > 256 distinct names: 2-byte codes
                service=SERVICES[i % 3],
                start_ns=1_000_000 + i * 1_000,
                end_ns=1_000_000 + i * 1_000 + rng.randrange(0, 50_000_000),
                kind=("internal", "server", "client")[i % 3],
                status=("unset", "ok", "error")[i % 5 % 3],
                status_message="boom" if i % 5 == 2 else "",
                attributes=attrs,
                resource={"service.name": SERVICES[i % 3], "host": f"h{i % 7}"},
                scope_name="s" if i % 2 else "",
                events=[tael.SpanEvent(time_ns=5, name="ev", attributes={"input.value": "x" * 2000})]
                if i % 13 == 0
                else [],
                links=[tael.SpanLink(trace_id=f"{i + 9:032x}", span_id=f"{i + 9:016x}", attributes={"a": 1})]
                if i % 9 == 0
                else [],
                flags=i % 3,
            )
        )
    return spans


def test_records_row_by_row_equal_the_whole_block_decode(data_dir: Path) -> None:
    """Block.records reads each column's values at the rows from the block's bytes;
    it must build exactly the records RECORDS_OF builds from the decoded batch, for
    every column type: codes of 1 and 2 bytes, nulls, bools, floats, ids, JSON texts,
    payload references, lists."""
    spans = _varied_spans(700, 1)
    logs = [
        make_log(
            time_ns=10 + i,
            body=("long body " * 200 if i % 10 == 0 else f"body {i} ✓"),
            service=SERVICES[i % 3],
            severity_number=i % 25,
            severity_text="WARN" if i % 2 else "",
            trace_id=f"{i + 1:032x}" if i % 3 else None,
            span_id=f"{i + 1:016x}" if i % 3 else None,
            attributes={"k": i},
            observed_ns=None if i % 2 else 99 + i,
        )
        for i in range(300)
    ]
    points = [
        make_point(
            time_ns=7 + i,
            name=f"m{i % 4}",
            value=float(i) / 3,
            kind="histogram" if i % 2 else "sum",
            monotonic=i % 4 == 1,
            start_ns=None if i % 3 else 1,
            count=3 if i % 2 else None,
            sum=1.5 if i % 2 else None,
            bucket_counts=[1, 2] if i % 2 else None,
            explicit_bounds=[0.5] if i % 2 else None,
        )
        for i in range(200)
    ]
    with tael.Store(data_dir) as store:
        store.insert_spans(spans)
        store.insert_logs(logs)
        store.insert_metrics(points)
        store.flush()
        for signal, total in (("spans", 700), ("logs", 300), ("metrics", 200)):
            found = _stored_blocks(store, signal)
            assert sum(b.n for b in found) == total
            for block in found:
                rng = random.Random(block.n)
                choices: list[list[int]] = [[], [0], [block.n - 1], list(range(block.n))[::-1]]
                choices.append(sorted(rng.sample(range(block.n), min(40, block.n))))
                choices.append([3, 3, 1])
                for rows in choices:
                    whole = RECORDS_OF[signal](Block(block.data, signal).batch(), rows)
                    assert _same_nan(Block(block.data, signal).records(rows)) == _same_nan(whole), (signal, rows)
        refs = [
            f
            for b in _stored_blocks(store, "spans")
            for f in b.records(range(b.n))
            if type(f[10].get("input.value")) is bytes
        ]
        assert len(refs) == len([s for s in spans if "input.value" in s.attributes])  # payload refs were read back


def _same_nan(records: list[list[Any]]) -> list[list[Any]]:
    """``records`` with NaN replaced by a token equal to itself (NaN != NaN)."""

    def fix(v: Any) -> Any:
        if type(v) is float and math.isnan(v):
            return "NaN"
        if type(v) is dict:
            return {k: fix(x) for k, x in v.items()}
        if type(v) is list:
            return [fix(x) for x in v]
        return v

    return [fix(f) for f in records]


def _record(trace: str, i: int, attrs: dict[str, Any] | None = None) -> list[Any]:
    """A span record (``SPAN_*`` layout)."""
    trace_id, span_id = bytes.fromhex(trace), i.to_bytes(8, "big")
    return [trace_id, span_id, None, "op", "svc", i, i + 1, 0, 0, "", attrs or {}, {}, "", "", [], [], "", 0]


def test_records_of_nan_attributes_are_nan() -> None:
    block = Block(encode_block(spans_batch([_record("ab" * 16, 1, {"x": math.nan, "y": -math.inf})]), "spans"), "spans")
    attrs = block.records([0])[0][10]
    assert math.isnan(attrs["x"]) and attrs["y"] == -math.inf


def test_heavy_map_without_copies_equals_msgpack() -> None:
    """The heavy frame's map is read with its bins as views; any layout tael does not
    write (or corrupt bytes) is left to msgpack, which decodes or refuses it as before."""
    cases = [
        {"a": [b"\x00\x00\x00\x00", b"", None]},
        {"k" * 40: [b"o" * 300, b"d" * 70_000, b"\x01"], "é": [b"", b"x", None]},  # str8 key, bin16, bin32
        {f"c{i}": [bytes([i]) * i, b"", None] for i in range(20)},  # map16
    ]
    for value in cases:
        data = msgpack.packb(value, use_bin_type=True)
        got = heavy_map(data)
        assert {k: [bytes(x) if x is not None else None for x in v] for k, v in got.items()} == value
    odd = msgpack.packb({"a": [b"x", b"y"]}, use_bin_type=True)  # an array of 2: msgpack's answer
    assert heavy_map(odd) == {"a": [b"x", b"y"]}
    with pytest.raises(ValueError):
        heavy_map(msgpack.packb({"a": [b"x", b"y", None]}, use_bin_type=True) + b"\x00")  # trailing byte


def test_find_reports_only_whole_aligned_ids() -> None:
    """A trace id can appear in the raw trace_id column across two rows' bytes; only rows
    whose own id it is are found."""
    a, b = "11" * 8 + "22" * 8, "33" * 8 + "44" * 8
    straddle = bytes.fromhex("22" * 8 + "33" * 8)  # the end of row 0 and the start of row 1
    records = [_record(a, 1), _record(b, 2), _record(straddle.hex(), 3), _record(a, 4)]
    block = Block(encode_block(spans_batch(records), "spans"), "spans")
    assert block.find("trace_id", bytes.fromhex(a)) == [0, 3]
    assert block.find("trace_id", straddle) == [2]
    assert block.find("trace_id", b"\x99" * 16) == []


def _corrupt_block(data_dir: Path, signal: str, which: int) -> None:
    """Overwrite the ``which``-th stored block of ``signal`` (key order) with bytes that do
    not decode, leaving its metadata: a read that opens it raises CorruptionError."""
    env = lmdb.open(str(data_dir / "hot"), max_dbs=32)
    try:
        with env.begin(write=True) as txn:
            db = env.open_db(BLOCKS[signal].encode(), txn=txn, create=False)
            key = list(txn.cursor(db=db).iternext(values=False))[which]
            txn.put(bytes(key), b"\xc1 not a block", db=db)
    finally:
        env.close()


def test_span_blocks_that_metadata_rules_out_are_not_read(data_dir: Path) -> None:
    """A block whose metadata says no row can match (no error row for status=error, a
    longest duration below min_duration_ms, another service) is skipped unread: its
    bytes, here made undecodable, are never opened. Bounds are inclusive."""
    quiet = [
        make_span(span_id=f"{i + 1:016x}", service="a", start_ns=100 + i, end_ns=100 + i + 5_000_000) for i in range(10)
    ]
    loud = [
        make_span(
            span_id=f"{i + 101:016x}",
            service="b",
            start_ns=1_000 + i,
            end_ns=1_000 + i + 5_000_000 * (i + 1),
            status="error",
        )
        for i in range(10)
    ]
    with tael.Store(data_dir) as store:
        store.insert_spans(quiet)
        store.flush()  # one block per batch: not coalesced
        store.insert_spans(loud)
        store.flush()
    _corrupt_block(data_dir, "spans", 0)  # the quiet block (older newest time)
    with tael.Store(data_dir) as store:
        assert [s.span_id for s in store.query_traces(status="error")] == [s.span_id for s in loud[::-1]]
        assert [s.span_id for s in store.query_traces(service="b", limit=3)] == [s.span_id for s in loud[:-4:-1]]
        # min 5.000001 ms: the quiet block's longest is 5 ms; loud's spans of 10 ms and more match
        got = store.query_traces(min_duration_ms=5.000001)
        assert [s.span_id for s in got] == [s.span_id for s in loud[:0:-1]]
        with pytest.raises(tael.CorruptionError):  # exactly 5 ms is inclusive: the quiet block is read
            store.query_traces(min_duration_ms=5)
        with pytest.raises(tael.CorruptionError):
            store.query_traces(status="ok")  # the quiet block is unset, not all error: read
        with pytest.raises(tael.CorruptionError):
            store.query_traces(service="a")


def test_log_and_metric_blocks_that_metadata_rules_out_are_not_read(data_dir: Path) -> None:
    with tael.Store(data_dir) as store:
        store.insert_logs([make_log(time_ns=10 + i, severity_number=5, service="a") for i in range(5)])
        store.flush()  # one block per batch: not coalesced
        store.insert_logs([make_log(time_ns=100 + i, severity_number=17, service="b", body=f"b{i}") for i in range(5)])
        store.insert_metrics([make_point(time_ns=10 + i, name="m1") for i in range(5)])
        store.flush()  # one block per batch: not coalesced
        store.insert_metrics([make_point(time_ns=100 + i, name="m2", value=float(i)) for i in range(5)])
        store.flush()
    _corrupt_block(data_dir, "logs", 0)
    _corrupt_block(data_dir, "metrics", 0)
    with tael.Store(data_dir) as store:
        assert [r.body for r in store.query_logs(min_severity=6)] == [f"b{i}" for i in range(4, -1, -1)]
        assert [r.body for r in store.query_logs(service="b", limit=2)] == ["b4", "b3"]
        with pytest.raises(tael.CorruptionError):
            store.query_logs(min_severity=5)  # the highest severity of the first block is 5: read
        assert [p.value for p in store.query_metrics(name="m2")] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_hot_queries_answer_as_a_plain_model(data_dir: Path) -> None:
    """Span queries over several blocks, every filter the hot tier evaluates on block
    columns, against the inserted spans filtered and ordered in plain Python."""
    spans = _varied_spans(2_400, 2)
    with tael.Store(data_dir) as store:
        for i in range(0, len(spans), 300):  # several blocks
            store.insert_spans(spans[i : i + 300])
        store.flush()
        rng = random.Random(3)
        answered = 0
        for _ in range(120):
            kw: dict[str, Any] = {}
            if rng.random() < 0.5:
                kw["service"] = rng.choice((*SERVICES, "nope"))
            if rng.random() < 0.4:
                kw["status"] = rng.choice(("unset", "ok", "error"))
            if rng.random() < 0.3:
                kw["kind"] = rng.choice(("internal", "server", "client", "consumer"))
            if rng.random() < 0.2:
                kw["name"] = f"op-{rng.randrange(310)}-é"
            if rng.random() < 0.4:
                kw["min_duration_ms"] = rng.choice((0, 10, 25.5, 49.99))
            if rng.random() < 0.3:
                kw["max_duration_ms"] = rng.choice((1, 20, 40))
            if rng.random() < 0.5:
                kw["start"] = 1_000_000 + rng.randrange(0, 2_400_000)
                kw["end"] = kw["start"] + rng.randrange(1, 1_200_000)
            limit = rng.choice((1, 5, 100, 5_000))
            order = rng.choice(("desc", "asc"))
            want = [s for s in spans if _matches(s, kw)]
            want.sort(key=lambda s: (s.start_ns, s.trace_id, s.span_id), reverse=order == "desc")
            got = store.query_traces(limit=limit, order=order, **kw)
            answered += bool(got)
            assert [(s.trace_id, s.span_id) for s in got] == [(s.trace_id, s.span_id) for s in want[:limit]], kw
        for trace in {s.trace_id for s in spans[::37]}:
            assert [s.span_id for s in store.get_trace(trace)] == [s.span_id for s in spans if s.trace_id == trace]
        both = spans[187]  # a payload text in the blob store and a NaN attribute
        (got_one,) = [s for s in store.get_trace(both.trace_id) if s.span_id == both.span_id]
        assert got_one.attributes["input.value"] == both.attributes["input.value"]
        assert math.isnan(got_one.attributes["nan"]) and got_one.events == both.events
    assert answered > 60  # most random filters matched something


def _matches(s: tael.Span, kw: dict[str, Any]) -> bool:
    d = s.end_ns - s.start_ns
    return (
        all(getattr(s, k) == kw[k] for k in ("service", "status", "kind", "name") if k in kw)
        and ("min_duration_ms" not in kw or d >= kw["min_duration_ms"] * 1e6)
        and ("max_duration_ms" not in kw or d <= kw["max_duration_ms"] * 1e6)
        and ("start" not in kw or kw["start"] <= s.start_ns < kw["end"])
    )


def test_get_trace_rows_are_the_traces_own(data_dir: Path) -> None:
    """A trace's spans are found in its block's raw trace_id column; their records carry
    every field as inserted."""
    spans = _varied_spans(200, 4)
    with tael.Store(data_dir) as store:
        store.insert_spans(spans)
        store.flush()
        for trace in sorted({s.trace_id for s in spans})[:20]:
            got = store.get_trace(trace)
            want = sorted((s for s in spans if s.trace_id == trace), key=lambda s: (s.start_ns, s.span_id))
            assert [s.span_id for s in got] == [s.span_id for s in want]
            assert [(s.parent_span_id, s.name, s.kind, s.status, s.links, s.flags) for s in got] == [
                (s.parent_span_id, s.name, s.kind, s.status, s.links, s.flags) for s in want
            ]


def _repeating_batch(n: int) -> Any:
    """A span batch whose resource and payload references repeat a few values (with nulls)
    and whose attributes do not."""
    records = []
    for i in range(n):
        f = _record(f"{i // 3 + 1:032x}", i + 1, {"i": i, "input.value": bytes([i % 3]) * 32 if i % 5 == 0 else ""})
        f[11] = {"service.name": f"svc{i % 3}", "pod": "p-é"}
        records.append(f)
    return spans_batch(records)


def test_blocks_written_the_old_way_read_the_same() -> None:
    """Blocks of version 1 (every heavy column in the zstd frame, as tael wrote them
    before) and of version 2 (a heavy column of a few repeated values coded as a string
    column) decode to the same batch and records."""
    batch = _repeating_batch(400)
    old, new = encode_block(batch, "spans", code_heavy=False), encode_block(batch, "spans")
    old_body, new_body = msgpack.unpackb(old, raw=False), msgpack.unpackb(new, raw=False)
    assert old_body["v"] == 1 and "resource" not in old_body["c"] and "payload_refs" not in old_body["c"]
    assert new_body["v"] == 2 and new_body["c"]["resource"][0] == [
        '{"service.name":"svc0","pod":"p-é"}',
        '{"service.name":"svc1","pod":"p-é"}',
        '{"service.name":"svc2","pod":"p-é"}',
    ]
    assert new_body["c"]["payload_refs"][2] is not None  # coded, with nulls
    assert "attributes" not in new_body["c"] and len(new) < len(old)
    assert Block(old, "spans").batch().to_pydict() == Block(new, "spans").batch().to_pydict() == batch.to_pydict()
    rows = [0, 1, 5, 399, 10, 10]
    assert Block(old, "spans").records(rows) == Block(new, "spans").records(rows) == RECORDS_OF["spans"](batch, rows)
    assert Block(new, "spans").records(rows)[0][10]["input.value"] == b"\x00" * 32  # the reference read back


def test_a_hot_tier_of_old_blocks_answers_the_same(data_dir: Path) -> None:
    """A hot tier whose blocks were written as version 1 (before heavy columns were
    coded) answers every read as one written now."""
    spans = _varied_spans(600, 5)
    for s in spans:  # resources repeat: coded in blocks written now
        s.resource = {"service.name": s.service}
    with tael.Store(data_dir) as store:
        store.insert_spans(spans[:300])
        store.flush()
        store.insert_spans(spans[300:])
        store.flush()
        versions = {msgpack.unpackb(b.data, raw=False)["v"] for b in _stored_blocks(store, "spans")}
        assert versions == {2}
        queries = [{}, {"service": "db"}, {"status": "error", "min_duration_ms": 10}, {"kind": "client"}]
        want = [[(s.span_id, s.resource, s.attributes) for s in store.query_traces(limit=1_000, **q)] for q in queries]
        traces = [store.get_trace(t) for t in sorted({s.trace_id for s in spans})[:30]]
    env = lmdb.open(str(data_dir / "hot"), max_dbs=32)
    try:
        with env.begin(write=True) as txn:
            db = env.open_db(b"span_blocks", txn=txn, create=False)
            for key, value in list(txn.cursor(db=db)):
                txn.put(
                    bytes(key), encode_block(Block(bytes(value), "spans").batch(), "spans", code_heavy=False), db=db
                )
    finally:
        env.close()
    with tael.Store(data_dir) as store:
        assert {msgpack.unpackb(b.data, raw=False)["v"] for b in _stored_blocks(store, "spans")} == {1}
        got = [[(s.span_id, s.resource, s.attributes) for s in store.query_traces(limit=1_000, **q)] for q in queries]
        assert got == want and all(want)
        assert [store.get_trace(t) for t in sorted({s.trace_id for s in spans})[:30]] == traces


def test_block_body_read_without_copies_equals_msgpack() -> None:
    """The walker over a block's bytes finds what msgpack decodes; a layout it does not
    expect (many distinct values, another version) is left to msgpack."""
    batch = _repeating_batch(300)
    for code in (True, False):
        data = encode_block(batch, "spans", code_heavy=code)
        walked = walk_body(data, READABLE_VERSIONS)
        body = msgpack.unpackb(data, raw=False)
        assert walked is not None
        n, cols, heavy = walked
        plain = {k: [bytes(x) if isinstance(x, memoryview) else x for x in v] for k, v in cols.items()}
        assert (n, plain, None if heavy is None else bytes(heavy)) == (body["n"], body["c"], body.get("h"))
    many = spans_batch([_record(f"{i + 1:032x}", i, {}) for i in range(100)]).set_column(
        3, "name", pa.array([f"op{i}" for i in range(100)])
    )
    assert walk_body(encode_block(many, "spans"), READABLE_VERSIONS) is None  # 100 distinct names: msgpack decodes them
    assert Block(encode_block(many, "spans"), "spans").pylist("name", [99, 0]) == ["op99", "op0"]
    other = msgpack.packb({"v": 3, "n": 0, "c": {}}, use_bin_type=True)
    assert walk_body(other, READABLE_VERSIONS) is None
    with pytest.raises(tael.CorruptionError, match="block version 3"):
        Block(other, "spans")
