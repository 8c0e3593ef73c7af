"""Query filters: what a query asks for, checked once and translated in one place.

A filter object (:class:`SpanFilter`, :class:`LogFilter`, :class:`MetricFilter`)
holds a query's conditions as the caller gave them; constructing one checks them,
with the ValueError messages the Store's query methods always raised (the server
answers them as 400s). :meth:`~SpanFilter.scan` translates a filter, once per
query, into a :class:`Scan`: the row predicate both tiers run over decoded
records, the Arrow expression the cold tier filters its tables with, file and
row-group pruning, and the full-text index query. Nothing else in tael builds
either kind of filter from a query's arguments (pyiceberg's expression visitors,
``expression_to_pyarrow`` and the manifest evaluator, are the model).

This module sits below both tiers (they read a :class:`Scan`), so it imports
neither; cold files are seen through :class:`FileMeta`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, TypeVar, cast

import pyarrow.compute as pc

from .._layout import (
    LOG_ATTRS,
    LOG_RESOURCE,
    LOG_SERVICE,
    LOG_SEVERITY,
    LOG_TRACE,
    METRIC_ATTRS,
    METRIC_NAME,
    METRIC_SERVICE,
    SERIES_ATTRS,
    SERIES_SERVICE,
    SPAN_ATTRS,
    SPAN_END,
    SPAN_KIND,
    SPAN_NAME,
    SPAN_RESOURCE,
    SPAN_SERVICE,
    SPAN_START,
    SPAN_STATUS,
)
from .._models import SPAN_KINDS, SPAN_STATUSES
from .._search import DOC_LOG, DOC_SPAN, parse_text
from . import args, tags

Predicate = Callable[[list[Any]], bool]
"""A row predicate over one decoded record (or series descriptor)."""


def time_exprs(column: str, lo: int | None, hi: int | None) -> list[pc.Expression]:
    """Arrow conditions for ``lo <= column < hi`` (either end open when None)."""
    out = []
    if lo is not None:
        out.append(pc.field(column) >= lo)
    if hi is not None:
        out.append(pc.field(column) < hi)
    return out


def and_all(exprs: list[pc.Expression]) -> pc.Expression | None:
    """The conjunction of ``exprs``; None for none (no filter)."""
    if not exprs:
        return None
    out = exprs[0]
    for e in exprs[1:]:
        out = out & e
    return out


def trace_expr(trace: bytes) -> pc.Expression:
    """Rows of one trace in a cold spans or logs table."""
    return pc.field("trace_id") == trace.hex()


class FileMeta(Protocol):
    """What pruning reads of a cold file's manifest entry (``tael._cold.ColdFile``)."""

    @property
    def dataset(self) -> str: ...
    @property
    def min_ns(self) -> int: ...
    @property
    def max_ns(self) -> int: ...
    @property
    def services(self) -> Container[str]: ...
    @property
    def names(self) -> Container[str]: ...


@dataclass(frozen=True, slots=True)
class TextQuery:
    """A ``text=`` filter as a full-text index query (``tael._search.TextIndex.search``):
    the parsed terms, and the conditions the index itself can apply."""

    doc: int  # DOC_SPAN or DOC_LOG
    terms: list[list[str]]
    service: str | None = None
    trace: str | None = None  # hex
    level: int | None = None  # span status code
    min_level: int | None = None  # log severity


ArrowBuilder = Callable[[], "pc.Expression | None"]
"""Builds a scan's Arrow expression (None: no condition)."""

_UNBUILT: Any = object()


