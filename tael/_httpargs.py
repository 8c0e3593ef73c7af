"""Checking the query parameters of the HTTP query API (``tael serve``'s Jaeger routes,
``/api/search/traces`` and ``/api/logs``).

Every parameter is checked here, before the store sees it, so that any value a client
sends gets a 400 naming the parameter, never an OverflowError or a 500 from below:
each check raises ValueError with a message the server answers as is.
"""

from __future__ import annotations

from starlette.requests import Request

from ._codec import MAX_NS

US = 1_000
"""Jaeger times are in microseconds; tael's are nanoseconds."""
MS = 1_000_000
"""Jaeger's dependency times (``endTs``, ``lookback``) are in milliseconds."""
MAX_LIMIT = 100_000
"""Store.query_* refuse more."""
MAX_NAME_BYTES = 1024
"""Longer service or span names than any store keeps (LMDB keys are under 512 bytes)."""


def params(r: Request, known: tuple[str, ...]) -> dict[str, str]:
    """The query parameters (the last of repeated ones, as Starlette does), each
    checked to be text without NUL characters."""
    out = dict(r.query_params)
    for name, value in out.items():
        if name in known and "\x00" in value:
            raise ValueError(f"{name} must not contain NUL characters")
    return out


def integer(value: str, name: str) -> int:
    text = value.strip()
    if not text or len(text) > 40 or not (text.isdigit() or (text[0] in "+-" and text[1:].isdigit())):
        raise ValueError(f"{name} must be an integer, got {value[:60]!r}")
    return int(text)


def limit(value: str | None, name: str, default: int, maximum: int) -> int:
    if value is None or value == "":
        return default
    n = integer(value, name)
    if not 1 <= n <= maximum:
        raise ValueError(f"{name} must be between 1 and {maximum:,}, got {n:,}")
    return n


def time_bound(value: str | None, name: str, unit_ns: int) -> int | None:
    """A time bound in ``unit_ns`` nanoseconds, converted to nanoseconds; it must fall
    in tael's time range, 0 to 2**63-1 ns."""
    if value is None or value == "":
        return None
    n = integer(value, name)
    top = MAX_NS // unit_ns
    if not 0 <= n <= top:
        unit = {US: "microseconds", MS: "milliseconds"}.get(unit_ns, "nanoseconds")
        raise ValueError(f"{name} must be between 0 and {top:,} ({unit} since the Unix epoch), got {n:,}")
    return n * unit_ns


def name(value: str, param: str) -> str:
    if not value:
        raise ValueError(f"{param} must not be empty")
    if "\x00" in value:
        raise ValueError(f"{param} must not contain NUL characters")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise ValueError(f"{param} is longer than {MAX_NAME_BYTES:,} bytes")
    return value


def opt_name(value: str | None, param: str) -> str | None:
    return name(value, param) if value else None


_HEX = frozenset("0123456789abcdefABCDEF")


def trace_id(value: str, param: str, *, pad: bool) -> str:
    """A trace id: 32 hex digits (``pad``: 1 to 32, left-padded with zeros, as Jaeger allows)."""
    if not value or not set(value) <= _HEX or len(value) > 32 or (not pad and len(value) != 32):
        size = "1 to 32" if pad else "32"
        raise ValueError(f"{param} must be {size} hex digits, got {value[:60]!r}")
    return value.lower().rjust(32, "0")
