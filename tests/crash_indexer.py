"""Subprocess for the index crash test: writes searchable batches with an index commit
interval far longer than the run, so a kill always lands before an index commit.

Usage: python -m tests.crash_indexer DATA ROUND THREADS DURABILITY
Prints "ack <signal> <round> <thread> <batch>" after each insert returns.
"""

from __future__ import annotations

import sys
import threading

import tael

PROMPT = "You are the support assistant for the store. " * 30  # ~1.4 KB: goes to the blob store


def marker(rnd: int, th: int, b: int, i: int) -> str:
    return f"m{rnd}x{th}x{b}x{i}"


def spans(rnd: int, th: int, b: int) -> list[tael.Span]:
    base = ((rnd + 1) << 40) | (th << 32) | (b << 8)
    return [
        tael.Span(
            trace_id=f"{base:032x}",
            span_id=f"{base | i:016x}",
            name="chat",
            service="llm",
            start_ns=1_000_000 + b * 100 + i,
            end_ns=1_000_000 + b * 100 + i + 5000,
            attributes={
                "gen_ai.prompt": PROMPT + f"customer asks about refund {marker(rnd, th, b, i)}",
                "gen_ai.completion": "the refund window is thirty days",
            },
        )
        for i in range(10)
    ]


def logs(rnd: int, th: int, b: int) -> list[tael.LogRecord]:
    return [
        tael.LogRecord(
            time_ns=2_000_000 + b * 100 + i,
            body=f"connection reset by upstream {marker(rnd, th, b, i)}",
            service="api",
            severity_number=17,
        )
        for i in range(10)
    ]


def main() -> None:
    data, rnd, threads, durability = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    settings = tael.Settings(
        durability=durability, wal_segment_bytes=64 << 10, max_unapplied_records=2_000, index_commit_interval_s=3600
    )
    store = tael.Store(data, settings)
    out_lock = threading.Lock()

    def work(th: int) -> None:
        b = 0
        while True:
            for signal, make, insert in (("spans", spans, store.insert_spans), ("logs", logs, store.insert_logs)):
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
