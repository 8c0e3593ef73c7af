"""What WAL shipping costs: span ingest on a leader with no standby, one or two.

The numbers in docs/benchmarks.md came from:

    python benchmarks/replication.py

(``--quick`` is the smoke mode the test suite runs: 5,000 spans, about 25 s.)

The leader is a ``tael.Store`` in this process with ``durability="fsync"``; each
standby is its own process, ``python -m tael serve --standby-of ... --data DIR
--port P``, on loopback, started (and live on /health/live) before its leader
opens. Five configurations, each with a fresh leader and fresh standbys: no
replicas; 1 standby, synchronous (``required_acks=None``: every standby must
hold a write durably in its WAL before the insert returns); 2 standbys
synchronous; 2 standbys with ``required_acks=1``; 2 standbys asynchronous
(``required_acks=0``). In each, ``--n`` spans (200,000: traces of 3-7 spans,
20 services, ~330 bytes of attributes as JSON each, generated before the clock)
are inserted in ``--batch`` (1,000) span batches from 1 thread, then another
``--n`` from ``--threads`` (4) threads sharing the same store (group commit).
The clock stops when the last insert returned and ``flush()`` returned on the
leader. Reported: spans/s, the latency of each ``insert_spans`` call (p50 and
p99, nearest rank) and the cores kept busy during the run (CPU seconds of this
process and of the standby processes, from /proc, over wall seconds; the
machine has 2).

After the asynchronous run, catch-up: the first standby is stopped (SIGTERM),
``--n`` more spans are inserted, the standby is restarted and the leader's
``replication_status()`` is polled every 2 ms until that replica's
``lag_bytes`` is 0 (everything durable in the standby's WAL); reported with the
WAL bytes it had to ship and the rate, split into restart -> the leader's
handshake and handshake -> lag 0, and the time until the standby has also
applied every span (its span count, read through a ``read_only=True`` store).

Before its first insert, every configuration also measures the cores kept busy
for 2 s while the standbys stream and nothing is written. At the end of every
configuration the leader waits until every standby has acknowledged its whole
WAL, the standbys are stopped with SIGTERM (they must exit 0) and each is
opened ``read_only=True``: it must hold exactly the leader's span count, else
the script prints PROBLEMS and exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

import tael
from benchmarks._common import machine, table

ROOT = Path(__file__).resolve().parent.parent

SERVICES = (
    "frontend", "api-gateway", "auth", "users", "checkout", "cart", "payments", "inventory", "catalog",
    "search", "recommendations", "reviews", "shipping", "notifications", "email", "pricing", "ads",
    "analytics", "media", "billing",
)  # fmt: skip
OPERATIONS = ("GET /api/items", "GET /api/items/{id}", "POST /api/items", "PUT /api/items/{id}", "db.query")
METHODS = ("GET", "GET", "POST", "PUT", "SELECT")
REGIONS = ("eu-west-1", "us-east-1", "ap-south-1", "sa-east-1")
AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0",
    "Mozilla/5.0 (Macintosh) Safari/605.1.15",
    "python-httpx/0.27.0",
    "okhttp/4.12.0",
)
# Ten minutes ago: inside every retention and the hot window, so the maintenance loop of a
# standby under `tael serve` (which compacts and applies retention on its own) cannot
# move or drop the spans the checks count. A fixed date in the past was dropped by a
# restarted standby's first pass.
T0_NS = (time.time_ns() // 1_000_000_000 - 600) * 1_000_000_000
IDLE_S = 2.0
RESOURCES = [{"service.name": s, "deployment.environment": "prod"} for s in SERVICES]


@dataclass(frozen=True)
class Config:
    name: str
    standbys: int
    required_acks: int | None
    catch_up: bool = False


CONFIGS = (
    Config("no replicas", 0, None),
    Config("1 standby, sync (required_acks=None)", 1, None),
    Config("2 standbys, sync (required_acks=None)", 2, None),
    Config("2 standbys, required_acks=1", 2, 1),
    Config("2 standbys, async (required_acks=0)", 2, 0, catch_up=True),
)


def progress(message: str) -> None:
    print(f"[replication.py {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# ---------------------------------------------------------------- data


def make_spans(n: int, first: int, seed: int) -> list[tael.Span]:
    """``n`` spans numbered from ``first`` (ids unique across calls with distinct
    ranges): traces of 3-7 spans, 20 services, ~300 bytes of attributes each."""
    rng = random.Random(seed)
    out: list[tael.Span] = []
    while len(out) < n:
        size = min(rng.randint(3, 7), n - len(out))
        k = first + len(out)
        trace_id = f"{k + 1:032x}"
        root = f"{k + 1:016x}"
        start = T0_NS + k * 1_000_000
        for j in range(size):
            svc, op = rng.randrange(len(SERVICES)), rng.randrange(len(OPERATIONS))
            err = rng.random() < 0.03
            s = start + j * rng.randrange(1, 40_000_000)
            attrs: dict[str, object] = {
                "http.method": METHODS[op],
                "http.route": OPERATIONS[op],
                "http.status_code": 500 if err else 200,
                "http.url": f"https://{SERVICES[svc]}.internal/api/items/{rng.randrange(10**6)}",
                "user_agent.original": AGENTS[rng.randrange(len(AGENTS))],
                "net.peer.ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
                "user.id": f"u{rng.randrange(100_000):06d}",
                "request.id": f"{rng.getrandbits(128):032x}",
                "cloud.region": REGIONS[rng.randrange(len(REGIONS))],
            }
            out.append(
                tael.Span(
                    trace_id=trace_id,
                    span_id=f"{k + j + 1:016x}",
                    parent_span_id=None if j == 0 else root,
                    name=OPERATIONS[op],
                    service=SERVICES[svc],
                    start_ns=s,
                    end_ns=s + rng.randrange(100_000, 200_000_000),
                    kind="server" if j == 0 else "client",
                    status="error" if err else "ok",
                    attributes=attrs,
                    resource=RESOURCES[svc],
                    scope_name="bench",
                )
            )
    return out


def batches(records: Sequence[tael.Span], size: int) -> list[Sequence[tael.Span]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


def fsync_ms(root: Path, size: int = 150_000, count: int = 50) -> float:
    """Median time of appending ``size`` bytes to a file and fdatasync-ing it, in this
    directory's file system: what a standby pays per shipment on this disk."""
    path = root / "fsync-probe"
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        chunk = os.urandom(size)
        for _ in range(count):
            t0 = time.perf_counter()
            os.write(fd, chunk)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return pct(times, 50) * 1e3


