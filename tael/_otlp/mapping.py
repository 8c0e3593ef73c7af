"""What the OTLP decoders share of the mapping (tael/_otlp/__init__.py describes it):
attribute values, ids and times with their checks, the resource and scope of a batch
of records, attribute lists decoded once per distinct list, and id columns checked and
built column-wise."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Final

import numpy as np
import pyarrow as pa
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from .. import _block
from .._blobs import Payloads
from .._codec import key_text_problem
from .._keys import MAX_SERVICE_BYTES
from .common import MAX_NS, OtlpError, Reject

_MAX_DEPTH: Final = 32  # containers at this nesting depth or deeper fail tael's validation
_UNKNOWN_SERVICE: Final = "unknown_service"
_CACHE_ENTRIES: Final = 16_384  # distinct attribute lists (and KeyValues) remembered per request, at most
_ZERO8: Final = bytes(8)
_ZERO16: Final = bytes(16)


def any_value(v: Any, depth: int) -> Any:
    """An AnyValue as a JSON-like Python value; ``depth`` counts enclosing containers."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "bytes_value":
        return bytes(v.bytes_value).hex()
    if kind is None:
        return None
    if depth >= _MAX_DEPTH:
        raise Reject(f"attribute values nested {_MAX_DEPTH} or more levels deep")
    if kind == "array_value":
        return [any_value(x, depth + 1) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value, depth + 1) for kv in v.kvlist_value.values}
    return None  # a kind newer than this module: keep the key, lose the value


def attrs_dict(kvs: Any, depth: int = 0) -> dict[str, Any]:
    """A repeated KeyValue as a dict (a repeated key keeps its last value)."""
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        kind = v.WhichOneof("value")
        if kind == "string_value":  # the common case, inlined
            out[kv.key] = v.string_value
        else:
            out[kv.key] = any_value(v, depth)
    return out


def add_dropped(attrs: dict[str, Any], key: str, count: int) -> None:
    if count:
        attrs[f"otel.dropped_{key}_count"] = int(count)


def checked_ns(value: int, what: str) -> int:
    if value > MAX_NS:
        raise Reject(f"{what} {value} is past 2**63-1 nanoseconds")
    return int(value)


def required_id(raw: bytes, nbytes: int, what: str) -> str:
    """A required id as lowercase hex."""
    if len(raw) != nbytes:
        raise Reject(f"{what} must be {nbytes} bytes, got {len(raw)}")
    if not any(raw):
        raise Reject(f"{what} is all zeros (an invalid id)")
    return bytes(raw).hex()


def optional_id(raw: bytes, nbytes: int, what: str) -> str | None:
    """An optional id: empty or all zeros means absent."""
    if not raw or (len(raw) == nbytes and not any(raw)):
        return None
    return required_id(raw, nbytes, what)


def key_text(text: str, what: str, limit: int = MAX_SERVICE_BYTES) -> str:
    """``text`` if tael's validation accepts it where it becomes part of an LMDB key
    (the same check as ``Store.insert_*``: tael/_keys.py has the budgets)."""
    problem = key_text_problem(text, limit)
    if problem is not None:
        raise Reject(f"{what} {problem}")
    return text


@dataclass(slots=True)
class Resource:
    """One ResourceSpans/Logs/Metrics: its attributes and service, or why its records are rejected."""

    attrs: dict[str, Any]
    service: str
    problem: str | None = None


def resource_of(container: Any) -> Resource:
    try:
        attrs = attrs_dict(container.resource.attributes)
        add_dropped(attrs, "attributes", container.resource.dropped_attributes_count)
        if container.schema_url:
            attrs["otel.schema_url"] = container.schema_url
        name = attrs.get("service.name")
        service = name if isinstance(name, str) and name else _UNKNOWN_SERVICE
        return Resource(attrs, key_text(service, "resource attribute service.name"))
    except Reject as exc:
        return Resource({}, _UNKNOWN_SERVICE, f"resource: {exc}")


def scoped(res: Resource, scope_container: Any, *, with_version: bool) -> tuple[dict[str, Any], str | None]:
    """The ``resource`` dict for records of one scope (resource attributes plus scope extras)."""
    if res.problem:
        return res.attrs, res.problem
    scope = scope_container.scope
    extra: dict[str, Any] = {}
    try:
        if len(scope.attributes) or scope.dropped_attributes_count:
            scope_attrs = attrs_dict(scope.attributes, 1)  # nested one level inside the resource dict
            add_dropped(scope_attrs, "attributes", scope.dropped_attributes_count)
            extra["otel.scope.attributes"] = scope_attrs
    except Reject as exc:
        return res.attrs, f"scope: {exc}"
    if with_version and scope.version:
        extra["otel.scope.version"] = scope.version
    if scope_container.schema_url:
        extra["otel.scope.schema_url"] = scope_container.schema_url
    return ({**res.attrs, **extra} if extra else res.attrs), None


# ---------------------------------------------------------------- attribute lists


_KV_FROM: Final = KeyValue.FromString


