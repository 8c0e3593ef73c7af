"""A stateful model test: inserts, reopens, checkpoints and queries against plain Python lists."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import tael

SERVICES = ("a", "b")


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="tael-stateful-"))
        self.settings = tael.Settings(wal_segment_bytes=4096)
        self.store = tael.Store(self.dir, self.settings)
        self.spans: dict[tuple[str, str], tael.Span] = {}
        self.logs: list[tael.LogRecord] = []
        self.next_id = 1
        self.next_log = 0

    @rule(
        n=st.integers(1, 15),
        trace=st.integers(1, 5),
        service=st.sampled_from(SERVICES),
        error=st.booleans(),
        start=st.integers(0, 1000),
    )
    def insert_spans(self, n: int, trace: int, service: str, error: bool, start: int) -> None:
        batch = []
        for _ in range(n):
            batch.append(
                tael.Span(
                    trace_id=f"{trace:032x}",
                    span_id=f"{self.next_id:016x}",
                    name="op",
                    service=service,
                    start_ns=start,
                    end_ns=start + self.next_id,
                    status="error" if error else "ok",
                )
            )
            self.next_id += 1
        self.store.insert_spans(batch)
        for s in batch:
            self.spans.setdefault((s.trace_id, s.span_id), s)

    @precondition(lambda self: bool(self.spans))
    @rule(data=st.data())
    def resend_existing_span(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.spans)))
        self.store.insert_spans([self.spans[key]])

    @rule(n=st.integers(1, 20), t=st.integers(0, 100), service=st.sampled_from(SERVICES))
    def insert_logs(self, n: int, t: int, service: str) -> None:
        # bodies from a counter, not len(self.logs): after lose_hot_tier_and_replay the model
        # holds fewer logs than were written, and a body must name one log
        batch = [tael.LogRecord(time_ns=t + i, body=f"{self.next_log + i}", service=service) for i in range(n)]
        self.next_log += n
        self.store.insert_logs(batch)
        self.logs.extend(batch)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = tael.Store(self.dir, self.settings)

    @rule()
    def lose_hot_tier_and_replay(self) -> None:
        """Rebuild the hot tier from the WAL alone. Records whose segments were
        checkpointed away are gone with it; what comes back must be a subset of
        the model, whole batches, with counters consistent (checked by the
        invariant from here on)."""
        self.store.close()
        shutil.rmtree(self.dir / "hot")
        self.store = tael.Store(self.dir, self.settings)
        spans = {(s.trace_id, s.span_id): s for s in self.store.query_traces(limit=100_000)}
        logs = self.store.query_logs(limit=100_000)
        assert all(self.spans[k] == s for k, s in spans.items())
        model_logs = {r.body: r for r in self.logs}
        assert all(model_logs[r.body] == r for r in logs)
        self.spans = spans
        self.logs = logs

    @rule()
    def checkpoint(self) -> None:
        self.store.checkpoint()

    @invariant()
    def matches_model(self) -> None:
        got = self.store.query_traces(limit=100_000)
        want = sorted(self.spans.values(), key=lambda s: (s.start_ns, s.trace_id, s.span_id), reverse=True)
        assert got == want
        assert sorted(r.body for r in self.store.query_logs(limit=100_000)) == sorted(r.body for r in self.logs)
        services = {i.name: i for i in self.store.list_services()}
        for name in SERVICES:
            mine = [s for s in self.spans.values() if s.service == name]
            if not mine:
                assert name not in services
                continue
            info = services[name]
            assert info.span_count == len(mine)
            assert info.error_count == sum(s.status == "error" for s in mine)
            assert info.trace_count == len({s.trace_id for s in mine})

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


StoreMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
TestStore = StoreMachine.TestCase
