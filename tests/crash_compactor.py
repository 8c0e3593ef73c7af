"""Subprocess for the compaction crash test: one thread writes and reports each
acknowledged batch, another compacts (and merges) everything in a loop.

Usage: python -m tests.crash_compactor DATA ROUND
Prints "ack <signal> <round> 0 <batch>" after each insert returns.
"""

from __future__ import annotations

import sys
import threading

import tael

from .crash_writer import batch_logs, batch_metrics, batch_spans

SETTINGS = tael.Settings(compaction_batch_records=150, cold_merge_min_files=2, cold_row_group_rows=64)


def main() -> None:
    data, rnd = sys.argv[1], int(sys.argv[2])
    store = tael.Store(data, SETTINGS)

    def compact() -> None:
        while True:
            store.compact(2**62)

    threading.Thread(target=compact, daemon=True).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    b = 0
    while True:
        for signal, make, insert in (
            ("spans", batch_spans, store.insert_spans),
            ("logs", batch_logs, store.insert_logs),
            ("metrics", batch_metrics, store.insert_metrics),
        ):
            insert(make(rnd, 0, b))
            sys.stdout.write(f"ack {signal} {rnd} 0 {b}\n")
            sys.stdout.flush()
        b += 1


if __name__ == "__main__":
    main()
