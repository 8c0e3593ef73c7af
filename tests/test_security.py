"""A server that can be exposed: bearer tokens with scopes (the real OpenTelemetry SDK
exporters and plain HTTP clients against real servers on loopback), the refusal of a
non-loopback bind without an auth file, cross-site requests that cannot reach the
replication and admin routes, forged WAL, DNS rebinding, TLS serving and shipping
verified with a CA, and error bodies without absolute paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

import tael
from tael._auth import Tokens, scrub

from .conftest import make_span
from .test_server import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
WAL = {"content-type": "application/x-tael-wal"}
TOKENS = {
    "ingest": "ingest-token-0123456789abcdef",
    "query": "query-token-0123456789abcdef",
    "admin": "admin-token-0123456789abcdef",
    "replication": "replication-token-0123456789",
}
ALL = "all-scopes-token-0123456789abcdef"


def write_auth_file(path: Path) -> Path:
    lines = [f'[[tokens]]\nname = "{scope}"\ntoken = "{tok}"\nscopes = ["{scope}"]\n' for scope, tok in TOKENS.items()]
    lines.append(f'[[tokens]]\ntoken = "{ALL}"\nscopes = ["ingest", "query", "admin", "replication"]\n')
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return path


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def span_body(trace_id: str = "5b8efff798038103d269b633813fc60c", name: str = "GET /") -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "sec-svc"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": "eee19b7ec3c1b174",
                                "name": name,
                                "startTimeUnixNano": "1000",
                                "endTimeUnixNano": "2000",
                            }
                        ]
                    }
                ],
            }
        ]
    }


class InProcess:
    """``create_app`` (or any ASGI app) served by uvicorn on loopback in a thread."""

    def __init__(self, app: Any, **tls: Any) -> None:
        import uvicorn

        self.port = free_port()
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", **tls)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, "the server to start")

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join()


def serve_app(store: tael.Store, *, tokens: Tokens | None = None, hosts: tuple[str, ...] | None = ()) -> InProcess:
    from tael._server import create_app

    return InProcess(create_app(store, tokens=tokens, allowed_hosts=hosts))


class CliServer:
    """``tael serve`` as a subprocess."""

    def __init__(self, *args: str, scheme: str = "http", verify: Any = True) -> None:
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tael", "serve", "--port", str(self.port), *args],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: httpx.get(self.url + "/health/live", verify=verify).status_code == 200, "tael serve")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        return err


@pytest.fixture
def auth_file(tmp_path: Path) -> Path:
    return write_auth_file(tmp_path / "auth.toml")


# ---------------------------------------------------------------- tokens and scopes


def test_sdk_exporters_write_with_an_ingest_token_and_nothing_arrives_without(tmp_path: Path, auth_file: Path) -> None:
    """`tael serve --auth-file`, the OpenTelemetry SDK's OTLP/HTTP exporters as clients."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    srv = CliServer("--data", str(tmp_path / "data"), "--auth-file", str(auth_file))
    try:
        resource = Resource.create({"service.name": "checkout"})

        def send_span(name: str, headers: dict[str, str] | None) -> None:
            provider = TracerProvider(resource=resource)
            provider.add_span_processor(
                SimpleSpanProcessor(OTLPSpanExporter(endpoint=srv.url + "/v1/traces", headers=headers))
            )
            with provider.get_tracer("t").start_as_current_span(name):
                pass
            provider.shutdown()

        send_span("with the ingest token", bearer(TOKENS["ingest"]))
        send_span("with the all-scopes token", bearer(ALL))
        send_span("without a token", None)
        send_span("with an unknown token", bearer("not-a-token-of-this-server-at-all"))
        send_span("with a query token", bearer(TOKENS["query"]))

        logs = LoggerProvider(resource=resource)
        logs.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=srv.url + "/v1/logs", headers=bearer(TOKENS["ingest"])))
        )
        logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=srv.url + "/v1/logs")))
        from opentelemetry._logs import LogRecord as OtelLogRecord

        logs.get_logger("t").emit(OtelLogRecord(timestamp=time.time_ns(), body="payments upstream reset"))
        logs.shutdown()

        for headers in (bearer(TOKENS["ingest"]), bearer(TOKENS["admin"])):
            meters = MeterProvider(
                resource=resource,
                metric_readers=[
                    PeriodicExportingMetricReader(
                        OTLPMetricExporter(endpoint=srv.url + "/v1/metrics", headers=headers),
                        export_interval_millis=3_600_000,
                    )
                ],
            )
            meters.get_meter("t").create_counter("orders").add(3)
            meters.shutdown()

        # read back through the query API with a query token: exactly what came with an ingest-scoped token
        q = bearer(TOKENS["query"])
        names = wait_for(
            lambda: (
                len(httpx.get(srv.url + "/api/services/checkout/operations", headers=q).json()["data"]) >= 2
                and httpx.get(srv.url + "/api/services/checkout/operations", headers=q).json()["data"]
            ),
            "the spans",
        )
        assert sorted(names) == ["with the all-scopes token", "with the ingest token"]
        got_logs = httpx.get(srv.url + "/api/logs", headers=q).json()["data"]
        assert [r["body"] for r in got_logs] == ["payments upstream reset"], "once: the exporter without a token failed"
        assert httpx.get(srv.url + "/api/logs").status_code == 401
    finally:
        srv.stop()
    with tael.Store(tmp_path / "data", read_only=True) as store:
        points = store.query_metrics(service="checkout")
        assert [(p.name, p.value) for p in points] == [("orders", 3.0)], "the admin token may not write metrics"


