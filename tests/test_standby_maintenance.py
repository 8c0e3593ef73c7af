"""A standby runs its own maintenance (issue 14, item 3): it compacts, rolls up, merges,
applies retention, collects blobs and checkpoints its WAL, while its leader keeps
shipping, and reads on it still answer what the leader answers. Before, every pass
failed with StandbyError from ``compact()``, the hot tier grew and ``/health/ready``
turned 503 after three passes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

import tael

from .conftest import make_log, make_point, make_span
from .readall import all_logs, all_points, all_spans
from .test_replication import caught_up, standby, url, wal_bytes
from .test_server import free_port, wait_for

HOUR = 3600 * 10**9
DAY = 24 * HOUR


def load(leader: tael.Store, now: int, batch: int, *, days: int = 10) -> None:
    """One batch per signal spread over ``days`` days before ``now`` (past the 7-day
    retention for the oldest when over 7, inside the 1-hour hot window for the newest)."""
    step = days * DAY // 50
    leader.insert_spans(
        [
            make_span(
                trace_id=f"{batch + 1:016x}{i + 1:016x}",
                span_id=f"{batch + 1:08x}{i + 1:08x}",
                service=f"svc{i % 3}",
                start_ns=now - i * step - batch,
                end_ns=now - i * step - batch + 1_000,
                attributes={"gen_ai.prompt": f"refund question {batch}/{i} " + "x" * 200},
            )
            for i in range(50)
        ]
    )
    leader.insert_logs([make_log(time_ns=now - i * step - batch, body=f"log {batch}/{i}") for i in range(50)])
    leader.insert_metrics(
        [
            make_point(time_ns=now - i * step - batch, value=float(i), attributes={"id": f"{batch}/{i}"})
            for i in range(50)
        ]
    )


def snapshot(store: tael.Store) -> dict[str, Any]:
    """What a client reads: every record, the services, a trace, SQL aggregates."""
    spans = all_spans(store)
    return {
        "spans": spans,
        "logs": all_logs(store),
        "points": all_points(store),
        "services": store.list_services(),
        "trace": store.get_trace(spans[0].trace_id) if spans else [],
        "sql": store.sql(
            "SELECT (SELECT count(*) FROM spans) AS s, (SELECT count(*) FROM logs) AS l, "
            "(SELECT count(*) FROM metrics) AS m, (SELECT sum(count) FROM metrics_5m) AS r"
        ).to_pylist(),
        "text": sorted(s.span_id for s in store.query_traces(text="refund question", limit=1000)),
    }


def test_a_standby_runs_maintenance_and_still_answers_like_its_leader(tmp_path: Path) -> None:
    import uvicorn

    from tael._server import create_app

    port = free_port()
    small = {"wal_segment_bytes": 32 << 10, "compaction_batch_records": 64, "cold_merge_min_files": 3}
    sb = standby(tmp_path / "standby", port, **small)
    leader = tael.Store(tmp_path / "leader", tael.Settings(replicas=(url(port),), replication_timeout_s=30, **small))
    try:
        now = time.time_ns()
        for b in range(6):
            load(leader, now, b)
        wait_for(lambda: caught_up(leader), "the standby")
        sb.flush()
        hot_before = sb.stats().hot_records
        assert hot_before == leader.stats().hot_records and hot_before["spans"] == 300

        # 1. passes on the standby alone, with its leader idle
        m = tael.Maintenance(sb, interval_s=0.05)
        for _ in range(3):
            report = m.run_once(now=now)
            assert report.error is None, report.error
        first = m.last_report
        assert m.records_compacted > 0 and m.errors == 0
        stats = sb.stats()
        assert stats.hot_records["spans"] < hot_before["spans"] and stats.cold_records["spans"] > 0
        rollups = {p.parent.parent.name for p in (tmp_path / "standby" / "cold").rglob("*.parquet")}
        assert {"metrics_5m", "metrics_1h"} <= rollups, "rolled up"
        assert m.rows_dropped > 0, "retention dropped what is older than 7 days"
        assert first is not None and first.retention is not None
        assert sum(first.retention.hot_records_dropped.values()) == 0  # the first pass did it all
        cold_files = list((tmp_path / "standby" / "cold").rglob("*.parquet"))
        assert cold_files
        leader_m = tael.Maintenance(leader)
        assert leader_m.run_once(now=now).error is None  # the same retention on the leader
        assert snapshot(sb) == snapshot(leader)

        # 2. passes while the leader ships: compaction beside the standby's applier
        def ship() -> None:  # all inside retention: what a pass drops cannot depend on when it ran
            for b in range(6, 16):
                load(leader, now, b, days=6)

        writer = threading.Thread(target=ship)
        writer.start()
        while writer.is_alive():
            report = m.run_once(now=now)
            assert report.error is None, report.error
        writer.join()
        wait_for(lambda: caught_up(leader), "the standby")
        assert m.run_once(now=now).error is None
        assert leader_m.run_once(now=now).error is None
        sb.flush()
        final = snapshot(sb)
        assert final == snapshot(leader)
        assert sb.stats().hot_records["spans"] == 16, "one span per batch is inside the hot window"

        # the standby's WAL is still a byte copy of the leader's, segment for segment
        mine, theirs = wal_bytes(tmp_path / "standby"), wal_bytes(tmp_path / "leader")
        assert mine and all(theirs[name] == data for name, data in mine.items() if name in theirs)
        assert max(theirs) in mine, "the standby holds the leader's newest segment"

        # 3. the loop, behind /health/ready: every pass succeeds, the store stays ready
        srv = uvicorn.Server(
            uvicorn.Config(create_app(sb, maintenance=m), host="127.0.0.1", port=free_port(), log_level="warning")
        )
        served = threading.Thread(target=srv.run, daemon=True)
        served.start()
        try:
            base = f"http://127.0.0.1:{srv.config.port}"
            wait_for(lambda: httpx.get(base + "/health/live").status_code == 200, "the in-process server")
            runs = m.runs
            with m:
                wait_for(lambda: m.runs >= runs + 4, "four maintenance passes on the standby")
            assert m.errors == 0 and m.consecutive_errors == 0, m.last_error
            ready = httpx.get(base + "/health/ready")
            assert ready.status_code == 200, ready.text
        finally:
            srv.should_exit = True
            served.join(10)
    finally:
        leader.close()

    # 4. promotion afterwards: the standby becomes a writable leader holding everything
    try:
        sb.promote()
        load(sb, now, 99, days=6)
        assert len(all_spans(sb)) == len(final["spans"]) + 50
        assert tael.Maintenance(sb).run_once(now=now).error is None
    finally:
        sb.close()
    with tael.Store(tmp_path / "standby") as reopened:
        assert not reopened.standby and len(all_spans(reopened)) == len(final["spans"]) + 50
