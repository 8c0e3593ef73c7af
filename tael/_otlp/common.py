"""What every OTLP decoder shares: the limits, the errors, and :class:`Decoded`, which
keeps a request's accepted records as columns and hands them on a slice at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import compress
from typing import Any, Final, Generic, TypeVar

import numpy as np
import pyarrow as pa

from .._errors import TaelError
from .._limits import SLICE_BYTES

CONTENT_TYPES: Final = ("application/x-protobuf", "application/json")
PROTOBUF, JSON = CONTENT_TYPES

MAX_ERRORS: Final = 10  # rejection messages kept per request; the count covers them all
SLICE_RECORDS: Final = 16_384  # with a sink, records go out once this many are decoded, or once
# their estimated stored size reaches SLICE_BYTES (the memory budget's estimate relies on both)
MAX_NS: Final = (1 << 63) - 1  # tael's time range (int64 nanoseconds)
CHUNK: Final = 4_096  # records of one scope checked together (bounds what a huge scope holds at once)
_REENCODE_SLACK: Final = 16  # bytes a record's re-encoded size may exceed its bytes in the body
# (a negative enum sent as a 5-byte varint is re-encoded in 10)

T = TypeVar("T")


class OtlpError(TaelError):
    """The request body is not a valid OTLP export request (the server answers 400).

    Deliberately not a ValueError: an unsupported content type raises ValueError
    (415), and a server catching that must never mistake a bad body for it."""


class Reject(Exception):
    """One record cannot be stored; the message says why. Never escapes the decoders."""


class Columns:
    """Column lists of accepted records (spans, logs), until a slice is built from them."""

    __slots__ = ("cols", "n")

    def __init__(self, width: int) -> None:
        self.cols: list[list[Any]] = [[] for _ in range(width)]
        self.n = 0

    def extend(self, cols: Sequence[Sequence[Any]], a: int, b: int) -> None:
        whole = a == 0 and b == len(cols[0])
        for mine, col in zip(self.cols, cols, strict=True):
            mine.extend(col if whole else col[a:b])
        self.n += b - a

    def take(self) -> list[list[Any]]:
        cols, self.cols, self.n = self.cols, [[] for _ in self.cols], 0
        return cols


class Decoded(Generic[T]):
    """What one export request decoded to.

    ``batches`` hold the accepted records as column batches (``_block.BLOCK_SCHEMAS``),
    in request order, unless a ``sink`` took them; ``rejected`` counts the OTLP records
    (spans, log records, data points) dropped individually, and ``errors`` explains the
    first ``MAX_ERRORS`` of them, each naming the record by its JSON path
    (``resourceSpans[0].scopeSpans[1].spans[7]``).

    With a ``sink``, the records are handed to it a slice at a time, a batch of at most
    ``SLICE_RECORDS`` records whose estimated stored size is about ``SLICE_BYTES``: the
    server inserts each slice, so a large request never holds all its decoded records
    at once."""

    def __init__(
        self,
        build: Callable[[list[list[Any]]], pa.RecordBatch],
        records_of: Callable[[pa.RecordBatch], list[T]],
        sink: Callable[[pa.RecordBatch], Any] | None,
        width: int,
    ) -> None:
        self.sink = sink
        self.batches: list[pa.RecordBatch] = []
        self.rejected = 0
        self.errors: list[str] = []
        self.written = 0
        """Records handed to ``sink`` so far."""
        self.one_slice = False
        """Set by a decoder that knows the whole request fits in one slice (no weights needed)."""
        self._build = build
        self._records_of = records_of
        self._cols = Columns(width)
        self._rows: list[tuple[Any, ...]] = []
        self._pending = 0

    @property
    def accepted(self) -> int:
        """Records decoded as valid: handed to the sink, kept in ``batches`` or pending."""
        kept_rows: int = sum(b.num_rows for b in self.batches)
        return self.written + kept_rows + self._cols.n + len(self._rows)

    @property
    def records(self) -> list[T]:
        """The records of ``batches`` as ``tael.Span``, ``LogRecord`` or ``MetricPoint`` objects."""
        return [r for batch in self.batches for r in self._records_of(batch)]

    def add(self, cols: Sequence[Sequence[Any]], weights: Callable[[], Sequence[int]]) -> None:
        """Keep records given as columns (in the order the ``build`` function takes),
        handing a slice to the sink whenever the estimated stored size of those pending
        reaches ``SLICE_BYTES`` or their number ``SLICE_RECORDS``. ``weights``: each
        record's estimate (its OTLP message's size plus the resource and scope it carries
        a copy of), asked for only when the request may need more than one slice."""
        n = len(cols[0])
        if not n:
            return
        if self.sink is None or self.one_slice:
            self._cols.extend(cols, 0, n)
            return
        cum = np.cumsum(np.asarray(weights(), np.int64))
        a = base = 0
        while a < n:
            room = SLICE_RECORDS - self._cols.n
            # the first record after which the pending records weigh SLICE_BYTES or more
            full = int(np.searchsorted(cum, SLICE_BYTES - self._pending + base, side="left"))
            last = min(full, a + room - 1)
            if last >= n:
                self._cols.extend(cols, a, n)
                self._pending += int(cum[-1]) - base
                return
            self._cols.extend(cols, a, last + 1)
            base = int(cum[last])
            self.flush()
            a = last + 1

    def add_rows(self, rows: Iterable[tuple[Any, ...]], weight: int, more: int = 0) -> None:
        """Keep records given as rows, consumed one at a time (a generator is never held
        whole), slicing as ``add`` does; ``weight`` is the first one's estimate, ``more``
        each following one's (a summary quantile: its data point's attributes)."""
        for row in rows:
            self._rows.append(row)
            if self.sink is not None:
                self._pending += weight
                weight = more
                if self._pending >= SLICE_BYTES or len(self._rows) >= SLICE_RECORDS:
                    self.flush()

    def flush(self) -> None:
        """Build the pending records into a column batch and hand it to the sink (or keep
        it in ``batches``): the decoders call it at the end of a request."""
        if self._cols.n:
            batch = self._build(self._cols.take())
        elif self._rows:
            rows, self._rows = self._rows, []
            batch = self._build([list(col) for col in zip(*rows, strict=True)])
        else:
            return
        self._pending = 0
        if self.sink is None:
            self.batches.append(batch)
        else:
            self.sink(batch)
            self.written += batch.num_rows

    @property
    def error_message(self) -> str:
        """The errors as one line for ``partial_success.error_message`` ("" when none)."""
        if not self.rejected:
            return ""
        text = "; ".join(self.errors)
        more = self.rejected - len(self.errors)
        return f"{text}; and {more} more" if more > 0 else text

    def reject(self, where: str, problem: str) -> None:
        """Count one OTLP record dropped, explaining the first ``MAX_ERRORS`` by path."""
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"{where}: {problem}")

    @property
    def explaining(self) -> bool:
        """Whether a rejection now would still be explained (else counting it is enough)."""
        return len(self.errors) < MAX_ERRORS

    def _key(self) -> tuple[Any, ...]:
        return (self.records, self.rejected, self.errors, self.written)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Decoded) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Decoded(records={self.records!r}, rejected={self.rejected!r}, errors={self.errors!r}, "
            f"written={self.written!r})"
        )


def fits_one_slice(wire_bytes: int, scopes: Iterable[tuple[int, int]]) -> bool:
    """Whether a request of ``wire_bytes`` whose scopes hold (records, bytes each of their
    records carries) fits one slice whatever its records weigh: their sizes sum to at
    most the request's bytes, plus a little each for what re-encodes longer."""
    records = total = 0
    for n, carried in scopes:
        records += n
        total += n * (carried + _REENCODE_SLACK)
    return records < SLICE_RECORDS and wire_bytes + total < SLICE_BYTES


def _size(message: Any) -> int:
    return message.ByteSize()  # type: ignore[no-any-return]


def weights_of(records: Sequence[Any], keep: list[bool] | None, carried: int) -> Callable[[], list[int]]:
    """The slice weights of the kept ``records`` (messages): each one's protobuf size plus
    the ``carried`` bytes of the resource and scope it gets a copy of."""

    def weights() -> list[int]:
        kept = records if keep is None else list(compress(records, keep))
        return [size + carried for size in map(_size, kept)]

    return weights


def kept(cols: Sequence[Sequence[Any]], keep: list[bool] | None) -> list[Sequence[Any]]:
    """The columns' values of the rows ``keep`` marks (all without it)."""
    return list(cols) if keep is None else [list(compress(col, keep)) for col in cols]
