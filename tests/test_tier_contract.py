"""The read protocol both tiers implement (``tael._query.tier.TierReader``), as one
conformance suite run against every reader: the hot tier's, and the cold tier's on a
local directory and on S3 (moto, as in tests/test_s3.py). zarr-python's
``StoreTests`` and tests/test_s3.py's ``ColdTierContract`` are the pattern.

Each tier is given the same records (hot: inserted; cold: inserted, then compacted
whole, in cold format version 2, version 1 or both); then for a table of filters,
orders and limits each reader's scan must answer what a plain-Python model of the
inserted records answers, and so must its lookups by trace id and by record key.
Last, the merge of the two tiers: a record held by both is answered once, from the
cold tier.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import msgpack
import pytest

import tael
from tael._codec import decode_metric
from tael._hot import HotReader
from tael._query import logs as log_reads
from tael._query import merge
from tael._query import traces as trace_reads
from tael._query.filters import Scan
from tael._query.tier import Hit, TierReader
from tests import coldv1
from tests.test_s3 import S3Server, s3  # noqa: F401  (s3: the moto server fixture)

S = 10**9
HOUR = 3600 * S
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
LATER = T0 + 10 * 24 * HOUR  # after every record: compacting before it moves all of them
SERVICES = ("api", "db", "llm")
LONG = "tell me about the sea " * 80  # a payload long enough for the blob store
SETTINGS = {"cold_row_group_rows": 16}  # many row groups per file, so plans have something to prune


def _spans() -> list[tael.Span]:
    out = []
    for t in range(40):  # 40 traces of 3 spans over three days
        start = T0 + t * 100 * 60 * S
        for k in range(3):
            out.append(
                tael.Span(
                    trace_id=f"{t + 1:032x}",
                    span_id=f"{3 * t + k + 1:016x}",
                    parent_span_id=None if k == 0 else f"{3 * t + 1:016x}",
                    name=("GET /", "query", "chat")[k],
                    service=SERVICES[k],
                    start_ns=start + k * 1000 + (t % 3) * 7,
                    end_ns=start + k * 1000 + (t % 9 + 1) * 10**6,
                    kind="server" if k == 0 else "client",
                    status="error" if t % 7 == 0 and k == 1 else "ok",
                    attributes={
                        "http.status_code": 500 if t % 7 == 0 else 200,
                        "region": "eu" if t % 2 else "us",
                        **({"gen_ai.prompt": LONG if t % 5 == 0 else f"short prompt {t}"} if k == 2 else {}),
                    },
                    resource={"host": f"h{t % 4}"},
                    events=[tael.SpanEvent(time_ns=start + 5, name="retry", attributes={"n": t})] if k == 2 else [],
                )
            )
    out.append(dataclasses.replace(out[4], start_ns=out[4].start_ns + 3, end_ns=out[4].end_ns + 3))  # same ids
    out.append(dataclasses.replace(out[9], start_ns=out[9].start_ns, span_id=f"{999:016x}", name="tie"))  # same time
    # same time, another trace: a later trace id with an earlier span id, so only the
    # documented tie order (start, trace id, span id) picks the right one under a limit
    out.append(dataclasses.replace(out[9], trace_id=f"{0xFFF:032x}", span_id=f"{2:016x}", name="tie across traces"))
    return out


def _logs() -> list[tael.LogRecord]:
    return [
        tael.LogRecord(
            time_ns=T0 + (i // 2) * 50 * 60 * S,  # pairs share a time: ties broken by insertion order
            body=LONG if i % 11 == 0 else f"line {i}",
            service=SERVICES[i % 3],
            severity_number=(9, 13, 17)[i % 3],
            trace_id=f"{i % 40 + 1:032x}" if i % 4 else None,
            attributes={"i": i, "even": i % 2 == 0},
        )
        for i in range(120)
    ]


def _points() -> list[tael.MetricPoint]:
    out = []
    for i in range(3 * 24 * 2):  # every 30 minutes for three days
        time_ns = T0 + i * 1800 * S
        out.append(
            tael.MetricPoint(time_ns=time_ns, name="cpu", service="db", value=float(i % 17), attributes={"host": "a"})
        )
        out.append(
            tael.MetricPoint(time_ns=time_ns, name="cpu", service="db", value=float(i % 5), attributes={"host": "b"})
        )
        out.append(
            tael.MetricPoint(time_ns=time_ns, name="requests", service="api", value=3.0 * i, kind="sum", monotonic=True)
        )
    return out


SPANS, LOGS, POINTS = _spans(), _logs(), _points()
TRACES = sorted({s.trace_id for s in SPANS})
TIE = SPANS[9].start_ns


def fill(store: tael.Store) -> None:
    """The same inserts, in the same batches, for every tier."""
    for i in range(0, len(SPANS), 25):
        store.insert_spans(SPANS[i : i + 25])
    for i in range(0, len(LOGS), 30):
        store.insert_logs(LOGS[i : i + 30])
    store.insert_metrics(POINTS)
    store.flush()


# ---------------------------------------------------------------- the model


def same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and bool(a == b)


def attrs_match(want: dict[str, Any] | None, *maps: dict[str, Any]) -> bool:
    return not want or all(any(k in m and same(m[k], v) for m in maps) for k, v in want.items())


def in_range(t: int, start: int | None, end: int | None) -> bool:
    return (start is None or t >= start) and (end is None or t < end)


def model_spans(where: tael.SpanFilter, limit: int, newest_first: bool) -> list[tael.Span]:
    stored: dict[tuple[str, str], tael.Span] = {}
    for s in SPANS:
        stored.setdefault((s.trace_id, s.span_id), s)  # the first write wins
    found = [
        s
        for s in stored.values()
        if where.service in (None, s.service)
        and where.name in (None, s.name)
        and where.status in (None, s.status)
        and where.kind in (None, s.kind)
        and (where.min_duration_ms is None or s.end_ns - s.start_ns >= where.min_duration_ms * 1e6)
        and (where.max_duration_ms is None or s.end_ns - s.start_ns <= where.max_duration_ms * 1e6)
        and attrs_match(where.attributes, s.attributes, s.resource)
        and in_range(s.start_ns, where.start, where.end)
    ]
    found.sort(key=lambda s: (s.start_ns, s.trace_id, s.span_id), reverse=newest_first)
    return found[:limit]


def model_logs(where: tael.LogFilter, limit: int, newest_first: bool) -> list[tael.LogRecord]:
    found = [
        (n, r)
        for n, r in enumerate(LOGS)
        if where.service in (None, r.service)
        and r.severity_number >= (where.min_severity or 0)
        and where.trace_id in (None, r.trace_id)
        and attrs_match(where.attributes, r.attributes, r.resource)
        and in_range(r.time_ns, where.start, where.end)
    ]
    found.sort(key=lambda nr: (nr[1].time_ns, nr[0]), reverse=newest_first)
    return [r for _n, r in found[:limit]]


def model_points(where: tael.MetricFilter, limit: int, newest_first: bool) -> list[tael.MetricPoint]:
    found = [
        (n, p)
        for n, p in enumerate(POINTS)
        if where.name in (None, p.name)
        and where.service in (None, p.service)
        and attrs_match(where.attributes, p.attributes)
        and in_range(p.time_ns, where.start, where.end)
    ]
    found.sort(key=lambda np: (np[1].time_ns, np[0]), reverse=newest_first)
    return [p for _n, p in found[:limit]]


CASES: list[tuple[Any, int, bool]] = [
    (tael.SpanFilter(), 1000, True),
    (tael.SpanFilter(), 1000, False),
    (tael.SpanFilter(), 7, True),
    (tael.SpanFilter(), 1, False),
    (tael.SpanFilter(service="db", status="error"), 1000, True),
    (tael.SpanFilter(name="chat", kind="client"), 5, False),
    (tael.SpanFilter(kind="server", min_duration_ms=5), 1000, True),
    (tael.SpanFilter(min_duration_ms=2, max_duration_ms=6.5), 9, True),
    (tael.SpanFilter(attributes={"http.status_code": 500}), 1000, False),
    (tael.SpanFilter(attributes={"http.status_code": "500"}), 1000, True),  # same value, other type: none
    (tael.SpanFilter(attributes={"host": "h1", "region": "eu"}), 1000, True),  # a resource attribute
    (tael.SpanFilter(start=T0 + 10 * HOUR, end=T0 + 40 * HOUR), 1000, True),
    (tael.SpanFilter(start=T0 + 10 * HOUR, end=T0 + 40 * HOUR), 4, False),
    (tael.SpanFilter(service="llm", start=T0 + 50 * HOUR), 3, True),
    (tael.SpanFilter(service="nobody"), 10, True),
    (tael.SpanFilter(end=T0), 10, True),
    (tael.SpanFilter(start=TIE, end=TIE + 1), 1, True),  # three spans at one time: the tie order decides
    (tael.SpanFilter(start=TIE, end=TIE + 1), 1, False),
    (tael.SpanFilter(start=TIE, end=TIE + 1), 2, True),
    (tael.LogFilter(), 1000, True),
    (tael.LogFilter(), 1000, False),
    (tael.LogFilter(), 5, True),
    (tael.LogFilter(service="llm", min_severity=13), 1000, True),
    (tael.LogFilter(min_severity=17), 3, False),
    (tael.LogFilter(trace_id=TRACES[3]), 1000, True),
    (tael.LogFilter(trace_id=TRACES[3]), 1, False),
    (tael.LogFilter(trace_id=TRACES[3], start=T0 + 30 * HOUR), 1000, True),
    (tael.LogFilter(trace_id=f"{777:032x}"), 10, True),
    (tael.LogFilter(attributes={"even": True}, start=T0 + 20 * HOUR, end=T0 + 30 * HOUR), 1000, True),
    (tael.LogFilter(attributes={"i": 7}), 10, False),
    (tael.LogFilter(attributes={"i": 7.0}), 10, False),
    (tael.MetricFilter(), 100_000, False),
    (tael.MetricFilter(), 10, False),
    (tael.MetricFilter(name="cpu"), 100_000, False),
    (tael.MetricFilter(name="cpu", attributes={"host": "a"}, start=T0 + 20 * HOUR), 100_000, False),
    (tael.MetricFilter(name="cpu", service="api"), 100, False),
    (tael.MetricFilter(name="absent"), 100, False),
    (tael.MetricFilter(service="api", end=T0 + 5 * HOUR), 100, False),
    (tael.MetricFilter(attributes={"host": "b"}), 7, False),
]
MODELS: dict[type, Callable[[Any, int, bool], list[Any]]] = {
    tael.SpanFilter: model_spans,
    tael.LogFilter: model_logs,
    tael.MetricFilter: model_points,
}


# ---------------------------------------------------------------- the contract


class TierContract:
    """What every tier's reader answers; a subclass per tier provides ``store`` (holding
    the records in that tier only) and ``tier`` (which reader of a snapshot it is)."""

    tier: ClassVar[str]

    @pytest.fixture(scope="class")
    @classmethod
    def store(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tael.Store]:
        raise NotImplementedError

    def read(self, store: tael.Store, fn: Callable[[TierReader, HotReader], Any]) -> Any:
        """``fn(reader, hot reader)`` on one snapshot (the hot reader holds the series catalog)."""

        def run(txn: Any, manifest: list[Any]) -> Any:
            cold, hot = merge.tiers(store._reads, txn, manifest)
            return fn(cold if self.tier == "cold" else hot, hot)

        return store._reads.read(run)

    def decode(self, store: tael.Store, signal: str, records: list[list[Any]]) -> list[Any]:
        if signal == "spans":
            return [trace_reads.span(store._reads, f) for f in records]
        if signal == "logs":
            return [log_reads.log_record(store._reads, f) for f in records]
        return [decode_metric(f) for f in records]

    def scan_of(self, where: Any, hot: HotReader) -> Scan | None:
        """The filter's scan, narrowed to its metric series as ``query_metrics`` does
        (None: no series matches)."""
        scan: Scan = where.scan()
        if scan.metric is not None:
            assert scan.series_keep is not None
            series = hot.series(scan.metric, scan.series_keep)
            return scan.with_series(series) if series else None
        return scan

    def test_the_records_are_in_this_tier_only(self, store: tael.Store) -> None:
        with store._hot.reader() as txn:
            hot = store._hot.signal_stats(txn)
            manifest = store._hot.manifest(txn)
        hot_counts = [hot[s].count for s in ("spans", "logs", "metrics")]
        if self.tier == "hot":
            assert hot_counts == [len(SPANS) - 1, len(LOGS), len(POINTS)] and manifest == []
        else:
            assert hot_counts == [0, 0, 0]
            assert sorted({f.dataset for f in manifest}) == ["logs", "metrics", "metrics_1h", "metrics_5m", "spans"]
            assert sum(f.rows for f in manifest if f.dataset == "spans") == len(SPANS) - 1
            assert any(f.row_groups > 1 for f in manifest)

    @pytest.mark.parametrize(("where", "limit", "newest_first"), CASES)
    def test_scan_answers_the_model(self, store: tael.Store, where: Any, limit: int, newest_first: bool) -> None:
        want = MODELS[type(where)](where, limit, newest_first)

        def run(reader: TierReader, hot: HotReader) -> tuple[list[list[Hit]], list[list[Any]]]:
            scan = self.scan_of(where, hot)
            if scan is None:
                return [], []
            batches = list(reader.scan(scan, newest_first=newest_first, limit=limit, stop=lambda _bound: False))
            return batches, merge.top_k([reader], scan, limit, newest_first)

        batches, merged = self.read(store, run)
        for batch in batches:
            assert len(batch) <= limit
            keys = [hit[1] for hit in batch]
            assert keys == sorted(keys, reverse=newest_first)
        signal = {tael.SpanFilter: "spans", tael.LogFilter: "logs", tael.MetricFilter: "metrics"}[type(where)]
        found: dict[Any, Hit] = {}
        merge.take(found, (hit for batch in batches for hit in batch))
        assert self.decode(store, signal, merge.ranked(found.values(), limit, newest_first)) == want
        assert self.decode(store, signal, merged) == want  # with the early stop

    def test_a_scan_stops_when_told(self, store: tael.Store) -> None:
        asked: list[int] = []

        def stop(bound: int) -> bool:
            asked.append(bound)
            return True

        batches = self.read(
            store, lambda r, _h: list(r.scan(tael.SpanFilter().scan(), newest_first=True, limit=5, stop=stop))
        )
        # Both tiers read in parts (cold row groups, hot blocks): nothing is read once told
        # to stop, and the first bound asked is the newest time the tier holds.
        assert batches == [] and asked == [model_spans(tael.SpanFilter(), 1, True)[0].start_ns]

    def test_lookup_by_trace_id(self, store: tael.Store) -> None:
        for trace_id in [*TRACES, f"{12345:032x}"]:
            want = sorted(model_spans(tael.SpanFilter(), 10_000, False), key=lambda s: (s.start_ns, s.span_id))
            want = [s for s in want if s.trace_id == trace_id]
            hits = self.read(store, lambda r, _h, t=trace_id: r.trace(bytes.fromhex(t)))
            assert self.decode(store, "spans", merge.ranked(hits, len(hits), False)) == want

    def test_lookup_by_record_key(self, store: tael.Store) -> None:
        spans = model_spans(tael.SpanFilter(), 10_000, True)
        wanted = spans[::7]
        keys = [(bytes.fromhex(s.trace_id), bytes.fromhex(s.span_id)) for s in wanted]
        absent = [(bytes.fromhex(TRACES[0]), bytes(8)), (bytes(16), bytes(8))]
        hits = self.read(store, lambda r, _h: r.lookup("spans", [*absent[:1], *keys, *absent[1:]]))
        by_key = {hit[0]: hit for hit in hits}
        assert set(by_key) == set(keys)
        assert self.decode(store, "spans", [by_key[k][2] for k in keys]) == wanted

        def logs(reader: TierReader, _hot: HotReader) -> tuple[list[Hit], list[Hit]]:
            every = [
                hit
                for batch in reader.scan(tael.LogFilter().scan(), newest_first=False, limit=1000, stop=lambda _b: False)
                for hit in batch
            ]
            every.sort(key=lambda hit: hit[1])
            some = every[::5]
            t, lsn, idx = some[0][0]
            missing = [(t, lsn, idx + 1000), (T0 - 1, lsn, idx)]
            return some, reader.lookup("logs", [*missing, *[hit[0] for hit in some]])

        some, found = self.read(store, logs)
        assert sorted(found, key=lambda hit: hit[1]) == some
        assert self.decode(store, "logs", [hit[2] for hit in some]) == LOGS[::5]


class TestHotTier(TierContract):
    tier = "hot"

    @pytest.fixture(scope="class")
    @classmethod
    def store(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tael.Store]:
        with tael.Store(tmp_path_factory.mktemp("hot") / "data", tael.Settings(**SETTINGS)) as store:
            fill(store)
            yield store


class TestColdTierLocal(TierContract):
    tier = "cold"

    @pytest.fixture(scope="class")
    @classmethod
    def store(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tael.Store]:
        with tael.Store(tmp_path_factory.mktemp("cold") / "data", tael.Settings(**SETTINGS)) as store:
            fill(store)
            store.compact(LATER)
            yield store


class TestColdTierS3(TierContract):
    tier = "cold"

    @pytest.fixture(scope="class")
    @classmethod
    def store(cls, tmp_path_factory: pytest.TempPathFactory, s3: S3Server) -> Iterator[tael.Store]:  # noqa: F811
        settings = s3.settings(f"s3://{s3.new_bucket()}/tiers", **SETTINGS)
        with tael.Store(tmp_path_factory.mktemp("s3") / "data", settings) as store:
            fill(store)
            store.compact(LATER)
            yield store


class TestColdTierVersion1(TierContract):
    """The cold tier's reader on files of cold format version 1 (issue 16 made version 2;
    version-1 files stay readable until a writer migrates them), written by
    tests/coldv1.py as tael wrote them before."""

    tier = "cold"

    @pytest.fixture(scope="class")
    @classmethod
    def store(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tael.Store]:
        with tael.Store(tmp_path_factory.mktemp("cold1") / "data", tael.Settings(**SETTINGS)) as store:
            fill(store)
            store.compact(LATER)
            coldv1.downgrade(store)
            assert coldv1.versions(store) == {1: 15}
            yield store


class TestColdTierMixedVersions(TierContract):
    """Version-1 and version-2 files in one cold tier, every dataset split between them."""

    tier = "cold"

    @pytest.fixture(scope="class")
    @classmethod
    def store(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tael.Store]:
        settings = tael.Settings(**SETTINGS, cold_merge_min_files=1000)
        with tael.Store(tmp_path_factory.mktemp("mixed") / "data", settings) as store:
            fill(store)
            for cut in (T0 + 30 * HOUR, LATER):
                store.compact(cut)
            coldv1.downgrade(store, lambda f: f.file_id % 2 == 1)
            assert set(coldv1.versions(store)) == {1, 2}
            yield store


# ---------------------------------------------------------------- the merge of both tiers


def test_a_record_in_both_tiers_is_answered_once_from_the_cold_tier(tmp_path: Path) -> None:
    """A span re-sent after its first copy was compacted into a file whose trace-index
    entries hold no span ids (written before hot format 3) is stored again hot; every
    read answers the cold copy, written first. (With span ids in the index, the re-sent
    copy is left out at apply: tests/test_hot_blocks.py.)"""
    first = tael.Span(
        trace_id=f"{1:032x}",
        span_id=f"{1:016x}",
        name="first",
        service="api",
        start_ns=T0,
        end_ns=T0 + 5,
        attributes={"gen_ai.prompt": "hello sea"},
    )
    again = dataclasses.replace(first, name="again", start_ns=T0 + 1, end_ns=T0 + 9)
    with tael.Store(tmp_path / "data") as store:
        store.insert_spans([first])
        store.compact(T0 + HOUR)

        def without_span_ids(txn: Any) -> None:  # the trace index as an earlier tael wrote it
            db = store._hot.db["cold_traces"]
            for key, value in list(txn.cursor(db=db)):
                services, _ids = msgpack.unpackb(value)
                txn.put(key, msgpack.packb(services), db=db)

        store._hot.write(without_span_ids)
        store.insert_spans([again])
        store.flush()
        with store._hot.reader() as txn:  # the re-sent copy is hot, the first one cold
            assert store._hot.signal_stats(txn)["spans"].count == 1
        assert store.stats().signals["spans"].count == 2
        assert store.get_trace(first.trace_id) == [first]
        assert store.query_traces() == [first]
        assert store.query_traces(order="asc") == [first]
        assert store.query_traces(text="sea") == [first]
        assert [o.span_count for o in store.trace_summaries()] == [1]