def test_each_route_answers_401_or_403_by_scope_and_health_stays_open(tmp_path: Path, auth_file: Path) -> None:
    # a leader with a (down) replica, so that the replication routes are on; nothing here changes its state
    settings = tael.Settings(replicas=("http://127.0.0.1:9",), required_acks=0)
    with tael.Store(tmp_path / "data", settings) as store:
        srv = serve_app(store, tokens=Tokens.load(auth_file))
        try:
            forged = msgpack.packb({"protocol": 1}, use_bin_type=True)
            calls: dict[str, tuple[str, str, dict[str, Any]]] = {
                "ingest": ("POST", "/v1/traces", {"json": span_body()}),
                "query": ("GET", "/api/services", {}),
                "query ": ("GET", "/api/traces?service=sec-svc", {}),
                "query  ": ("GET", "/metrics", {}),
                "replication": ("GET", "/replication/status", {}),
                "replication ": ("POST", "/replication/wal", {"content": forged, "headers": WAL}),
                "admin": ("POST", "/replication/promote", {"json": {}}),
            }
            for needs, (method, path, kw) in calls.items():
                needs = needs.strip()
                extra = kw.pop("headers", {})
                for scope, token in [*TOKENS.items(), ("all", ALL)]:
                    resp = httpx.request(method, srv.url + path, headers={**extra, **bearer(token)}, **kw)
                    if scope in (needs, "all"):
                        assert resp.status_code not in (401, 403), (path, scope, resp.text)
                    else:
                        assert resp.status_code == 403, (path, scope, resp.text)
                        assert f"{needs!r} scope" in resp.json().get("error", resp.text)
                        assert f'scope="{needs}"' in resp.headers["www-authenticate"]
                for headers in ({}, bearer("an-unknown-token-0123456789"), {"authorization": "Basic dXNlcjpwdw=="}):
                    resp = httpx.request(method, srv.url + path, headers={**extra, **headers}, **kw)
                    assert resp.status_code == 401, (path, headers, resp.text)
                    assert resp.headers["www-authenticate"].startswith("Bearer")
            # the answers themselves, with the right token
            assert httpx.post(srv.url + "/v1/traces", json=span_body(), headers=bearer(TOKENS["ingest"])).is_success
            assert httpx.get(srv.url + "/api/services", headers=bearer(TOKENS["query"])).json()["data"] == ["sec-svc"]
            status = httpx.get(srv.url + "/replication/status", headers=bearer(TOKENS["replication"]))
            assert msgpack.unpackb(status.content)["role"] == "leader"
            again = httpx.post(srv.url + "/replication/promote", json={}, headers=bearer(TOKENS["admin"]))
            assert again.status_code == 409 and "not a standby" in again.text
            for path in ("/health/live", "/health/ready"):
                assert httpx.get(srv.url + path).status_code == 200, path
            assert httpx.get(srv.url + "/no/such/route").status_code == 401, "nothing is told to strangers"
            assert httpx.get(srv.url + "/no/such/route", headers=bearer(TOKENS["ingest"])).status_code == 404
            scraped = httpx.get(srv.url + "/metrics", headers=bearer(TOKENS["query"])).text
            counted = {
                line.split('"')[1]: float(line.split()[-1])
                for line in scraped.splitlines()
                if line.startswith("tael_http_refused_total{")
            }
            assert counted == {"401": 22.0, "403": 21.0}, counted  # 7 routes x 3 (+1 unknown path), 7 x 3 scopes
        finally:
            srv.close()
        assert not store.standby and store.replication_status().epoch == 1
        assert [s.name for s in store.query_traces()] == ["GET /"]


