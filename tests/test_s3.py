"""The cold tier on object storage (``Settings.cold_uri``, ``cold_filesystem``), against a
real S3 API server on loopback (moto in server mode), never a mock of tael's calls.

One contract, checked for every place the cold tier can live (the default
``<data>/cold``, another local directory, S3, any ``pyarrow.fs`` filesystem):
the same scenario of inserts, compactions, merges and retention answers exactly
what the default local store answers, and the files at the location are exactly
the manifest's. Then the S3 specifics: the dataset read back without tael
(pyarrow, DuckDB through s3fs), upload failures and timeouts that leave every
record hot, the bounded local cache, and settings that name the wrong place.
"""

from __future__ import annotations

import itertools
import logging
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
import s3fs
from moto.server import ThreadedMotoServer

import tael

S = 10**9
HOUR = 3600 * S
DAY = 24 * HOUR
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
KEY, SECRET, REGION = "testing", "testing", "us-east-1"
LAYOUT = re.compile(r"(spans|logs|metrics|metrics_5m|metrics_1h)/date=\d{4}-\d{2}-\d{2}/part-\d{10}\.parquet")
COMMON = {"cold_merge_min_files": 2, "cold_row_group_rows": 16}  # small row groups, eager merges


# ---------------------------------------------------------------- the S3 server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class S3Server:
    """moto's S3 API served on a loopback port (state lives in the process: a server
    restarted on the same port sees the same buckets)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedMotoServer | None = None
        self._buckets = itertools.count(1)

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def fs(self, **kw: Any) -> pafs.S3FileSystem:
        """A pyarrow S3 filesystem on this server, independent of tael's."""
        return pafs.S3FileSystem(
            access_key=KEY,
            secret_key=SECRET,
            region=REGION,
            endpoint_override=f"127.0.0.1:{self.port}",
            scheme="http",
            **kw,
        )

    def new_bucket(self) -> str:
        name = f"tael-test-{next(self._buckets)}-{self.port}"
        self.fs(allow_bucket_creation=True).create_dir(name)
        return name

    def keys(self, bucket: str) -> list[str]:
        """Every object key in the bucket, empty "directory" objects (``prefix/``) included."""
        client = boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET, region_name=REGION
        )
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def settings(self, uri: str, **kw: Any) -> tael.Settings:
        fields: dict[str, Any] = {
            "cold_uri": uri,
            "cold_s3_endpoint": self.endpoint,
            "cold_s3_access_key": KEY,
            "cold_s3_secret_key": SECRET,
            "cold_s3_region": REGION,
            "cold_request_timeout_s": 2.0,
        }
        return tael.Settings(**(fields | kw))


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = S3Server()
    server.start()
    yield server
    server.stop()


# ---------------------------------------------------------------- records and answers


def _records() -> tuple[list[tael.Span], list[tael.LogRecord], list[tael.MetricPoint]]:
    services = ["api", "db", "llm"]
    spans = []
    for t in range(60):  # 60 traces of 3 spans over three days
        start = T0 + t * 70 * 60 * S
        for k in range(3):
            spans.append(
                tael.Span(
                    trace_id=f"{t + 1:032x}",
                    span_id=f"{3 * t + k + 1:016x}",
                    parent_span_id=None if k == 0 else f"{3 * t + 1:016x}",
                    name=["GET /", "query", "chat"][k],
                    service=services[k],
                    start_ns=start + k * 1000,
                    end_ns=start + k * 1000 + (t % 9 + 1) * 10**6,
                    kind="server" if k == 0 else "client",
                    status="error" if t % 7 == 0 and k == 1 else "ok",
                    attributes={"http.status_code": 500 if t % 7 == 0 else 200, "region": "eu" if t % 2 else "us"},
                    events=[tael.SpanEvent(time_ns=start + 5, name="retry", attributes={"n": t})] if k == 2 else [],
                )
            )
    logs = [
        tael.LogRecord(
            time_ns=T0 + i * 40 * 60 * S,
            body=f"line {i}",
            service=services[i % 3],
            severity_number=[9, 13, 17][i % 3],
            trace_id=f"{i % 60 + 1:032x}",
            attributes={"i": i},
        )
        for i in range(100)
    ]
    points = []
    for i in range(3 * 24 * 3):  # every 20 minutes for three days
        time_ns = T0 + i * 1200 * S
        points.append(
            tael.MetricPoint(time_ns=time_ns, name="cpu", service="db", value=float(i % 17), attributes={"host": "a"})
        )
        points.append(
            tael.MetricPoint(time_ns=time_ns, name="cpu", service="db", value=float(i % 5), attributes={"host": "b"})
        )
        points.append(
            tael.MetricPoint(
                time_ns=time_ns, name="requests", service="api", value=float(i * 3), kind="sum", monotonic=True
            )
        )
    return spans, logs, points


