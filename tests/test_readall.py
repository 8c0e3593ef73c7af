"""The read-back helpers of the crash tests return every record however many were written
(issue 14, item 9: a fixed ``limit=100_000`` reported acknowledged batches missing once a
fast machine wrote more)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import tael

from .conftest import make_log, make_point, make_span
from .readall import all_logs, all_points, all_spans


def test_every_record_is_read_back_past_the_page_size_with_shared_timestamps(tmp_path: Path) -> None:
    page = 64  # stands in for MAX_LIMIT: the same paging, at a size a test can exceed quickly
    with tael.Store(tmp_path / "data") as store:
        # 7 records per nanosecond, over 3 days apart and at 0: windows must split down and around them
        times = [t for base in (0, 3 * 86_400 * 10**9) for t in range(base, base + 60)]
        store.insert_spans(
            [
                make_span(span_id=f"{n * 7 + i + 1:016x}", start_ns=t, end_ns=t + 1)
                for n, t in enumerate(times)
                for i in range(7)
            ]
        )
        store.insert_logs([make_log(time_ns=t, body=f"{t}/{i}") for t in times for i in range(7)])
        store.insert_metrics([make_point(time_ns=t, attributes={"id": f"{t}/{i}"}) for t in times for i in range(7)])
        store.compact(86_400 * 10**9)  # half cold, half hot
        want = {f"{t}/{i}" for t in times for i in range(7)}

        assert len(store.query_logs(limit=page)) == page < len(want)  # what a fixed limit sees
        spans = all_spans(store, page=page)
        assert len(spans) == len({s.span_id for s in spans}) == len(want)
        assert [s.start_ns for s in spans] == sorted(s.start_ns for s in spans)
        assert Counter(r.body for r in all_logs(store, page=page)) == Counter(want)
        assert Counter(p.attributes["id"] for p in all_points(store, page=page)) == Counter(want)
        assert {r.body for r in all_logs(store, page=page, service="svc")} == want  # filters pass through
        assert all_logs(store, page=page, service="nobody") == []
