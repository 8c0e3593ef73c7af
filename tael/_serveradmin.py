"""Operating a running ``tael serve``: its maintenance routes and how commands find it.

A data directory open in ``tael serve`` is locked: ``tael compact`` or ``tael retention``
cannot open it. The server therefore serves the maintenance calls itself, under
``/admin/`` (the ``admin`` scope, JSON bodies: tael/_auth.py), and publishes where it
listens in ``<data>/serve.json`` while it runs (docs/server.md, "Operating a running
server"). A command that finds the directory locked reads that file, checks it names the
process holding the lock, and sends its call to the server; ``--url`` sends it to a
server given by address.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import ReadOnlyError, StorageError, TaelError
from ._fsutil import atomic_write
from ._words import plural

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ._store import Store

log = logging.getLogger(__name__)

SERVE_FILE = "serve.json"


def local_url(scheme: str, host: str, port: int) -> str:
    """The address a command on this machine reaches a server listening on ``host``:
    a wildcard address is reached on loopback."""
    reach = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in reach:
        reach = f"[{reach}]"
    return f"{scheme}://{reach}:{port}"


def publish(root: Path, url: str, **extra: Any) -> None:
    """Record that this process serves ``root`` at ``url`` (and ``extra``, e.g. the gRPC
    port), for the commands run beside it."""
    doc = {"pid": os.getpid(), "url": url, **extra}
    atomic_write(root / SERVE_FILE, json.dumps(doc, indent=2).encode() + b"\n")


def withdraw(root: Path) -> None:
    """Remove ``serve.json`` at shutdown (a stale one is harmless: its pid no longer holds the lock)."""
    try:
        (root / SERVE_FILE).unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove %s: %s", root / SERVE_FILE, exc)


def running_server(root: Path, holder_pid: str) -> dict[str, Any] | None:
    """What ``serve.json`` says about the server holding ``root``'s lock (``holder_pid``:
    the pid the lock file names), or None when no server of that process published one."""
    try:
        doc = json.loads((root / SERVE_FILE).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read {root / SERVE_FILE}: {exc}") from exc
    if not isinstance(doc, dict) or str(doc.get("pid")) != holder_pid or not isinstance(doc.get("url"), str):
        return None
    return doc


def routes(store: Store) -> list[Any]:
    """``POST /admin/compact``, ``/admin/retention`` and ``/admin/rebuild-index``: the Store
    calls of the same names, run in a worker thread (the maintenance loop and these calls
    take turns: each holds the compactor's lock), answered with their report as JSON."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def body_of(request: Request, allowed: set[str]) -> dict[str, Any]:
        raw = await request.body()
        try:
            doc = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise ValueError(f"the body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError("the body must be a JSON object")
        unknown = sorted(set(doc) - allowed)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
        return doc

    def integer(doc: dict[str, Any], name: str) -> int | None:
        value = doc.get(name)
        if value is not None and (type(value) is not int or value < 0):
            raise ValueError(f"{name} must be an integer of nanoseconds since the epoch or null, got {value!r}")
        return value

    async def compact(request: Request) -> Response:
        try:
            doc = await body_of(request, {"before"})
            before = integer(doc, "before")
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if before is None:
            before = _now_ns() - int(store.settings.hot_window_s * 1e9)
        try:
            report = await run_in_threadpool(store.compact, before)
        except TaelError as exc:
            return _failed(exc)
        log.info("admin: compacted %s before %d", report.records, before)
        return JSONResponse(dataclasses.asdict(report))

    async def retention(request: Request) -> Response:
        try:
            doc = await body_of(request, {"now", "dry_run"})
            now = integer(doc, "now")
            dry_run = doc.get("dry_run", False)
            if type(dry_run) is not bool:
                raise ValueError(f"dry_run must be true or false, got {dry_run!r}")
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

        def run() -> dict[str, Any]:
            report = store.enforce_retention(now, dry_run=dry_run)
            blobs = 0 if dry_run else store.collect_blobs()
            return {"retention": dataclasses.asdict(report), "blobs_removed": blobs}

        try:
            answer = await run_in_threadpool(run)
        except TaelError as exc:
            return _failed(exc)
        if not dry_run:
            log.info("admin: retention dropped %s", answer["retention"]["partitions_dropped"])
        return JSONResponse(answer)

    async def rebuild_index(request: Request) -> Response:
        try:
            await body_of(request, set())
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        began = _now_ns()
        try:
            documents = await run_in_threadpool(store.rebuild_index)
        except TaelError as exc:
            return _failed(exc)
        seconds = (_now_ns() - began) / 1e9
        log.info("admin: rebuilt the full-text index: %d documents in %.1f s", documents, seconds)
        return JSONResponse({"documents": documents, "seconds": round(seconds, 3)})

    return [
        Route("/admin/compact", compact, methods=["POST"], name="admin_compact"),
        Route("/admin/retention", retention, methods=["POST"], name="admin_retention"),
        Route("/admin/rebuild-index", rebuild_index, methods=["POST"], name="admin_rebuild_index"),
    ]


def _failed(exc: TaelError) -> Response:
    """A maintenance call the store refused: 409 when it never can here (a read-only
    store), else 503 (a full disk, say: the call can be retried)."""
    from starlette.responses import JSONResponse

    if isinstance(exc, ReadOnlyError):
        return JSONResponse({"error": str(exc)}, status_code=409)
    return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "5"})


