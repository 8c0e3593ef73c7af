"""Column-wise validation of a pyarrow Table or RecordBatch given to ``Store.insert_*``.

:func:`check_table` turns a table in one of the public schemas (``tael.SPAN_SCHEMA``,
``LOG_SCHEMA``, ``METRIC_SCHEMA``; docs/format/tables.md) into a column batch in
``_block.BLOCK_SCHEMAS``, or refuses it. First the schema: every column is known, the
required ones are there, each has a type that casts to its own (a missing optional
column takes its default). Then every rule the model-object validation enforces
(tael/_codec.py), column-wise with pyarrow.compute; JSON text is parsed once per
distinct value. The error names the first bad row and, in it, the first bad column in
schema order: ``ValidationError("row 3: column 'end_ns' ...", index=3, field="end_ns")``.
A schema error names the column (``index`` None). The payload flags and metric series
ids the block schema carries are computed column-wise too.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from itertools import chain
from typing import Any, Final

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .. import _block, _codec
from .._blobs import Payloads
from .._errors import ValidationError
from .._keys import MAX_KEY_BYTES, MAX_METRIC_NAME_BYTES, MAX_SERVICE_BYTES
from .._models import METRIC_KINDS, SPAN_KINDS, SPAN_STATUSES, TEMPORALITIES
from .._payloadkeys import NO_KEYS
from .common import (
    MAX_NS,
    METRIC_KIND_NAMES,
    SPAN_KIND_NAMES,
    SPAN_STATUS_NAMES,
    TEMPORALITY_NAMES,
    series_ids,
    utf8_ok,
    zeros,
)

REQUIRED: Final = {
    "spans": ("trace_id", "span_id", "name", "service", "start_ns", "end_ns"),
    "logs": ("time_ns", "body", "service"),
    "metrics": ("time_ns", "name", "service", "value"),
}
"""The columns a table must have; every other column of the schema is optional."""

DEFAULTS: Final[dict[str, dict[str, Any]]] = {
    "spans": {
        "parent_span_id": None,
        "kind": "internal",
        "status": "unset",
        "status_message": "",
        "attributes": "{}",
        "resource": "{}",
        "scope_name": "",
        "scope_version": "",
        "events": "[]",
        "links": "[]",
        "trace_state": "",
        "flags": 0,
    },
    "logs": {
        "severity_number": 0,
        "severity_text": "",
        "trace_id": None,
        "span_id": None,
        "attributes": "{}",
        "resource": "{}",
        "observed_ns": None,
        "scope_name": "",
    },
    "metrics": {
        "kind": "gauge",
        "unit": "",
        "attributes": "{}",
        "monotonic": False,
        "temporality": "cumulative",
        "start_ns": None,
        "count": None,
        "sum": None,
        "min": None,
        "max": None,
        "bucket_counts": None,
        "explicit_bounds": None,
    },
}
"""What a missing optional column, or a null in one, stands for: the model objects'
defaults (None stays null: the column is nullable)."""

_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1
_orjson_loads = orjson.loads
_json_loads = json.JSONDecoder().decode  # NaN and the infinities, as _block.loads reads them
_MAX_DEPTH = 32


class _Problems:
    """The bad rows found so far: the first row wins, then the first column in schema order.
    A message is made only for the one reported."""

    def __init__(self, order: list[str]) -> None:
        self._order = {name: k for k, name in enumerate(order)}
        self._first: tuple[int, int, str, Callable[[], str]] | None = None

    def add(self, row: int, column: str, message: Callable[[], str]) -> None:
        key = (row, self._order[column])
        if self._first is None or key < self._first[:2]:
            self._first = (row, self._order[column], column, message)

    def where(self, column: str, bad: pa.Array | None, message: Callable[[int], str]) -> None:
        """Record the first row of ``bad`` (a boolean array; null is not bad)."""
        if bad is None:
            return
        if bad.null_count:
            bad = bad.fill_null(False)
        if not pc.any(bad).as_py():
            return
        row = pc.index(bad, True).as_py()
        self.add(row, column, lambda: message(row))

    def raise_first(self) -> None:
        if self._first is not None:
            row, _, column, message = self._first
            raise ValidationError(f"row {row}: column {column!r} {message()}", index=row, field=column)


def _schema_error(column: str, problem: str) -> ValidationError:
    return ValidationError(f"column {column!r} {problem} (docs/format/tables.md)", field=column)


# ---------------------------------------------------------------- casts


def _plain(arr: pa.Array) -> pa.Array:
    """``arr`` without extension or dictionary encoding."""
    if isinstance(arr.type, pa.BaseExtensionType):
        arr = arr.storage
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


_is_string_view = getattr(pa.types, "is_string_view", lambda t: False)  # pyarrow >= 16
_is_binary_view = getattr(pa.types, "is_binary_view", lambda t: False)


def _stringlike(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or _is_string_view(t))


def _binarylike(t: pa.DataType) -> bool:
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t) or _is_binary_view(t))


def _to_string(name: str, arr: pa.Array, problems: _Problems) -> pa.Array:
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.string())
    if not _stringlike(t):
        raise _schema_error(name, f"has type {t}, which is not text (string, large_string, string_view, dictionary)")
    if not pa.types.is_string(t):
        try:
            arr = arr.cast(pa.string())
        except pa.ArrowException as exc:  # more than 2 GiB of text in one column
            raise _schema_error(name, f"cannot be cast to string: {exc}") from None
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:  # text that is not UTF-8: found row by row (the error path)
        bad = [raw is not None and not _decodes(raw) for raw in arr.cast(pa.binary()).to_pylist()]
        mask = pa.array(bad, pa.bool_())
        problems.where(name, mask, lambda i: "is not valid UTF-8")
        arr = pc.if_else(mask, pa.scalar(None, pa.binary()), arr.cast(pa.binary())).cast(pa.string(), safe=False)
    return arr


def _decodes(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


_HEX: Final = np.full(256, 255, np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10, dtype=np.uint8)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16, dtype=np.uint8)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint8)


def _to_id(name: str, arr: pa.Array, nbytes: int, problems: _Problems) -> pa.Array:
    """binary(nbytes) ids from fixed-size binary, binary of that length or hex text (2 *
    nbytes characters, either case, decoded with a lookup table); an empty value is
    null (a missing id)."""
    t, n = arr.type, len(arr)
    if pa.types.is_null(t):
        return pa.nulls(n, pa.binary(nbytes))
    if pa.types.is_fixed_size_binary(t):
        if t.byte_width != nbytes:
            raise _schema_error(name, f"has type {t}, but these ids are {nbytes} bytes")
        return arr
    text = _stringlike(t)
    if not (text or _binarylike(t)):
        raise _schema_error(name, f"has type {t}, which is not an id (binary({nbytes}), binary or hex text)")
    arr = arr.cast(pa.binary())  # text as its UTF-8 bytes
    width, unit = (2 * nbytes, "hex characters") if text else (nbytes, "bytes")
    lengths = pc.binary_length(arr)
    wrong = pc.and_kleene(pc.not_equal(lengths, width), pc.not_equal(lengths, 0))

    def shown(i: int) -> str:
        value = arr[i].as_py()
        return repr(value.decode(errors="replace") if text else value)

    problems.where(name, wrong, lambda i: f"must be {width} {unit}, got {lengths[i].as_py()}: {shown(i)}")
    ok = pc.equal(lengths, width).fill_null(False)
    filled = pc.if_else(ok, arr, pa.scalar(b"0" * width if text else bytes(width), pa.binary()))
    if not text:
        return pc.if_else(ok, filled.cast(pa.binary(nbytes)), pa.scalar(None, pa.binary(nbytes)))
    filled = pa.concat_arrays([filled]) if filled.offset else filled
    data = filled.buffers()[2]
    start = int(np.frombuffer(filled.buffers()[1], np.int32, count=1)[0]) if n else 0
    codes = np.frombuffer(data, np.uint8, count=n * width, offset=start) if n else np.zeros(0, np.uint8)
    nibbles = _HEX[codes].reshape(n, width)
    nothex = pa.array((nibbles == 255).any(axis=1))
    problems.where(name, pc.and_kleene(ok, nothex), lambda i: f"is not hex: {shown(i)}")
    raw = ((nibbles[:, 0::2] << 4) | nibbles[:, 1::2]).astype(np.uint8)
    ids = pa.Array.from_buffers(pa.binary(nbytes), n, [None, pa.py_buffer(raw.tobytes())])
    return pc.if_else(pc.and_kleene(ok, pc.invert(nothex)), ids, pa.scalar(None, pa.binary(nbytes)))


def _to_int64(name: str, arr: pa.Array, problems: _Problems) -> pa.Array:
    """int64 from any integer type (a uint64 past 2**63-1 is a bad row) or, for a time
    (``*_ns``), a timestamp of any unit and time zone (its nanoseconds since the epoch)."""
    t, n = arr.type, len(arr)
    if pa.types.is_null(t):
        return pa.nulls(n, pa.int64())
    if pa.types.is_timestamp(t) and name.endswith("_ns"):
        factor = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}[t.unit]
        raw = arr.cast(pa.int64())
        if factor == 1:
            return raw
        bad = pc.or_kleene(pc.greater(raw, MAX_NS // factor), pc.less(raw, -(MAX_NS // factor)))
        problems.where(name, bad, lambda i: f"holds a time past what int64 nanoseconds hold: {arr[i].as_py()}")
        return pc.multiply(pc.if_else(bad, pa.scalar(None, pa.int64()), raw), factor)
    if not pa.types.is_integer(t):
        what = "an integer type (or a timestamp)" if name.endswith("_ns") else "an integer type"
        raise _schema_error(name, f"has type {t}, which is not {what}")
    if pa.types.is_uint64(t):
        bad = pc.greater(arr, pa.scalar(MAX_NS, pa.uint64()))
        problems.where(name, bad, lambda i: f"must fit in int64 (at most 2**63-1), got {arr[i].as_py()}")
        arr = pc.if_else(bad, pa.scalar(None, t), arr)
    return arr.cast(pa.int64())


def _to_float64(name: str, arr: pa.Array) -> pa.Array:
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.float64())
    if not (pa.types.is_floating(t) or pa.types.is_integer(t)):
        raise _schema_error(name, f"has type {t}, which is not a number type")
    return arr.cast(pa.float64(), safe=False)  # as float() makes a float of an int


def _to_bool(name: str, arr: pa.Array) -> pa.Array:
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.bool_())
    if not pa.types.is_boolean(t):
        raise _schema_error(name, f"has type {t}, which is not bool")
    return arr


def _to_list(name: str, arr: pa.Array, target: pa.DataType, problems: _Problems) -> pa.Array:
    """list<int64> or list<float64> from any list type of integers (or, for floats, numbers)."""
    t, n = arr.type, len(arr)
    if pa.types.is_null(t):
        return pa.nulls(n, target)
    listlike = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    item = t.value_type if listlike else None
    floats = pa.types.is_floating(target.value_type)
    if item is None or not (
        pa.types.is_integer(item) or pa.types.is_null(item) or (floats and pa.types.is_floating(item))
    ):
        raise _schema_error(name, f"has type {t}, which is not a list of {'numbers' if floats else 'integers'}")
    if not floats and pa.types.is_uint64(item):
        values = pc.list_flatten(arr)
        parents = pc.list_parent_indices(arr)
        over = pc.filter(parents, pc.greater(values, pa.scalar(MAX_NS, pa.uint64())))
        if len(over):
            rows = pa.array(np.isin(np.arange(n), over.to_numpy()))
            problems.where(name, rows, lambda i: "must hold ints below 2**63")
            arr = pc.if_else(rows, pa.scalar(None, t), arr)
    return arr.cast(target, safe=False)


# ---------------------------------------------------------------- JSON text


def _walk(value: Any, path: str, depth: int) -> str | None:
    """Why a JSON value cannot be an attribute value, as ``_codec.check_attrs`` decides
    for model objects (``_check_value``: nesting, 64-bit ints, UTF-8), or None."""
    if depth > _MAX_DEPTH:
        return f"is nested more than {_MAX_DEPTH} levels deep at {path}"
    t = type(value)
    if t is str:
        return None if value.isascii() or utf8_ok(value) else f"holds text that is not valid Unicode at {path}"
    if t is int:
        return None if _INT_MIN <= value <= _INT_MAX else f"holds an int that does not fit in 64 bits at {path}"
    if t is list:
        for i, item in enumerate(value):
            problem = _walk(item, f"{path}[{i}]", depth + 1)
            if problem is not None:
                return problem
        return None
    if t is dict:
        return _map_problem(value, path, depth + 1)
    return None


def _map_problem(value: dict[str, Any], path: str, depth: int = 0) -> str | None:
    """Why a JSON object cannot be an attribute map (``_codec.check_attrs``), or None."""
    for key, item in value.items():
        if not (key.isascii() or utf8_ok(key)):
            return f"has a key at {path} that is not valid Unicode"
        t = type(item)
        if t is str:
            if not (item.isascii() or utf8_ok(item)):
                return f"holds text that is not valid Unicode at {path}.{key}"
        elif t is int:
            if not _INT_MIN <= item <= _INT_MAX:
                return f"holds an int that does not fit in 64 bits at {path}.{key}"
        elif t is list or t is dict:
            problem = _walk(item, f"{path}.{key}", depth)
            if problem is not None:
                return problem
    return None


def _json_kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a bool", type(None): "null"}.get(
        type(value), "a number"
    )


Shape = Callable[[Any, bool], tuple[str | None, Any]]
"""(parsed value, walk it) -> (why it is not of the column's shape or None, the canonical
value to write instead of the given text or None)."""


def _map_shape(path: str) -> Shape:
    def shape(value: Any, walk: bool) -> tuple[str | None, Any]:
        if type(value) is not dict:
            return f"must be a JSON object, got {_json_kind(value)}", None
        return (_map_problem(value, path) if walk else None), None

    return shape


_EVENT_KEYS: Final = frozenset(("time_ns", "name", "attributes"))
_LINK_KEYS: Final = frozenset(("trace_id", "span_id", "attributes"))


def _events_shape(value: Any, walk: bool) -> tuple[str | None, Any]:
    """Events: an array of {"time_ns": int, "name": text, "attributes": object}
    (attributes may be left out: the value is then rewritten with them)."""
    if type(value) is not list:
        return f"must be a JSON array of events, got {_json_kind(value)}", None
    rewrite = False
    for j, ev in enumerate(value):
        where = f"events[{j}]"
        if type(ev) is not dict:
            return f"{where} must be an object, got {_json_kind(ev)}", None
        if not _EVENT_KEYS.issuperset(ev):
            return f"{where} has keys other than time_ns, name, attributes: {sorted(set(ev) - _EVENT_KEYS)}", None
        t, name = ev.get("time_ns"), ev.get("name")
        if type(t) is not int or not 0 <= t <= MAX_NS:
            return f"{where}.time_ns must be an int of Unix nanoseconds in 0..2**63-1, got {t!r}", None
        if type(name) is not str or not (name.isascii() or utf8_ok(name)):
            return f"{where}.name must be text, got {name!r}", None
        if "attributes" not in ev:
            rewrite = True
        attrs = ev.get("attributes", {})
        if type(attrs) is not dict:
            return f"{where}.attributes must be an object, got {_json_kind(attrs)}", None
        problem = _map_problem(attrs, f"{where}.attributes") if walk else None
        if problem is not None:
            return problem, None
    if not rewrite:
        return None, None
    return None, [{"time_ns": e["time_ns"], "name": e["name"], "attributes": e.get("attributes", {})} for e in value]


def _hex_ok(value: Any, nchars: int) -> bool:
    if type(value) is not str or len(value) != nchars:
        return False
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return False
    return len(raw) == nchars // 2 and any(raw)


def _links_shape(value: Any, walk: bool) -> tuple[str | None, Any]:
    """Links: an array of {"trace_id": 32 hex, "span_id": 16 hex, "attributes": object}
    (ids in either case, attributes may be left out: the value is then rewritten with
    lowercase ids and attributes)."""
    if type(value) is not list:
        return f"must be a JSON array of links, got {_json_kind(value)}", None
    rewrite = False
    for j, ln in enumerate(value):
        where = f"links[{j}]"
        if type(ln) is not dict:
            return f"{where} must be an object, got {_json_kind(ln)}", None
        if not _LINK_KEYS.issuperset(ln):
            return f"{where} has keys other than trace_id, span_id, attributes: {sorted(set(ln) - _LINK_KEYS)}", None
        for key, nchars in (("trace_id", 32), ("span_id", 16)):
            if not _hex_ok(ln.get(key), nchars):
                return f"{where}.{key} must be {nchars} hex characters, not all zeros, got {ln.get(key)!r}", None
            rewrite = rewrite or ln[key] != ln[key].lower()
        attrs = ln.get("attributes", {})
        rewrite = rewrite or "attributes" not in ln
        if type(attrs) is not dict:
            return f"{where}.attributes must be an object, got {_json_kind(attrs)}", None
        problem = _map_problem(attrs, f"{where}.attributes") if walk else None
        if problem is not None:
            return problem, None
    if not rewrite:
        return None, None
    return None, [
        {"trace_id": ln["trace_id"].lower(), "span_id": ln["span_id"].lower(), "attributes": ln.get("attributes", {})}
        for ln in value
    ]


# ---- the same shapes, checked for a whole column at once by C-level passes (True: all fine as given)

_DICT_ONLY: Final = frozenset((dict,))
_LIST_ONLY: Final = frozenset((list,))
_INT_ONLY: Final = frozenset((int,))
_STR_ONLY: Final = frozenset((str,))
_time_of, _name_of, _attrs_of = (operator.itemgetter(k) for k in ("time_ns", "name", "attributes"))
_trace_of, _span_of = operator.itemgetter("trace_id"), operator.itemgetter("span_id")


def _maps_fine(values: list[Any]) -> bool:
    return set(map(type, values)) <= _DICT_ONLY


def _events_fine(values: list[Any]) -> bool:
    if not set(map(type, values)) <= _LIST_ONLY:
        return False
    events = list(chain.from_iterable(values))
    if not events:
        return True
    if not set(map(type, events)) <= _DICT_ONLY or sum(map(len, events)) != 3 * len(events):
        return False
    if not _EVENT_KEYS.issuperset(chain.from_iterable(events)):
        return False  # with three keys each from these three, every event has all three
    times = list(map(_time_of, events))
    return (
        set(map(type, times)) <= _INT_ONLY
        and min(times) >= 0
        and max(times) <= MAX_NS
        and set(map(type, map(_name_of, events))) <= _STR_ONLY
        and set(map(type, map(_attrs_of, events))) <= _DICT_ONLY
    )


def _links_fine(values: list[Any]) -> bool:
    if not set(map(type, values)) <= _LIST_ONLY:
        return False
    links = list(chain.from_iterable(values))
    if not links:
        return True
    if not set(map(type, links)) <= _DICT_ONLY or sum(map(len, links)) != 3 * len(links):
        return False
    if not _LINK_KEYS.issuperset(chain.from_iterable(links)) or not _maps_fine(list(map(_attrs_of, links))):
        return False
    for get, nchars in ((_trace_of, 32), (_span_of, 16)):
        ids = list(map(get, links))
        if not set(map(type, ids)) <= _STR_ONLY or set(map(len, ids)) != {nchars}:
            return False
        joined = "".join(ids)
        try:
            raw = bytes.fromhex(joined)
        except ValueError:
            return False
        nbytes = nchars // 2
        if joined != joined.lower() or len(raw) != nbytes * len(ids):
            return False
        if not np.frombuffer(raw, np.uint8).reshape(len(ids), nbytes).any(axis=1).all():
            return False
    return True


def _suspects(distinct: pa.Array) -> np.ndarray:
    """Which of these JSON texts must be read exactly and walked (numpy over their bytes):
    those with an int orjson would read as a float (a run of 20 digits, or of 19 after a
    minus sign: over-matching only costs time), and those opening more than 33 arrays and
    objects in all (fewer cannot nest anything more than 32 levels inside an attribute value)."""
    n = len(distinct)
    out = np.zeros(n, np.bool_)
    if not n:
        return out
    offsets = np.frombuffer(distinct.buffers()[1], np.int32, count=n + 1, offset=distinct.offset * 4)
    text = np.frombuffer(distinct.buffers()[2], np.uint8, count=int(offsets[-1] - offsets[0]), offset=int(offsets[0]))
    starts = offsets - offsets[0]
    if len(text) >= 20:
        digit = (text >= 48) & (text <= 57)
        run = digit[:-1] & digit[1:]  # run[i]: 2 digits from i
        run = run[:-2] & run[2:]  # 4
        run = run[:-4] & run[4:]  # 8
        run = run[:-8] & run[8:]  # 16
        run = run[:-3] & run[3:]  # 19
        minus = np.zeros(len(run), np.bool_)
        minus[1:] = text[: len(run) - 1] == 45
        hits = np.concatenate([np.flatnonzero(run[:-1] & run[1:]), np.flatnonzero(run & minus)])
        if len(hits):
            out[np.searchsorted(starts, hits, side="right") - 1] = True
    opens = np.flatnonzero((text == 123) | (text == 91))
    out |= np.diff(np.searchsorted(opens, starts)) > _MAX_DEPTH + 1
    return out


class _Json:
    """A JSON text column checked once per distinct value (``dictionary_encode``): each
    distinct text is read by orjson (the standard library for the suspects, which are then
    walked), the column's shape is checked by C-level passes over all of them, and only
    when that finds something, value by value to name it. ``codes`` (per row) index
    ``values`` (the distinct values; None where bad); ``column`` has canonical text in
    place of a value that needs rewriting."""

    def __init__(
        self, name: str, arr: pa.Array, shape: Shape, fine: Callable[[list[Any]], bool], problems: _Problems
    ) -> None:
        encoded = pc.dictionary_encode(arr)
        self.codes: pa.Array = encoded.indices
        distinct = encoded.dictionary
        texts = distinct.to_pylist()
        walk = set(np.flatnonzero(_suspects(distinct)).tolist())
        try:
            values: list[Any] = list(map(_orjson_loads, texts))
        except orjson.JSONDecodeError:
            values = []
            for k, text in enumerate(texts):
                try:
                    values.append(_orjson_loads(text))
                except orjson.JSONDecodeError:
                    values.append(None)
                    walk.add(k)
        bad: dict[int, str] = {}
        for k in walk:
            try:
                values[k] = _json_loads(texts[k])
            except ValueError as exc:
                bad[k] = f"is not valid JSON: {exc}"
        rewritten: dict[int, str] = {}
        good = values if not bad else [v for k, v in enumerate(values) if k not in bad]
        odd = sorted(walk) if fine(good) else range(len(values))
        for k in odd:
            if k not in bad:
                value = values[k]
                problem, canonical = shape(value, k in walk)
                if problem is not None:
                    bad[k] = problem
                elif canonical is not None:
                    values[k] = canonical
                    rewritten[k] = _block.dumps(canonical).decode()
        for k in bad:
            values[k] = None
        self.values = values
        if bad:
            mask = pc.is_in(self.codes, value_set=pa.array(list(bad), self.codes.type))
            codes = self.codes
            problems.where(name, mask, lambda i: bad[codes[i].as_py()])
        self.column = arr
        if rewritten:
            texts = [rewritten.get(k, text) for k, text in enumerate(texts)]
            self.column = pa.array(texts, pa.string()).take(self.codes)

    def value(self, row: int) -> Any:
        return self.values[self.codes[row].as_py()]

    def per_row(self, per_value: list[int]) -> pa.Array:
        """A uint8 array with ``per_value[code]`` for each row."""
        return pa.array(per_value, pa.uint8()).take(self.codes)


def _maps(name: str, arr: pa.Array, problems: _Problems) -> _Json:
    return _Json(name, arr, _map_shape(name), _maps_fine, problems)


# ---------------------------------------------------------------- the table


def _columns_of(signal: str, table: pa.Table | pa.RecordBatch, problems: _Problems) -> dict[str, pa.Array]:
    """Every column of the public schema, cast to its type, defaults in place of missing
    columns and of nulls in optional columns with a default; schema errors raised."""
    schema = _block.SCHEMAS[signal]
    if not isinstance(table, (pa.Table, pa.RecordBatch)):
        raise TypeError(f"expected a pyarrow Table or RecordBatch, got {type(table).__name__}")
    names = table.schema.names
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _schema_error(name, "appears twice")
        seen.add(name)
        if schema.get_field_index(name) < 0:
            raise _schema_error(name, f"is not a column of {signal}: expected some of {schema.names}")
    for name in REQUIRED[signal]:
        if name not in seen:
            raise _schema_error(name, f"is required in a table of {signal}")
    n = table.num_rows
    defaults = DEFAULTS[signal]
    out: dict[str, pa.Array] = {}
    for field in schema:
        name, t = field.name, field.type
        if name not in seen:
            out[name] = pa.nulls(n, t) if defaults[name] is None else pa.nulls(n, t).fill_null(defaults[name])
            continue
        column = table.column(name)
        arr = _plain(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
        if pa.types.is_string(t):
            arr = _to_string(name, arr, problems)
        elif pa.types.is_fixed_size_binary(t):
            arr = _to_id(name, arr, t.byte_width, problems)
        elif pa.types.is_integer(t):
            arr = _to_int64(name, arr, problems)
        elif pa.types.is_floating(t):
            arr = _to_float64(name, arr)
        elif pa.types.is_boolean(t):
            arr = _to_bool(name, arr)
        else:
            arr = _to_list(name, arr, t, problems)
        if arr.null_count:
            if name in REQUIRED[signal]:
                problems.where(name, arr.is_null(), lambda i: "must not be null")
            elif defaults[name] is not None:
                arr = arr.fill_null(defaults[name])
        out[name] = arr
    return out


def _nonnegative(name: str, arr: pa.Array, problems: _Problems, what: str = "an int of Unix nanoseconds") -> None:
    problems.where(name, pc.less(arr, 0), lambda i: f"must be {what} in 0..2**63-1, got {arr[i].as_py()}")


def _enum_rule(name: str, arr: pa.Array, names: pa.Array, choices: tuple[str, ...], problems: _Problems) -> None:
    bad = pc.invert(pc.is_in(arr, value_set=names))
    problems.where(name, bad, lambda i: f"must be one of {choices}, got {arr[i].as_py()!r}")


def _key_text_rule(name: str, arr: pa.Array, limit: int, empty_ok: bool, problems: _Problems) -> pa.Array:
    """Rows whose text cannot be part of an LMDB key (``_codec.key_text_problem``); returns the bad mask."""
    size = pc.binary_length(arr)
    bad = pc.or_kleene(pc.greater(size, limit), pc.match_substring(arr, "\x00"))
    if not empty_ok:
        bad = pc.or_kleene(bad, pc.equal(size, 0))

    def message(i: int) -> str:
        return _codec.key_text_problem(arr[i].as_py(), limit, empty_ok=empty_ok) or "is not valid"

    problems.where(name, bad, message)
    return bad


def _id_rules(c: dict[str, pa.Array], names: tuple[str, ...], problems: _Problems) -> None:
    for name in names:
        arr = c[name]
        zero = pc.equal(arr, pa.scalar(bytes(arr.type.byte_width), arr.type))
        problems.where(name, zero, lambda i: "must not be all zeros (an invalid id in OpenTelemetry)")


def _check_spans(c: dict[str, pa.Array], problems: _Problems, payloads: Payloads | None) -> list[pa.Array]:
    _id_rules(c, ("trace_id", "span_id", "parent_span_id"), problems)
    start, end = c["start_ns"], c["end_ns"]
    _nonnegative("start_ns", start, problems)
    _nonnegative("end_ns", end, problems)
    problems.where(
        "end_ns",
        pc.less(end, start),
        lambda i: f"must be >= start_ns ({start[i].as_py()}), got {end[i].as_py()}",
    )
    service, name = c["service"], c["name"]
    bad_service = _key_text_rule("service", service, MAX_SERVICE_BYTES, False, problems)
    over = pc.greater(pc.add(pc.binary_length(name), pc.binary_length(service)), MAX_KEY_BYTES - 1)

    def name_problem(i: int) -> str:
        return _codec.span_name_problem(service[i].as_py(), name[i].as_py()) or "is too long"

    problems.where("name", pc.and_kleene(over, pc.invert(bad_service)), name_problem)
    _enum_rule("kind", c["kind"], SPAN_KIND_NAMES, SPAN_KINDS, problems)
    _enum_rule("status", c["status"], SPAN_STATUS_NAMES, SPAN_STATUSES, problems)
    flags = c["flags"]
    problems.where(
        "flags",
        pc.or_kleene(pc.less(flags, 0), pc.greater(flags, (1 << 32) - 1)),
        lambda i: f"must be an int in 0..2**32-1, got {flags[i].as_py()}",
    )
    attrs = _maps("attributes", c["attributes"], problems)
    resource = _maps("resource", c["resource"], problems)
    events = _Json("events", c["events"], _events_shape, _events_fine, problems)
    links = _Json("links", c["links"], _links_shape, _links_fine, problems)
    c["attributes"], c["resource"], c["events"], c["links"] = attrs.column, resource.column, events.column, links.column
    problems.raise_first()
    n = len(start)
    keys = payloads.keys if payloads is not None else NO_KEYS
    event_maps = [e["attributes"] for e in chain.from_iterable(events.values)]
    if keys.isdisjoint(chain.from_iterable(attrs.values)) and keys.isdisjoint(chain.from_iterable(event_maps)):
        payload = zeros(n)  # no payload key anywhere (one C-level pass over the keys)
    else:
        assert payloads is not None
        flag = payloads.span_flag
        by_attrs = attrs.per_row([flag(a, []) if a else 0 for a in attrs.values])
        by_events = events.per_row(
            [flag({}, [[0, e["name"], e["attributes"]] for e in evs]) if evs else 0 for evs in events.values]
        )
        payload = pc.max_element_wise(by_attrs, by_events)
    return [payload, pa.nulls(n, pa.string())]


def _check_logs(c: dict[str, pa.Array], problems: _Problems, payloads: Payloads | None) -> list[pa.Array]:
    _nonnegative("time_ns", c["time_ns"], problems)
    _key_text_rule("service", c["service"], MAX_SERVICE_BYTES, True, problems)
    sev = c["severity_number"]
    problems.where(
        "severity_number",
        pc.or_kleene(pc.less(sev, 0), pc.greater(sev, 24)),
        lambda i: f"must be an int in 0..24, got {sev[i].as_py()}",
    )
    _id_rules(c, ("trace_id", "span_id"), problems)
    _maps("attributes", c["attributes"], problems)
    _maps("resource", c["resource"], problems)
    _nonnegative("observed_ns", c["observed_ns"], problems)
    problems.raise_first()
    c["severity_number"] = sev.cast(pa.int32())
    n = len(sev)
    if payloads is None:
        payload = zeros(n)
    else:  # Payloads.log_flag: 2 from payloads.min_bytes of UTF-8 on (the blob store), else 1; 0 for no body
        size = pc.binary_length(c["body"])
        payload = pc.if_else(pc.equal(size, 0), 0, pc.if_else(pc.greater_equal(size, payloads.min_bytes), 2, 1)).cast(
            pa.uint8()
        )
    return [payload, pa.nulls(n, pa.binary(32))]


def _check_metrics(c: dict[str, pa.Array], problems: _Problems) -> list[pa.Array]:
    _nonnegative("time_ns", c["time_ns"], problems)
    _key_text_rule("name", c["name"], MAX_METRIC_NAME_BYTES, False, problems)
    _key_text_rule("service", c["service"], MAX_SERVICE_BYTES, True, problems)
    value = c["value"]
    problems.where("value", pc.invert(pc.is_finite(value)), lambda i: f"must be finite, got {value[i].as_py()}")
    _enum_rule("kind", c["kind"], METRIC_KIND_NAMES, METRIC_KINDS, problems)
    attrs = _maps("attributes", c["attributes"], problems)
    _enum_rule("temporality", c["temporality"], TEMPORALITY_NAMES, TEMPORALITIES, problems)
    _nonnegative("start_ns", c["start_ns"], problems)
    _nonnegative("count", c["count"], problems, "a non-negative int")
    buckets, bounds = c["bucket_counts"], c["explicit_bounds"]
    _list_items_rule(
        "bucket_counts", buckets, lambda v: pc.or_kleene(pc.is_null(v), pc.less(v, 0)), "ints >= 0", problems
    )
    _list_items_rule(
        "explicit_bounds", bounds, lambda v: pc.invert(pc.is_finite(v).fill_null(False)), "finite numbers", problems
    )
    wrong = pc.not_equal(pc.list_value_length(buckets), pc.add(pc.list_value_length(bounds), 1))
    problems.where(
        "bucket_counts",
        wrong,
        lambda i: (
            f"must have len(explicit_bounds) + 1 = {len(bounds[i].as_py()) + 1} entries, got {len(buckets[i].as_py())}"
        ),
    )
    problems.raise_first()
    return [series_ids(c["name"], c["service"], c["kind"], attrs.column, attrs.value)]


def _list_items_rule(
    name: str, arr: pa.Array, bad_item: Callable[[pa.Array], pa.Array], what: str, problems: _Problems
) -> None:
    values = pc.list_flatten(arr)
    if not len(values):
        return
    bad_items = bad_item(values)
    if not pc.any(bad_items).as_py():
        return
    rows = pc.unique(pc.filter(pc.list_parent_indices(arr), bad_items))
    mask = pa.array(np.isin(np.arange(len(arr)), rows.to_numpy()))
    problems.where(name, mask, lambda i: f"must hold {what}, got {arr[i].as_py()}")


def check_table(signal: str, table: pa.Table | pa.RecordBatch, payloads: Payloads | None) -> pa.RecordBatch:
    """The column batch (``_block.BLOCK_SCHEMAS[signal]``) of a table in the public schema
    of ``signal``, checked column-wise; ValidationError naming the first bad row and
    column, or the column at fault in the schema. ``payload`` holds the payload flags
    (0 without ``payloads``), ``series_id`` the metric series ids."""
    schema = _block.SCHEMAS[signal]
    problems = _Problems(schema.names)
    columns = _columns_of(signal, table, problems)
    if signal == "spans":
        extra = _check_spans(columns, problems, payloads)
    elif signal == "logs":
        extra = _check_logs(columns, problems, payloads)
    else:
        extra = _check_metrics(columns, problems)
    arrays = [columns[name] for name in schema.names] + extra
    return pa.RecordBatch.from_arrays(arrays, schema=_block.BLOCK_SCHEMAS[signal])
