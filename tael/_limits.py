"""What bounds ``tael serve``'s memory and connections, whatever a client sends.

- :class:`MemoryBudget`: bytes of request bodies and of their decoding that all
  requests together may hold (``Settings.server_max_inflight_bytes``). A request
  reserves its body as the bytes arrive (a declared ``Content-Length`` is only
  checked against what is free, :meth:`MemoryBudget.admit`: declaring much and
  sending little holds nothing) and grows it before each step that allocates more
  (decompression, then decoding, estimated from the body's structure by
  :func:`reserve_decoding`, then a query response: :func:`capped_records`); a
  request that does not fit gets 429 (503 on the replication route, which a
  leader retries) with ``Retry-After``, one that could never fit 413.
- :func:`read_body`: reads a body under a byte limit, a reservation and a time
  limit, for every route that reads one.
- :func:`timed_h11_protocol`: uvicorn's h11 protocol with the two timeouts it
  lacks: request line and headers (slowloris) and request body. uvicorn's own
  ``timeout_keep_alive`` only applies between requests and is reset by every byte
  received; its header-timeout proposal (``--timeout-request-start``,
  Kludex/uvicorn#157, PR #1685) was never merged. Hypercorn has a ``read_timeout``
  but switching servers would change TLS, shutdown and embedding for every user,
  so this is a small documented subclass instead: a per-connection watchdog that
  only reads h11's state and closes the transport.

Just over the ~800 lines a module should stay under: every bound on what a client
can make the server hold, in one place, so each is checked against the others.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import TaelError
from ._words import plural

if TYPE_CHECKING:
    from starlette.middleware import Middleware
    from starlette.requests import Request

    from ._settings import Settings

log = logging.getLogger(__name__)

# The first, optimistic estimate of decoding an OTLP body, reserved before it is read
# (so a body that cannot fit even so is not read at all): ordinary bodies, measured
# with tracemalloc and RssAnon on 19 MiB of 327,110 minimal spans and 24 MiB of OTLP
# JSON, parse into ~4 bytes per body byte (json.loads' tree ~4.3). The estimate from
# the body's structure (reserve_decoding) replaces it once the body is in.
DECODE_FACTOR = 5
# Decoded records are built and inserted a slice at a time (tael/_otlp/'s ``sink``:
# at most SLICE_BYTES of body or 16,384 records): a slice of records and its encoded
# rows and frame cost about 15x the slice's share of the body (773 + ~580 bytes per
# 60-byte minimal span).
SLICE_BYTES = 1 << 20
SLICE_FACTOR = 16
REPLICATION_FACTOR = 2  # the body plus the frames parse_shipment copies out of it


def otlp_decode_cost(body_bytes: int) -> int:
    """What decoding and inserting an ordinary OTLP body of ``body_bytes``
    (decompressed) holds beyond the body itself: the parsed message or JSON tree
    plus one slice of decoded records. A first estimate, from the size alone."""
    return body_bytes * DECODE_FACTOR + min(body_bytes, SLICE_BYTES) * SLICE_FACTOR


class OverBudget(TaelError):
    """A request does not fit in the server's memory budget now; retry later."""


class BodyTimeout(TaelError):
    """A request body did not arrive in time, or the client went away."""


class BodyTooLarge(TaelError):
    """A request body is over its route's limit."""


