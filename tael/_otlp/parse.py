"""Parsing OTLP request bodies: protobuf, or OTLP JSON (hex ids rewritten to base64 for
``json_format``), each parsed by the real request message, which checks all of it; and
the *flat* copies of the trace and log requests whose records' attributes are raw
bytes (:class:`Flat`), which the column-wise decoders read."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .._limits import SLICE_BYTES
from .common import CONTENT_TYPES, JSON, PROTOBUF, OtlpError
from .wire import varint


def is_protobuf(content_type: str) -> bool:
    media = content_type.strip().lower()
    if media == PROTOBUF:
        return True
    if media == JSON:
        return False
    raise ValueError(f"unsupported content type {content_type!r}: expected one of {CONTENT_TYPES}")


def parse(
    body: bytes, content_type: str, message: Any, walk: Callable[[dict[str, Any]], dict[str, str]]
) -> dict[str, str]:
    """Parse ``body`` into ``message`` (an empty request); returns the JSON id problems by record path.

    The JSON path first lets ``walk`` rewrite hex ids to base64 in place; ids that
    are not hex are blanked and reported, so only their records are rejected."""
    name = type(message).__name__
    if is_protobuf(content_type):
        try:
            message.ParseFromString(bytes(body))
        except Exception as exc:  # DecodeError mostly; upb raises others on odd input
            raise OtlpError(f"body is not a valid protobuf {name}: {exc}") from None
        return {}
    try:
        text = bytes(body).decode("utf-8-sig")  # tolerate a byte order mark
    except UnicodeDecodeError as exc:
        raise OtlpError(f"JSON body is not UTF-8: {exc}") from None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise OtlpError(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise OtlpError(f"JSON body must be an object ({name}), got {type(doc).__name__}")
    try:
        bad_ids = walk(doc)
        json_format.ParseDict(doc, message, ignore_unknown_fields=True)
    except OtlpError:
        raise
    except Exception as exc:  # json_format.ParseError, RecursionError...
        raise OtlpError(f"JSON body is not a valid OTLP {name}: {exc}") from None
    return bad_ids


def _field(obj: dict[str, Any], camel: str, snake: str) -> tuple[str | None, Any]:
    """(key, value) of a JSON field spelled either way; OtlpError if spelled both ways."""
    if camel in obj:
        if snake in obj and snake != camel:
            raise OtlpError(f"JSON object has both {camel!r} and {snake!r}")
        return camel, obj[camel]
    if snake in obj:
        return snake, obj[snake]
    return None, None


def _dicts(obj: dict[str, Any], camel: str, snake: str) -> Iterable[tuple[int, dict[str, Any]]]:
    """(index, element) of the dict elements of a repeated field; ParseDict reports other shapes."""
    _key, value = _field(obj, camel, snake)
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict):
                yield i, item


def _hex_to_b64(obj: dict[str, Any], camel: str, snake: str) -> str | None:
    """Rewrite one hex id field of ``obj`` to base64 in place; returns the problem, if any."""
    key, value = _field(obj, camel, snake)
    if key is None or value is None or value == "":
        return None
    if isinstance(value, str) and len(value) % 2 == 0 and value.isascii() and value.isalnum():
        try:
            obj[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            return None
        except ValueError:
            pass
    obj[key] = ""
    return f"{camel} must be a hex string, got {value!r:.60}"


def walk_traces(doc: dict[str, Any]) -> dict[str, str]:
    bad: dict[str, str] = {}
    for ri, rs in _dicts(doc, "resourceSpans", "resource_spans"):
        for si, ss in _dicts(rs, "scopeSpans", "scope_spans"):
            for ki, sp in _dicts(ss, "spans", "spans"):
                problems = [
                    _hex_to_b64(sp, "traceId", "trace_id"),
                    _hex_to_b64(sp, "spanId", "span_id"),
                    _hex_to_b64(sp, "parentSpanId", "parent_span_id"),
                ]
                for li, ln in _dicts(sp, "links", "links"):
                    for camel, snake in (("traceId", "trace_id"), ("spanId", "span_id")):
                        problem = _hex_to_b64(ln, camel, snake)
                        problems.append(problem and f"links[{li}].{problem}")
                found = [p for p in problems if p]
                if found:
                    bad[span_path(ri, si, ki)] = "; ".join(found)
    return bad


def walk_logs(doc: dict[str, Any]) -> dict[str, str]:
    bad: dict[str, str] = {}
    for ri, rl in _dicts(doc, "resourceLogs", "resource_logs"):
        for si, sl in _dicts(rl, "scopeLogs", "scope_logs"):
            for ki, lr in _dicts(sl, "logRecords", "log_records"):
                problems = [_hex_to_b64(lr, "traceId", "trace_id"), _hex_to_b64(lr, "spanId", "span_id")]
                found = [p for p in problems if p]
                if found:
                    bad[log_path(ri, si, ki)] = "; ".join(found)
    return bad


_METRIC_DATA_FIELDS = (
    ("gauge", "gauge"),
    ("sum", "sum"),
    ("histogram", "histogram"),
    ("exponentialHistogram", "exponential_histogram"),
    ("summary", "summary"),
)


def walk_metrics(doc: dict[str, Any]) -> dict[str, str]:
    """Metrics carry hex ids only in exemplars, which tael does not keep: drop them."""
    for _ri, rm in _dicts(doc, "resourceMetrics", "resource_metrics"):
        for _si, sm in _dicts(rm, "scopeMetrics", "scope_metrics"):
            for _mi, metric in _dicts(sm, "metrics", "metrics"):
                for camel, snake in _METRIC_DATA_FIELDS:
                    _key, data = _field(metric, camel, snake)
                    if isinstance(data, dict):
                        for _pi, dp in _dicts(data, "dataPoints", "data_points"):
                            dp.pop("exemplars", None)
    return {}


def span_path(ri: int, si: int, ki: int) -> str:
    return f"resourceSpans[{ri}].scopeSpans[{si}].spans[{ki}]"


def log_path(ri: int, si: int, ki: int) -> str:
    return f"resourceLogs[{ri}].scopeLogs[{si}].logRecords[{ki}]"


class Flat:
    """An OTLP request class and its flat copy (:func:`_flat_class`), in which the
    records' ``attributes`` are raw KeyValue bytes.

    The flat copy parses what the request class parses, and more: it takes attribute
    bytes on trust. So a body parsed flat is checked by the request class too: whole
    (``check``) when it is large or will be stored in several slices, or one distinct
    KeyValue at a time (``check_attribute``, where records' attributes sit: upb's depth
    limit counts from the request's root) as the decoders first meet it, which covers
    every KeyValue of a request stored in one slice before anything of it is stored.
    A body the request class refuses is thus refused, whole, either way."""

    def __init__(self, request: Any, path: Sequence[str]) -> None:
        self.request = request
        self.message = _flat_class(request, path)
        descriptors = [request.DESCRIPTOR]
        for name in path:
            descriptors.append(descriptors[-1].fields_by_name[name].message_type)
        numbers = [d.fields_by_name[n].number for d, n in zip(descriptors, [*path, "attributes"], strict=True)]
        self._tags = [bytes([number << 3 | 2]) for number in reversed(numbers)]  # innermost first; all < 16

    def parse(
        self, body: bytes, content_type: str, walk: Callable[[dict[str, Any]], dict[str, str]]
    ) -> tuple[Any, dict[str, str], int, bool]:
        """(the flat request, the JSON id problems by record path, the size of the protobuf
        bytes parsed, whether the request class has checked them). JSON is parsed by the
        request class (ParseDict), then re-encoded; protobuf of ``SLICE_BYTES`` or more is
        checked by it first (it will not fit one slice), then dropped."""
        if is_protobuf(content_type):
            data = bytes(body)
            checked = len(data) >= SLICE_BYTES
            if checked:
                self.check(data)
            try:
                return self.message.FromString(data), {}, len(data), checked
            except Exception as exc:  # DecodeError mostly; upb raises others on odd input
                raise OtlpError(f"body is not a valid protobuf {self.request.__name__}: {exc}") from None
        message = self.request()
        bad_ids = parse(body, content_type, message, walk)
        data = message.SerializeToString()
        del message  # one of the two parses is held at a time
        return self.message.FromString(data), bad_ids, len(data), True

    def check(self, data: bytes) -> None:
        """OtlpError if the request class refuses ``data``."""
        try:
            self.request.FromString(data)
        except Exception as exc:
            raise OtlpError(f"body is not a valid protobuf {self.request.__name__}: {exc}") from None

    def check_attribute(self, raw: bytes) -> None:
        """OtlpError if the request class refuses a body holding the KeyValue ``raw`` where
        records' attributes are."""
        data = raw
        for tag in self._tags:
            data = tag + varint(len(data)) + data
        self.check(data)


def _flat_class(request: Any, path: Sequence[str]) -> Any:
    """A message class for the wire bytes of the request class ``request`` in which the
    records' ``attributes`` (of the message ``path`` leads to: the field names from the
    request down to the records) are ``repeated bytes``, each KeyValue message as it was
    sent. Every other field keeps its type. A record's attribute list is then a key for
    a cache, and a KeyValue is decoded once per distinct one (mapping.AttrLists)."""
    descriptors = [request.DESCRIPTOR]
    for name in path:
        descriptors.append(descriptors[-1].fields_by_name[name].message_type)
    package = "tael.otlp.flat"
    file = descriptor_pb2.FileDescriptorProto(
        name=f"tael/otlp/flat/{request.DESCRIPTOR.name}.proto", package=package, syntax="proto3"
    )
    needed: dict[str, Any] = {}
    for depth, desc in enumerate(descriptors):
        proto = file.message_type.add()
        desc.CopyToProto(proto)
        del proto.nested_type[:]  # they stay in their own file: fields name them in full
        del proto.enum_type[:]
        for fproto, fdesc in zip(proto.field, desc.fields, strict=True):
            if depth < len(path) and fdesc.name == path[depth]:
                fproto.type_name = f".{package}.{descriptors[depth + 1].name}"
            elif depth == len(path) and fdesc.name == "attributes":
                fproto.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                fproto.ClearField("type_name")
            elif fdesc.message_type is not None or fdesc.enum_type is not None:
                target = fdesc.message_type or fdesc.enum_type
                needed[target.file.name] = target.file
    file.dependency.extend(sorted(needed))
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(fd: Any) -> None:
        if fd.name not in added:
            for dep in fd.dependencies:
                add(dep)
            pool.AddSerializedFile(fd.serialized_pb)
            added.add(fd.name)

    for fd in needed.values():
        add(fd)
    pool.AddSerializedFile(file.SerializeToString())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{request.DESCRIPTOR.name}"))


FLAT_TRACES: Final = Flat(ExportTraceServiceRequest, ("resource_spans", "scope_spans", "spans"))
FLAT_LOGS: Final = Flat(ExportLogsServiceRequest, ("resource_logs", "scope_logs", "log_records"))
