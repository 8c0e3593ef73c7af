"""Subprocess for the failover test: a leader writing batches forever with synchronous
replication, reporting each acknowledged one.

Usage: python -m tests.crash_leader DATA THREADS STANDBY_URL...
Prints "ready", then "ack <signal> 0 <thread> <batch>" after each insert returns.
"""

from __future__ import annotations

import sys
import threading

import tael

from .crash_writer import batch_logs, batch_metrics, batch_spans


def main() -> None:
    data, threads, replicas = sys.argv[1], int(sys.argv[2]), tuple(sys.argv[3:])
    settings = tael.Settings(
        wal_segment_bytes=64 << 10, replicas=replicas, required_acks=None, replication_timeout_s=30
    )
    store = tael.Store(data, settings)
    out_lock = threading.Lock()

    def work(th: int) -> None:
        b = 0
        while True:
            for signal, make, insert in (
                ("spans", batch_spans, store.insert_spans),
                ("logs", batch_logs, store.insert_logs),
                ("metrics", batch_metrics, store.insert_metrics),
            ):
                insert(make(0, th, b))
                with out_lock:
                    sys.stdout.write(f"ack {signal} 0 {th} {b}\n")
                    sys.stdout.flush()
            b += 1

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for th in range(threads):
        threading.Thread(target=work, args=(th,), daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
