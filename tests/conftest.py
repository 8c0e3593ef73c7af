from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tael

from . import _smallfs

_ids = itertools.count(1)

# `tael serve` listens for OTLP/gRPC on 4317 unless told otherwise: the servers the tests
# start in subprocesses (several at once, beside other test runs on this machine) serve
# no gRPC unless a test asks for it with --grpc-port (tests/test_grpc.py).
os.environ["TAEL_GRPC_PORT"] = "0"


def trace_id(n: int | None = None) -> str:
    return f"{next(_ids) if n is None else n:032x}"


def span_id(n: int | None = None) -> str:
    return f"{next(_ids) if n is None else n:016x}"


def make_span(**kw: object) -> tael.Span:
    fields: dict[str, object] = {
        "trace_id": trace_id(),
        "span_id": span_id(),
        "name": "op",
        "service": "svc",
        "start_ns": 1_000,
        "end_ns": 2_000,
    }
    fields.update(kw)
    return tael.Span(**fields)  # type: ignore[arg-type]


def make_log(**kw: object) -> tael.LogRecord:
    fields: dict[str, object] = {"time_ns": 1_000, "body": "hello", "service": "svc"}
    fields.update(kw)
    return tael.LogRecord(**fields)  # type: ignore[arg-type]


def make_point(**kw: object) -> tael.MetricPoint:
    fields: dict[str, object] = {"time_ns": 1_000, "name": "m", "service": "svc", "value": 1.0}
    fields.update(kw)
    return tael.MetricPoint(**fields)  # type: ignore[arg-type]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> Iterator[tael.Store]:
    with tael.Store(data_dir) as s:
        yield s


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``small_fs(size_mb)``: a real ext4 filesystem of that size, loop-mounted under
    tmp_path for this test (see tests/_smallfs.py); its mount directory. Skips, naming
    the reason, only where mounting is impossible here (not root, no loop devices, no
    mkfs.ext4). Unmounted and detached at teardown, also when the test fails."""
    reason = _smallfs.unavailable()
    if reason is not None:
        pytest.skip(f"no small filesystem: {reason}")
    with contextlib.ExitStack() as stack:
        counter = itertools.count()

        def make(size_mb: int) -> Path:
            try:
                return stack.enter_context(_smallfs.mounted(tmp_path / f"smallfs{next(counter)}", size_mb))
            except _smallfs.NoLoopDevice as exc:
                pytest.skip(f"no small filesystem: {exc}")

        yield make
