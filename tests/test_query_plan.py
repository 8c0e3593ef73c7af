"""The cold-read planner and the filters' pruning, without files: made-up manifest
entries and row-group statistics, as pyiceberg tests ``plan_files()``."""

from __future__ import annotations

from typing import Any

import pytest

from tael import LogFilter, MetricFilter, SpanFilter
from tael._cold import ColdFile
from tael._query.plan import ScanTask, plan

H = 3_600_000_000_000


def cold_file(
    file_id: int, dataset: str, lo: int, hi: int, services: tuple[str, ...] = ("api",), **kw: Any
) -> ColdFile:
    return ColdFile(
        file_id=file_id,
        dataset=dataset,
        date="2026-01-01",
        rows=100,
        size=1000,
        min_ns=lo,
        max_ns=hi,
        row_groups=kw.pop("row_groups", 1),
        services={s: [1, 0, 0, 1] for s in services},
        names=kw.pop("names", ()),
    )


class Stats:
    """Row-group time statistics by file id; records which files were asked about."""

    def __init__(self, groups: dict[int, list[tuple[int, int, int]]]) -> None:
        self.groups = groups
        self.asked: list[tuple[int, str]] = []

    def __call__(self, f: ColdFile, column: str) -> list[tuple[int, int, int]]:
        self.asked.append((f.file_id, column))
        return self.groups[f.file_id]


def tasks(found: list[ScanTask[ColdFile]]) -> list[tuple[int, int | None, int, int]]:
    return [(t.file.file_id, t.row_group, t.t_min, t.t_max) for t in found]


MANIFEST = [
    cold_file(1, "spans", 0, 10 * H),
    cold_file(2, "spans", 5 * H, 20 * H, services=("db",)),
    cold_file(3, "logs", 0, 20 * H),
    cold_file(4, "spans", 20 * H, 30 * H, services=("api", "db")),
]
STATS = {
    1: [(0, 0, 4 * H), (1, 4 * H, 10 * H)],
    2: [(0, 5 * H, 12 * H), (1, 12 * H, 20 * H)],
    3: [(0, 0, 20 * H)],
    4: [(0, 20 * H, 30 * H)],
}


def test_spans_newest_first_are_ordered_by_their_newest_time() -> None:
    stats = Stats(STATS)
    found = plan(MANIFEST, SpanFilter().scan(), newest_first=True, row_group_times=stats)
    assert tasks(found) == [
        (4, 0, 20 * H, 30 * H),
        (2, 1, 12 * H, 20 * H),
        (2, 0, 5 * H, 12 * H),
        (1, 1, 4 * H, 10 * H),
        (1, 0, 0, 4 * H),
    ]
    assert [t.bound(True) for t in found] == [30 * H, 20 * H, 12 * H, 10 * H, 4 * H]
    assert stats.asked == [(1, "start_ns"), (2, "start_ns"), (4, "start_ns")]  # the logs file is not a spans file


def test_oldest_first_is_ordered_by_the_oldest_time_ties_in_manifest_order() -> None:
    stats = Stats({1: [(0, 0, 5 * H)], 2: [(0, 0, 9 * H)], 4: [(0, 0, 1 * H), (1, 1 * H, 2 * H)]})
    manifest = [cold_file(1, "spans", 0, 5 * H), cold_file(2, "spans", 0, 9 * H), cold_file(4, "spans", 0, 2 * H)]
    found = plan(manifest, SpanFilter().scan(), newest_first=False, row_group_times=stats)
    assert tasks(found) == [(1, 0, 0, 5 * H), (2, 0, 0, 9 * H), (4, 0, 0, H), (4, 1, H, 2 * H)]
    assert [t.bound(False) for t in found] == [0, 0, 0, H]


def test_the_time_range_prunes_files_then_row_groups() -> None:
    stats = Stats(STATS)
    where = SpanFilter(start=11 * H, end=20 * H)  # end is exclusive: file 4 starts at 20 h
    found = plan(MANIFEST, where.scan(), newest_first=True, row_group_times=stats)
    assert tasks(found) == [(2, 1, 12 * H, 20 * H), (2, 0, 5 * H, 12 * H)]
    assert [a for a, _c in stats.asked] == [2]  # file 1 ends before 11 h: its footer is never read


def test_a_service_prunes_files_that_do_not_hold_it_and_a_span_name_prunes_none() -> None:
    stats = Stats(STATS)
    found = plan(MANIFEST, SpanFilter(service="db", name="GET /").scan(), newest_first=True, row_group_times=stats)
    assert [t.file.file_id for t in found] == [4, 2, 2]  # span files carry no names: the name is a row filter


