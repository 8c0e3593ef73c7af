"""Where a compaction's memory goes: RssAnon around each step's LMDB work (issue 16).

    python benchmarks/columnar.py --dir /tmp/c --only compaction_rss --keep /big/tael-day   # builds the day once
    cp -r /big/tael-day/day-10000000-seed1 /tmp/copy
    python benchmarks/compaction_memory.py /tmp/copy 2024-01-02 [STEP_RECORDS]

Compacts every record of the store older than the date (UTC midnight) and prints, per
step, the process's anonymous RSS (KiB) before and after the step's hot-tier eviction,
after the trace-index publication (both inside the step's LMDB write transaction) and after
its commit, then the peak (sampled every 50 ms). STEP_RECORDS sets
Settings.compaction_batch_records (default: its default). A diagnostic, not a measure
with a target: it wraps three of tael's internal methods to read RSS between them.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import tael
from tael import _compactor, _hot


def rss_kib(field: str = "RssAnon") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main() -> None:
    path, date = sys.argv[1], sys.argv[2]
    settings = tael.Settings(compaction_batch_records=int(sys.argv[3])) if len(sys.argv) > 3 else tael.Settings()
    before = int(datetime.fromisoformat(date).replace(tzinfo=UTC).timestamp()) * 10**9
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_kib())

    threading.Thread(target=sample, daemon=True).start()
    step: dict[str, int] = {}
    evict, publish, commit = _hot.HotTier.evict, _hot.HotTier.publish_files, _compactor.Compactor._commit

    def timed_evict(self: Any, *a: Any, **k: Any) -> None:
        step["before evict"] = rss_kib()
        evict(self, *a, **k)
        step["after evict"] = rss_kib()

    def timed_publish(self: Any, *a: Any, **k: Any) -> None:
        publish(self, *a, **k)
        step["after publish"] = rss_kib()

    def timed_commit(self: Any, *a: Any, **k: Any) -> None:
        commit(self, *a, **k)
        step["after commit"] = rss_kib()
        print(" ".join(f"{k}={v:,}" for k, v in step.items()), f"peak={peak[0]:,}", flush=True)
        step.clear()

    _hot.HotTier.evict = timed_evict  # type: ignore[method-assign]
    _hot.HotTier.publish_files = timed_publish  # type: ignore[method-assign]
    _compactor.Compactor._commit = timed_commit  # type: ignore[method-assign]
    with tael.Store(path, settings) as store:
        t0 = time.perf_counter()
        report = store.compact(before=before)
        seconds = time.perf_counter() - t0
    done.set()
    print(
        f"moved {report.records['spans']:,} spans in {seconds:.1f} s; "
        f"peak RssAnon {max(peak[0], rss_kib()) / 1024:,.0f} MiB, VmHWM {rss_kib('VmHWM') / 1024:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
