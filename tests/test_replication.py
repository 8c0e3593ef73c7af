"""WAL shipping between real stores over real HTTP on loopback: synchronous and
asynchronous acknowledgements, catch-up from the leader's retained WAL, the
retention cap, fencing by epoch, promotion, and failover after a leader is killed
with SIGKILL (one leader and two standbys, each its own process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import tael

from . import readall
from .conftest import make_log, make_point, make_span
from .crash_writer import batch_logs, batch_metrics, batch_spans
from .test_server import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
WAL_TYPE = {"content-type": "application/x-tael-wal"}  # the only type /replication/wal takes


def standby(path: Path, port: int, **kw: Any) -> tael.Store:
    return tael.Store(path, tael.Settings(standby_listen=f"127.0.0.1:{port}", **kw), standby=True)


def keep_everything(tmp_path: Path) -> Path:
    """A settings file for `tael serve` processes of these tests: their records are
    timed in 1970, and a standby's own maintenance (every 60 s) would otherwise
    apply retention to them while a slow run is still checking them."""
    path = tmp_path / "keep-everything.toml"
    days = 1_000_000.0
    path.write_text(
        "".join(
            f"retention_{tier}_days = {days}\n"
            for tier in ("spans", "logs", "metrics", "metrics_5m", "metrics_1h", "comments")
        )
    )
    return path


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def spans(n: int, start: int = 0) -> list[tael.Span]:
    return [
        make_span(
            trace_id=f"{start + i + 1:032x}",
            span_id=f"{start + i + 1:016x}",
            start_ns=10_000 + start + i,
            end_ns=20_000 + start + i,
            attributes={"n": start + i, "pad": "p" * 300},
        )
        for i in range(n)
    ]


def wal_bytes(data: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((data / "wal").glob("*.wal"))}


def caught_up(leader: tael.Store, n: int = 1) -> bool:
    st = leader.replication_status()
    return sum(1 for r in st.replicas if r.state == "streaming" and r.lag_bytes == 0) >= n


def all_spans(store: tael.Store) -> list[tael.Span]:
    return store.query_traces(limit=100_000, order="asc")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[tael.Store, tael.Store, int]]:
    port = free_port()
    sb = standby(tmp_path / "standby", port)
    leader = tael.Store(
        tmp_path / "leader", tael.Settings(replicas=(url(port),), wal_segment_bytes=32 << 10, replication_timeout_s=10)
    )
    try:
        yield leader, sb, port
    finally:
        leader.close()
        sb.close()


def test_synchronous_shipping_copies_the_wal_byte_for_byte_and_every_acknowledged_write(
    pair: tuple[tael.Store, tael.Store, int],
) -> None:
    leader, sb, _port = pair
    for b in range(30):  # past several 32 KiB segments
        leader.insert_spans(spans(20, start=b * 20))
        # acknowledged means durable in the standby's WAL: it is there the moment insert returns
        assert sb._ingest is not None and sb._ingest.pipeline.durable_lsn >= leader._ingest.pipeline.durable_lsn  # type: ignore[union-attr]
    leader.insert_logs([make_log(body=f"log {i}", time_ns=5_000 + i) for i in range(50)])
    leader.insert_metrics([make_point(value=float(i), time_ns=6_000 + i) for i in range(40)])
    comment = leader.add_comment(f"{1:032x}", "looks slow", author="ana")

    assert all_spans(sb) == all_spans(leader) and len(all_spans(sb)) == 600
    assert sb.query_logs(limit=1000, order="asc") == leader.query_logs(limit=1000, order="asc")
    assert sb.query_metrics(limit=1000) == leader.query_metrics(limit=1000)
    assert sb.comments(f"{1:032x}") == [comment]
    sb.flush()
    assert [s.span_id for s in sb.query_traces(text="pppp", limit=5)] == [
        s.span_id for s in leader.query_traces(text="pppp", limit=5)
    ]

    lw, sw = wal_bytes(leader.path), wal_bytes(sb.path)
    common = set(lw) & set(sw)
    assert common, "both keep at least the active segment"
    assert all(lw[name] == sw[name] for name in common), "the standby's WAL is a byte copy of the leader's"
    assert len(leader.stats().replication.replicas) == 1  # type: ignore[union-attr]

    lst, sst = leader.replication_status(), sb.replication_status()
    assert lst.role == "leader" and sst.role == "standby" and lst.store_id == sst.store_id
    assert lst.replicas[0].state == "streaming" and lst.replicas[0].lag_bytes == 0
    assert lst.replicas[0].acked_lsn == lst.end_lsn == sst.end_lsn
    assert sst.lag_bytes == 0 and sst.last_contact_s is not None and sst.last_contact_s < 5


def test_a_standby_refuses_client_writes_and_a_different_store(pair: tuple[tael.Store, tael.Store, int]) -> None:
    leader, sb, port = pair
    leader.insert_spans(spans(3))
    with pytest.raises(tael.StandbyError, match="standby"):
        sb.insert_spans(spans(1, start=100))
    with pytest.raises(tael.ReadOnlyError):  # StandbyError is a ReadOnlyError too
        sb.insert_logs([make_log()])
    with pytest.raises(tael.StandbyError, match="standby=True"):
        sb.close()
        tael.Store(sb.path)  # a standby directory is not opened as a leader by mistake
    sb2 = standby(sb.path, port)
    try:
        other = tael.Store(sb.path.parent / "other", tael.Settings(replicas=(url(port),), replication_timeout_s=1.0))
        try:
            with pytest.raises(tael.ReplicationError, match="did not arrive"):
                other.insert_spans(spans(1, start=500))
            wait_for(lambda: other.replication_status().replicas[0].state == "refused", "the refusal")
            assert "another store" in (other.replication_status().replicas[0].last_error or "")
            assert len(other.query_traces()) == 1, "durable on the leader that shipped it, though unacknowledged"
        finally:
            other.close()
        assert len(all_spans(sb2)) == 3, "nothing of the other store reached the standby"
    finally:
        sb2.close()


def test_required_acks_zero_and_quorum_and_all(tmp_path: Path) -> None:
    live_port, dead_port = free_port(), free_port()
    sb = standby(tmp_path / "sb", live_port)
    try:
        dead = url(dead_port)
        async_settings = tael.Settings(replicas=(dead,), required_acks=0, replication_timeout_s=60)
        with tael.Store(tmp_path / "async", async_settings) as a:
            began = time.monotonic()
            a.insert_spans(spans(5))
            # a bound no machine needs for one insert, far below the 60 s a synchronous one would wait
            assert time.monotonic() - began < 30, "asynchronous: no waiting for a dead standby"
            wait_for(lambda: a.replication_status().replicas[0].state == "down", "the dead standby to show")
        replicas = (url(live_port), dead)
        with tael.Store(tmp_path / "quorum", tael.Settings(replicas=replicas, required_acks=1)) as q:
            q.insert_spans(spans(5))
            assert len(all_spans(sb)) == 5, "the one live standby holds the write"
        sb.close()
        sb = standby(tmp_path / "sb2", live_port)
        settings = tael.Settings(replicas=replicas, required_acks=None, replication_timeout_s=1.0)
        with tael.Store(tmp_path / "all", settings) as every:
            with pytest.raises(tael.ReplicationError, match=rf"127\.0\.0\.1:{dead_port}: down"):
                every.insert_spans(spans(2))
            assert len(all_spans(every)) == 2
            assert len(all_spans(sb)) == 2, "shipped to the live standby all the same"
    finally:
        sb.close()


def test_a_standby_catches_up_from_retained_wal_across_leader_and_standby_restarts(tmp_path: Path) -> None:
    port = free_port()
    settings = tael.Settings(
        replicas=(url(port),),
        required_acks=0,
        wal_segment_bytes=4 << 10,  # blocks: ~100 bytes of WAL per span
        replication_max_retained_bytes=64 << 10,  # below the WAL's total length, above the standby's gap
    )
    sb = standby(tmp_path / "sb", port)
    leader = tael.Store(tmp_path / "leader", settings)
    for b in range(80):
        leader.insert_spans(spans(10, start=b * 10))
    wait_for(lambda: caught_up(leader), "the first shipments")
    assert leader.replication_status().end_lsn > 64 << 10
    sb.close()  # the standby goes away; the leader keeps writing
    for b in range(80, 119):
        leader.insert_spans(spans(10, start=b * 10))
    leader.checkpoint()
    assert leader.stats().wal_segments > 5, "segments the standby needs are kept"
    leader.close()  # and the leader restarts while the standby is still down
    leader = tael.Store(tmp_path / "leader", settings)
    leader.checkpoint()
    assert leader.stats().wal_segments > 5, "kept across a leader restart (positions saved at checkpoint)"
    for b in range(119, 124):
        leader.insert_spans(spans(10, start=b * 10))
    sb = standby(tmp_path / "sb", port)
    try:
        wait_for(lambda: caught_up(leader), "the standby to catch up", timeout=30)
        assert all_spans(sb) == all_spans(leader) and len(all_spans(sb)) == 1240
        leader.checkpoint()
        assert leader.stats().wal_segments <= 2, "once the standby has them, old segments go"
    finally:
        leader.close()
        sb.close()


def test_past_the_retention_cap_the_leader_drops_wal_and_reports_the_standby_needs_seeding(tmp_path: Path) -> None:
    port = free_port()
    settings = tael.Settings(
        replicas=(url(port),), required_acks=0, wal_segment_bytes=16 << 10, replication_max_retained_bytes=32 << 10
    )
    sb = standby(tmp_path / "sb", port)
    with tael.Store(tmp_path / "leader", settings) as leader:
        leader.insert_spans(spans(10))
        wait_for(lambda: caught_up(leader), "the first shipment")
        sb.close()
        for b in range(1, 40):
            leader.insert_spans(spans(10, start=b * 10))
        leader.checkpoint()
        assert leader.stats().wal_segments <= 3, "the cap let the leader delete what the standby needed"
        sb = standby(tmp_path / "sb", port)
        try:
            wait_for(lambda: leader.replication_status().replicas[0].state == "needs_seed", "needs_seed")
            assert "seeded again" in (leader.replication_status().replicas[0].last_error or "")
            assert len(all_spans(sb)) == 10, "the standby keeps what it had"
        finally:
            sb.close()


def test_promotion_fences_the_old_leader_and_a_diverged_leader_cannot_rejoin(tmp_path: Path) -> None:
    p_sb, p_old = free_port(), free_port()
    sb = standby(tmp_path / "sb", p_sb)
    old = tael.Store(tmp_path / "old", tael.Settings(replicas=(url(p_sb),), replication_timeout_s=1.0))
    old.insert_spans(spans(5))
    sb.promote()
    assert not sb.standby and sb.replication_status().epoch == 2
    with pytest.raises(tael.ReplicationError):
        sb.promote()  # a leader is not promoted twice
    with pytest.raises(tael.ReplicationError):
        old.insert_spans(spans(1, start=100))  # the promoted standby no longer acknowledges the old leader
    wait_for(lambda: old.replication_status().replicas[0].state == "refused", "the fence")
    sb.insert_spans(spans(3, start=200))
    assert len(all_spans(sb)) == 8
    old.close()
    sb.close()

    # The old leader wrote a span after the promotion point: its history diverged. Made
    # a standby of the new leader, it is refused rather than silently mixed.
    old_sb = standby(tmp_path / "old", p_old)
    new = tael.Store(tmp_path / "sb", tael.Settings(replicas=(url(p_old),), required_acks=0))
    try:
        wait_for(lambda: new.replication_status().replicas[0].state == "refused", "the divergence")
        assert "diverged" in (new.replication_status().replicas[0].last_error or "")
        assert new.replication_status().epoch == 2
    finally:
        new.close()
        old_sb.close()

    # A standby that is a true prefix of the new leader's history rejoins and catches up.
    p2 = free_port()
    with tael.Store(tmp_path / "sb", tael.Settings(replicas=(url(p2),))) as new:
        third = standby(tmp_path / "third", p2)
        try:
            new.insert_spans(spans(1, start=300))
            assert all_spans(third) == all_spans(new) and len(all_spans(third)) == 9
            assert third.replication_status().epoch == 2
        finally:
            third.close()


def test_standby_through_the_cli_with_metrics_and_promote(tmp_path: Path) -> None:
    """`tael serve --standby-of` and `tael serve --replica`, lag on /metrics, `tael promote`."""
    p_leader, p_sb = free_port(), free_port()
    sb_data, leader_data = tmp_path / "sb", tmp_path / "leader"
    config = keep_everything(tmp_path)
    procs = []

    def serve(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tael", "--config", str(config), "serve", *args],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    try:
        serve("--data", str(sb_data), "--port", str(p_sb), "--standby-of", url(p_leader))
        wait_for(lambda: httpx.get(url(p_sb) + "/health/live").status_code == 200, "the standby")
        serve("--data", str(leader_data), "--port", str(p_leader), "--replica", url(p_sb))
        wait_for(lambda: httpx.get(url(p_leader) + "/health/live").status_code == 200, "the leader")
        body = {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cli-svc"}}]},
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "5b8efff798038103d269b633813fc60c",
                                    "spanId": "eee19b7ec3c1b174",
                                    "name": "GET /",
                                    "startTimeUnixNano": "1000",
                                    "endTimeUnixNano": "2000",
                                }
                            ]
                        }
                    ],
                }
            ]
        }
        assert httpx.post(url(p_leader) + "/v1/traces", json=body).status_code == 200
        refused = httpx.post(url(p_sb) + "/v1/traces", json=body)
        assert refused.status_code == 503 and "standby" in refused.text

        def metric(port: int, name: str, labels: dict[str, str]) -> float | None:
            text = httpx.get(url(port) + "/metrics").text
            for fam in text_string_to_metric_families(text):
                for s in fam.samples:
                    if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                        return float(s.value)
            return None

        assert metric(p_leader, "tael_replication_lag_bytes", {"replica": url(p_sb)}) == 0
        assert metric(p_leader, "tael_replication_replica_state", {"replica": url(p_sb), "state": "streaming"}) == 1
        assert metric(p_sb, "tael_replication_role", {"role": "standby"}) == 1
        assert metric(p_sb, "tael_replication_lag_bytes", {"replica": "self"}) == 0
        trace = httpx.get(url(p_sb) + "/api/traces/5b8efff798038103d269b633813fc60c").json()
        assert trace["data"][0]["spans"][0]["operationName"] == "GET /", "the standby serves reads"

        locked = subprocess.run(
            [sys.executable, "-m", "tael", "promote", str(sb_data)], cwd=ROOT, capture_output=True, text=True
        )
        assert locked.returncode == 1 and "--url" in locked.stderr
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        promoted = subprocess.run(
            [sys.executable, "-m", "tael", "promote", str(sb_data)], cwd=ROOT, capture_output=True, text=True
        )
        assert promoted.returncode == 0 and "epoch 2" in promoted.stdout, promoted.stderr
        again = subprocess.run(
            [sys.executable, "-m", "tael", "promote", str(sb_data)], cwd=ROOT, capture_output=True, text=True
        )
        assert again.returncode == 1 and "not a standby" in again.stderr
        with tael.Store(sb_data) as s:
            assert s.get_trace("5b8efff798038103d269b633813fc60c")[0].service == "cli-svc"
            s.insert_spans(spans(1))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            assert proc.stderr is not None
            proc.stderr.close()


def test_failover_after_sigkill_loses_no_acknowledged_write(tmp_path: Path) -> None:
    """A leader writing with required_acks=None is killed with SIGKILL; each of its two
    standbys (separate processes) is promoted, one while running (HTTP) and one on
    disk (`tael promote`), and holds every write the leader acknowledged."""
    ports = [free_port(), free_port()]
    dirs = [tmp_path / "sb0", tmp_path / "sb1"]
    config = keep_everything(tmp_path)
    standbys = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "tael", "--config", str(config), "serve"),
                *("--data", str(d), "--port", str(p), "--standby-of", "leader"),
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d, p in zip(dirs, ports, strict=True)
    ]
    leader: subprocess.Popen[str] | None = None
    try:
        for p in ports:
            wait_for(lambda p=p: httpx.get(url(p) + "/health/live").status_code == 200, "a standby")
        leader = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_leader", str(tmp_path / "leader"), "3", *map(url, ports)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        acked: set[tuple[str, int, int]] = set()
        assert leader.stdout is not None
        assert leader.stdout.readline() == "ready\n"
        timer = threading.Timer(1.0, lambda: os.kill(leader.pid, signal.SIGKILL))  # type: ignore[union-attr]
        try:
            for line in leader.stdout:
                _, sig, _r, th, b = line.split()
                acked.add((sig, int(th), int(b)))
                if len(acked) > 30 and timer.ident is None:  # the kill comes after a load, however slow
                    timer.start()
        finally:
            timer.cancel()
        assert leader.wait() == -signal.SIGKILL
        assert len(acked) > 30, f"the load ran ({len(acked)} batches acknowledged)"

        via_url = subprocess.run(
            [sys.executable, "-m", "tael", "promote", "--url", url(ports[0]), "--output", "json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert via_url.returncode == 0 and '"epoch": 2' in via_url.stdout, via_url.stderr
        again = httpx.post(url(ports[0]) + "/replication/promote", json={}, timeout=60)
        assert again.status_code == 409 and "not a standby" in again.text
        standbys[0].send_signal(signal.SIGTERM)
        standbys[1].send_signal(signal.SIGTERM)
        assert [p.wait(30) for p in standbys] == [0, 0]
        done = subprocess.run(
            [sys.executable, "-m", "tael", "promote", str(dirs[1])], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        for d in dirs:
            with tael.Store(d) as store:
                check_acked(store, acked)
                store.insert_spans(spans(1, start=10**6))  # a writable leader now
    finally:
        for proc in [*standbys, *([leader] if leader is not None else [])]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def check_acked(store: tael.Store, acked: set[tuple[str, int, int]]) -> None:
    span_count = Counter((s.trace_id, s.span_id) for s in readall.all_spans(store))
    log_count = Counter(r.body for r in readall.all_logs(store))
    point_count = Counter(p.attributes["id"] for p in readall.all_points(store))
    print(f"{len(acked)} acknowledged batches checked")
    assert max(span_count.values()) == 1 and max(log_count.values()) == 1 and max(point_count.values()) == 1
    for sig, th, b in acked:
        if sig == "spans":
            assert all(span_count[(s.trace_id, s.span_id)] == 1 for s in batch_spans(0, th, b)), (sig, th, b)
        elif sig == "logs":
            assert all(log_count[r.body] == 1 for r in batch_logs(0, th, b)), (sig, th, b)
        else:
            assert all(point_count[p.attributes["id"]] == 1 for p in batch_metrics(0, th, b)), (sig, th, b)


def test_a_promoted_standby_ships_to_its_own_replicas(tmp_path: Path) -> None:
    p_a, p_b = free_port(), free_port()
    b = standby(tmp_path / "b", p_b)
    small = {"wal_segment_bytes": 4 << 10}
    a = standby(tmp_path / "a", p_a, replicas=(url(p_b),), **small)  # used once promoted
    try:
        with tael.Store(tmp_path / "leader", tael.Settings(replicas=(url(p_a),), **small)) as leader:
            for n in range(20):
                leader.insert_spans(spans(10, start=n * 10))
        a.checkpoint()
        kept = sorted(int(p.stem) for p in (tmp_path / "a" / "wal").glob("*.wal"))
        assert len(kept) > 3 and kept[0] == 0, "a standby with replicas of its own keeps WAL for them"
        assert a.replication_status().replicas == (), "a standby ships nothing"
        assert all_spans(b) == []
        a.promote()
        a.insert_spans(spans(2, start=500))
        assert a.replication_status().replicas[0].state == "streaming"
        assert all_spans(b) == all_spans(a) and len(all_spans(b)) == 202, "the old leader's history and new writes"
        assert b.replication_status().epoch == 2
    finally:
        a.close()
        b.close()


def test_wal_append_at_copies_segments_skips_repeats_and_refuses_a_gap_whole(tmp_path: Path) -> None:
    from tael._wal import RecordType, Wal, encode_frame, read_frames

    def wal(name: str) -> Wal:
        w = Wal(tmp_path / name, segment_bytes=4096, max_record_bytes=1 << 20, fsync=True)
        list(w.recover(0))
        return w

    leader, copy = wal("leader"), wal("copy")
    frames = [
        encode_frame(RecordType.SPANS, [bytes([i]) * 700], compress_min=1 << 20, level=1, max_bytes=1 << 20)
        for i in range(20)
    ]
    for f in frames:
        leader.append([f])
    assert leader.segment_count > 2
    shipped = read_frames(leader.dir, 16, leader.end_lsn, max_bytes=1 << 20)
    assert [f for _lsn, f in shipped] == frames
    gap = [shipped[0], shipped[2]]
    with pytest.raises(tael.ReplicationError, match="does not follow"):
        copy.append_at(gap)
    assert copy.end_lsn == 16, "nothing of a shipment with a gap is written"
    assert copy.append_at(shipped[:5]) == shipped[4][0] + len(shipped[4][1])
    assert copy.append_at(shipped) == leader.end_lsn, "frames it holds are skipped"
    leader.close()
    copy.close()
    names = sorted(p.name for p in (tmp_path / "leader").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "copy").iterdir())
    assert all((tmp_path / "leader" / n).read_bytes() == (tmp_path / "copy" / n).read_bytes() for n in names)


def test_a_failed_fsync_on_the_standby_keeps_nothing_half_received(
    pair: tuple[tael.Store, tael.Store, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The standby's fdatasync fails once: the shipment is cut back whole, the leader
    ships it again, and every acknowledged span ends up applied on the standby."""
    import errno

    leader, sb, _port = pair
    real = os.fdatasync
    armed = threading.Event()

    def flaky(fd: int) -> None:
        if armed.is_set() and sb._ingest is not None and fd == sb._ingest.wal._fd:
            armed.clear()
            raise OSError(errno.EIO, "injected I/O error")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", flaky)
    leader.insert_spans(spans(10))
    armed.set()
    leader.insert_spans(spans(10, start=10))  # its first shipment fails on the standby, the retry lands
    assert not armed.is_set(), "the failure was injected"
    leader.insert_spans(spans(10, start=20))
    assert len(all_spans(sb)) == 30 and all_spans(sb) == all_spans(leader)
    lw, sw = wal_bytes(leader.path), wal_bytes(sb.path)
    assert all(lw[n] == sw[n] for n in set(lw) & set(sw))