def test_logs_read_the_logs_dataset_by_time_ns() -> None:
    stats = Stats(STATS)
    found = plan(MANIFEST, LogFilter(service="api").scan(), newest_first=False, row_group_times=stats)
    assert tasks(found) == [(3, 0, 0, 20 * H)]
    assert stats.asked == [(3, "time_ns")]
    assert plan(MANIFEST, LogFilter(service="llm").scan(), newest_first=False, row_group_times=stats) == []


def test_metrics_are_read_a_whole_file_at_a_time_pruned_by_name_and_service() -> None:
    manifest = [
        cold_file(1, "metrics", 5 * H, 9 * H, services=("db",), names=("cpu", "mem")),
        cold_file(2, "metrics", 0, 9 * H, services=("db",), names=("cpu",)),
        cold_file(3, "metrics", 0, 9 * H, services=("api",), names=("cpu",)),
        cold_file(4, "metrics", 0, 9 * H, services=("db",), names=("mem",)),
        cold_file(5, "metrics_5m", 0, 9 * H, services=("db",), names=("cpu",)),
    ]
    stats = Stats({})
    found = plan(manifest, MetricFilter(name="cpu", service="db").scan(), newest_first=False, row_group_times=stats)
    assert tasks(found) == [(2, None, 0, 9 * H), (1, None, 5 * H, 9 * H)]
    assert stats.asked == []  # no footer is read to plan a metric scan
    late = plan(manifest, MetricFilter(start=9 * H + 1).scan(), newest_first=False, row_group_times=stats)
    assert late == []


def test_an_empty_range_plans_nothing() -> None:
    where = SpanFilter(start=10**30)  # past every time a record can have
    scan = where.scan()
    assert plan(MANIFEST, scan, newest_first=True, row_group_times=Stats(STATS)) == []
    assert scan.empty and SpanFilter(end=-5).scan().empty and not SpanFilter(end=1).scan().empty


@pytest.mark.parametrize(
    ("lo", "hi", "keeps"),
    [(None, None, True), (10, None, True), (11, None, False), (None, 1, True), (None, 0, False), (0, 1, True)],
)
def test_row_group_pruning_is_inclusive_below_and_exclusive_above(lo: Any, hi: Any, keeps: bool) -> None:
    scan = SpanFilter(start=lo, end=hi).scan()
    assert scan.keeps_row_group(0, 10) is keeps


def test_a_filter_becomes_one_arrow_expression_built_when_the_cold_tier_first_asks() -> None:
    scan = SpanFilter(service="db", status="error", min_duration_ms=1.5, max_duration_ms=2.5, start=10).scan()
    calls: list[int] = []
    build = scan.arrow
    scan.arrow = lambda: calls.append(1) or build()
    assert calls == []
    expr = scan.expr
    assert scan.expr is expr and calls == [1]  # built once
    assert str(expr) == (
        '(((((service == "db") and (status == "error")) and (duration_ns >= 1500000))'
        " and (duration_ns <= 2500000)) and (start_ns >= 10))"
    )
    assert SpanFilter(attributes={"k": 1}).scan().expr is None  # attribute maps are the row predicate's
    assert str(LogFilter(trace_id="ab" * 16, end=5).scan().expr) == f'((trace_id == "{"ab" * 16}") and (time_ns < 5))'
    narrowed = MetricFilter(name="cpu").scan().with_series([b"\x01" * 8])
    assert narrowed.series == (b"\x01" * 8,)
    assert str(narrowed.expr).startswith(
        '((name == "cpu") and is_in(series_id, {value_set=string:[\n  "0101010101010101"'
    )


def test_the_row_predicate_checks_what_the_expression_does_and_the_attributes() -> None:
    keep = SpanFilter(service="db", kind="server", min_duration_ms=1, attributes={"k": 1}).scan().keep
    span = [b"t" * 16, b"s" * 8, None, "op", "db", 0, 1_000_000, 1, 0, None, {"k": 1}, {}, None, None, [], [], None, 0]
    assert keep(span)
    assert not keep([*span[:4], "api", *span[5:]])
    assert not keep([*span[:6], 999_999, *span[7:]])
    assert not keep([*span[:10], {"k": True}, *span[11:]])
    assert keep([*span[:10], {}, {"k": 1}, *span[12:]])  # a resource attribute matches too
    series_keep = MetricFilter(name="cpu", service="db", attributes={"host": "a"}).scan().series_keep
    assert series_keep is not None
    assert series_keep(["db", 0, {"host": "a"}]) and not series_keep(["db", 0, {"host": "b"}])