def test_auth_file_errors_name_the_file_and_entry_and_never_the_token(tmp_path: Path) -> None:
    secret = "a-secret-token-value-0123456789"
    good = f'[[tokens]]\ntoken = "{secret}"\nscopes = ["query"]\n'
    cases = {
        "unknown scope": (
            good + '[[tokens]]\nname = "ci"\ntoken = "x123456789abcdefgh"\nscopes = ["write"]\n',
            "entry 2 ('ci'): unknown scope 'write'",
        ),
        "empty token": (good + '[[tokens]]\ntoken = ""\nscopes = ["query"]\n', "entry 2: token is empty"),
        "duplicate": (good + good.replace("query", "admin"), "entry 2: the same token as entry 1"),
        "bad toml": (good + "[[tokens]\n", "not valid TOML"),
        "short": ('[[tokens]]\ntoken = "short"\nscopes = ["query"]\n', "entry 1: token is 5 characters"),
        "no scopes": (f'[[tokens]]\ntoken = "{secret}"\n', "entry 1: scopes must be a non-empty list"),
        "spaces": (f'[[tokens]]\ntoken = "{secret} x"\nscopes = ["query"]\n', "printable ASCII"),
        "unknown key": (f'[[tokens]]\ntoken = "{secret}"\nscopes = ["query"]\nscope = 1\n', "unknown key(s) scope"),
        "no tokens": ("tokens = []\n", "no [[tokens]] entries"),
        "top level": (good + "users = 1\n", "unknown key(s) users"),
    }
    for what, (text, expected) in cases.items():
        path = tmp_path / f"{what.replace(' ', '_')}.toml"
        path.write_text(text)
        with pytest.raises(tael.ConfigurationError) as info:
            Tokens.load(path)
        assert str(path) in str(info.value) and expected in str(info.value), (what, str(info.value))
        assert secret not in str(info.value) and "x123456789abcdefgh" not in str(info.value), what
    with pytest.raises(tael.ConfigurationError, match="cannot read auth file"):
        Tokens.load(tmp_path / "missing.toml")

    bad = tmp_path / "unknown_scope.toml"
    run = subprocess.run(
        [sys.executable, "-m", "tael", "serve", "--data", str(tmp_path / "d"), "--port", "0", "--auth-file", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1 and f"error: auth file {bad}: [[tokens]] entry 2 ('ci'): unknown scope" in run.stderr
    assert secret not in run.stderr + run.stdout
    assert not (tmp_path / "d").exists(), "nothing was opened"


# ---------------------------------------------------------------- safe defaults


def test_serve_refuses_a_non_loopback_bind_without_an_auth_file(tmp_path: Path, auth_file: Path) -> None:
    data = tmp_path / "data"
    run = subprocess.run(
        [sys.executable, "-m", "tael", "serve", "--data", str(data), "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stderr
    assert "refusing to serve on '0.0.0.0' without authentication" in run.stderr
    assert "--auth-file" in run.stderr and "--allow-unauthenticated" in run.stderr
    assert not data.exists(), "refused before the store was opened"

    port = free_port()
    for extra in (["--auth-file", str(auth_file)], ["--allow-unauthenticated"]):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tael",
                "serve",
                "--data",
                str(data),
                "--host",
                "0.0.0.0",
                "--port",
                str(port),
                *extra,
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200, "the server")
            services = httpx.get(f"http://127.0.0.1:{port}/api/services")
            assert services.status_code == (401 if "--auth-file" in extra else 200), extra
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
            assert proc.stderr is not None
            proc.stderr.close()


def test_cross_site_form_and_text_posts_cannot_promote_or_feed_wal(tmp_path: Path) -> None:
    """The browser's simple requests (form-encoded, multipart, text/plain: no CORS
    preflight) reach a loopback server with no token; they must change nothing."""
    with tael.Store(tmp_path / "leader") as leader:
        leader.insert_spans([make_span()])
        assert leader._ingest is not None
        from tael._wal import read_frames

        frames = read_frames(leader._ingest.wal.dir, 0, leader._ingest.pipeline.durable_lsn, 1 << 20)
        ident = leader.replication.identity
    forged = msgpack.packb(
        {
            "protocol": 1,
            "store_id": ident.store_id,
            "epoch": 1,
            "history": [[1, 0]],
            "from": 0,
            "leader_end": frames[-1][0] + len(frames[-1][1]),
            "frames": [[lsn, f] for lsn, f in frames],
        },
        use_bin_type=True,
    )
    with tael.Store(tmp_path / "sb", standby=True) as sb:
        srv = serve_app(sb)  # no auth file: the loopback default
        before = sb.replication_status().end_lsn
        try:
            simple = (
                {"data": {"role": "leader"}},  # application/x-www-form-urlencoded
                {"files": {"f": ("a.txt", b"x")}},  # multipart/form-data
                {"content": b"{}", "headers": {"content-type": "text/plain"}},
            )
            for kw in simple:
                resp = httpx.post(srv.url + "/replication/promote", **kw)  # type: ignore[arg-type]
                assert resp.status_code == 415 and "application/json" in resp.json()["error"], resp.text
            for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
                headers = {"content-type": ctype} if ctype else {}
                resp = httpx.post(srv.url + "/replication/wal", content=forged, headers=headers)
                assert resp.status_code == 415 and "application/x-tael-wal" in resp.json()["error"], resp.text
            st = sb.replication_status()
            assert sb.standby and st.epoch == 0 and st.store_id is None, "nothing was promoted or adopted"
            assert sb.query_traces() == [] and st.end_lsn == before, "nothing was written"

            # the same requests with their own content type do work: the refusals above were the type's
            assert httpx.post(srv.url + "/replication/wal", content=forged, headers=WAL).status_code == 200
            assert len(sb.query_traces()) == 1
            assert httpx.post(srv.url + "/replication/promote", json={}).json()["epoch"] == 2
        finally:
            srv.close()


def test_replication_routes_are_off_on_a_store_that_does_not_replicate(tmp_path: Path) -> None:
    with tael.Store(tmp_path / "data") as store:
        srv = serve_app(store)
        try:
            assert httpx.get(srv.url + "/replication/status").status_code == 404
            assert httpx.post(srv.url + "/replication/wal", content=b"x", headers=WAL).status_code == 404
            resp = httpx.post(srv.url + "/replication/promote", json={})
            assert resp.status_code == 404 and "replication is off" in resp.json()["error"]
            assert httpx.get(srv.url + "/health/live").status_code == 200
        finally:
            srv.close()


def test_a_standby_takes_wal_only_from_the_store_it_was_set_up_for(tmp_path: Path, auth_file: Path) -> None:
    port = free_port()
    token_file = tmp_path / "token"
    token_file.write_text(TOKENS["replication"] + "\n")
    url = f"http://127.0.0.1:{port}"
    with tael.Store(tmp_path / "leader", tael.Settings(replicas=(url,), required_acks=0)) as probe:
        leader_id = probe.replication_status().store_id
    assert leader_id is not None

    def standby(expected: str | None) -> tael.Store:
        s = tael.Settings(
            standby_listen=f"127.0.0.1:{port}", auth_file=str(auth_file), standby_leader_store_id=expected
        )
        return tael.Store(tmp_path / "sb", s, standby=True)

    sb = standby(leader_id)
    try:
        # another store, a token with the replication scope (a stolen one, say): the first shipment is refused too
        other_id = os.urandom(16)
        forged = {"protocol": 1, "store_id": other_id, "epoch": 1, "history": [[1, 0]], "from": 16, "leader_end": 16}
        resp = httpx.post(
            url + "/replication/wal",
            content=msgpack.packb({**forged, "frames": []}, use_bin_type=True),
            headers={**WAL, **bearer(TOKENS["replication"])},
        )
        answer = msgpack.unpackb(resp.content)
        assert resp.status_code == 409 and answer["fatal"] and "another store" in answer["error"]
        assert sb.replication_status().store_id == leader_id and sb.replication_status().epoch == 0
        # without the token, nothing is even looked at
        assert httpx.post(url + "/replication/wal", content=b"x", headers=WAL).status_code == 401

        # the real leader, presenting its token, ships
        settings = tael.Settings(replicas=(url,), replication_token_file=str(token_file))
        with tael.Store(tmp_path / "leader", settings) as leader:
            leader.insert_spans([make_span(name="from the leader")])
            assert [s.name for s in sb.query_traces()] == ["from the leader"], "acknowledged: on the standby"
    finally:
        sb.close()
    with pytest.raises(tael.StandbyError, match="seed this standby again"):
        standby(other_id.hex())  # a standby holding one store is not re-pointed at another by a setting


def test_an_embedded_standby_endpoint_is_guarded_like_tael_serve(tmp_path: Path, auth_file: Path) -> None:
    port = free_port()
    with pytest.raises(tael.ConfigurationError, match=r"refusing to serve on '0\.0\.0\.0' without authentication"):
        tael.Store(tmp_path / "sb", tael.Settings(standby_listen=f"0.0.0.0:{port}"), standby=True)
    settings = tael.Settings(standby_listen=f"127.0.0.1:{port}", auth_file=str(auth_file))
    with tael.Store(tmp_path / "sb", settings, standby=True):  # the refusal above left the directory unlocked
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/replication/status").status_code == 401
        assert httpx.get(url + "/replication/status", headers=bearer(TOKENS["replication"])).status_code == 200
        assert httpx.get(url + "/replication/status", headers={"host": "evil.example"}).status_code == 421


def test_a_leader_without_the_right_token_is_refused_with_what_to_fix(tmp_path: Path, auth_file: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    query_token = tmp_path / "query-token"
    query_token.write_text(TOKENS["query"])
    sb = tael.Store(
        tmp_path / "sb", tael.Settings(standby_listen=f"127.0.0.1:{port}", auth_file=str(auth_file)), standby=True
    )
    try:
        for extra, expected in (
            ({}, "replication_token_file"),
            ({"replication_token_file": str(query_token)}, "'replication' scope"),
        ):
            settings = tael.Settings(replicas=(url,), required_acks=0, **extra)
            with tael.Store(tmp_path / f"leader{len(extra)}", settings) as leader:
                leader.insert_spans([make_span()])
                wait_for(lambda: leader.replication_status().replicas[0].state == "refused", "the refusal")
                assert expected in (leader.replication_status().replicas[0].last_error or "")
        assert sb.query_traces() == [] and sb.replication_status().store_id is None
    finally:
        sb.close()


def test_promote_url_presents_a_token_from_a_file_or_the_environment(tmp_path: Path, auth_file: Path) -> None:
    port = free_port()
    sb = tael.Store(
        tmp_path / "sb", tael.Settings(standby_listen=f"127.0.0.1:{port}", auth_file=str(auth_file)), standby=True
    )
    admin_file = tmp_path / "admin-token"
    admin_file.write_text(TOKENS["admin"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "TAEL_TOKEN"}

    def promote(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tael", "promote", "--url", f"http://127.0.0.1:{port}", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, **({"TAEL_TOKEN": token} if token else {})},
        )

    try:
        none = promote()
        assert none.returncode == 1 and "401" not in none.stdout and "bearer token" in none.stderr
        wrong = promote(token=TOKENS["replication"])
        assert wrong.returncode == 1 and "'admin' scope" in wrong.stderr
        assert sb.standby
        ok = promote("--token-file", str(admin_file))
        assert ok.returncode == 0 and "it is a leader now (epoch 1)" in ok.stdout, ok.stderr  # it never had a leader
        assert not sb.standby
        env_ok = promote(token=TOKENS["admin"])
        assert env_ok.returncode == 1 and "replication is off" in env_ok.stderr, "authenticated: a 404, not a 401"
    finally:
        sb.close()


def test_dns_rebinding_host_names_are_refused_on_a_loopback_bind(tmp_path: Path) -> None:
    with tael.Store(tmp_path / "data") as store:
        srv = serve_app(store, hosts=("tael.internal",))
        try:
            for host in ("evil.example", f"evil.example:{srv.port}", "127.0.0.1.nip.io", "localhost.evil.example"):
                resp = httpx.get(srv.url + "/api/services", headers={"host": host})
                assert resp.status_code == 421, (host, resp.text)
                assert host in resp.json()["error"] and "DNS rebinding" in resp.json()["error"]
            resp = httpx.post(srv.url + "/v1/traces", json=span_body(), headers={"host": "evil.example"})
            assert resp.status_code == 421 and "evil.example" in resp.json()["message"], "an OTLP Status"
            for host in ("localhost", f"localhost:{srv.port}", f"127.0.0.1:{srv.port}", "[::1]:4318", "tael.internal"):
                assert httpx.get(srv.url + "/api/services", headers={"host": host}).status_code == 200, host
        finally:
            srv.close()
        assert store.query_traces() == []
        # bound to every address (with a token), Host names are not checked unless some are configured
        unchecked = serve_app(store, hosts=None)
        try:
            assert httpx.get(unchecked.url + "/api/services", headers={"host": "tael.example"}).status_code == 200
        finally:
            unchecked.close()


# ---------------------------------------------------------------- TLS


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    import trustme

    ca, other = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    out = {"ca": tmp_path / "ca.pem", "other_ca": tmp_path / "other-ca.pem", "cert": tmp_path / "cert.pem"}
    ca.cert_pem.write_to_path(str(out["ca"]))
    other.cert_pem.write_to_path(str(out["other_ca"]))
    out["cert"].write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    out["key"] = tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(out["key"]))
    return out


def test_tael_serve_over_https(tmp_path: Path, pki: dict[str, Path], auth_file: Path) -> None:
    import ssl

    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    srv = CliServer(
        "--data",
        str(tmp_path / "data"),
        "--auth-file",
        str(auth_file),
        "--tls-cert",
        str(pki["cert"]),
        "--tls-key",
        str(pki["key"]),
        scheme="https",
        verify=ctx,
    )
    try:
        resp = httpx.post(srv.url + "/v1/traces", json=span_body(), headers=bearer(TOKENS["ingest"]), verify=ctx)
        assert resp.status_code == 200
        assert httpx.get(srv.url + "/api/services", headers=bearer(TOKENS["query"]), verify=ctx).json()["data"] == [
            "sec-svc"
        ]
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(srv.url + "/health/live")  # the system's trust store does not know the test CA
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{srv.port}/health/live")  # no plain HTTP on the TLS port
    finally:
        srv.stop()
    bad = subprocess.run(
        [sys.executable, "-m", "tael", "serve", "--data", str(tmp_path / "d2"), "--tls-cert", str(pki["cert"]),
         "--tls-key", str(pki["ca"])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert bad.returncode == 1 and "cannot serve HTTPS" in bad.stderr and str(pki["cert"]) in bad.stderr


def test_a_leader_ships_over_https_verifying_the_standby_with_its_ca(
    tmp_path: Path, pki: dict[str, Path], auth_file: Path
) -> None:
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    token_file = tmp_path / "token"
    token_file.write_text(TOKENS["replication"])
    sb_settings = tael.Settings(
        standby_listen=f"127.0.0.1:{port}",
        auth_file=str(auth_file),
        tls_cert_file=str(pki["cert"]),
        tls_key_file=str(pki["key"]),
    )
    sb = tael.Store(tmp_path / "sb", sb_settings, standby=True)
    try:
        # a leader that trusts another CA does not ship to a certificate it cannot verify
        wrong = tael.Settings(
            replicas=(url,),
            required_acks=0,
            replication_token_file=str(token_file),
            replication_ca_file=str(pki["other_ca"]),
        )
        with tael.Store(tmp_path / "impostor", wrong) as leader:
            leader.insert_spans([make_span(name="unverified")])
            wait_for(
                lambda: "CERTIFICATE_VERIFY_FAILED" in (leader.replication_status().replicas[0].last_error or ""),
                "the TLS failure",
            )
            assert leader.replication_status().replicas[0].state == "down"
        assert sb.query_traces() == [] and sb.replication_status().store_id is None

        good = tael.Settings(
            replicas=(url,), replication_token_file=str(token_file), replication_ca_file=str(pki["ca"])
        )
        with tael.Store(tmp_path / "leader", good) as leader:
            leader.insert_spans([make_span(name="over https")])  # synchronous: durable on the standby on return
            assert [s.name for s in sb.query_traces()] == ["over https"]
            assert leader.replication_status().replicas[0].state == "streaming"
        env = {**os.environ, "TAEL_TOKEN": TOKENS["admin"]}
        promote = [sys.executable, "-m", "tael", "promote", "--url", url]
        unverified = subprocess.run(promote, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
        assert unverified.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in unverified.stderr and sb.standby
        done = subprocess.run(
            [*promote, "--ca-file", str(pki["ca"])], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
        )
        assert done.returncode == 0 and "epoch 2" in done.stdout, done.stderr
        assert not sb.standby
    finally:
        sb.close()
    with pytest.raises(tael.ConfigurationError, match="replication_ca_file"):
        tael.Store(tmp_path / "x", tael.Settings(replicas=(url,), replication_ca_file=str(token_file)))


# ---------------------------------------------------------------- error bodies


def test_error_bodies_carry_no_absolute_paths(tmp_path: Path) -> None:
    data = tmp_path / "deep" / "data"
    with tael.Store(data, standby=True) as sb:
        srv = serve_app(sb)
        try:
            resp = httpx.post(srv.url + "/v1/traces", json=span_body())  # a standby refuses client writes
            assert resp.status_code == 503
            message = resp.json()["message"]
            assert "standby" in message and "<data>" in message and str(tmp_path) not in resp.text, message
            assert resp.headers["content-length"] == str(len(resp.content))

            from google.rpc import status_pb2  # type: ignore[import-untyped]
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

            req = ExportTraceServiceRequest()
            req.resource_spans.add().scope_spans.add().spans.add(
                trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="x", start_time_unix_nano=1, end_time_unix_nano=2
            )
            resp = httpx.post(
                srv.url + "/v1/traces",
                content=req.SerializeToString(),
                headers={"content-type": "application/x-protobuf"},
            )
            status = status_pb2.Status.FromString(resp.content)
            assert resp.status_code == 503 and "<data>" in status.message and str(tmp_path) not in status.message
        finally:
            srv.close()
    sb.close()
    closed = serve_app(sb)  # a closed store: every query answers 503 naming what is wrong
    try:
        resp = httpx.get(closed.url + "/api/services")
        assert resp.status_code == 503 and "closed" in resp.text and str(tmp_path) not in resp.text, resp.text
    finally:
        closed.close()


def test_scrub_rewrites_each_encoding_it_meets() -> None:
    roots = [("/srv/tael data", "<data>")]
    assert scrub(b'{"error": "the store at /srv/tael data is closed"}', "application/json", roots) == (
        b'{"error": "the store at <data> is closed"}'
    )
    packed = msgpack.packb({"error": "at /srv/tael data/wal", "end_lsn": 16, "fatal": True})
    assert msgpack.unpackb(scrub(packed, "application/x-tael-wal", roots)) == {
        "error": "at <data>/wal",
        "end_lsn": 16,
        "fatal": True,
    }
    from google.rpc import status_pb2

    from tael._otlp import encode_status

    raw = encode_status("application/x-protobuf", 14, "the store at /srv/tael data is closed")
    out = status_pb2.Status.FromString(scrub(raw, "application/x-protobuf", roots))
    assert (out.code, out.message) == (14, "the store at <data> is closed")
    assert scrub(b"\xff\x00not a status", "application/x-protobuf", roots) == b"\xff\x00not a status"


def test_security_settings_are_validated() -> None:
    for kw, expected in (
        ({"tls_cert_file": "c.pem"}, "together"),
        ({"standby_leader_store_id": "xyz"}, "32 hex digits"),
        ({"allowed_hosts": ["a"]}, "tuple of host names"),
        ({"auth_file": ""}, "non-empty str"),
        ({"allow_unauthenticated": 1}, "bool"),
    ):
        with pytest.raises(ValueError, match=expected):
            tael.Settings(**kw)


def test_tokens_are_looked_up_by_digest(tmp_path: Path) -> None:
    tokens = Tokens.from_entries([("q" * 20, ["query"]), ("a" * 20, ["admin", "query"])])
    assert tokens.lookup("q" * 20) == frozenset({"query"})
    assert tokens.lookup("a" * 20) == frozenset({"admin", "query"})
    assert tokens.lookup("q" * 19) is None and tokens.lookup("") is None
    assert len(tokens) == 2


def test_the_guard_judges_the_path_its_routes_see_when_the_app_is_mounted(tmp_path: Path) -> None:
    """Embedded under a prefix (``Mount("/tael", create_app(...))``), Starlette routes on
    the path without the prefix: the guard must judge that path, or no rule matches and
    a cross-site text/plain POST promotes a standby, an ingest token reads the query API."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from tael._server import create_app

    tokens = Tokens.from_entries([(TOKENS["ingest"], ["ingest"])])
    with tael.Store(tmp_path / "sb", standby=True) as sb:
        for toks in (None, tokens):
            host = Starlette(routes=[Mount("/tael", app=create_app(sb, tokens=toks, allowed_hosts=()))])
            srv = InProcess(host)
            try:
                headers = bearer(TOKENS["ingest"]) if toks else {}
                promote = httpx.post(
                    srv.url + "/tael/replication/promote",
                    content=b"x=1",
                    headers={**headers, "content-type": "text/plain"},
                )
                assert promote.status_code == (403 if toks else 415), promote.text
                services = httpx.get(srv.url + "/tael/api/services", headers=headers)
                assert services.status_code == (403 if toks else 200)
                if toks:
                    assert httpx.get(srv.url + "/tael/api/services").status_code == 401
            finally:
                srv.close()
        assert sb.replication_status().role == "standby"