def test_a_standby_ahead_of_its_leader_is_refused(tmp_path: Path) -> None:
    """A leader restored from an older copy must not count acks from a standby that
    holds WAL past its end: its new records would land at LSNs the standby skips."""
    import shutil

    port = free_port()
    sb = standby(tmp_path / "sb", port)
    settings = tael.Settings(replicas=(url(port),), replication_timeout_s=1.0)
    try:
        with tael.Store(tmp_path / "leader", settings) as leader:
            leader.insert_spans(spans(5))
        shutil.copytree(tmp_path / "leader", tmp_path / "backup")
        with tael.Store(tmp_path / "leader", settings) as leader:
            leader.insert_spans(spans(5, start=5))
        (tmp_path / "backup" / "LOCK").unlink(missing_ok=True)
        with tael.Store(tmp_path / "backup", settings) as restored:
            with pytest.raises(tael.ReplicationError):
                restored.insert_spans(spans(1, start=100))
            wait_for(lambda: restored.replication_status().replicas[0].state == "refused", "the refusal")
            assert "runs past this leader's durable end" in (restored.replication_status().replicas[0].last_error or "")
        assert len(all_spans(sb)) == 10
    finally:
        sb.close()


def test_malformed_shipments_get_400_naming_the_field(pair: tuple[tael.Store, tael.Store, int]) -> None:
    import msgpack

    _leader, _sb, port = pair
    good = {"protocol": 1, "store_id": None, "epoch": 1, "history": [[1, 0]], "from": 16, "leader_end": 16}
    for body, field in (
        (b"\xc1 not msgpack", "not msgpack"),
        (msgpack.packb([1, 2]), "not a map"),
        (msgpack.packb({**good, "frames": "x"}), "'frames'"),
        (msgpack.packb({**good, "frames": [[16, "text"]]}), "'frames'"),
        (msgpack.packb({**good, "epoch": "1", "frames": []}), "'epoch'"),
        (msgpack.packb({**good, "history": [[1]], "frames": []}), "'history'"),
    ):
        resp = httpx.post(url(port) + "/replication/wal", content=body, headers=WAL_TYPE)
        assert resp.status_code == 400 and field in resp.json()["error"], (body, resp.text)
    assert httpx.get(url(port) + "/replication/status").status_code == 200, "it keeps serving"