SPANS, LOGS, POINTS = _records()
TRACES = sorted({s.trace_id for s in SPANS})

SQL = [
    "SELECT service, count(*) AS n, sum(duration_ns) AS d FROM spans GROUP BY 1 ORDER BY 1",
    "SELECT date, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1 NULLS FIRST",
    "SELECT span_id, attributes->>'$.\"http.status_code\"' AS code FROM spans WHERE status = 'error' ORDER BY 1",
    "SELECT service, count(*) AS n, max(body) AS b FROM logs GROUP BY 1 ORDER BY 1",
    "SELECT name, count(*) AS n, sum(value) AS v FROM metrics GROUP BY 1 ORDER BY 1",
    "SELECT name, window_start_ns, sum(count) AS c, sum(sum) AS s FROM metrics_1h GROUP BY 1, 2 ORDER BY 1, 2",
]


def answers(store: tael.Store) -> list[Any]:
    """Every read API, over both tiers."""
    return [
        [store.get_trace(t) for t in TRACES],
        store.query_traces(limit=1000),
        store.query_traces(service="db", status="error", limit=1000),
        store.query_traces(min_duration_ms=5, start=T0 + 10 * HOUR, end=T0 + 40 * HOUR, limit=7),
        store.query_traces(attributes={"http.status_code": 500}, limit=1000, order="asc"),
        store.query_logs(limit=1000),
        store.query_logs(trace_id=TRACES[3]),
        store.query_logs(min_severity=13, service="llm", limit=5),
        store.query_metrics(limit=100_000),
        store.query_metrics(name="cpu", attributes={"host": "a"}, start=T0 + 20 * HOUR, limit=100_000),
        store.aggregate_metrics("cpu", start=T0, end=T0 + 3 * DAY, step="1h"),
        store.aggregate_metrics("requests", start=T0, end=T0 + 3 * DAY, step="5m"),
        store.aggregate_metrics("cpu", service="db", start=T0 + HOUR, end=T0 + 2 * DAY, step=1200 * S),
        store.list_services(),
        store.stats().signals,
    ]


def sql_answers(store: tael.Store) -> list[Any]:
    return [store.sql(q).to_pylist() for q in SQL]


def live_files(store: tael.Store) -> list[str]:
    with store._hot.reader() as txn:
        return sorted(f.relpath for f in store._hot.manifest(txn))


