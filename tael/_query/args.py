"""Checking a query's arguments, and the attribute equality every tier filters with.

Each check raises ValueError naming the argument and what it got: the messages are
part of the API (the server answers them as 400s).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from .. import _codec
from .._codec import to_ns

MAX_LIMIT = 100_000
"""The most records one query returns."""


def check_range(start: Any, end: Any, limit: Any) -> tuple[int | None, int | None, int]:
    """``limit`` checked, then the time range (``time_range``)."""
    if type(limit) is not int or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    if limit > MAX_LIMIT:
        raise ValueError(f"limit must be at most {MAX_LIMIT:,}, got {limit:,}")
    lo, hi = time_range(start, end)
    return lo, hi, limit


def time_range(start: Any, end: Any) -> tuple[int | None, int | None]:
    """``start``/``end`` (None, int ns or aware datetimes) as ``[lo, hi)`` in ns, None for an open end."""
    lo, hi = to_ns(start, "start"), to_ns(end, "end")
    # Records are timed in [0, MAX_NS]: a bound outside that range is an open end, or
    # (a start past it) an empty range, so no bound below is outside int64.
    if lo is not None and lo <= 0:
        lo = None
    if hi is not None and hi > _codec.MAX_NS:
        hi = None
    if lo is not None and lo > _codec.MAX_NS:
        lo = hi = 0
    return lo, hi


def query_id(value: Any, nbytes: int, name: str) -> bytes:
    if type(value) is not str or len(value) != nbytes * 2:
        raise ValueError(f"{name} must be a {nbytes * 2}-character hex string, got {value!r}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{name} is not hex: {value!r}") from None
    if len(raw) != nbytes:
        raise ValueError(f"{name} is not hex: {value!r}")
    return raw


def enum_code(value: Any, choices: tuple[str, ...], name: str) -> int:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return choices.index(value)


def duration_ns(ms: Any, name: str) -> float:
    if isinstance(ms, bool) or not isinstance(ms, (int, float)):
        raise ValueError(f"{name} must be a number of milliseconds, got {ms!r}")
    return ms * 1e6


def attr_filter(attributes: Any) -> list[tuple[str, Any]]:
    if not isinstance(attributes, dict):
        raise ValueError(f"attributes must be a dict, got {type(attributes).__name__}")
    return list(attributes.items())


def same(a: Any, b: Any) -> bool:
    """Equality that also requires equal types (1, 1.0 and True are three values here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    return bool(a == b)


_MISSING = object()


def attrs_match(want: list[tuple[str, Any]], attrs: dict[str, Any], resource: dict[str, Any]) -> bool:
    for key, value in want:
        got = attrs.get(key, _MISSING)
        if got is _MISSING or not same(got, value):
            got = resource.get(key, _MISSING)
            if got is _MISSING or not same(got, value):
                return False
    return True


def all_of(checks: list[Callable[[list[Any]], bool]]) -> Callable[[list[Any]], bool]:
    if not checks:
        return lambda f: True
    if len(checks) == 1:
        return checks[0]
    return lambda f: all(c(f) for c in checks)


HOUR_NS = 3_600_000_000_000
FIVE_MIN_NS = 300_000_000_000
STEPS = {"1m": 60_000_000_000, "5m": FIVE_MIN_NS, "1h": HOUR_NS, "1d": 24 * HOUR_NS}


def step_ns(step: Any) -> int:
    if isinstance(step, str):
        if step not in STEPS:
            raise ValueError(f"step must be one of {tuple(STEPS)} or int nanoseconds, got {step!r}")
        return STEPS[step]
    if type(step) is not int or step <= 0:
        raise ValueError(f"step must be one of {tuple(STEPS)} or a positive int of nanoseconds, got {step!r}")
    return step


def window(length_s: Any, now: Any, name: str) -> tuple[int, int]:
    """``[now - length_s, now)`` in ns; ``now`` defaults to the current time."""
    if isinstance(length_s, bool) or not isinstance(length_s, (int, float)) or not length_s > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {length_s!r}")
    hi = to_ns(now, "now") if now is not None else time.time_ns()
    assert hi is not None
    return hi - int(length_s * 1e9), hi


def opt_service(service: object) -> str | None:
    if service is not None and (type(service) is not str or not service):
        raise ValueError(f"service must be a non-empty str, got {service!r}")
    return service


def newest_first(order: object) -> bool:
    """True for newest first."""
    if order not in ("desc", "asc"):
        raise ValueError(f'order must be "desc" or "asc", got {order!r}')
    return order == "desc"


SEVERITY_NAMES = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "warning": 13, "error": 17, "fatal": 21}
"""OpenTelemetry severity names and the lowest severity number of each one's range
(TRACE is 1-4, DEBUG 5-8, INFO 9-12, WARN 13-16, ERROR 17-20, FATAL 21-24)."""


def severity(value: object, name: str) -> int:
    """A lowest severity as the int 0..24 it stands for: an int, its digits as text, or an
    OpenTelemetry severity name (any case, ``warning`` for ``warn``), which stands for the
    lowest number of its range. The one parser the API, the HTTP server and the CLI share;
    its ValueError names ``name`` and the accepted names."""
    if type(value) is int:
        n = value
    elif isinstance(value, str) and value.strip().lower() in SEVERITY_NAMES:
        return SEVERITY_NAMES[value.strip().lower()]
    elif isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,40}", value.strip()):
        n = int(value.strip())
    else:
        shown = value[:60] if isinstance(value, str) else value
        raise ValueError(
            f"{name} must be a severity number 0..24 or a name ({', '.join(SEVERITY_NAMES)}), got {shown!r}"
        )
    if not 0 <= n <= 24:
        raise ValueError(f"{name} must be a severity number 0..24 or a name ({', '.join(SEVERITY_NAMES)}), got {n:,}")
    return n
