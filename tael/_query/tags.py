"""Jaeger tag matching: ``SpanFilter(tags=...)``, what ``/api/traces?tags=`` searches.

Jaeger's storage matches a tag ``key=value`` against every key-value a span shows,
compared as text: the span's tags, its process tags and its logs' fields (Jaeger's
memory store, ``flattenTags`` and ``findKeyValueMatch`` in
plugin/storage/memory/memory.go). tael shows a span to Jaeger clients the way the
OpenTelemetry Collector's Jaeger translator does (``tael._jaeger.jaeger_trace``), so
the key-values searched are:

- the span's attributes, its resource attributes (Jaeger's process tags, plus
  ``service.name``) and its events' attributes, with ``event`` for an event's name;
- ``span.kind``: "internal", "server", "client", "producer" or "consumer";
- ``otel.status_code``: "OK" or "ERROR" (and "UNSET" for a span with neither, which
  Jaeger does not show but may be asked for), ``error``: "true" for an error span,
  ``otel.status_description``: the status message;
- ``otel.scope.name``, ``otel.scope.version``: the instrumentation scope.

A value matches its text as Jaeger renders it (``AsString``): booleans "true" and
"false", integers in decimal, floats as Python writes them or as Go's ``%.10g`` does,
lists and maps as compact JSON. A payload attribute kept in the blob store (a digest
in the record) is found by full-text search, not by tags.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .._layout import (
    EVENT_ATTRS,
    EVENT_NAME,
    SPAN_ATTRS,
    SPAN_EVENTS,
    SPAN_KIND,
    SPAN_RESOURCE,
    SPAN_SCOPE_NAME,
    SPAN_SCOPE_VERSION,
    SPAN_STATUS,
    SPAN_STATUS_MESSAGE,
)
from .._models import SPAN_KINDS

STATUS_CODES = ("UNSET", "OK", "ERROR")
"""``otel.status_code`` of each span status (tael.SPAN_STATUSES order)."""
_ERROR = STATUS_CODES.index("ERROR")
_MISSING = object()


def check(tags: Any) -> tuple[tuple[str, str], ...]:
    """``tags`` (a dict of tag names and values, both non-empty text) as (key, value) pairs."""
    if not isinstance(tags, dict):
        raise ValueError(f"tags must be a dict of tag names and values, got {type(tags).__name__}")
    for key, value in tags.items():
        if type(key) is not str or not key:
            raise ValueError(f"tags: each tag name must be a non-empty str, got {key!r}")
        if type(value) is not str:
            raise ValueError(f"tags: the value of {key!r} must be a str (Jaeger compares tags as text), got {value!r}")
    return tuple(tags.items())


def text(value: Any) -> tuple[str, ...]:
    """The texts an attribute value matches (Jaeger's ``KeyValue.AsString``); none for a blob digest."""
    if isinstance(value, bool):
        return ("true" if value else "false",)
    if isinstance(value, (int, str)):
        return (str(value),)
    if isinstance(value, float):
        return (str(value), format(value, ".10g"))
    if isinstance(value, bytes):
        return ()
    return (json.dumps(value, separators=(",", ":")),)


def _synthetic(f: list[Any], key: str) -> str | None:
    """The value of a tag tael adds to a span (as the Jaeger translator does), or None."""
    if key == "span.kind":
        return SPAN_KINDS[f[SPAN_KIND]]
    if key == "otel.status_code":
        return STATUS_CODES[f[SPAN_STATUS]]
    if key == "error":
        return "true" if f[SPAN_STATUS] == _ERROR else None
    if key == "otel.status_description":
        return f[SPAN_STATUS_MESSAGE] or None
    if key == "otel.scope.name":
        return f[SPAN_SCOPE_NAME] or None
    if key == "otel.scope.version":
        return f[SPAN_SCOPE_VERSION] or None
    return None


SYNTHETIC = frozenset(
    {"span.kind", "otel.status_code", "error", "otel.status_description", "otel.scope.name", "otel.scope.version"}
)
"""The tags tael adds to a span's attributes when it shows a span as Jaeger does."""


def has(f: list[Any], key: str, want: str) -> bool:
    """Whether span record ``f`` shows the tag ``key`` with the text ``want``."""
    if key in SYNTHETIC and _synthetic(f, key) == want:
        return True
    for attrs in (f[SPAN_ATTRS], f[SPAN_RESOURCE]):
        got = attrs.get(key, _MISSING)
        if got is not _MISSING and want in text(got):
            return True
    for ev in f[SPAN_EVENTS]:
        if key == "event" and ev[EVENT_NAME] == want:
            return True
        got = ev[EVENT_ATTRS].get(key, _MISSING)
        if got is not _MISSING and want in text(got):
            return True
    return False


def matcher(want: tuple[tuple[str, str], ...]) -> Callable[[list[Any]], bool]:
    """The row predicate of a tag filter: every tag shown with its value."""
    if len(want) == 1:
        ((key, value),) = want
        return lambda f: has(f, key, value)
    return lambda f: all(has(f, k, v) for k, v in want)