def scenario(store: tael.Store, stage: Any) -> None:
    """Inserts, compactions (each merging the partitions it wrote), retention; ``stage(name)``
    after each step worth checking."""
    for i in range(0, len(SPANS), 60):
        store.insert_spans(SPANS[i : i + 60])
    store.insert_logs(LOGS)
    store.insert_metrics(POINTS)
    store.compact(T0 + 30 * HOUR)
    stage("partial")
    for hours in (40, 48, 60, 80):  # several small files per partition, merged on the way
        store.compact(T0 + hours * HOUR)
    stage("cold")
    store.enforce_retention(T0 + 9 * DAY)  # drops the partitions of days 1 and 2; rollups stay
    stage("retained")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What a store with the default local cold tier answers at each stage."""
    out: dict[str, Any] = {}
    with tael.Store(tmp_path_factory.mktemp("reference") / "data", tael.Settings(**COMMON)) as store:

        def stage(name: str) -> None:
            out[name] = (answers(store), sql_answers(store), live_files(store))

        scenario(store, stage)
    return out


# ---------------------------------------------------------------- the contract, per backend


class Backend:
    """A place for the cold tier: its settings, and a way to look at it without tael."""

    default = False
    remote = False

    def settings(self, **kw: Any) -> tael.Settings:
        raise NotImplementedError

    def files(self) -> list[str]:
        """Every file at the location, relative to the tier's root (on a remote location,
        the owner marker aside: ``data_files`` checks it is there)."""
        raise NotImplementedError

    def data_files(self) -> list[str]:
        files = self.files()
        if self.remote:
            assert "_tael_owner.json" in files, "a remote location is marked with its owner"
            files.remove("_tael_owner.json")
        return files

    def partitions(self) -> set[str]:
        """Every ``<dataset>/date=...`` directory at the location (on S3: a prefix with
        objects, or an empty "directory" object such as pyarrow leaves after a delete)."""
        raise NotImplementedError

    def put(self, rel: str, data: bytes) -> None:
        raise NotImplementedError


class LocalBackend(Backend):
    def __init__(self, root: Path, uri: str | None) -> None:
        self.root, self.uri = root, uri
        self.default = uri is None

    def settings(self, **kw: Any) -> tael.Settings:
        return tael.Settings(cold_uri=self.uri, **kw)

    def files(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())

    def partitions(self) -> set[str]:
        return {p.relative_to(self.root).as_posix() for p in self.root.glob("*/date=*") if p.is_dir()}

    def put(self, rel: str, data: bytes) -> None:
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.root / rel).write_bytes(data)


class S3Backend(Backend):
    remote = True

    def __init__(self, server: S3Server) -> None:
        self.server = server
        self.bucket = server.new_bucket()
        self.uri = f"s3://{self.bucket}/telemetry/prod"

    def settings(self, **kw: Any) -> tael.Settings:
        return self.server.settings(self.uri, **kw)

    def _keys(self) -> list[str]:
        prefix = "telemetry/prod/"
        return [k[len(prefix) :] for k in self.server.keys(self.bucket) if k.startswith(prefix)]

    def files(self) -> list[str]:
        return [k for k in self._keys() if not k.endswith("/")]

    def partitions(self) -> set[str]:
        return {"/".join(k.split("/")[:2]) for k in self._keys() if k.count("/") >= 2}

    def put(self, rel: str, data: bytes) -> None:
        with self.server.fs().open_output_stream(f"{self.bucket}/telemetry/prod/{rel}") as out:
            out.write(data)


class PyarrowFsBackend(Backend):
    """Any pyarrow filesystem: here a SubTreeFileSystem, published as temp file + move."""

    remote = True

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True)
        self.fs = pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem())
        self.root = root / "tael" / "cold"

    def settings(self, **kw: Any) -> tael.Settings:
        return tael.Settings(cold_filesystem=self.fs, cold_uri="tael/cold", **kw)

    def files(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())

    def partitions(self) -> set[str]:
        return {p.relative_to(self.root).as_posix() for p in self.root.glob("*/date=*") if p.is_dir()}

    def put(self, rel: str, data: bytes) -> None:
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.root / rel).write_bytes(data)


class ColdTierContract:
    """What every place for the cold tier must do; a subclass per backend provides ``backend``."""

    @pytest.fixture
    def backend(self, tmp_path: Path, s3: S3Server) -> Backend:
        raise NotImplementedError

    def test_reads_retention_and_merges_match_the_local_store(
        self, backend: Backend, reference: dict[str, Any], tmp_path: Path
    ) -> None:
        data = tmp_path / "data"
        settings = backend.settings(**COMMON)

        with tael.Store(data, settings) as store:

            def stage(name: str) -> None:
                want_answers, want_sql, want_files = reference[name]
                assert answers(store) == want_answers, name
                assert sql_answers(store) == want_sql, name
                live = live_files(store)
                assert live == want_files, name  # the same files, merges included
                assert backend.data_files() == live, name  # merged and expired files are gone from the location
                assert backend.partitions() == {p.rpartition("/")[0] for p in live}, name  # dropped ones leave nothing
                assert all(LAYOUT.fullmatch(p) for p in live)

            scenario(store, stage)
            live = live_files(store)
            expired = [p for p in live if re.match(r"(spans|logs|metrics)/date=2026-01-0[12]/", p)]
            assert expired == []
            assert any(p.startswith("metrics_1h/date=2026-01-01/") for p in live)  # rollups outlive raw data
        if not backend.default:
            assert not (data / "cold").exists()
        if backend.remote:
            assert (data / "cache").is_dir()
            shutil.rmtree(data / "cache")
        with tael.Store(data, settings) as store:  # reopened, the cache gone: read from the location again
            want_answers, want_sql, _ = reference["retained"]
            assert answers(store) == want_answers
            assert sql_answers(store) == want_sql
            assert backend.data_files() == live_files(store)
        with tael.Store(data, settings, read_only=True) as reader:
            assert reader.query_traces(limit=1000) == want_answers[1]

    def test_orphans_are_swept_at_open_and_nothing_else(self, backend: Backend, tmp_path: Path) -> None:
        data = tmp_path / "data"
        settings = backend.settings()
        with tael.Store(data, settings) as store:
            store.insert_spans(SPANS[:30])
            store.compact(T0 + DAY)
            live = live_files(store)
        orphans = ["spans/date=2026-01-01/part-9999999999.parquet", "logs/date=2026-02-02/part-0000000077.parquet"]
        for rel in orphans:
            backend.put(rel, b"left by a compaction that did not commit")
        if not backend.default:  # not tael's layout: never touched in a shared directory, bucket or filesystem
            backend.put("notes/readme.txt", b"keep me")
            backend.put("spans/other.parquet", b"keep me")
        with tael.Store(data, settings, read_only=True) as reader:  # a reader never deletes
            assert len(reader.query_traces(limit=100)) == 30
            assert set(orphans) <= set(backend.files())
        with tael.Store(data, settings) as store:
            kept = [p for p in backend.data_files() if not LAYOUT.fullmatch(p)]
            assert [p for p in backend.files() if LAYOUT.fullmatch(p)] == live == live_files(store)
            assert kept == ([] if backend.default else ["notes/readme.txt", "spans/other.parquet"])
            assert len(store.query_traces(limit=100)) == 30


class TestDefaultDirectory(ColdTierContract):
    @pytest.fixture
    def backend(self, tmp_path: Path, s3: S3Server) -> Backend:
        return LocalBackend(tmp_path / "data" / "cold", None)


class TestLocalPath(ColdTierContract):
    @pytest.fixture
    def backend(self, tmp_path: Path, s3: S3Server) -> Backend:
        return LocalBackend(tmp_path / "elsewhere" / "cold", str(tmp_path / "elsewhere" / "cold"))


class TestS3(ColdTierContract):
    @pytest.fixture
    def backend(self, tmp_path: Path, s3: S3Server) -> Backend:
        return S3Backend(s3)


class TestPyarrowFilesystem(ColdTierContract):
    @pytest.fixture
    def backend(self, tmp_path: Path, s3: S3Server) -> Backend:
        return PyarrowFsBackend(tmp_path / "fsroot")


# ---------------------------------------------------------------- S3 specifics


def _compacted_s3_store(s3: S3Server, data: Path, **kw: Any) -> tuple[str, tael.Settings]:
    bucket = s3.new_bucket()
    settings = s3.settings(f"s3://{bucket}/prefix", **kw)
    with tael.Store(data, settings) as store:
        store.insert_spans(SPANS)
        store.insert_logs(LOGS)
        store.insert_metrics(POINTS)
        store.compact(T0 + 3 * DAY)
        assert store.stats().hot_records == {"spans": 0, "logs": 0, "metrics": 0}
    return bucket, settings


def test_the_dataset_on_s3_reads_without_tael(s3: S3Server, tmp_path: Path) -> None:
    bucket, settings = _compacted_s3_store(s3, tmp_path / "data")
    keys = s3.keys(bucket)
    assert "prefix/_tael_owner.json" in keys  # which data directory the prefix belongs to
    keys.remove("prefix/_tael_owner.json")
    assert keys and all(k.startswith("prefix/") and LAYOUT.fullmatch(k[len("prefix/") :]) for k in keys)

    # pyarrow, hive partitioning, straight from the bucket
    spans = ds.dataset(f"{bucket}/prefix/spans", filesystem=s3.fs(), format="parquet", partitioning="hive").to_table()
    assert spans.num_rows == len(SPANS)
    assert sorted(
        zip(spans.column("trace_id").to_pylist(), spans.column("span_id").to_pylist(), strict=True)
    ) == sorted((s.trace_id, s.span_id) for s in SPANS)
    assert sorted(set(spans.column("date").to_pylist())) == ["2026-01-01", "2026-01-02", "2026-01-03"]
    logs = ds.dataset(f"{bucket}/prefix/logs", filesystem=s3.fs(), format="parquet", partitioning="hive").to_table()
    assert sorted(logs.column("body").to_pylist()) == sorted(r.body for r in LOGS)

    # DuckDB through an fsspec filesystem (s3fs)
    con = duckdb.connect()
    con.register_filesystem(
        s3fs.S3FileSystem(key=KEY, secret=SECRET, endpoint_url=s3.endpoint, skip_instance_cache=True)
    )
    glob = f"s3://{bucket}/prefix"
    per_day = con.sql(
        f"SELECT date, count(*) FROM read_parquet('{glob}/spans/**/*.parquet', hive_partitioning = true) "
        "GROUP BY 1 ORDER BY 1"
    ).fetchall()
    want_days: dict[str, int] = {}
    for s in SPANS:
        day = time.strftime("%Y-%m-%d", time.gmtime(s.start_ns // S))
        want_days[day] = want_days.get(day, 0) + 1
    assert [(str(d), n) for d, n in per_day] == sorted(want_days.items())
    errors = con.sql(
        f"SELECT span_id, json_extract_string(attributes, '$.\"http.status_code\"') "
        f"FROM read_parquet('{glob}/spans/**/*.parquet', "
        "hive_partitioning = true) WHERE status = 'error' ORDER BY 1"
    ).fetchall()
    assert errors == [(s.span_id, "500") for s in sorted(SPANS, key=lambda s: s.span_id) if s.status == "error"]
    avg = con.sql(
        f"SELECT sum(sum) / sum(count) FROM read_parquet('{glob}/metrics_1h/**/*.parquet', hive_partitioning = true) "
        "WHERE name = 'cpu'"
    ).fetchall()[0][0]
    cpu = [p.value for p in POINTS if p.name == "cpu"]
    assert avg == pytest.approx(sum(cpu) / len(cpu))
    con.close()

    # `tael check` verifies the objects themselves: sizes and footers from the bucket
    with tael.Store(tmp_path / "data", settings, read_only=True) as store:
        with store._hot.reader() as txn:
            manifest = store._hot.manifest(txn)
        cold: dict[str, int] = {"files": 0, "rows": 0, "bytes": 0}
        problems, stray = store._cold.check_files(manifest, cold)
        assert problems == [] and stray == []
        assert cold["files"] == len(keys) and cold["rows"] == sum(f.rows for f in manifest)
        assert cold["bytes"] == sum(i.size for i in s3.fs().get_file_info([f"{bucket}/{k}" for k in keys]))
        assert [p for p in store.check()["problems"] if p["part"] == "cold"] == []
        s3.fs().delete_file(f"{bucket}/prefix/{manifest[0].relpath}")
        problems, _stray = store._cold.check_files(manifest, cold)
        assert [where for where, _what in problems] == [f"s3://{bucket}/prefix/{manifest[0].relpath}"]
        cold_problems = [p for p in store.check()["problems"] if p["part"] == "cold"]
        assert [p["path"] for p in cold_problems] == [f"s3://{bucket}/prefix/{manifest[0].relpath}"]


def test_an_unreachable_bucket_fails_compaction_and_keeps_every_record_hot(tmp_path: Path) -> None:
    server = S3Server()  # its own server: this test stops it
    server.start()
    try:
        bucket = server.new_bucket()
        settings = server.settings(f"s3://{bucket}/t", cold_request_timeout_s=1.0, **COMMON)
        with tael.Store(tmp_path / "data", settings) as store:
            store.insert_spans(SPANS)
            store.insert_logs(LOGS)
            store.insert_metrics(POINTS)
            want = answers(store)
            server.stop()
            started = time.monotonic()
            # the first call that needs the bucket fails: the owner check, or the upload itself
            with pytest.raises(tael.StorageError, match=r"(uploading cold file|cannot read) s3://"):
                store.compact(T0 + 3 * DAY)
            assert time.monotonic() - started < 30
            assert store.stats().hot_records == {"spans": len(SPANS), "logs": len(LOGS), "metrics": len(POINTS)}
            assert live_files(store) == []
            assert answers(store) == want
            report = tael.Maintenance(store).run_once(now=T0 + 3 * DAY + 2 * HOUR)  # the loop's pass fails too
            assert report.error is not None and report.error.startswith("StorageError")
            assert store.stats().hot_records["spans"] == len(SPANS)

            server.start()  # the bucket is back: the next compaction moves everything, once
            store.compact(T0 + 3 * DAY)
            assert store.stats().hot_records == {"spans": 0, "logs": 0, "metrics": 0}
            assert answers(store) == want
            keys = [k[len("t/") :] for k in server.keys(bucket)]
            assert keys == ["_tael_owner.json", *live_files(store)]  # no orphans, no duplicates
            spans = ds.dataset(f"{bucket}/t/spans", filesystem=server.fs(), format="parquet").to_table()
            assert sorted(spans.column("span_id").to_pylist()) == sorted(s.span_id for s in SPANS)

            # reads of cold files not in the local cache fail while the bucket is down, then work again
            late = tael.Span(
                trace_id="f" * 32, span_id="f" * 16, name="late", service="api", start_ns=T0, end_ns=T0 + 1
            )
            store.insert_spans([late])
            shutil.rmtree(tmp_path / "data" / "cache")
            server.stop()
            with pytest.raises(tael.StorageError, match="cannot read cold file s3://"):
                store.get_trace(TRACES[0])
            assert store.get_trace(late.trace_id) == [late]  # the hot tier needs no bucket
            server.start()
            assert store.get_trace(TRACES[0]) == want[0][0]
    finally:
        server.stop()


def test_an_upload_that_times_out_fails_the_step(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        fs = pafs.S3FileSystem(
            access_key=KEY,
            secret_key=SECRET,
            region=REGION,
            endpoint_override=f"127.0.0.1:{port}",
            scheme="http",
            connect_timeout=1,
            request_timeout=1,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
        )
        with tael.Store(tmp_path / "data", tael.Settings(cold_filesystem=fs, cold_uri="bucket/t")) as store:
            store.insert_spans(SPANS[:30])
            started = time.monotonic()
            with pytest.raises(tael.StorageError, match=r"(uploading cold file|cannot read) s3://"):
                store.compact(T0 + DAY)
            assert time.monotonic() - started < 20
            assert store.stats().hot_records["spans"] == 30
            assert store.query_traces(limit=100) == sorted(SPANS[:30], key=lambda s: -s.start_ns)


def test_the_local_cache_is_bounded_and_optional(s3: S3Server, tmp_path: Path) -> None:
    bucket, settings = _compacted_s3_store(s3, tmp_path / "data")
    with tael.Store(tmp_path / "data", settings) as store:
        want = answers(store)
        with store._hot.reader() as txn:
            sizes = sorted(f.size for f in store._hot.manifest(txn))
    limit = sizes[-1] + sizes[-2]  # room for about two files of the dozen
    for cache_bytes in (limit, 0):
        shutil.rmtree(tmp_path / "data" / "cache", ignore_errors=True)
        bounded = s3.settings(f"s3://{bucket}/prefix", cold_cache_bytes=cache_bytes)
        with tael.Store(tmp_path / "data", bounded) as store:
            assert answers(store) == want
            cached = [p.stat().st_size for p in (tmp_path / "data" / "cache").glob("*.parquet")]
            assert sum(cached) <= cache_bytes
            assert (0 < len(cached) < len(sizes)) if cache_bytes else cached == []
            disk = store.stats().disk_bytes
            assert disk["cold"] == sum(sizes), "the cold tier's bytes in the bucket, from the manifest"
            assert disk["cache"] == sum(cached)
            assert store.sql(SQL[0]).to_pylist()[0]["n"] == sum(s.service == "api" for s in SPANS)


def test_settings_naming_another_place_for_the_cold_files_are_refused(s3: S3Server, tmp_path: Path) -> None:
    bucket, settings = _compacted_s3_store(s3, tmp_path / "on-s3")
    with pytest.raises(tael.StorageError, match=f"keeps its cold files in s3://{bucket}/prefix"):
        tael.Store(tmp_path / "on-s3")
    with pytest.raises(tael.StorageError, match=f"keeps its cold files in s3://{bucket}/prefix"):
        tael.Store(tmp_path / "on-s3", s3.settings(f"s3://{bucket}/other"))
    with tael.Store(tmp_path / "local") as store:
        store.insert_spans(SPANS[:3])
        store.compact(T0 + DAY)
    with pytest.raises(tael.StorageError, match=r"open it without Settings\.cold_uri"):
        tael.Store(tmp_path / "local", s3.settings(f"s3://{bucket}/local"))
    with pytest.raises(ValueError, match="must name a bucket"):
        tael.Store(tmp_path / "bad", tael.Settings(cold_uri="s3://"))
    with pytest.raises(ValueError, match="set together"):
        tael.Store(tmp_path / "bad", tael.Settings(cold_uri="s3://b/p", cold_s3_access_key="k"))
    with tael.Store(tmp_path / "on-s3", settings) as store:  # the right settings still open it
        assert len(store.query_traces(limit=1000)) == len(SPANS)


def test_two_data_directories_cannot_share_a_cold_prefix(s3: S3Server, tmp_path: Path) -> None:
    """Each store sweeps what its own manifest does not name: sharing a prefix (say, a
    leader and its standby given one config file) would delete the other's files."""
    bucket, settings = _compacted_s3_store(s3, tmp_path / "first")
    before = sorted(s3.keys(bucket))
    with tael.Store(tmp_path / "second", settings) as second:  # opens: it has sent nothing there
        second.insert_spans(SPANS[:3])
        with pytest.raises(tael.StorageError, match="another tael data directory"):
            second.compact(T0 + 3 * DAY)
        assert second.stats().hot_records["spans"] == 3, "nothing evicted"
    assert sorted(s3.keys(bucket)) == before, "the first store's files are untouched"
    with tael.Store(tmp_path / "first", settings) as first:
        assert len(first.query_traces(limit=1000)) == len(SPANS)