@dataclass(slots=True)
class Scan:
    """One filter, translated: what each tier needs to read a signal's matching records.
    Read-only by convention (not frozen: one is made per query, and a frozen
    dataclass's ``__init__`` costs a call per field).

    ``keep`` is the row predicate (a closure built once per query: it runs once per
    record on the hot paths); ``expr`` the Arrow expression over cold tables (time
    bounds included), built by ``arrow`` when the cold tier first asks for it (a
    read the hot tier answers alone never pays for it); ``keeps_file`` and
    ``keeps_row_group`` the pruning. The tiers apply ``keep`` to every record they
    return, so ``expr`` and the pruning only save work."""

    signal: str  # "spans", "logs" or "metrics": the hot table and the cold dataset
    time_column: str  # the cold column records are timed by (row-group statistics)
    lo: int | None  # lo <= time < hi
    hi: int | None
    keep: Predicate
    arrow: ArrowBuilder
    service: str | None = None  # prunes cold files by ColdFile.services
    metric: str | None = None  # prunes cold files by ColdFile.names (metric name)
    trace: bytes | None = None  # logs of one trace: read through the tiers' trace indexes
    series: tuple[bytes, ...] | None = None  # metrics: points of these series only (see with_series)
    series_keep: Predicate | None = None  # metrics: the predicate over series descriptors (SERIES_*)
    text: TextQuery | None = None
    empty: bool = False  # nothing can match (the range ends before time 0)
    # The conditions of ``expr`` again (all but the trace, read through trace indexes),
    # in the form the hot tier evaluates on a block's columns and prunes blocks by with
    # their metadata (tael/_hotread.py): string columns equal to a value; spans'
    # inclusive bounds on end_ns - start_ns; logs' lowest severity_number.
    equal: tuple[tuple[str, str], ...] = ()
    min_duration_ns: float | None = None
    max_duration_ns: float | None = None
    min_severity: int | None = None
    built: Any = field(default=_UNBUILT, repr=False, compare=False)  # what ``arrow`` returned

    @property
    def expr(self) -> pc.Expression | None:
        """The Arrow expression over the signal's cold tables (None: every row)."""
        if self.built is _UNBUILT:
            self.built = self.arrow()
        return cast("pc.Expression | None", self.built)

    def keeps_file(self, f: FileMeta) -> bool:
        """Whether cold file ``f`` may hold matching records (file-level pruning)."""
        return (
            f.dataset == self.signal
            and (self.lo is None or f.max_ns >= self.lo)
            and (self.hi is None or f.min_ns < self.hi)
            and (self.service is None or self.service in f.services)
            and (self.metric is None or self.metric in f.names)
        )

    def keeps_row_group(self, t_min: int, t_max: int) -> bool:
        """Whether a row group whose times span ``[t_min, t_max]`` may hold matching records."""
        return (self.lo is None or t_max >= self.lo) and (self.hi is None or t_min < self.hi)

    def with_series(self, series: Sequence[bytes]) -> Scan:
        """This scan narrowed to the given metric series (ids from the hot tier's series
        catalog, which also describes cold points)."""
        base = self.arrow
        hexes = [sid.hex() for sid in series]

        def arrow() -> pc.Expression | None:
            built = base()
            by_series = pc.field("series_id").isin(hexes)
            return by_series if built is None else built & by_series

        return dataclasses.replace(self, series=tuple(series), arrow=arrow, built=_UNBUILT)


def _attrs(attributes: Any) -> list[tuple[str, Any]] | None:
    """The attribute filter as (key, value) pairs; None for none (None or empty)."""
    return args.attr_filter(attributes) if attributes else None


def _set(obj: object, **values: Any) -> None:
    """Set a frozen filter's derived fields (at construction only)."""
    for name, value in values.items():
        object.__setattr__(obj, name, value)


