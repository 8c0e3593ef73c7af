"""The OTLP receiver's part that does not depend on the transport: what one export does,
whether it came over HTTP (tael/_server.py) or gRPC (tael/_grpcserver.py).

An export, once its body is in memory: wait for compaction if it fell too far behind
(:meth:`Receiver.throttle`), take one of the ``Settings.server_max_inflight`` slots,
reserve the memory its decoding will take, decode -> validate -> insert a slice at a
time (durable in the WAL when the insert returns, batched with the exports in flight
beside it: tael/_otlp/combine.py), count it, and report the records it rejected and why
(OTLP's partial success). A failure comes back as a :class:`Refusal` of one of a few
kinds; each transport turns a kind into its own status at its edge (an HTTP code and
``Retry-After``, a gRPC status code and ``RetryInfo``): the table is in docs/server.md.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from . import _limits, _otlp
from ._blobs import Payloads
from ._errors import ReadOnlyError, ReplicationError, StorageError, StoreClosedError, ValidationError
from ._otlp.combine import Combiner

if TYPE_CHECKING:
    import pyarrow as pa
    from prometheus_client import Counter, Histogram

    from ._settings import Settings

log = logging.getLogger(__name__)

KINDS = ("traces", "logs", "metrics")
SIGNALS = {"traces": "spans", "logs": "logs", "metrics": "metrics"}
"""OTLP's name of a signal (the HTTP path, the gRPC service) -> the store's."""
PROTOBUF = "application/x-protobuf"
THROTTLE_POLL_S = 0.05  # how often a write held back for compaction looks again
RETRY_AFTER_S = 5  # what a retryable refusal asks the client to wait (HTTP Retry-After, gRPC RetryInfo)

_DECODERS: dict[str, Callable[..., _otlp.Decoded[Any]]] = {
    "traces": _otlp.decode_traces,
    "logs": _otlp.decode_logs,
    "metrics": _otlp.decode_metrics,
}
_DESCRIPTORS = {
    "traces": ExportTraceServiceRequest.DESCRIPTOR,
    "logs": ExportLogsServiceRequest.DESCRIPTOR,
    "metrics": ExportMetricsServiceRequest.DESCRIPTOR,
}


class Reason(enum.Enum):
    """Why an export was refused, whatever the transport (docs/server.md maps each to
    an HTTP status and a gRPC code). Nothing of a refused export is stored, except
    ``UNACKNOWLEDGED``, which is durable here but not acknowledged."""

    MALFORMED = "malformed"
    """The body does not parse as the signal's OTLP request: permanent (HTTP 400)."""
    TOO_LARGE = "too_large"
    """Over the size limit, or its decoding could never fit the memory budget: permanent (413)."""
    OVER_BUDGET = "over_budget"
    """Does not fit the memory budget now: retry later (429)."""
    TIMEOUT = "timeout"
    """The body did not arrive in time (HTTP's 408; gRPC has its own deadlines)."""
    BEHIND = "behind"
    """Compaction fell behind and did not catch up in ``server_throttle_wait_s``: retry later (503)."""
    BUSY = "busy"
    """``server_max_inflight`` exports are in flight already: retry later (503)."""
    UNAVAILABLE = "unavailable"
    """The store cannot take writes (closed, read-only, a standby, a failing disk): retry (503)."""
    UNACKNOWLEDGED = "unacknowledged"
    """Durable here, not yet on enough standbys: not acknowledged, so the client retries (503)."""


RETRYABLE = frozenset({Reason.OVER_BUDGET, Reason.BEHIND, Reason.BUSY, Reason.UNAVAILABLE, Reason.UNACKNOWLEDGED})


@dataclass(frozen=True, slots=True)
class Refusal:
    """An export that was not acknowledged: why, and the message for the client."""

    reason: Reason
    message: str

    @property
    def retryable(self) -> bool:
        return self.reason in RETRYABLE


@dataclass(frozen=True, slots=True)
class Accepted:
    """An export that is durable: how many records it carried that were rejected one by
    one (OTLP's ``partial_success``), and why (empty when none were)."""

    rejected: int
    message: str


