"""OTLP/gRPC receiver of ``tael serve``: ``TraceService/Export``, ``LogsService/Export``
and ``MetricsService/Export`` of opentelemetry-proto, on grpcio's asyncio server, in
the same event loop as the HTTP server (tael/_server.py's ``run_server``).

Only the edge of an export lives here: the token in the ``authorization`` metadata,
the memory reservation of a message grpc has already received, and the mapping of a
refusal to a gRPC status (with ``RetryInfo`` when the client may retry). The export
itself (throttle, in-flight slots, decode -> validate -> insert, partial success,
self-metrics) is tael/_receiver.py's, shared with OTLP/HTTP.

The services are registered as generic handlers that take and return serialized
bytes, under the service and method names of opentelemetry-proto's generated
``*_service_pb2_grpc`` modules (the same on the wire): tael's decoder parses the
message bytes itself (tael/_otlp/), so parsing them into a message first, as the
generated servicers do, would parse every export twice.

grpc does what HTTP's edge does by hand: it decompresses (gzip, deflate) and refuses a
message over ``Settings.server_max_body_bytes`` after decompression with
RESOURCE_EXHAUSTED, before tael sees it. Status codes follow the OTLP specification
(https://opentelemetry.io/docs/specs/otlp/#failures-1): the table is in docs/server.md.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from . import _auth, _limits, _otlp, _receiver
from ._errors import ConfigurationError
from ._otlp import wire
from ._otlp.wire import len_field, varint_field

if TYPE_CHECKING:
    from prometheus_client import Counter

    from ._settings import Settings

log = logging.getLogger(__name__)

DEFAULT_PORT = 4317
"""OTLP/gRPC's port (``tael serve --grpc-port``; 0 turns the receiver off)."""

SERVICES = {
    "traces": trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name,
    "logs": logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name,
    "metrics": metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name,
}
"""Signal -> gRPC service (``opentelemetry.proto.collector.trace.v1.TraceService``...)."""

_CODES = {
    _receiver.Reason.MALFORMED: grpc.StatusCode.INVALID_ARGUMENT,
    _receiver.Reason.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,  # without RetryInfo: permanent
    _receiver.Reason.OVER_BUDGET: grpc.StatusCode.RESOURCE_EXHAUSTED,  # with RetryInfo: retry later
    _receiver.Reason.TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    _receiver.Reason.BEHIND: grpc.StatusCode.UNAVAILABLE,
    _receiver.Reason.BUSY: grpc.StatusCode.UNAVAILABLE,
    _receiver.Reason.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    _receiver.Reason.UNACKNOWLEDGED: grpc.StatusCode.UNAVAILABLE,
}
"""An export's refusal -> its gRPC status code, as the OTLP specification gives them
(HTTP's 400 -> INVALID_ARGUMENT, 429 -> RESOURCE_EXHAUSTED, 503 -> UNAVAILABLE)."""

CALLS_PER_SLOT = 2
"""Calls in progress (in flight, waiting for the throttle) per ``server_max_inflight``
slot past which a call is refused at once, UNAVAILABLE with RetryInfo (the receiver's BUSY)."""
GRPC_CALLS_PER_SLOT = 4
"""grpc's ``maximum_concurrent_rpcs`` per ``server_max_inflight`` slot: a backstop well
above ``CALLS_PER_SLOT`` (see :meth:`GrpcServer.start`)."""
INTERNAL_MESSAGE = "internal error; the server's log has the details"
"""What a call that failed unexpectedly (a bug) is told, with INTERNAL."""

SHUTDOWN_GRACE_S = 30.0
"""At shutdown, exports in flight get this long (seconds) to finish; new ones are refused."""