def _now_ns() -> int:
    import time

    return time.time_ns()


class Activity:
    """``tael serve``'s log line per interval (default a minute) in which it ingested or
    maintained anything: records written and refused per signal, requests (HTTP and
    gRPC, the gRPC ones also apart: "5 requests (2 gRPC)"), throttled writes, and what
    maintenance moved and dropped. Reads the server's own metrics (``registry``:
    tael_records_ingested_total and friends) and the maintenance loop's counters, so
    the line and ``/metrics`` never disagree."""

    SIGNALS = ("spans", "logs", "metrics")

    def __init__(self, registry: Any, maintenance: Any, interval_s: float = 60.0) -> None:
        import threading

        self.registry, self.maintenance, self.interval_s = registry, maintenance, interval_s
        self._stop = threading.Event()
        self._last = self.snapshot()
        self._thread = threading.Thread(target=self._run, name="tael-activity", daemon=True)

    def start(self) -> Activity:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def snapshot(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name in ("tael_records_ingested_total", "tael_records_rejected_total"):
                    key = f"{sample.name.split('_')[2]}.{sample.labels['signal']}"
                elif sample.name == "tael_http_requests_total":
                    key = "requests"
                elif sample.name == "tael_grpc_requests_total":
                    out["requests"] = out.get("requests", 0.0) + sample.value  # all requests, and these apart
                    key = "grpc"
                elif sample.name == "tael_otlp_throttled_total":
                    key = "throttled"
                else:
                    continue
                out[key] = out.get(key, 0.0) + sample.value
        m = self.maintenance
        if m is not None:
            out |= {"runs": m.runs, "compacted": m.records_compacted, "dropped": m.rows_dropped, "errors": m.errors}
        return out

    def line(self) -> str | None:
        """What happened since the last call, or None when nothing did."""
        now = self.snapshot()
        delta = {k: v - self._last.get(k, 0.0) for k, v in now.items()}
        self._last = now
        if not any(v > 0 for v in delta.values()):
            return None
        written = ", ".join(f"{int(delta.get(f'ingested.{s}', 0)):,} {s}" for s in self.SIGNALS)
        parts = [f"wrote {written}"]
        refused = int(sum(delta.get(f"rejected.{s}", 0) for s in self.SIGNALS))
        if refused:
            parts.append(f"refused {plural(refused, 'record')}")
        requests = int(delta.get("requests", 0))
        grpc = int(delta.get("grpc", 0))
        parts.append(plural(requests, "request") + (f" ({grpc:,} gRPC)" if grpc else ""))
        if delta.get("throttled", 0):
            parts.append(f"{int(delta['throttled']):,} throttled")
        if self.maintenance is not None:
            runs = int(delta.get("runs", 0))
            parts.append(
                f"maintenance: {plural(runs, 'run')}, moved {int(delta.get('compacted', 0)):,}, "
                f"dropped {int(delta.get('dropped', 0)):,}, lag {self.maintenance.lag_s():.0f} s"
                + (f", {int(delta['errors'])} failed" if delta.get("errors") else "")
            )
        return f"last {self.interval_s:g} s: " + "; ".join(parts)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                text = self.line()
            except Exception:  # the log line must never take the server down; say why it is missing
                log.exception("could not report the server's activity")
                continue
            if text is not None:
                log.info("%s", text)