def test_a_leader_with_its_cold_tier_on_s3_is_not_turned_into_a_standby(s3: S3Server, tmp_path: Path) -> None:
    """A copy seeded from such a leader would share its prefix (and its owner id)."""
    _bucket, settings = _compacted_s3_store(s3, tmp_path / "data")
    with pytest.raises(tael.StandbyError, match=r"its own Settings\.cold_uri"):
        tael.Store(tmp_path / "data", settings, standby=True)
    with tael.Store(tmp_path / "data", settings) as store:  # still the leader it was
        assert not store.standby and len(store.query_traces(limit=1000)) == len(SPANS)


def test_version_1_files_on_s3_are_read_and_migrated_and_an_unreachable_bucket_does_not_stop_the_open(
    tmp_path: Path,
) -> None:
    """Cold format version 1 (before issue 16) in a bucket: read as they are, rewritten as
    version 2 when a writer opens the store; with the bucket down at that open, the store
    opens anyway (the rewrite waits for a later open) and the hot tier answers."""
    from . import coldv1

    server = S3Server()  # its own server: this test stops it
    server.start()
    try:
        bucket = server.new_bucket()
        settings = server.settings(f"s3://{bucket}/old", cold_request_timeout_s=1.0, **COMMON)
        data = tmp_path / "data"
        with tael.Store(data, settings) as store:
            store.insert_spans(SPANS)
            store.insert_logs(LOGS)
            store.insert_metrics(POINTS)
            store.compact(T0 + 3 * DAY)
            want = answers(store)
            coldv1.downgrade(store)
            files = coldv1.versions(store)[1]
            assert answers(store) == want
        server.stop()
        late = tael.Span(trace_id="e" * 32, span_id="e" * 16, name="late", service="api", start_ns=T0, end_ns=T0 + 1)
        with tael.Store(data, settings) as store:
            assert coldv1.versions(store) == {1: files}
            store.insert_spans([late])
            assert store.get_trace(late.trace_id) == [late]
        server.start()

        def unchanged(store: tael.Store) -> None:
            """Every answer but those the late span changes (the spans, the services, the counts)."""
            got = answers(store)
            assert got[0] == want[0] and got[5:13] == want[5:13]
            assert [s for s in got[1] if s.trace_id != late.trace_id] == want[1]

        with tael.Store(data, settings, read_only=True) as reader:
            assert coldv1.versions(reader) == {1: files}
            unchanged(reader)
        with tael.Store(data, settings) as store:
            assert coldv1.versions(store) == {2: files}
            unchanged(store)
            store.compact(T0 + 3 * DAY)  # the late span
            assert store.get_trace(late.trace_id) == [late]
            unchanged(store)
            keys = [k[len("old/") :] for k in server.keys(bucket) if not k.endswith("/")]  # not directory markers
            assert keys == ["_tael_owner.json", *live_files(store)]
    finally:
        server.stop()