@dataclass(frozen=True, slots=True)
class SpanFilter:
    """Which spans a query wants: every given condition must hold (``None``: any).

    ``service``, ``name``: equal. ``status``: "unset", "ok" or "error"; ``kind``:
    "internal", "server", "client", "producer" or "consumer" (as on
    :class:`tael.Span`). ``min_duration_ms``/``max_duration_ms``:
    inclusive bounds on ``end_ns - start_ns``. ``attributes`` matches spans whose
    attributes or resource attributes hold every given key with an equal value of
    the same type (1, 1.0 and True differ). ``start <= start_ns < end`` (int ns or
    aware datetimes). ``text`` matches spans whose payload text
    (``Settings.payload_attributes`` on the span or its events) holds every word,
    and every "quoted phrase" as a phrase, case-insensitively, through the
    full-text index. ``tags`` matches spans that show every given tag with the
    given text as Jaeger's query API shows a span (``/api/traces?tags=``): span,
    resource and event attributes compared as text, and ``error``,
    ``otel.status_code``, ``otel.status_description``, ``span.kind`` (see
    tael/_query/tags.py). Bad values raise ValueError (TypeError for a time bound
    of the wrong type) when the filter is made.
    """

    service: str | None = None
    name: str | None = None
    status: str | None = None
    kind: str | None = None
    min_duration_ms: float | None = None
    max_duration_ms: float | None = None
    attributes: dict[str, Any] | None = None
    start: Any = None
    end: Any = None
    text: str | None = None
    tags: dict[str, str] | None = None
    # derived at construction (checked, normalised): not arguments, not compared
    _lo: int | None = field(init=False, repr=False, compare=False, default=None)
    _hi: int | None = field(init=False, repr=False, compare=False, default=None)
    _terms: list[list[str]] | None = field(init=False, repr=False, compare=False, default=None)
    _status: int | None = field(init=False, repr=False, compare=False, default=None)
    _kind: int | None = field(init=False, repr=False, compare=False, default=None)
    _min_ns: float | None = field(init=False, repr=False, compare=False, default=None)
    _max_ns: float | None = field(init=False, repr=False, compare=False, default=None)
    _want: list[tuple[str, Any]] | None = field(init=False, repr=False, compare=False, default=None)
    _tags: tuple[tuple[str, str], ...] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        lo, hi = args.time_range(self.start, self.end)
        _set(
            self,
            _lo=lo,
            _hi=hi,
            _terms=parse_text(self.text) if self.text is not None else None,
            _status=args.enum_code(self.status, SPAN_STATUSES, "status") if self.status is not None else None,
            _kind=args.enum_code(self.kind, SPAN_KINDS, "kind") if self.kind is not None else None,
            _min_ns=args.duration_ns(self.min_duration_ms, "min_duration_ms")
            if self.min_duration_ms is not None
            else None,
            _max_ns=args.duration_ns(self.max_duration_ms, "max_duration_ms")
            if self.max_duration_ms is not None
            else None,
            _want=_attrs(self.attributes),
            _tags=tags.check(self.tags) if self.tags else None,
        )

    def scan(self) -> Scan:
        """This filter translated for the tiers and the index."""
        service, name, status, kind = self.service, self.name, self._status, self._kind
        lo_ns, hi_ns, want, lo, hi = self._min_ns, self._max_ns, self._want, self._lo, self._hi
        checks: list[Predicate] = []
        if service is not None:
            checks.append(lambda f: f[SPAN_SERVICE] == service)
        if name is not None:
            checks.append(lambda f: f[SPAN_NAME] == name)
        if status is not None:
            checks.append(lambda f: f[SPAN_STATUS] == status)
        if kind is not None:
            checks.append(lambda f: f[SPAN_KIND] == kind)
        if lo_ns is not None:
            checks.append(lambda f: f[SPAN_END] - f[SPAN_START] >= lo_ns)
        if hi_ns is not None:
            checks.append(lambda f: f[SPAN_END] - f[SPAN_START] <= hi_ns)
        if want is not None:
            checks.append(lambda f: args.attrs_match(want, f[SPAN_ATTRS], f[SPAN_RESOURCE]))
        if self._tags is not None:  # attributes too, so not in the Arrow expression: ``keep`` checks them
            checks.append(tags.matcher(self._tags))

        def arrow() -> pc.Expression | None:  # the same conditions but attributes (maps: ``keep`` checks them)
            exprs: list[pc.Expression] = []
            if service is not None:
                exprs.append(pc.field("service") == service)
            if name is not None:
                exprs.append(pc.field("name") == name)
            if status is not None:
                exprs.append(pc.field("status") == self.status)
            if kind is not None:
                exprs.append(pc.field("kind") == self.kind)
            if lo_ns is not None:
                exprs.append(pc.field("duration_ns") >= math.ceil(lo_ns))
            if hi_ns is not None:
                exprs.append(pc.field("duration_ns") <= math.floor(hi_ns))
            return and_all(exprs + time_exprs("start_ns", lo, hi))

        text = None
        if self._terms is not None:
            text = TextQuery(DOC_SPAN, self._terms, service=service, level=status)
        given = (
            ("service", service),
            ("name", name),
            ("status", SPAN_STATUSES[status] if status is not None else None),
            ("kind", SPAN_KINDS[kind] if kind is not None else None),
        )
        return Scan(
            "spans",
            "start_ns",
            lo,
            hi,
            args.all_of(checks),
            arrow,
            service=service,
            text=text,
            empty=hi is not None and hi <= 0,
            equal=tuple((column, value) for column, value in given if value is not None),
            min_duration_ns=lo_ns,
            max_duration_ns=hi_ns,
        )


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which log records a query wants: every given condition must hold (``None``: any).

    ``service``: equal. ``min_severity``: the lowest ``severity_number``, an int in
    0..24 or an OpenTelemetry severity name (``trace``, ``debug``, ``info``, ``warn``
    or ``warning``, ``error``, ``fatal``; any case), which stands for the lowest
    number of its range and is kept as that number. ``trace_id``: 32 hex characters. ``attributes``: as in
    :class:`SpanFilter`, over attributes and resource attributes. ``start <=
    time_ns < end``. ``text`` matches bodies holding every word and "quoted
    phrase" (as in :class:`SpanFilter`), through the full-text index.
    """

    service: str | None = None
    min_severity: int | str | None = None
    trace_id: str | None = None
    attributes: dict[str, Any] | None = None
    start: Any = None
    end: Any = None
    text: str | None = None
    # derived at construction (checked, normalised): not arguments, not compared
    _lo: int | None = field(init=False, repr=False, compare=False, default=None)
    _hi: int | None = field(init=False, repr=False, compare=False, default=None)
    _terms: list[list[str]] | None = field(init=False, repr=False, compare=False, default=None)
    _want: list[tuple[str, Any]] | None = field(init=False, repr=False, compare=False, default=None)
    _trace: bytes | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        lo, hi = args.time_range(self.start, self.end)
        terms = parse_text(self.text) if self.text is not None else None
        sev = args.severity(self.min_severity, "min_severity") if self.min_severity is not None else None
        want = _attrs(self.attributes)
        trace = args.query_id(self.trace_id, 16, "trace_id") if self.trace_id is not None else None
        # a name ("error") is kept as the number it stands for: equal filters compare equal
        _set(self, min_severity=sev, _lo=lo, _hi=hi, _terms=terms, _want=want, _trace=trace)

    def scan(self) -> Scan:
        """This filter translated for the tiers and the index."""
        sev = cast("int | None", self.min_severity)  # a number since construction
        service, want, trace, lo, hi = self.service, self._want, self._trace, self._lo, self._hi
        checks: list[Predicate] = []
        if service is not None:
            checks.append(lambda f: f[LOG_SERVICE] == service)
        if sev is not None:
            checks.append(lambda f: f[LOG_SEVERITY] >= sev)
        if want is not None:
            checks.append(lambda f: args.attrs_match(want, f[LOG_ATTRS], f[LOG_RESOURCE]))
        if trace is not None:
            checks.append(lambda f: f[LOG_TRACE] == trace)

        def arrow() -> pc.Expression | None:  # the same conditions but attributes (maps: ``keep`` checks them)
            exprs: list[pc.Expression] = []
            if service is not None:
                exprs.append(pc.field("service") == service)
            if sev is not None:
                exprs.append(pc.field("severity_number") >= sev)
            if trace is not None:
                exprs.append(trace_expr(trace))
            return and_all(exprs + time_exprs("time_ns", lo, hi))

        text = None
        if self._terms is not None:
            hexed = trace.hex() if trace is not None else None
            text = TextQuery(DOC_LOG, self._terms, service=service, trace=hexed, min_level=sev)
        return Scan(
            "logs",
            "time_ns",
            lo,
            hi,
            args.all_of(checks),
            arrow,
            service=service,
            trace=trace,
            text=text,
            empty=hi is not None and hi <= 0,
            equal=(("service", service),) if service is not None else (),
            min_severity=sev,
        )


@dataclass(frozen=True, slots=True)
class MetricFilter:
    """Which metric points a query wants: every given condition must hold (``None``: any).

    ``name``, ``service``: equal (with ``name`` only that name's series are read,
    through the series index). ``attributes``: as in :class:`SpanFilter`, over the
    point's attributes. ``start <= time_ns < end``.
    """

    name: str | None = None
    service: str | None = None
    attributes: dict[str, Any] | None = None
    start: Any = None
    end: Any = None
    # derived at construction (checked, normalised): not arguments, not compared
    _lo: int | None = field(init=False, repr=False, compare=False, default=None)
    _hi: int | None = field(init=False, repr=False, compare=False, default=None)
    _want: list[tuple[str, Any]] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        lo, hi = args.time_range(self.start, self.end)
        _set(self, _lo=lo, _hi=hi, _want=_attrs(self.attributes))

    def scan(self) -> Scan:
        """This filter translated for the tiers (the series predicate included)."""
        name, service, want, lo, hi = self.name, self.service, self._want, self._lo, self._hi
        checks: list[Predicate] = []
        series_checks: list[Predicate] = []
        if name is not None:
            checks.append(lambda f: f[METRIC_NAME] == name)
        if service is not None:
            checks.append(lambda f: f[METRIC_SERVICE] == service)
            series_checks.append(lambda d: d[SERIES_SERVICE] == service)
        if want is not None:
            checks.append(lambda f: args.attrs_match(want, f[METRIC_ATTRS], {}))
            series_checks.append(lambda d: args.attrs_match(want, d[SERIES_ATTRS], {}))

        def arrow() -> pc.Expression | None:  # the same conditions but attributes (maps: ``keep`` checks them)
            exprs = time_exprs("time_ns", lo, hi)
            if name is not None:
                exprs.append(pc.field("name") == name)
            if service is not None:
                exprs.append(pc.field("service") == service)
            return and_all(exprs)

        return Scan(
            "metrics",
            "time_ns",
            lo,
            hi,
            args.all_of(checks),
            arrow,
            service=service,
            metric=name,
            series_keep=args.all_of(series_checks),
            empty=hi is not None and hi <= 0,
            equal=tuple((col, value) for col, value in (("name", name), ("service", service)) if value is not None),
        )


F = TypeVar("F", SpanFilter, LogFilter, MetricFilter)


class SpanArgs(TypedDict, total=False):
    """The keyword filters of ``Store.query_traces`` and ``trace_summaries``: :class:`SpanFilter`'s fields."""

    service: str | None
    name: str | None
    status: str | None
    kind: str | None
    min_duration_ms: float | None
    max_duration_ms: float | None
    attributes: dict[str, Any] | None
    start: Any
    end: Any
    text: str | None
    tags: dict[str, str] | None


