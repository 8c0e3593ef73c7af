"""Subprocess for the failover test: a leader writing batches forever with synchronous
replication, reporting each acknowledged one.

Usage: python -m tests.crash_leader DATA THREADS STANDBY_URL...
Prints "ready", then "ack <signal> 0 <thread> <batch>" after each insert returns.
"""

from __future__ import annotations

import sys

import tael

from .crash_writer import write_forever


def main() -> None:
    data, threads, replicas = sys.argv[1], int(sys.argv[2]), tuple(sys.argv[3:])
    settings = tael.Settings(
        wal_segment_bytes=64 << 10, replicas=replicas, required_acks=None, replication_timeout_s=30
    )
    write_forever(tael.Store(data, settings), 0, threads)


if __name__ == "__main__":
    main()