# ---------------------------------------------------------------- standby processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Standby:
    """``python -m tael serve --standby-of`` in its own process; stderr goes to a file."""

    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port = data, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = data.parent / f"{data.name}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        cmd = [sys.executable, "-m", "tael", "serve", "--data", str(self.data), "--port", str(self.port)]
        cmd += ["--grpc-port", "0"]  # several servers on one machine: HTTP only
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen([*cmd, "--standby-of", "benchmark-leader"], cwd=ROOT, stderr=err)

    def wait_live(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SystemExit(f"standby {self.url} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.url + "/health/live", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"standby {self.url} did not come up within {timeout:g} s:\n{self.tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM; the server flushes and closes its store and must exit 0."""
        if self.proc is None or self.proc.poll() is not None:
            raise SystemExit(f"standby {self.url} is not running:\n{self.tail()}")
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(120)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"standby {self.url} did not stop within 120 s of SIGTERM:\n{self.tail()}") from None
        if rc != 0:
            raise SystemExit(f"standby {self.url} exited with {rc} after SIGTERM:\n{self.tail()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def wait_until(fn: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.005)


def all_caught_up(leader: tael.Store) -> bool:
    st = leader.replication_status()
    return all(r.state == "streaming" and r.lag_bytes == 0 and r.acked_lsn == st.end_lsn for r in st.replicas)


def status_text(leader: tael.Store) -> str:
    return "; ".join(
        f"{r.url} {r.state} acked={r.acked_lsn} lag={r.lag_bytes} err={r.last_error}"
        for r in leader.replication_status().replicas
    )


# ---------------------------------------------------------------- runs


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cores(pids: Sequence[int], seconds: float) -> tuple[float, float]:
    """Cores kept busy by this process and by ``pids`` over ``seconds`` of no writes."""
    cpu0, sb0 = time.process_time(), sum(cpu_s(p) for p in pids)
    time.sleep(seconds)
    return (time.process_time() - cpu0) / seconds, (sum(cpu_s(p) for p in pids) - sb0) / seconds


@dataclass
class Run:
    spans: int
    seconds: float
    latencies: list[float]
    leader_cpu: float = 0.0  # CPU seconds of this process during the run
    standby_cpu: float = 0.0  # CPU seconds of the standby processes during the run

    @property
    def rate(self) -> float:
        return self.spans / self.seconds


def timed_inserts(store: tael.Store, data: list[Sequence[tael.Span]], threads: int, pids: Sequence[int] = ()) -> Run:
    latencies: list[float] = []
    errors: list[BaseException] = []

    def work(part: list[Sequence[tael.Span]]) -> None:
        try:
            for b in part:
                began = time.perf_counter()
                store.insert_spans(b)
                latencies.append(time.perf_counter() - began)
        except BaseException as exc:
            errors.append(exc)

    cpu0, sb0 = time.process_time(), sum(cpu_s(p) for p in pids)
    t0 = time.perf_counter()
    if threads == 1:
        work(data)
    else:
        workers = [threading.Thread(target=work, args=(data[k::threads],)) for k in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    if errors:
        raise errors[0]
    store.flush()
    elapsed = time.perf_counter() - t0
    leader_cpu, standby_cpu = time.process_time() - cpu0, sum(cpu_s(p) for p in pids) - sb0
    return Run(sum(len(b) for b in data), elapsed, latencies, leader_cpu, standby_cpu)


@dataclass
class CatchUp:
    wal_bytes: int
    down_rate: float  # spans/s inserted (1 thread) while the standby was down
    live_s: float  # restart -> /health/live answers
    reconnect_s: float  # restart -> the leader's handshake with it
    transfer_s: float  # handshake -> lag_bytes == 0
    total_s: float  # restart -> lag_bytes == 0
    applied_s: float  # restart -> every span readable on the standby


@dataclass
class Outcome:
    config: Config
    runs: dict[int, Run] = field(default_factory=dict)
    leader_spans: int = 0
    standby_spans: list[int] = field(default_factory=list)
    catch_up: CatchUp | None = None
    wal_bytes: int = 0
    idle: tuple[float, float] = (0.0, 0.0)  # cores busy (leader, standbys) with no writes


def run_config(
    work: Path, cfg: Config, n: int, batch: int, threads: int, counter: list[int], problems: list[str]
) -> Outcome:
    """One configuration, with a fresh leader and fresh standbys."""
    here = Path(tempfile.mkdtemp(dir=work, prefix="cfg-"))
    standbys = [Standby(here / f"standby{i}", free_port()) for i in range(cfg.standbys)]
    out = Outcome(cfg)

    def data(seed: int) -> list[Sequence[tael.Span]]:
        first, counter[0] = counter[0], counter[0] + n
        return batches(make_spans(n, first, seed), batch)

    leader: tael.Store | None = None
    try:
        for sb in standbys:
            sb.spawn()
        for sb in standbys:
            sb.wait_live()
        settings = tael.Settings(
            durability="fsync", replicas=tuple(sb.url for sb in standbys), required_acks=cfg.required_acks
        )
        leader = tael.Store(here / "leader", settings)
        wait_until(lambda: all_caught_up(leader), "every standby to stream", 30)  # type: ignore[arg-type]
        pids = [sb.proc.pid for sb in standbys if sb.proc is not None]
        out.idle = idle_cores(pids, IDLE_S)
        for k in (1, threads):
            spans = data(seed=counter[0])
            progress(f"{cfg.name}: {n:,} spans from {k} thread(s)")
            out.runs[k] = run = timed_inserts(leader, spans, k, pids)
            progress(f"{cfg.name}, {k} thread(s): {run.rate:,.0f} spans/s")
        if cfg.catch_up and standbys:
            out.catch_up = catch_up(leader, standbys[0], data(seed=counter[0]))
        wait_until(lambda: all_caught_up(leader), f"standbys to catch up ({status_text(leader)})", 300)  # type: ignore[arg-type]
        out.wal_bytes = leader.replication_status().end_lsn
        out.leader_spans = leader.stats().signals["spans"].count
        expected = n * (3 if out.catch_up is not None else 2)
        if out.leader_spans != expected:
            problems.append(f"{cfg.name}: the leader holds {out.leader_spans:,} spans, {expected:,} were inserted")
        leader.close()
        leader = None
        for i, sb in enumerate(standbys):
            sb.stop()
            with tael.Store(sb.data, read_only=True) as ro:
                count = ro.stats().signals["spans"].count
            out.standby_spans.append(count)
            if count != out.leader_spans:
                problems.append(f"{cfg.name}: standby {i} holds {count:,} spans, the leader {out.leader_spans:,}")
    finally:
        if leader is not None:
            leader.close()
        for sb in standbys:
            sb.kill()
        shutil.rmtree(here, ignore_errors=True)
    return out


def catch_up(leader: tael.Store, sb: Standby, data: list[Sequence[tael.Span]]) -> CatchUp:
    """Stop ``sb``, insert ``data``, restart it and time until the leader sees it caught up."""
    wait_until(lambda: all_caught_up(leader), "every standby to catch up before the stop", 300)
    index = [r.url for r in leader.replication_status().replicas].index(sb.url)
    before = leader.replication_status().end_lsn
    progress(f"catch-up: stopping {sb.url}")
    sb.stop()
    wait_until(lambda: leader.replication_status().replicas[index].state != "streaming", "the leader to notice", 30)
    down = timed_inserts(leader, data, 1)
    after = leader.replication_status().end_lsn
    progress(f"catch-up: {after - before:,} WAL bytes to ship; restarting {sb.url}")
    want = leader.stats().signals["spans"].count
    times: dict[str, float] = {}

    def live() -> None:
        with contextlib.suppress(SystemExit):
            sb.wait_live()
            times["live"] = time.perf_counter()

    # opened before the restart so that its own opening is not timed; LMDB readers and
    # the standby's writer coexist, and every stats() call reads a fresh snapshot
    with tael.Store(sb.data, read_only=True) as ro:
        t0 = time.perf_counter()
        sb.spawn()
        watcher = threading.Thread(target=live)
        watcher.start()
        deadline = t0 + 600
        while "done" not in times:
            r = leader.replication_status().replicas[index]
            now = time.perf_counter()
            if r.acked_lsn is not None:
                times.setdefault("conn", now)
                if r.acked_lsn >= after and r.lag_bytes == 0:
                    times["done"] = now
            if now > deadline or sb.proc is None or sb.proc.poll() is not None:
                raise SystemExit(f"the standby did not catch up ({status_text(leader)}):\n{sb.tail()}")
            time.sleep(0.002)
        progress(f"catch-up: lag 0 after {times['done'] - t0:.2f} s")
        # lag_bytes == 0 means durable in the standby's WAL; its hot tier applies behind that
        wait_until(lambda: ro.stats().signals["spans"].count >= want, "the standby to apply what it received", 600)
        t_applied = time.perf_counter()
        watcher.join()
    if "live" not in times:
        raise SystemExit(f"the restarted standby never answered /health/live:\n{sb.tail()}")
    progress(f"catch-up: all applied on the standby after {t_applied - t0:.2f} s")
    return CatchUp(
        wal_bytes=after - before,
        down_rate=down.rate,
        live_s=times["live"] - t0,
        reconnect_s=times["conn"] - t0,
        transfer_s=times["done"] - times["conn"],
        total_s=times["done"] - t0,
        applied_s=t_applied - t0,
    )


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="spans per run (default 200,000)")
    ap.add_argument("--batch", type=int, default=1000, help="spans per insert (default 1,000)")
    ap.add_argument("--threads", type=int, default=4, help="writer threads for the group-commit run")
    ap.add_argument("--dir", default=".bench-data", help="scratch directory (on the disk being measured)")
    ap.add_argument("--quick", action="store_true", help="smoke test, about 25 s: 5,000 spans per run")
    args = ap.parse_args(argv)
    if args.quick:
        args.n = 5_000
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix="replication-"))
    problems: list[str] = []
    outcomes: list[Outcome] = []
    counter = [0]
    began = time.perf_counter()
    try:
        probe = fsync_ms(work)
        sample = make_spans(1000, 0, 0)
        attr_bytes = sum(len(json.dumps(s.attributes)) for s in sample) / len(sample)
        for cfg in CONFIGS:
            outcomes.append(run_config(work, cfg, args.n, args.batch, args.threads, counter, problems))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):
            root.rmdir()  # only if nothing else uses it
    wall = time.perf_counter() - began

    base = {k: outcomes[0].runs[k].rate for k in outcomes[0].runs}
    rows = []
    for o in outcomes:
        for k, run in o.runs.items():
            lat = run.latencies
            rows.append(
                [
                    o.config.name,
                    k,
                    f"{run.rate:,.0f}",
                    f"{run.rate / base[k]:.2f}x",
                    f"{pct(lat, 50) * 1e3:.1f}",
                    f"{pct(lat, 99) * 1e3:.1f}",
                    f"{(run.leader_cpu + run.standby_cpu) / run.seconds:.2f} "
                    f"({run.leader_cpu / run.seconds:.2f} + {run.standby_cpu / run.seconds:.2f})",
                ]
            )
    checks = [
        [
            o.config.name,
            f"{sum(o.idle):.2f} ({o.idle[0]:.2f} + {o.idle[1]:.2f})",
            f"{o.leader_spans:,}",
            ", ".join(f"{c:,}" for c in o.standby_spans) or "-",
            "ok" if all(c == o.leader_spans for c in o.standby_spans) else "MISMATCH",
        ]
        for o in outcomes
    ]
    lines = [
        f"machine: {machine()}",
        f"spans per run: {args.n:,} (~{attr_bytes:.0f} bytes of attributes as JSON, 20 services), "
        f"batch: {args.batch:,}, durability: fsync; standbys: `python -m tael serve --standby-of` on loopback",
        f"append 150 KB + fdatasync in the scratch directory: p50 {probe:.2f} ms; "
        f"WAL per span: {outcomes[0].wal_bytes / max(outcomes[0].leader_spans, 1):.0f} bytes; wall time {wall:.0f} s",
        "",
        table(
            [
                "configuration",
                "writer threads",
                "spans/s",
                "vs no replicas",
                "insert p50 (ms)",
                "insert p99 (ms)",
                "cores busy (leader + standbys)",
            ],
            rows,
        ),
    ]
    cu = next((o.catch_up for o in outcomes if o.catch_up is not None), None)
    if cu is not None:
        mb = cu.wal_bytes / 1e6

        def rate(seconds: float) -> str:
            return f"{mb / seconds:,.1f} MB/s" if seconds >= 0.01 else "too short to time"

        lines += [
            "",
            "catch-up (2 standbys, async): standby 0 stopped with SIGTERM, "
            f"{args.n:,} spans inserted, standby restarted",
            "",
            table(
                ["measurement", "result"],
                [
                    ["WAL to ship", f"{mb:,.1f} MB"],
                    ["insert rate while it was down (1 thread)", f"{cu.down_rate:,.0f} spans/s"],
                    ["restart -> standby answers /health/live", f"{cu.live_s:.2f} s"],
                    ["restart -> leader reconnected (handshake)", f"{cu.reconnect_s:.2f} s"],
                    ["reconnected -> lag_bytes == 0", f"{cu.transfer_s:.2f} s ({rate(cu.transfer_s)})"],
                    ["restart -> lag_bytes == 0", f"{cu.total_s:.2f} s ({rate(cu.total_s)})"],
                    ["restart -> every span applied on the standby", f"{cu.applied_s:.2f} s"],
                ],
            ),
        ]
    headers = [
        "configuration",
        f"idle cores busy, {IDLE_S:g} s streaming, no writes (leader + standbys)",
        "leader spans",
        "standby spans",
        "check",
    ]
    lines += ["", table(headers, checks)]
    if problems:
        lines += ["", "PROBLEMS:", *(f"- {p}" for p in problems)]
    out = "\n".join(lines)
    print(out)
    if problems:
        raise SystemExit(1)
    return out


if __name__ == "__main__":
    main()