def refusal_for(exc: Exception) -> Refusal | None:
    """The refusal an exception of an export means, or None when it is not one of an
    export's (a bug: the transport lets it propagate)."""
    if isinstance(exc, _limits.BodyTooLarge):
        return Refusal(Reason.TOO_LARGE, str(exc))
    if isinstance(exc, _limits.OverBudget):
        return Refusal(Reason.OVER_BUDGET, str(exc))
    if isinstance(exc, _limits.BodyTimeout):
        return Refusal(Reason.TIMEOUT, str(exc))
    if isinstance(exc, (_otlp.OtlpError, ValidationError, zlib.error, EOFError)):
        return Refusal(Reason.MALFORMED, f"malformed request: {exc}")
    if isinstance(exc, (StoreClosedError, ReadOnlyError, StorageError)):
        return Refusal(Reason.UNAVAILABLE, f"the store cannot take writes: {exc}")
    if isinstance(exc, ReplicationError):
        # durable here, not yet on enough standbys: not acknowledged, so the exporter
        # retries (a span retried is stored once; see docs/server.md)
        return Refusal(Reason.UNACKNOWLEDGED, f"the write was not acknowledged by enough standbys: {exc}")
    return None


class ReceiverMetrics:
    """The self-metrics an export updates, shared by both transports (the server's
    registry owns them: tael/_server.py's ``ServerMetrics``)."""

    def __init__(self, ingested: Counter, rejected: Counter, insert_seconds: Histogram, throttled: Counter) -> None:
        self.ingested = ingested
        self.rejected = rejected
        self.insert_seconds = insert_seconds
        self.throttled = throttled


class Receiver:
    """The exports of one server over one store: its combiners, payload rules, in-flight
    slots and memory budget are shared by every transport that feeds it.

    ``insert``: the store's ``insert_checked`` (signal, column batch), durable when it
    returns; ``lag``: how far compaction is behind the hot window (``Maintenance.lag_s``),
    None without a maintenance loop (no throttle). Given as callables, not the Store,
    so that this module stays below it (tests/test_layout.py)."""

    def __init__(
        self,
        settings: Settings,
        insert: Callable[[str, pa.RecordBatch], Any],
        lag: Callable[[], float] | None,
        metrics: ReceiverMetrics,
        budget: _limits.MemoryBudget,
    ) -> None:
        self.settings = settings
        self.lag = lag
        self.metrics = metrics
        self.budget = budget
        """The server's memory budget: HTTP bodies reserve in it as they arrive, gRPC
        messages once grpc hands them over; both reserve their decoding here."""
        self.inflight = threading.BoundedSemaphore(settings.server_max_inflight)
        self.payloads = Payloads(settings.payload_attributes, settings.payload_blob_min_bytes)  # as the store's
        self.combiners = {
            signal: Combiner(
                functools.partial(insert, signal),
                max_rows=_otlp.SLICE_RECORDS,
                max_bytes=settings.wal_max_record_bytes // 4,
            )
            for signal in SIGNALS.values()
        }

    async def throttle(self) -> Refusal | None:
        """None when an export may go ahead: at once while compaction keeps up; else after
        waiting (``server_throttle_wait_s`` at most) for it to catch up, so that writers
        are slowed to what compaction takes (``server_max_compaction_lag_s``). A refusal
        (``BEHIND``) when it did not."""
        lag, most = self.lag, self.settings.server_max_compaction_lag_s
        if lag is None or lag() <= most:
            return None
        deadline = time.monotonic() + self.settings.server_throttle_wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(THROTTLE_POLL_S)
            if lag() <= most:
                self.metrics.throttled.labels("written").inc()
                return None
        self.metrics.throttled.labels("refused").inc()
        return Refusal(Reason.BEHIND, f"compaction is {lag():.0f} s behind; retry later")

    async def export(
        self,
        kind: str,
        held: list[bytes],
        encoding: str,
        ctype: str,
        reservation: _limits.Reservation,
        began: float,
    ) -> Accepted | Refusal:
        """Write the export whose body is the one item of ``held`` (taken out, so that
        compressed bytes go as soon as they are decompressed), already reserved in
        ``reservation``, in one trip to the thread pool: decode, validate and insert;
        durable when it returns Accepted. ``began``: when the export arrived
        (``time.perf_counter``), for ``tael_insert_seconds``.

        Once the worker starts, it owns the in-flight slot and what ``reservation``
        held (``reservation`` then holds nothing; the caller still releases it, as on
        any path): both are released when the worker thread ends, not when the caller
        stops waiting. A caller cancelled meanwhile (a gRPC client's deadline, a server
        shutting down) cannot stop the thread, which goes on decoding and inserting up to
        ``server_max_body_bytes``; were its slot and memory freed at the cancellation,
        cancelled exports would take the server past both limits exactly under overload.
        What such a worker writes is durable and counted, though never acknowledged."""
        acquired = self.inflight.acquire(blocking=False)
        if not acquired:
            return Refusal(Reason.BUSY, "too many requests in flight; retry later")
        work = _take_over(reservation)
        abandoned = False

        def ended(task: asyncio.Future[_otlp.Decoded[Any]]) -> None:
            work.release()
            self.inflight.release()
            if task.cancelled():
                return
            exc = task.exception()
            if exc is None:
                self._count(kind, task.result(), began)
            elif abandoned:  # nobody is left to hear of it
                log.warning("an export whose caller went away failed: %s", exc, exc_info=exc)

        task = asyncio.ensure_future(to_thread.run_sync(self._ingest, kind, held, encoding, ctype, work))
        task.add_done_callback(ended)
        try:
            decoded = await asyncio.shield(task)
        except asyncio.CancelledError:
            abandoned = True
            if not task.done():
                log.info("an OTLP export was cancelled while its worker writes it; slot and memory held until it ends")
            raise
        except Exception as exc:
            refusal = refusal_for(exc)
            if refusal is None:
                raise
            return refusal
        return Accepted(decoded.rejected, decoded.error_message)

    def _count(self, kind: str, decoded: _otlp.Decoded[Any], began: float) -> None:
        signal = SIGNALS[kind]
        self.metrics.insert_seconds.labels(signal).observe(time.perf_counter() - began)
        self.metrics.ingested.labels(signal).inc(decoded.accepted)
        if decoded.rejected:
            self.metrics.rejected.labels(signal).inc(decoded.rejected)

    def _ingest(
        self, kind: str, held: list[bytes], encoding: str, ctype: str, reservation: _limits.Reservation
    ) -> _otlp.Decoded[Any]:
        """Decompress the body and reserve the memory its decoding will take (estimated
        from its structure: see tael/_limits.py), then decode and insert a slice of
        records at a time (bounds the export's memory): a body larger than a slice is
        written in several batches. The decoder hands over column batches of records it
        checked one by one, with their payload flags: the store writes them without a
        second check, together with the batches of exports in flight beside it."""
        raw = held.pop()
        body = decompress(raw, encoding, self.settings.server_max_body_bytes, reservation)
        extra = len(body) if body is not raw else 0
        _limits.reserve_decoding(reservation, len(raw) + extra, body, ctype, _DESCRIPTORS[kind])
        del raw
        return _DECODERS[kind](body, ctype, self.combiners[SIGNALS[kind]].insert, self.payloads)