class GrpcServer:
    """The OTLP/gRPC listener over a :class:`tael._receiver.Receiver` (the HTTP app's:
    ``create_app(...).state.receiver``). ``tokens``: the bearer tokens every export must
    present with the ``ingest`` scope (None: no authentication); ``roots``: absolute
    paths to hide in error messages (tael/_auth.py's ``data_roots``); ``requests``: the
    ``tael_grpc_requests`` counter (labels ``method``, ``code``).

    ``await start()`` binds and serves (in the running event loop), ``await stop()``
    refuses new calls and lets those in flight finish (``SHUTDOWN_GRACE_S``)."""

    def __init__(
        self,
        receiver: _receiver.Receiver,
        settings: Settings,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        tokens: _auth.Tokens | None = None,
        roots: Sequence[tuple[str, str]] = (),
        requests: Counter | None = None,
    ) -> None:
        self.receiver = receiver
        self.settings = settings
        self.host = host
        self.port = port
        self.tokens = tokens
        self.roots = sorted(roots, key=lambda r: len(r[0]), reverse=True)
        self.requests = requests
        self.tls = settings.tls_cert_file is not None and settings.tls_key_file is not None
        self.calls = 0
        """Calls in progress in tael's handlers (authorizing, waiting for the throttle,
        exporting); the event loop's alone, so a plain int."""
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return address(self.host, self.port)

    async def start(self) -> int:
        """Bind and start serving; returns the port bound. Raises ConfigurationError when
        the address cannot be bound (in use, say)."""
        options = [
            ("grpc.max_receive_message_length", self.settings.server_max_body_bytes),
            ("grpc.so_reuseport", 0),  # else a second server could share the port without an error
        ]
        # grpc's own cap on calls in progress is a backstop only: it answers RESOURCE_EXHAUSTED
        # without RetryInfo, which the OTLP specification makes permanent (the Collector, Go
        # and Java exporters drop the batch), before the message is read. Calls waiting for
        # the throttle and calls being refused are in progress for grpc too, so the cap sits
        # well above what tael lets in (server_max_inflight slots; CALLS_PER_SLOT times that
        # in progress, past which tael answers UNAVAILABLE with RetryInfo itself): grpc
        # answers only a burst faster than tael can refuse, and still bounds the messages
        # it holds before tael reserves them.
        calls = GRPC_CALLS_PER_SLOT * self.settings.server_max_inflight
        server = grpc.aio.server(options=options, maximum_concurrent_rpcs=calls)
        server.add_generic_rpc_handlers(
            tuple(
                grpc.method_handlers_generic_handler(
                    service, {"Export": grpc.unary_unary_rpc_method_handler(self._handler(kind))}
                )
                for kind, service in SERVICES.items()
            )
        )
        try:
            if self.tls:
                bound = server.add_secure_port(self.address, _credentials(self.settings))
            else:
                bound = server.add_insecure_port(self.address)
        except RuntimeError as exc:  # grpc's "Failed to bind to address"
            raise ConfigurationError(in_use_message(self.host, self.port, str(exc))) from None
        if not bound:
            raise ConfigurationError(in_use_message(self.host, self.port, "grpc could not bind it"))
        await server.start()
        self._server = server
        self.port = int(bound)
        log.info("tael serving OTLP/gRPC on %s (%s)", self.address, "TLS" if self.tls else "plaintext")
        return self.port

    async def stop(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Refuse new calls, wait up to ``grace_s`` for those in flight, then cancel the rest."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace_s)
            log.info("tael stopped serving OTLP/gRPC on %s", self.address)

    def _handler(self, kind: str) -> Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]]:
        method = f"/{SERVICES[kind]}/Export"

        async def export(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            code = grpc.StatusCode.OK
            self.calls += 1
            try:
                began = time.perf_counter()
                problem = self._authorize(context.invocation_metadata() or ())
                if problem is not None:
                    code = problem[0]
                    await context.abort(code, problem[1])
                held = [request]
                del request  # the receiver drops the message once it is decoded
                result = await self._export(kind, held, began)
                if isinstance(result, _receiver.Refusal):
                    code = _CODES[result.reason]
                    message = self._scrub(result.message)  # the same text in the details and the Status
                    trailing = retry_metadata(code, message) if result.retryable else ()
                    await context.abort(code, message, trailing)  # raises AbortError
                    raise AssertionError("unreachable: context.abort raises")
                return _otlp.encode_response(kind, _receiver.PROTOBUF, result.rejected, result.message)
            except grpc.aio.AbortError:
                raise
            except asyncio.CancelledError:  # the client's deadline or cancel, or the server stopping
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception:
                # a bug, not a refusal: grpc would send "Unexpected <class>: <message>", data
                # paths and all; the log has it, the client a generic text (HTTP: a bare 500)
                log.exception("OTLP/gRPC %s failed", method)
                code = grpc.StatusCode.INTERNAL
                await context.abort(code, INTERNAL_MESSAGE)
                raise AssertionError("unreachable: context.abort raises") from None
            finally:
                self.calls -= 1
                if self.requests is not None:
                    self.requests.labels(method, code.name).inc()

        return export

    async def _export(self, kind: str, held: list[bytes], began: float) -> _receiver.Accepted | _receiver.Refusal:
        """The export of the message in ``held``, or why it was refused. Its bytes are
        reserved first (grpc holds them already, also while the call waits for the
        throttle), then its decoding (the receiver). Past ``CALLS_PER_SLOT`` calls per
        in-flight slot in progress, it is refused at once as the receiver's BUSY."""
        receiver = self.receiver
        if self.calls > CALLS_PER_SLOT * self.settings.server_max_inflight:
            return _receiver.Refusal(_receiver.Reason.BUSY, "too many requests in flight; retry later")
        reservation = _limits.Reservation(receiver.budget)
        try:
            reservation.grow(len(held[0]))
            refused = await receiver.throttle()
            if refused is not None:
                return refused
            return await receiver.export(kind, held, "identity", _receiver.PROTOBUF, reservation, began)
        except _limits.OverBudget as exc:
            return _receiver.Refusal(_receiver.Reason.OVER_BUDGET, str(exc))
        finally:
            reservation.release()  # nothing once the receiver's worker took it over (it releases it at its end)

    def _authorize(self, metadata: Sequence[Any]) -> tuple[grpc.StatusCode, str] | None:
        """None when the call may go ahead; else its status: no or an unknown bearer token
        in ``authorization`` is UNAUTHENTICATED, one without the ``ingest`` scope the
        OTLP routes need (tael/_auth.py's RULES) PERMISSION_DENIED."""
        if self.tokens is None:
            return None
        auth = next((str(v) for k, v in metadata if k == "authorization"), "")
        scheme, _, token = auth.strip().partition(" ")
        token = token.strip()
        if not auth:
            return (
                grpc.StatusCode.UNAUTHENTICATED,
                "this server requires a bearer token (authorization: Bearer <token>)",
            )
        if scheme.lower() != "bearer" or not token:
            return grpc.StatusCode.UNAUTHENTICATED, "the authorization metadata is not 'Bearer <token>'"
        scopes = self.tokens.lookup(token)
        if scopes is None:
            return grpc.StatusCode.UNAUTHENTICATED, "unknown bearer token"
        scope = _auth.rule_for("/v1/traces").scope
        if scope not in scopes:
            return grpc.StatusCode.PERMISSION_DENIED, f"this token does not have the {scope!r} scope that OTLP needs"
        return None

    def _scrub(self, message: str) -> str:
        for path, replacement in self.roots:
            message = message.replace(path, replacement)
        return message


# ---------------------------------------------------------------- helpers


def address(host: str, port: int) -> str:
    """grpc's ``host:port`` (an IPv6 address in brackets; "" is every address)."""
    name = host.strip("[]") or "::"
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


def in_use_message(host: str, port: int, reason: str, what: str = "OTLP/gRPC", flag: str = "--grpc-port") -> str:
    """Why ``tael serve`` cannot listen on ``host:port`` for ``what``, and the flag that moves it."""
    hint = f"give {flag} N for another port" + (", or --grpc-port 0 to serve no gRPC" if flag == "--grpc-port" else "")
    return (
        f"cannot listen for {what} on {address(host, port)}: {reason}. Is another tael serve or an OpenTelemetry "
        f"Collector running there? {hint[0].upper()}{hint[1:]}"
    )


def check_port(host: str, port: int, what: str = "OTLP/gRPC", flag: str = "--grpc-port") -> None:
    """Raise ConfigurationError when ``host:port`` cannot be bound now (in use, say): a
    bind and close, so ``tael serve`` can refuse before it touches the data directory.
    SO_REUSEADDR as servers set it, so a port in TIME_WAIT is not taken for one in use."""
    name = host.strip("[]") or "::"
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigurationError(
            in_use_message(host, port, f"cannot resolve {host!r}: {exc.strerror}", what, flag)
        ) from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(sockaddr)
        except OSError as exc:
            reason = "the address is already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise ConfigurationError(in_use_message(host, port, reason, what, flag)) from None


def _credentials(settings: Settings) -> grpc.ServerCredentials:
    """The server's TLS credentials from ``Settings.tls_cert_file`` and ``tls_key_file``
    (already checked to load by tael/_auth.py's ``tls_options``)."""
    assert settings.tls_cert_file is not None and settings.tls_key_file is not None
    try:
        key = Path(settings.tls_key_file).read_bytes()
        chain = Path(settings.tls_cert_file).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot serve gRPC over TLS: {exc.strerror or exc}") from None
    return grpc.ssl_server_credentials([(key, chain)])


# ---------------------------------------------------------------- RetryInfo

RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
"""Trailing metadata with a serialized ``google.rpc.RetryInfo``: what the Python SDK's
exporters read for their back-off."""
STATUS_DETAILS_KEY = "grpc-status-details-bin"
"""Trailing metadata with a serialized ``google.rpc.Status`` whose details hold the
RetryInfo: what the Go and Java exporters and the Collector read."""
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"


def retry_metadata(code: grpc.StatusCode, message: str, delay_s: int = _receiver.RETRY_AFTER_S) -> tuple[Any, ...]:
    """The trailing metadata of a retryable refusal: a ``RetryInfo`` of ``delay_s``,
    both on its own and inside the call's ``google.rpc.Status``. Encoded by hand (a few
    fields) so the server needs no googleapis-common-protos; tests/test_grpc.py checks
    it against ``google.rpc``'s generated classes."""
    retry_info = len_field(1, varint_field(1, delay_s))  # RetryInfo.retry_delay = Duration{seconds}
    status_code = code.value[0]
    detail = len_field(1, RETRY_INFO_TYPE.encode()) + len_field(2, retry_info)  # google.protobuf.Any
    status = wire.status(status_code, message, detail)
    return ((RETRY_INFO_KEY, retry_info), (STATUS_DETAILS_KEY, status))