class LogArgs(TypedDict, total=False):
    """The keyword filters of ``Store.query_logs``: :class:`LogFilter`'s fields."""

    service: str | None
    min_severity: int | str | None
    trace_id: str | None
    attributes: dict[str, Any] | None
    start: Any
    end: Any
    text: str | None


class MetricArgs(TypedDict, total=False):
    """The keyword filters of ``Store.query_metrics``: :class:`MetricFilter`'s fields."""

    name: str | None
    service: str | None
    attributes: dict[str, Any] | None
    start: Any
    end: Any


def chosen(cls: type[F], where: object, limit: Any, order: Any, /, **keywords: Any) -> F:
    """The filter a Store query method was given: the filter object ``where``, or else
    its keyword filters (giving both is a ValueError). A keyword that is no field of
    the filter, or a ``where`` that is no filter, is a TypeError, as for any call with
    a wrong argument. Keyword filters are checked in the order the query methods
    always checked them: ``limit`` and the time range, then ``order`` (None: the
    query has none), then the rest."""
    unknown = [k for k in keywords if k not in _FIELDS[cls]]
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r} (the filters are {', '.join(_FIELDS[cls])})")
    if where is not None:
        if not isinstance(where, cls):
            raise TypeError(f"the filter must be a {cls.__name__}, got {type(where).__name__}")
        given = [k for k, v in keywords.items() if v is not None]
        if given:
            raise ValueError(f"give either a {cls.__name__} or keyword filters, not both (got {', '.join(given)})")
        return where
    args.check_range(keywords.get("start"), keywords.get("end"), limit)
    if order is not None:
        args.newest_first(order)
    return cls(**keywords)


_FIELDS: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls) if f.init) for cls in (SpanFilter, LogFilter, MetricFilter)
}
"""Each filter's keyword filters: its init fields."""
