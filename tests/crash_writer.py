"""Subprocess for the crash tests: writes batches forever and reports each acknowledged one.

Usage: python -m tests.crash_writer DATA ROUND THREADS DURABILITY
Prints "ack <signal> <round> <thread> <batch>" after each insert returns.
"""

from __future__ import annotations

import sys
import threading

import tael


def batch_spans(rnd: int, th: int, b: int) -> list[tael.Span]:
    base = ((rnd + 1) << 40) | (th << 32) | (b << 8)
    return [
        tael.Span(
            trace_id=f"{base:032x}",
            span_id=f"{base | i:016x}",
            name=f"op{i}",
            service=f"svc{i % 3}",
            start_ns=1_000_000 + b * 100 + i,
            end_ns=1_000_000 + b * 100 + i + 5000,
            status="error" if i % 4 == 0 else "ok",
            attributes={"round": rnd, "batch": b, "pad": "x" * 200},
        )
        for i in range(20)
    ]


def batch_logs(rnd: int, th: int, b: int) -> list[tael.LogRecord]:
    return [
        tael.LogRecord(time_ns=2_000_000 + b, body=f"{rnd}/{th}/{b}/{i}", service="svc", severity_number=9)
        for i in range(15)
    ]


def batch_metrics(rnd: int, th: int, b: int) -> list[tael.MetricPoint]:
    return [
        tael.MetricPoint(
            time_ns=3_000_000 + b, name="m", service="svc", value=float(i), attributes={"id": f"{rnd}/{th}/{b}/{i}"}
        )
        for i in range(10)
    ]


def main() -> None:
    data, rnd, threads, durability = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    settings = tael.Settings(durability=durability, wal_segment_bytes=64 << 10, max_unapplied_records=2_000)
    write_forever(tael.Store(data, settings), rnd, threads)


def write_forever(store: tael.Store, rnd: int, threads: int) -> None:
    """Print "ready", then insert batches from ``threads`` threads until killed,
    printing "ack <signal> <round> <thread> <batch>" after each insert returns."""
    out_lock = threading.Lock()

    def work(th: int) -> None:
        b = 0
        while True:
            for signal, make, insert in (
                ("spans", batch_spans, store.insert_spans),
                ("logs", batch_logs, store.insert_logs),
                ("metrics", batch_metrics, store.insert_metrics),
            ):
                insert(make(rnd, th, b))
                with out_lock:
                    sys.stdout.write(f"ack {signal} {rnd} {th} {b}\n")
                    sys.stdout.flush()
            b += 1

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for th in range(threads):
        threading.Thread(target=work, args=(th,), daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