class AttrLists:
    """The attribute lists of one request's records (tael/_otlp/parse.py's flat messages
    give each as the raw bytes of its KeyValues): each distinct list, with what a
    record adds to it (dropped counts, flags...), is decoded, checked, written as JSON
    text and given its payload flag once, and each distinct KeyValue is decoded once.
    Forgotten once it holds ``_CACHE_ENTRIES`` of either, so a request of all-different
    attributes holds a bounded amount.

    ``check`` (``Flat.check_attribute``), when the request class has not checked the
    body: called for a KeyValue that does not decode or holds a value too deep, it
    raises OtlpError if the request class would refuse the body for it."""

    __slots__ = ("bad", "check", "dicts", "flags", "index", "kvs", "payloads", "problems", "texts")

    def __init__(self, payloads: Payloads | None, check: Callable[[bytes], None] | None) -> None:
        self.payloads = payloads
        self.check = check
        self._clear()

    def _clear(self) -> None:
        self.index: dict[Any, int] = {}
        self.texts: list[bytes] = []
        self.dicts: list[dict[str, Any]] = []
        self.problems: list[str | None] = []
        self.flags: list[int] = []
        """Each list's ``Payloads.span_flag`` (without events; 0 without payload rules)."""
        self.bad: set[int] = set()
        self.kvs: dict[bytes, tuple[str, Any] | str] = {}

    def codes(self, keys: list[Any], extras: Callable[..., None] | None) -> list[int]:
        """The code of each key: a tuple of KeyValue bytes or, with ``extras`` (which adds
        what a record contributes to its attributes), a tuple of that and the arguments
        ``extras`` takes after the attribute dict."""
        if len(self.texts) > _CACHE_ENTRIES or len(self.kvs) > _CACHE_ENTRIES:
            self._clear()
        index = self.index
        codes: list[int] = list(map(index.get, keys))  # type: ignore[arg-type]
        if None in codes:
            for key in set(keys).difference(index):
                self._add(key, extras)
            codes = list(map(index.__getitem__, keys))
        return codes

    def _add(self, key: Any, extras: Callable[..., None] | None) -> None:
        attrs: dict[str, Any] = {}
        problem = None
        kvs = self.kvs
        for raw in key if extras is None else key[0]:  # every one, even past a problem: each is checked
            kv = kvs.get(raw)
            if kv is None:
                kv = kvs[raw] = self._key_value(raw)
            if problem is None:
                if type(kv) is str:
                    problem = kv
                else:
                    attrs[kv[0]] = kv[1]
        code = len(self.texts)
        self.index[key] = code
        self.problems.append(problem)
        self.dicts.append(attrs)
        if problem is not None:
            self.bad.add(code)
            self.texts.append(b"")
            self.flags.append(0)
            return
        if extras is not None:
            extras(attrs, *key[1:])
        self.texts.append(_block.dumps(attrs))
        self.flags.append(self.payloads.span_flag(attrs, []) if self.payloads is not None else 0)

    def _key_value(self, raw: bytes) -> tuple[str, Any] | str:
        """One KeyValue message as (key, value), or why its record is rejected (a value
        nested too deep); OtlpError when the body is to be refused for it."""
        try:
            kv = _KV_FROM(raw)
        except Exception as exc:  # DecodeError mostly: malformed, or text that is not UTF-8
            if self.check is not None:
                self.check(raw)
            raise OtlpError(f"body is not a valid OTLP request: an attribute does not decode: {exc}") from None
        v = kv.value
        if v.WhichOneof("value") == "string_value":
            return kv.key, v.string_value
        try:
            return kv.key, any_value(v, 0)
        except Reject as exc:
            if self.check is not None:
                self.check(raw)  # as deep as upb's limit, where the request holds it?
            return str(exc)

    def validate(self, lists: Iterable[Sequence[bytes]]) -> None:
        """Check every KeyValue of ``lists`` not met yet (without ``check``: nothing to do):
        records rejected whole, for their resource, must not hide a body to refuse."""
        if self.check is not None:
            kvs = self.kvs
            for raw in set(chain.from_iterable(lists)).difference(kvs):
                kvs[raw] = self._key_value(raw)

    def ok(self, codes: list[int]) -> np.ndarray[Any, Any] | None:
        """Which rows' lists are storable (None: all of them)."""
        if not self.bad:
            return None
        bad = self.bad
        return np.array([c not in bad for c in codes], np.bool_)


# ---------------------------------------------------------------- id columns


def ids_ok(ids: Sequence[bytes], nbytes: int) -> np.ndarray[Any, Any]:
    """Which required ids ``required_id`` accepts: ``nbytes`` long and not all zeros."""
    n = len(ids)
    if set(map(len, ids)) == {nbytes}:
        return np.asarray(np.frombuffer(b"".join(ids), np.uint8).reshape(n, nbytes).any(axis=1))
    return np.array([len(v) == nbytes and any(v) for v in ids], np.bool_)


def optional_ids_ok(ids: Sequence[bytes], nbytes: int) -> np.ndarray[Any, Any]:
    """Which optional ids ``optional_id`` accepts: empty, or ``nbytes`` long (all zeros is absent)."""
    lengths = np.fromiter(map(len, ids), np.int64, len(ids))
    return (lengths == 0) | (lengths == nbytes)  # type: ignore[no-any-return]


def optional_id_array(ids: Sequence[bytes], nbytes: int) -> pa.Array:
    """binary(nbytes) of accepted optional ids (each empty or ``nbytes`` long): null when
    empty or all zeros."""
    n = len(ids)
    zero = _ZERO8 if nbytes == 8 else _ZERO16
    raw = b"".join(ids) if set(map(len, ids)) <= {nbytes} else b"".join([v or zero for v in ids])
    present = np.frombuffer(raw, np.uint8).reshape(n, nbytes).any(axis=1)
    if present.all():
        return pa.Array.from_buffers(pa.binary(nbytes), n, [None, pa.py_buffer(raw)])
    if not present.any():
        return pa.nulls(n, pa.binary(nbytes))
    return pa.Array.from_buffers(pa.binary(nbytes), n, [pa.array(present).buffers()[1], pa.py_buffer(raw)])


def enum_array(codes: Sequence[int], names: pa.Array) -> pa.Array:
    """The string array of OTLP enum ``codes``: ``names[code]``, ``names[0]`` for a code
    outside the table (an unknown or a newer value)."""
    arr = np.asarray(codes, np.int64)
    return names.take(pa.array(np.where((arr >= 0) & (arr < len(names)), arr, 0)))