def test_a_record_type_the_standby_does_not_know_is_refused_for_good(
    pair: tuple[tael.Store, tael.Store, int],
) -> None:
    import msgpack

    from tael._wal import encode_frame

    leader, sb, port = pair
    leader.insert_spans(spans(2))
    st = msgpack.unpackb(httpx.get(url(port) + "/replication/status").content)
    frame = encode_frame(9, [b"x"], compress_min=1 << 20, level=1, max_bytes=1 << 20)
    body = {
        "protocol": 1,
        "store_id": st["store_id"],
        "epoch": st["epoch"],
        "history": [[1, 0]],
        "from": st["end_lsn"],
        "leader_end": st["end_lsn"] + len(frame),
        "frames": [[st["end_lsn"], frame]],
    }
    resp = httpx.post(url(port) + "/replication/wal", content=msgpack.packb(body, use_bin_type=True), headers=WAL_TYPE)
    answer = msgpack.unpackb(resp.content)
    assert resp.status_code == 409 and answer["fatal"] and "type 9" in answer["error"]
    assert answer["end_lsn"] == st["end_lsn"] and sb.replication_status().end_lsn == st["end_lsn"], "nothing written"
    assert len(all_spans(sb)) == 2


def test_a_shipped_record_the_standby_could_never_apply_is_refused_before_it_is_acknowledged(
    tmp_path: Path,
) -> None:
    """A shipment that verifies but holds a record the hot tier cannot apply (a span
    name over its LMDB key: written by a bug, an older version, or forged by anyone
    who reaches an unauthenticated standby) is refused whole with a fatal 409. Before,
    it was acknowledged, the standby adopted the sender's store id, and its applier
    stopped: every read answered 503 until `tael repair`."""
    import msgpack

    from tael import _codec
    from tael._blobs import Payloads
    from tael._wal import encode_frame

    port = free_port()
    with standby(tmp_path / "sb", port) as sb:
        ((*_head, value),) = _codec.encode_spans([make_span(service="checkout")], Payloads((), 1 << 20))
        record = _codec.unpackb(value)
        record[3] = "n" * 600  # the span name: service NUL name is then over 511 bytes
        s = tael.Settings()
        frame = encode_frame(
            1,
            [_codec.packb(record)],
            compress_min=s.wal_compress_min_bytes,
            level=s.wal_compress_level,
            max_bytes=s.wal_max_record_bytes,
        )
        body = {
            "protocol": 1,
            "store_id": bytes.fromhex("ab" * 16),
            "epoch": 1,
            "history": [[1, 0]],
            "from": 0,
            "leader_end": len(frame),
            "frames": [[0, frame]],
        }
        resp = httpx.post(
            url(port) + "/replication/wal", content=msgpack.packb(body, use_bin_type=True), headers=WAL_TYPE
        )
        assert resp.status_code == 409, (resp.status_code, resp.content[:200])
        answer = msgpack.unpackb(resp.content)
        assert answer["fatal"] and "LSN 0" in answer["error"] and "511" in answer["error"], answer
        status = sb.replication_status()
        assert status.end_lsn == 0, "nothing written"
        assert status.store_id != "ab" * 16, "the sender's store id was not adopted"
        assert sb.fault is None
        assert sb.list_services() == []  # reads still work