def _take_over(reservation: _limits.Reservation) -> _limits.Reservation:
    """A new reservation in the same budget holding what ``reservation`` held; that one
    then holds nothing (so its owner's ``release()``, or the HTTP Guard's, frees nothing
    the new owner still uses)."""
    taken = _limits.Reservation(reservation.budget)
    taken.held, reservation.held = reservation.held, 0
    return taken


ENCODINGS = ("", "identity", "gzip", "deflate")
_INFLATE_CHUNK = 1 << 20


def decompress(raw: bytes, encoding: str, limit: int, reservation: _limits.Reservation) -> bytes:
    """The body decompressed, at most ``limit`` bytes, each MiB reserved before it is
    produced (raises OverBudget, BodyTooLarge, zlib.error)."""
    if encoding in ("", "identity"):
        return raw
    if encoding == "gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    else:
        d = zlib.decompressobj()  # zlib-wrapped, as HTTP's "deflate" means
        if raw[:1] and (raw[0] & 0x0F) != 8:
            d = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, which some clients send
    out = bytearray()
    pending = raw
    base = reservation.held
    while True:
        reservation.grow_to(base + len(out) + _INFLATE_CHUNK)
        chunk = d.decompress(pending, _INFLATE_CHUNK)
        out += chunk
        if len(out) > limit:
            raise _limits.BodyTooLarge(f"body decompresses to over the {limit:,}-byte limit")
        pending = d.unconsumed_tail
        if d.eof or (not pending and not chunk):
            break
    if not d.eof:
        raise zlib.error("compressed body is truncated")
    reservation.grow(len(out))  # the copy below, while ``out`` still exists
    return bytes(out)
