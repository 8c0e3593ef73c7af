"""kill -9 a writing process at random moments; every acknowledged batch must be there exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

import tael

from .crash_writer import batch_logs, batch_metrics, batch_spans
from .readall import all_logs, all_points, all_spans

ROOT = Path(__file__).resolve().parent.parent


def run_and_kill(
    data: Path, rnd: int, threads: int, durability: str, delay: float, module: str = "tests.crash_writer"
) -> set[tuple[str, int, int, int]]:
    args = (
        [str(data), str(rnd)] if module == "tests.crash_compactor" else [str(data), str(rnd), str(threads), durability]
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    acked: set[tuple[str, int, int, int]] = set()
    assert proc.stdout is not None
    timer = threading.Timer(delay, lambda: os.kill(proc.pid, signal.SIGKILL))
    try:
        assert proc.stdout.readline() == "ready\n"
        for line in proc.stdout:
            _, sig, r, th, b = line.split()
            acked.add((sig, int(r), int(th), int(b)))
            if timer.ident is None:  # the clock starts at the first acknowledgement, however slow the start
                timer.start()
    finally:
        timer.cancel()
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return acked


@pytest.mark.parametrize("durability", ["fsync", "os"])
def test_acknowledged_batches_survive_sigkill_exactly_once(tmp_path: Path, durability: str) -> None:
    check_kill_rounds(tmp_path / "data", durability, rounds=5, seed=1234)


@pytest.mark.soak
def test_soak_many_kill_rounds(tmp_path: Path) -> None:
    check_kill_rounds(tmp_path / "data", "fsync", rounds=40, seed=99)


def check_kill_rounds(data: Path, durability: str, *, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    acked: set[tuple[str, int, int, int]] = set()
    for rnd in range(rounds):
        acked |= run_and_kill(data, rnd, threads=3, durability=durability, delay=rng.uniform(0.3, 1.2))
    assert {a[1] for a in acked} == set(range(rounds)), "every round acknowledged something"

    with tael.Store(data) as store:
        spans = all_spans(store)
        logs = all_logs(store)
        points = all_points(store)
        span_count = Counter((s.trace_id, s.span_id) for s in spans)
        log_count = Counter(r.body for r in logs)
        point_count = Counter(p.attributes["id"] for p in points)
        assert max(span_count.values()) == 1
        assert max(log_count.values()) == 1
        assert max(point_count.values()) == 1
        for sig, rnd, th, b in acked:
            if sig == "spans":
                for s in batch_spans(rnd, th, b):
                    assert span_count[(s.trace_id, s.span_id)] == 1
                (got,) = store.get_trace(batch_spans(rnd, th, b)[0].trace_id)[:1]
                assert got == batch_spans(rnd, th, b)[0]
            elif sig == "logs":
                for r in batch_logs(rnd, th, b):
                    assert log_count[r.body] == 1
            else:
                for p in batch_metrics(rnd, th, b):
                    assert point_count[p.attributes["id"]] == 1
        # Batches are atomic: any batch present at all is present whole.
        spans_per_trace = Counter(s.trace_id for s in spans)
        assert set(spans_per_trace.values()) == {20}
        logs_per_batch = Counter(body.rsplit("/", 1)[0] for body in log_count)
        assert set(logs_per_batch.values()) == {15}
        # Service counters agree with the stored spans.
        by_service = Counter(s.service for s in spans)
        assert {i.name: i.span_count for i in store.list_services()} == dict(by_service)
        assert store.stats().signals["spans"].count == len(spans)


def test_kill_during_compaction_leaves_every_record_exactly_once_and_no_orphans(tmp_path: Path) -> None:
    from .crash_compactor import SETTINGS

    data = tmp_path / "data"
    rng = random.Random(77)
    acked: set[tuple[str, int, int, int]] = set()
    rounds = 6
    for rnd in range(rounds):
        acked |= run_and_kill(data, rnd, 1, "fsync", rng.uniform(0.8, 2.0), module="tests.crash_compactor")
    assert {a[1] for a in acked} == set(range(rounds))
    with tael.Store(data, SETTINGS) as store:
        with store._hot.reader() as txn:
            live = {f.relpath for f in store._hot.manifest(txn)}
        on_disk = {p.relative_to(data / "cold").as_posix() for p in (data / "cold").rglob("*") if p.is_file()}
        assert on_disk == live, "orphans or missing cold files after reopen"
        stats = store.stats()
        assert stats.cold_records["spans"] > 0, "compaction ran before the kills"
        spans = all_spans(store)
        logs = all_logs(store)
        points = all_points(store)
        # stored rows (hot + cold, no read-side dedup) equal distinct records read: no duplicates
        assert stats.signals["spans"].count == len(spans) == len({(s.trace_id, s.span_id) for s in spans})
        assert stats.signals["logs"].count == len(logs) == len({r.body for r in logs})
        assert stats.signals["metrics"].count == len(points) == len({p.attributes["id"] for p in points})
        span_ids = {(s.trace_id, s.span_id) for s in spans}
        bodies = {r.body for r in logs}
        ids = {p.attributes["id"] for p in points}
        for sig, rnd, th, b in acked:
            if sig == "spans":
                assert {(s.trace_id, s.span_id) for s in batch_spans(rnd, th, b)} <= span_ids
                assert store.get_trace(batch_spans(rnd, th, b)[0].trace_id) == sorted(
                    batch_spans(rnd, th, b), key=lambda s: (s.start_ns, s.span_id)
                )
            elif sig == "logs":
                assert {r.body for r in batch_logs(rnd, th, b)} <= bodies
            else:
                assert {p.attributes["id"] for p in batch_metrics(rnd, th, b)} <= ids
        services = {i.name: i.span_count for i in store.list_services()}
        assert sum(services.values()) == len(spans)


def test_kill_before_an_index_commit_loses_nothing_searchable(tmp_path: Path) -> None:
    """Every acknowledged record is found by text after reopen, though the killed writers
    never committed the index (their commit interval is an hour): the open indexes the WAL
    past the last committed position again. Long prompts go through the blob store."""
    from .crash_indexer import PROMPT, marker

    data = tmp_path / "data"
    rng = random.Random(7)
    acked: set[tuple[str, int, int, int]] = set()
    for rnd in range(3):
        acked |= run_and_kill(data, rnd, 2, "fsync", rng.uniform(0.5, 1.2), module="tests.crash_indexer")
    assert {a[1] for a in acked} == {0, 1, 2}
    with tael.Store(data) as store:
        found_spans = {
            s.attributes["gen_ai.prompt"].rsplit(" ", 1)[1]: s for s in all_spans(store, text="refund customer")
        }
        found_logs = Counter(r.body.rsplit(" ", 1)[1] for r in all_logs(store, text='"connection reset"'))
        assert max(found_logs.values()) == 1, "no log is indexed twice"
        for sig, rnd, th, b in acked:
            for i in range(10):
                m = marker(rnd, th, b, i)
                if sig == "spans":
                    assert m in found_spans, f"acknowledged span {m} is not searchable"
                    assert found_spans[m].attributes["gen_ai.prompt"].startswith(PROMPT)
                else:
                    assert m in found_logs, f"acknowledged log {m} is not searchable"
            hits = store.query_logs(text=marker(rnd, th, 0, 0)) if sig == "logs" else []
            assert len(hits) <= 1
        stats = store.stats()
        assert stats.blobs == stats.signals["spans"].count, "each stored prompt (all distinct) has its blob"