class MemoryBudget:
    """A counter of bytes reserved by requests in flight, at most ``total`` (but see below).

    Thread-safe: reservations grow on the event loop (before reading a body) and
    in worker threads (before decompressing, before decoding). One reservation
    larger than the whole budget is still granted when nothing else is reserved,
    so a single legitimate large request (a replication shipment of one big WAL
    frame) cannot be starved forever; memory then stays bounded by that request.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self.peak = 0
        self.refused = 0
        self._lock = threading.Lock()

    def reserve(self, n: int) -> Reservation:
        """A new reservation of ``n`` bytes; raises OverBudget if it does not fit."""
        r = Reservation(self)
        r.grow(n)
        return r

    def admit(self, n: int) -> None:
        """Raise OverBudget (counted) if ``n`` more bytes would not fit now, without
        reserving them: a request declaring a body that cannot fit is refused before
        it is read, while one that can reserves only what actually arrives (so
        connections declaring much and sending little hold nothing)."""
        with self._lock:
            if self.used + n > self.total and self.used:
                self.refused += 1
                raise OverBudget(
                    f"the server holds {self.used:,} of its {self.total:,} bytes for requests in flight "
                    f"and this one needs {n:,}; retry later"
                )

    def take(self, n: int, held: int, *, count: bool = True) -> None:
        """Reserve ``n`` more bytes for a request already holding ``held`` (Reservation's
        use): raises OverBudget, counted as a refusal when ``count``, if they do not fit,
        unless every byte in use is this request's (a request alone always proceeds)."""
        if n <= 0:
            return
        with self._lock:
            if self.used + n > self.total and self.used != held:  # over, and not alone
                self.refused += count
                raise OverBudget(
                    f"the server holds {self.used:,} of its {self.total:,} bytes for requests in flight "
                    f"and this one needs {n:,} more; retry later"
                )
            self.used += n
            self.peak = max(self.peak, self.used)

    def give(self, n: int) -> None:
        """Return ``n`` reserved bytes (Reservation's use)."""
        with self._lock:
            self.used -= n


class Reservation:
    """Bytes one request holds in a :class:`MemoryBudget`; ``release()`` (idempotent)
    when the request is done, also on errors."""

    __slots__ = ("budget", "held")

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.held = 0

    def grow(self, n: int) -> None:
        """Hold ``n`` more bytes; raises OverBudget (holding what it held) if they do not fit."""
        if n > 0:
            self.budget.take(n, self.held)
            self.held += n

    def grow_to(self, n: int) -> None:
        """Hold at least ``n`` bytes in all."""
        self.grow(n - self.held)

    def try_grow_to(self, n: int) -> bool:
        """Hold at least ``n`` bytes in all if they fit now (not counted as a refusal)."""
        try:
            self.budget.take(n - self.held, self.held, count=False)
        except OverBudget:
            return False
        self.held = max(self.held, n)
        return True

    def shrink_to(self, n: int) -> None:
        """Hold at most ``n`` bytes (a copy that held more was freed)."""
        if n < self.held:
            self.budget.give(self.held - n)
            self.held = n

    def release(self) -> None:
        held, self.held = self.held, 0
        if held:
            self.budget.give(held)


async def read_body(request: Request, limit: int, reservation: Reservation, timeout_s: float) -> bytes:
    """The request's body, at most ``limit`` bytes, received within ``timeout_s``.

    A declared ``Content-Length`` over ``limit`` is refused (BodyTooLarge) before
    anything is read or reserved. The reservation grows as bytes actually arrive
    (whatever ``Content-Length`` says: a client declaring a large body and sending
    nothing holds nothing), and for a moment to twice the size while the chunks are
    joined. Raises BodyTooLarge, BodyTimeout (also when the client disconnects) or
    OverBudget."""
    from starlette.requests import ClientDisconnect

    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"body of {declared:,} bytes is over the {limit:,}-byte limit")
    chunks: list[bytes] = []
    size = 0
    base = reservation.held
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit or (declared is not None and size > declared):
                    raise BodyTooLarge(f"body is over the {min(limit, declared or limit):,}-byte limit")
                reservation.grow_to(base + size)
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {timeout_s:g} s") from None
    except ClientDisconnect:
        raise BodyTimeout("the client went away before sending the whole body") from None
    if len(chunks) == 1:
        return chunks[0]
    reservation.grow_to(base + 2 * size)  # the chunks and their joined copy
    body = b"".join(chunks)
    del chunks
    reservation.shrink_to(base + size)
    return body


