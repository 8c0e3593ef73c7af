"""Shared helpers for the benchmark scripts: timing, SQLite peers, markdown output."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tael


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


# ---------------------------------------------------------------- SQLite, set up as a competent user would


SQLITE_SCHEMA = """
CREATE TABLE spans (trace_id TEXT, span_id TEXT, parent_span_id TEXT, name TEXT, service TEXT,
  start_ns INTEGER, end_ns INTEGER, kind TEXT, status TEXT, status_message TEXT, attributes TEXT,
  resource TEXT, scope_name TEXT, scope_version TEXT, events TEXT, links TEXT, trace_state TEXT, flags INTEGER);
CREATE INDEX spans_time ON spans(start_ns);
CREATE INDEX spans_trace ON spans(trace_id);
CREATE TABLE logs (time_ns INTEGER, body TEXT, service TEXT, severity_number INTEGER, severity_text TEXT,
  trace_id TEXT, span_id TEXT, attributes TEXT, resource TEXT, observed_ns INTEGER, scope_name TEXT);
CREATE INDEX logs_time ON logs(time_ns);
CREATE INDEX logs_trace ON logs(trace_id);
CREATE TABLE metrics (time_ns INTEGER, name TEXT, service TEXT, value REAL, kind TEXT, unit TEXT,
  attributes TEXT, monotonic INTEGER, temporality TEXT);
CREATE INDEX metrics_time ON metrics(time_ns);
CREATE INDEX metrics_name_time ON metrics(name, time_ns);
"""


def sqlite_open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(SQLITE_SCHEMA)
    return conn


def _events(span: tael.Span) -> str:
    return json.dumps([[e.time_ns, e.name, e.attributes] for e in span.events])


def sqlite_insert_spans(conn: sqlite3.Connection, spans: Sequence[tael.Span]) -> None:
    dumps = json.dumps
    rows = [
        (
            s.trace_id, s.span_id, s.parent_span_id, s.name, s.service, s.start_ns, s.end_ns, s.kind, s.status,
            s.status_message, dumps(s.attributes), dumps(s.resource), s.scope_name, s.scope_version, _events(s),
            dumps([[ln.trace_id, ln.span_id, ln.attributes] for ln in s.links]), s.trace_state, s.flags,
        )
        for s in spans
    ]  # fmt: skip
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    conn.execute("COMMIT")


def sqlite_insert_logs(conn: sqlite3.Connection, logs: Sequence[tael.LogRecord]) -> None:
    dumps = json.dumps
    rows = [
        (
            r.time_ns, r.body, r.service, r.severity_number, r.severity_text, r.trace_id, r.span_id,
            dumps(r.attributes), dumps(r.resource), r.observed_ns, r.scope_name,
        )
        for r in logs
    ]  # fmt: skip
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO logs VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    conn.execute("COMMIT")


def sqlite_insert_metrics(conn: sqlite3.Connection, points: Sequence[tael.MetricPoint]) -> None:
    dumps = json.dumps
    rows = [
        (p.time_ns, p.name, p.service, p.value, p.kind, p.unit, dumps(p.attributes), p.monotonic, p.temporality)
        for p in points
    ]
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?,?)", rows)
    conn.execute("COMMIT")