def declared_length(request: Request) -> int | None:
    """``Content-Length`` as an int, None when absent; a malformed one counts as absent
    (h11 has already refused it with 400 before the app runs)."""
    value = request.headers.get("content-length")
    if value is None or not value.isdigit():
        return None
    return int(value)


# ---------------------------------------------------------------- uvicorn


def configure_uvicorn(config: Any, settings: Settings) -> None:
    """Apply the server's connection limits to a ``uvicorn.Config`` before it is
    served: the h11 protocol with header and body timeouts."""
    config.http = timed_h11_protocol(settings.server_header_timeout_s, settings.server_body_timeout_s)


_TIMEOUT_MESSAGE = b"request headers did not arrive in time"
_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_MESSAGE), _TIMEOUT_MESSAGE)
)


def timed_h11_protocol(header_timeout_s: float, body_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's ``H11Protocol`` closing connections that are too slow to send a request.

    A watchdog per connection looks at h11's view of the client every
    ``min(timeouts) / 4`` seconds (at most 1 s):

    - waiting for a request line and headers (h11 state IDLE, on a new connection
      or after a response) for over ``header_timeout_s``: answers
      ``408 Request Timeout`` and closes; but a kept-alive connection idle since its
      last response (no byte of a next request) is closed without a 408, which the
      client would take for the answer to a request it has not sent;
    - receiving a body (SEND_BODY) for over ``body_timeout_s`` since its headers:
      closes; the app reading it sees a disconnect (tael answers 408).

    Everything else (the app working, a response being sent) is not timed here. At
    shutdown, a connection still sending a body is closed at once.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    tick = min(1.0, header_timeout_s / 4, body_timeout_s / 4)

    class TimedH11Protocol(H11Protocol):
        _watch: asyncio.TimerHandle | None = None
        _state: tuple[Any, Any] | None = None
        _since = 0.0
        _served = False  # a response was sent: the connection is kept alive between requests

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._check()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            self._served = True
            super().on_response_complete()

        def shutdown(self) -> None:
            """On server shutdown a request whose body is still arriving is dropped at
            once (nothing of it was acknowledged) instead of holding up the exit until
            the body timeout."""
            if self.conn.their_state is h11.SEND_BODY and (self.cycle is None or not self.cycle.response_started):
                self.transport.close()
                return
            super().shutdown()

        def _check(self) -> None:
            self._watch = None
            if self.transport.is_closing():
                return
            now = self.loop.time()
            state = (self.conn.their_state, self.cycle)
            if state != self._state:
                self._state, self._since = state, now
            waited = now - self._since
            their = self.conn.their_state
            if their is h11.IDLE and waited > header_timeout_s:
                if self._served and not self.conn.trailing_data[0]:
                    # idle between requests on a kept-alive connection: no request was
                    # begun, so none is answered (RFC 9112 9.3: close; a 408 here would
                    # be read as the answer to the client's next request)
                    log.debug("closing an idle kept-alive connection from %s after %g s", self.client, waited)
                else:
                    log.info("closing a connection from %s: no request headers within %g s", self.client, waited)
                    if self.conn.our_state is h11.IDLE:
                        self.transport.write(_TIMEOUT_408)
                self.transport.close()
                return
            if their is h11.SEND_BODY and waited > body_timeout_s:
                log.info("closing a connection from %s: no whole body within %g s", self.client, body_timeout_s)
                self.transport.close()
                return
            self._watch = self.loop.call_later(tick, self._check)

    return TimedH11Protocol


# ---------------------------------------------------------------- the guard middleware

_SCOPE_BUDGET = "tael.budget"
_SCOPE_RESERVATIONS = "tael.reservations"
NO_BODY_LIMIT = 64 << 10  # routes that read no body: what uvicorn may buffer of one anyway


class Guard:
    """Pure ASGI middleware, outermost of an app's own middleware (inside Starlette's
    ServerErrorMiddleware, so exceptions reach it first):

    - counts every response by route label and status with ``count(label, code)``,
      including those of middleware inside it (authentication) and 500s;
    - turns an unexpected exception into a logged, counted 500 (never a silent one);
      the limit errors of :func:`read_body` become 413 / 429 (503 on replication
      routes) / 408 with Retry-After where it applies, whichever route raised them;
    - refuses a declared ``Content-Length`` over the route's limit with 413 before
      anything reads it (``body_limit(label)``; routes that read no body: 64 KiB;
      None: the route checks its own);
    - makes the memory budget available to :func:`request_reservation` and releases
      every reservation of a request when it ends, however it ends.
    """

    def __init__(
        self,
        app: Any,
        *,
        budget: MemoryBudget,
        label: Any,
        body_limit: Any,
        count: Any = None,
        retry_after_s: int = 5,
    ) -> None:
        self.app = app
        self.budget = budget
        self.label = label
        self.body_limit = body_limit
        self.count = count
        self.retry_after = str(retry_after_s).encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        label = self.label(scope)
        status: list[int] = []

        async def counted_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        scope[_SCOPE_BUDGET] = self.budget
        reservations: list[Reservation] = []
        scope[_SCOPE_RESERVATIONS] = reservations
        try:
            declared = _header(scope, b"content-length")
            limit = self.body_limit(label)  # None: the route answers in its own format
            if limit is not None and declared is not None and declared.isdigit() and int(declared) > limit:
                message = f"body of {int(declared):,} bytes is over the {limit:,}-byte limit"
                await self._error(counted_send, 413, message)
            else:
                await self.app(scope, receive, counted_send)
        except Exception as exc:
            if status:
                log.error("%s %s failed after its response started", scope["method"], scope["path"], exc_info=True)
            else:
                code, retry = self._code(exc, label)
                if code == 500:
                    log.error("%s %s failed", scope["method"], scope["path"], exc_info=True)
                    message = f"internal error: {type(exc).__name__}"
                else:
                    message = str(exc)
                await self._error(counted_send, code, message, retry=retry)
        finally:
            for r in reservations:
                r.release()
            if self.count is not None:
                self.count(label, str(status[0]) if status else "disconnected")

    def _code(self, exc: Exception, label: str) -> tuple[int, bool]:
        if isinstance(exc, BodyTooLarge):
            return 413, False
        if isinstance(exc, OverBudget):
            return (503 if label.startswith("replication") else 429), True
        if isinstance(exc, BodyTimeout):
            return 408, False
        return 500, False

    async def _error(self, send: Any, code: int, message: str, *, retry: bool = False) -> None:
        import json

        body = json.dumps({"data": None, "errors": [{"code": code, "msg": message}]}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if retry:
            headers.append((b"retry-after", self.retry_after))
        if code in (408, 413):
            headers.append((b"connection", b"close"))  # the rest of the body is not read
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def guard(
    settings: Settings,
    routes: list[Any],
    count: Callable[[str, str], None] | None = None,
    budget: MemoryBudget | None = None,
) -> Middleware:
    """The :class:`Guard` of an app serving ``routes``, to put first in its middleware
    list. A route's label is its name (``replication_<name>`` under /replication/);
    OTLP routes (``traces``, ``logs``, ``metrics``) check their own body limit
    (``server_max_body_bytes``), ``/replication/wal`` takes up to
    :func:`shipment_limit`, others up to 64 KiB. ``budget``: default a new one of ``server_max_inflight_bytes``."""
    from starlette.middleware import Middleware
    from starlette.routing import Match

    labels = {r.path: (f"replication_{r.name}" if r.path.startswith("/replication/") else r.name) for r in routes}

    def label(scope: Any) -> str:
        for r in routes:
            match, _child = r.matches(scope)
            if match is not Match.NONE:
                return labels[r.path]
        return "unmatched"

    def body_limit(name: str) -> int | None:
        if name in ("traces", "logs", "metrics"):
            return None  # OTLP answers 413 itself, as a google.rpc.Status in the request's type
        if name == "replication_wal":
            return shipment_limit(settings)
        return NO_BODY_LIMIT

    if budget is None:
        budget = MemoryBudget(settings.server_max_inflight_bytes)
    return Middleware(Guard, budget=budget, label=label, body_limit=body_limit, count=count)


def _header(scope: Any, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return str(v.decode("latin-1"))
    return None


def request_reservation(request: Request) -> Reservation:
    """A new reservation in the budget of the :class:`Guard` serving ``request``,
    released when the request ends. Without a Guard (an app assembled by hand) the
    reservation comes from an unbounded budget of its own."""
    budget = request.scope.get(_SCOPE_BUDGET)
    if budget is None:
        budget = MemoryBudget(1 << 62)
        request.scope[_SCOPE_BUDGET] = budget
        request.scope[_SCOPE_RESERVATIONS] = []
    r = Reservation(budget)
    request.scope[_SCOPE_RESERVATIONS].append(r)
    return r


def shipment_limit(settings: Settings) -> int:
    """Largest ``/replication/wal`` body: a batch plus one frame of the largest record
    (a shipment always carries at least one whole frame), plus its header."""
    return settings.replication_batch_bytes + settings.wal_max_record_bytes + (64 << 10)


async def read_shipment(request: Request, settings: Settings) -> bytes:
    """The body of a ``/replication/wal`` request, bounded in size, time and memory
    (reserved as it arrives, then at ``REPLICATION_FACTOR`` times its size for parsing)."""
    limit = shipment_limit(settings)
    reservation = request_reservation(request)
    declared = declared_length(request)
    if declared is not None and declared > limit:
        # 413 before reserving anything: never 429 for what can never fit
        raise BodyTooLarge(f"body of {declared:,} bytes is over the {limit:,}-byte limit")
    body = await read_body(request, limit, reservation, settings.server_body_timeout_s)
    reservation.grow_to(len(body) * REPLICATION_FACTOR)
    return body


# ---------------------------------------------------------------- decoding cost estimates
#
# What decoding an OTLP body costs depends on its shape more than its size: 20 MiB of
# empty sub-messages (two bytes each) parse into 10 million protobuf messages and take
# 0.7 to 1.9 GB (measured: empty events of one span 700 MB, empty spans 1.9 GB, JSON
# ``{}`` elements 950 MB), while 20 MiB of ordinary spans take ~130 MB. So the cost is
# estimated from the body's structure before it is parsed: a scan of the protobuf wire
# format counting the messages it holds (no allocation per message), or a count of the
# JSON punctuation. Calibrated on this code (RssAnon before and after): upb takes about
# 48 bytes plus 8 per declared field for each message, and turning messages into
# records about 160 more each.

_MSG_BASE = 64 + 160
_MSG_PER_FIELD = 8
_SCALAR = 48  # one element of a repeated number: 8 bytes in upb, a Python object and a list slot
_MAX_DEPTH = 128  # nesting the walk follows (the protobuf parser's own limit is 100)
WORST_FACTOR = 180  # the most any body byte can cost: an empty Span message (2 bytes) ~ 360


class _Schema:
    """A protobuf message type as the scan needs it: its cost, the schema of each field
    number that holds a message, and the repeated number fields (cost per element;
    packed, the element size in bytes, 0 for varints: counted by their last bytes).

    ``carries``: fields whose bytes every record decoded below this message gets a copy
    of (a ResourceSpans' resource, a ScopeLogs' scope, a SummaryDataPoint's attributes);
    ``charged``: this message is such a record (a span, a log record, a quantile), and
    costs the carried bytes of its enclosing messages on top of its own."""

    __slots__ = ("carries", "charged", "children", "cost", "repeated")

    def __init__(self, cost: int) -> None:
        self.cost = cost
        self.children: dict[int, _Schema] = {}
        self.repeated: dict[int, int] = {}
        self.carries: frozenset[int] = frozenset()
        self.charged = False


_OTLP = "opentelemetry.proto."
_CARRIES = {
    _OTLP + "trace.v1.ResourceSpans": frozenset({1}),
    _OTLP + "trace.v1.ScopeSpans": frozenset({1}),
    _OTLP + "logs.v1.ResourceLogs": frozenset({1}),
    _OTLP + "logs.v1.ScopeLogs": frozenset({1}),
    _OTLP + "metrics.v1.SummaryDataPoint": frozenset({7}),
}
_CHARGED = {
    _OTLP + "trace.v1.Span",
    _OTLP + "logs.v1.LogRecord",
    _OTLP + "metrics.v1.SummaryDataPoint.ValueAtQuantile",
}


def _schema(descriptor: Any, seen: dict[str, _Schema] | None = None) -> _Schema:
    from google.protobuf.descriptor import FieldDescriptor as F

    seen = {} if seen is None else seen
    found = seen.get(descriptor.full_name)
    if found is not None:
        return found
    schema = seen[descriptor.full_name] = _Schema(_MSG_BASE + _MSG_PER_FIELD * len(descriptor.fields))
    schema.carries = _CARRIES.get(descriptor.full_name, frozenset())
    schema.charged = descriptor.full_name in _CHARGED
    for f in descriptor.fields:
        if f.message_type is not None:
            schema.children[f.number] = _schema(f.message_type, seen)
        elif _repeated(f) and f.type not in (F.TYPE_STRING, F.TYPE_BYTES):
            fixed = {F.TYPE_DOUBLE: 8, F.TYPE_FIXED64: 8, F.TYPE_SFIXED64: 8, F.TYPE_FLOAT: 4, F.TYPE_FIXED32: 4}
            schema.repeated[f.number] = fixed.get(f.type, 4 if f.type == F.TYPE_SFIXED32 else 0)
    return schema


def _repeated(field: Any) -> bool:
    repeated = getattr(field, "is_repeated", None)  # protobuf >= 6; ``label`` before
    return bool(repeated) if repeated is not None else bool(field.label == field.LABEL_REPEATED)


_SCHEMAS: dict[str, _Schema] = {}


def _varint(body: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = body[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _carried(body: bytes, pos: int, end: int, fields: frozenset[int]) -> int:
    """Bytes of the length-delimited ``fields`` directly in the message at body[pos:end]
    (a pre-scan of its top level: wherever they are in it, they count)."""
    total = 0
    try:
        while pos < end:
            tag, pos = _varint(body, pos)
            wire = tag & 7
            if wire == 2:
                length, pos = _varint(body, pos)
                if (tag >> 3) in fields:
                    total += length
                pos += length
            elif wire == 0:
                _, pos = _varint(body, pos)
            elif wire == 1 or wire == 5:
                pos += 8 if wire == 1 else 4
            else:
                break
    except IndexError:
        pass
    return total


def protobuf_cost(body: bytes, descriptor: Any, stop_at: int | None = None) -> int:
    """Estimated bytes of parsing ``body`` as the message ``descriptor`` describes and
    decoding it into records: a cost per message and per element of a repeated number
    found by walking the wire format (iteratively: nesting depth costs nothing),
    plus twice the body for the strings copied out of it, plus for each span, log
    record or summary quantile the bytes it carries a copy of (its resource and scope,
    its data point's attributes). Malformed wire data ends
    the walk of its message; the parser then refuses the body. Returns early once the
    estimate passes ``stop_at`` (the walk of 20 MiB of empty messages takes ~10 s)."""
    schema = _SCHEMAS.get(descriptor.full_name)
    if schema is None:
        schema = _SCHEMAS[descriptor.full_name] = _schema(descriptor)
    total = 2 * len(body) + schema.cost
    stop = stop_at if stop_at is not None else 1 << 62
    # depth first, the stack holding where each enclosing message resumes: its size is
    # the nesting depth (the parser refuses more than 100 levels; so does this walk)
    stack = [(schema, 0, len(body), 0)]  # (message, where it resumes, its end, bytes carried)
    pop, push = stack.pop, stack.append
    while stack:
        msg, pos, end, carried = pop()
        children, repeated = msg.children, msg.repeated
        try:
            while pos < end:
                tag = body[pos]
                pos += 1
                if tag & 0x80:  # a multi-byte tag
                    tag &= 0x7F
                    shift = 7
                    while True:
                        b = body[pos]
                        pos += 1
                        tag |= (b & 0x7F) << shift
                        if not b & 0x80:
                            break
                        shift += 7
                wire = tag & 7
                if wire == 2:
                    length = body[pos]
                    pos += 1
                    if length & 0x80:
                        length &= 0x7F
                        shift = 7
                        while True:
                            b = body[pos]
                            pos += 1
                            length |= (b & 0x7F) << shift
                            if not b & 0x80:
                                break
                            shift += 7
                    field = tag >> 3
                    child = children.get(field)
                    if child is not None:
                        total += child.cost + carried if child.charged else child.cost
                        if total > stop:
                            return total
                        if pos + length <= end and len(stack) < _MAX_DEPTH:
                            push((msg, pos + length, end, carried))  # resume here after the child
                            inner = carried
                            if child.carries:
                                inner += _carried(body, pos, pos + length, child.carries)
                            push((child, pos, pos + length, inner))
                            break
                    elif field in repeated:  # packed numbers
                        size = repeated[field]
                        total += _SCALAR * (length // size if size else length)
                    pos += length
                elif wire == 0:
                    while body[pos] & 0x80:
                        pos += 1
                    pos += 1
                    if repeated and (tag >> 3) in repeated:
                        total += _SCALAR
                elif wire == 1 or wire == 5:
                    pos += 8 if wire == 1 else 4
                    if repeated and (tag >> 3) in repeated:
                        total += _SCALAR
                else:
                    break  # groups and invalid wire types: the parser refuses them
        except IndexError:
            pass  # truncated: the parser refuses it
    return total


def json_cost(body: bytes) -> int:
    """Estimated bytes of ``json.loads`` of an OTLP JSON ``body`` and parsing the result
    into protobuf messages, from its punctuation: each ``{`` an object and a message,
    each ``[`` a list, each ``,`` or ``:`` a value (punctuation inside strings is
    counted too, which only overestimates), plus three times the body for the text
    decoded and the strings copied, times the bytes per character CPython stores that
    text with (:func:`text_width`: one character past Latin-1 makes it 2 or 4)."""
    objects = body.count(b"{")
    values = body.count(b",") + body.count(b":")
    return 3 * len(body) * text_width(body) + 400 * objects + 64 * body.count(b"[") + 60 * values


_UCS4_LEAD = re.compile(rb"[\xf0-\xff]")  # leads a UTF-8 character past U+FFFF
_UCS2_LEAD = re.compile(rb"[\xc4-\xef]")  # leads one past U+00FF (two or three bytes)


def text_width(body: bytes) -> int:
    """Bytes per character of ``body`` decoded as UTF-8, as CPython stores a ``str``:
    the widest character decides for the whole string (PEP 393). A regex scan, at C
    speed; stray bytes (invalid UTF-8) only overestimate."""
    if _UCS4_LEAD.search(body):
        return 4
    if _UCS2_LEAD.search(body):
        return 2
    return 1


def reserve_decoding(reservation: Reservation, base: int, body: bytes, content_type: str, descriptor: Any) -> None:
    """Grow ``reservation`` to ``base`` plus what decoding ``body`` may cost (one slice
    of records included). A protobuf body is first given the worst case its size
    allows, which needs no look at it; only when that does not fit now is its
    structure walked for a close estimate (about 5 ms per 100 KiB). Raises
    BodyTooLarge when even that is over the whole budget (413: it never fits), or
    OverBudget when it does not fit now (429)."""
    slice_cost = min(len(body), SLICE_BYTES) * SLICE_FACTOR
    if content_type == "application/json":
        need = json_cost(body) + slice_cost
    else:
        worst = len(body) * WORST_FACTOR + slice_cost
        if base + worst <= reservation.budget.total and reservation.try_grow_to(base + worst):
            return
        need = protobuf_cost(body, descriptor, stop_at=reservation.budget.total) + slice_cost
    total = reservation.budget.total
    if base + need > total:
        raise BodyTooLarge(
            f"decoding this body would take over {need:,} bytes of memory, more than the server's {total:,}-byte "
            "budget (Settings.server_max_inflight_bytes); send fewer records per request"
        )
    reservation.grow_to(base + need)


# ---------------------------------------------------------------- query responses
#
# A query response holds its records, their JSON text and its encoded bytes at once
# (three concurrent GET /api/logs?limit=100000 over 2 MB log bodies peaked at 1.57 GB).
# So a response carries at most ``Settings.server_max_response_bytes`` of records,
# reserved in the memory budget at RESPONSE_FACTOR times that before they are fetched.

RESPONSE_FACTOR = 3  # the records, the JSON text of the response, its encoded bytes
RESPONSE_PROBE = 16  # records fetched first to learn their size when more are asked for


def record_bytes(value: Any) -> int:
    """Estimated bytes of ``value`` (a record, dict, list or scalar) in a JSON
    response: its text and punctuation, walked iteratively (a shared resource dict
    counts once per record that carries it, as it is written out that often)."""
    import dataclasses

    total = 0
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        v = pop()
        if isinstance(v, str):
            total += len(v) + 3
        elif isinstance(v, dict):
            total += 2
            for k, x in v.items():
                total += len(k) + 4 if isinstance(k, str) else 24
                push(x)
        elif isinstance(v, (list, tuple)):
            total += 2 + len(v)
            stack.extend(v)
        elif isinstance(v, bytes):
            total += 2 * len(v) + 3
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            for f in dataclasses.fields(v):
                total += len(f.name) + 4
                push(getattr(v, f.name))
        else:
            total += 24  # numbers, booleans, None
    return total


def capped_records(
    fetch: Callable[[int], list[Any]], limit: int, cap: int, reservation: Reservation
) -> tuple[list[Any], str | None]:
    """The newest records ``fetch(n)`` returns, at most ``limit`` and at most ``cap``
    bytes of them (:func:`record_bytes`), with a message when the cap cut them short
    (else None). When more than ``RESPONSE_PROBE`` are asked for, that many are
    fetched first to learn their size, and then only as many as should fit, so the
    store never materialises ``limit`` huge records; the reservation grows to
    ``RESPONSE_FACTOR`` times the expected bytes before they are fetched (OverBudget:
    429 when it does not fit now)."""
    probe = min(limit, RESPONSE_PROBE)
    got = fetch(probe)
    asked = probe
    if len(got) == probe < limit:
        average = max(1, sum(record_bytes(r) for r in got) // max(1, len(got)))
        asked = min(limit, max(probe, cap // average + 1))
        if asked > probe:
            reservation.grow_to(min(asked * average, cap) * RESPONSE_FACTOR)
            got = fetch(asked)
    kept: list[Any] = []
    size = 0
    for r in got:
        size += record_bytes(r)
        if size > cap and kept:
            break
        kept.append(r)
    reservation.grow_to(min(size, cap) * RESPONSE_FACTOR)
    if len(kept) < len(got) or (asked < limit and len(got) == asked):
        return kept, (
            f"the response was cut short at {plural(len(kept), 'record')}: they reach the server's "
            f"{cap:,}-byte response limit (Settings.server_max_response_bytes); ask for a smaller "
            "limit or a narrower time range"
        )
    return kept, None
