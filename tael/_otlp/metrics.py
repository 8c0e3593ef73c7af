"""OTLP metrics to metric point column batches (``_block.BLOCK_SCHEMAS["metrics"]``).

A data point is a handful of fields read from the real messages point by point, into
a row per tael point; a slice of rows becomes columns with one JSON call for the
attributes and one series-id pass (``_columns.common.series_ids``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

import pyarrow as pa
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from .. import _block, _codec
from .._blobs import Payloads
from .._columns.common import json_array, json_texts, series_ids
from .._keys import MAX_METRIC_NAME_BYTES
from .._models import MetricPoint
from .common import MAX_NS, Decoded, Reject
from .mapping import attrs_dict, checked_ns, key_text, resource_of
from .parse import parse, walk_metrics

log = logging.getLogger(__name__)

MAX_QUANTILES: Final = 1_000  # quantile_values per summary data point (real summaries have a handful):
# each becomes a point carrying its own copy of the data point's attributes
_POINT_OVERHEAD: Final = 64  # estimated stored bytes of a quantile point beyond its attributes
_MAX_COUNT: Final = MAX_NS  # counts are stored as int64
_FLAG_NO_RECORDED_VALUE: Final = 1  # DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_TEMPORALITIES: Final = {1: "delta", 2: "cumulative"}  # 0, unspecified, and unknown values -> cumulative


_TYPES: Final = tuple(f.type for f in _block.METRIC_SCHEMA)


def _batch(cols: list[list[Any]]) -> pa.RecordBatch:
    """The column batch of accepted points' rows (``_point`` order), with their series ids."""
    attrs = cols[6]
    attributes = json_texts(attrs)
    if attributes is None:  # orjson refused a value (none that OTLP gives): one at a time
        attributes = json_array([_block.dumps(a) for a in attrs])
    arrays = [attributes if i == 6 else pa.array(col, t) for i, (col, t) in enumerate(zip(cols, _TYPES, strict=True))]
    arrays.append(series_ids(arrays[1], arrays[2], arrays[4], attributes, attrs.__getitem__))
    return pa.RecordBatch.from_arrays(arrays, schema=_block.BLOCK_SCHEMAS["metrics"])


def _points_of(batch: pa.RecordBatch) -> list[MetricPoint]:
    return [_codec.decode_metric(f) for f in _block.metric_records(batch)]


def decode_metrics(
    body: bytes,
    content_type: str,
    sink: Callable[[pa.RecordBatch], Any] | None = None,
    payloads: Payloads | None = None,
) -> Decoded[MetricPoint]:
    """Decode an ExportMetricsServiceRequest body (protobuf or OTLP JSON) into metric point column batches.

    Raises OtlpError for a body that is not a request, ValueError for an
    unsupported content type; unstorable data points are counted in ``rejected``.
    A summary data point yields one point plus one gauge point per quantile.
    ``payloads`` is accepted for symmetry with the other decoders (points carry none)."""
    request = ExportMetricsServiceRequest()
    parse(body, content_type, request, walk_metrics)
    out: Decoded[MetricPoint] = Decoded(_batch, _points_of, sink, len(_TYPES))
    for ri, rm in enumerate(request.resource_metrics):
        res = resource_of(rm)
        instance = res.attrs.get("service.instance.id")
        for si, sm in enumerate(rm.scope_metrics):
            problem = res.problem
            for mi, metric in enumerate(sm.metrics):
                data_kind = metric.WhichOneof("data")
                if data_kind is None:
                    continue
                data = getattr(metric, data_kind)
                base = f"resourceMetrics[{ri}].scopeMetrics[{si}].metrics[{mi}]"
                metric_problem = problem or _metric_name_problem(metric.name)
                for pi, dp in enumerate(data.data_points):
                    if metric_problem:
                        out.reject(f"{base}.{_CAMEL[data_kind]}.dataPoints[{pi}]", metric_problem)
                        continue
                    try:
                        points = _points(metric, data_kind, data, dp, res.service, instance)
                        more = 0
                        if data_kind == "summary":  # each quantile point copies the attributes
                            more = sum(kv.ByteSize() for kv in dp.attributes) + _POINT_OVERHEAD
                        out.add_rows(points, dp.ByteSize(), more)
                    except Reject as exc:
                        out.reject(f"{base}.{_CAMEL[data_kind]}.dataPoints[{pi}]", str(exc))
    out.flush()
    if out.rejected:
        log.debug("OTLP metrics: rejected %d data points: %s", out.rejected, out.error_message)
    return out


def _point(
    common: tuple[int, str, str, str, int | None],
    kind: str,
    value: float,
    attrs: dict[str, Any],
    *,
    monotonic: bool = False,
    temporality: str = "cumulative",
    count: int | None = None,
    total: float | None = None,
    lo: float | None = None,
    hi: float | None = None,
    buckets: list[int] | None = None,
    bounds: list[float] | None = None,
) -> tuple[Any, ...]:
    """One point's row: ``METRIC_SCHEMA``'s columns in order, from ``common`` = (time_ns,
    name, service, unit, start_ns)."""
    time_ns, name, service, unit, start_ns = common
    return (
        time_ns,
        name,
        service,
        value,
        kind,
        unit,
        attrs,
        monotonic,
        temporality,
        start_ns,
        count,
        total,
        lo,
        hi,
        buckets,
        bounds,
    )


def _summary_points(
    first: tuple[Any, ...], attrs: dict[str, Any], quantiles: Any, common: tuple[int, str, str, str, int | None]
) -> Iterator[tuple[Any, ...]]:
    yield first
    for qv in quantiles:
        q, v = float(qv.quantile), float(qv.value)
        if math.isfinite(q) and math.isfinite(v):
            yield _point(common, "gauge", v, {**attrs, "otel.quantile": q})


_CAMEL = {
    "gauge": "gauge",
    "sum": "sum",
    "histogram": "histogram",
    "exponential_histogram": "exponentialHistogram",
    "summary": "summary",
}


def _metric_name_problem(name: str) -> str | None:
    if not name:
        return "metric name is empty"
    try:
        key_text(name, "metric name", MAX_METRIC_NAME_BYTES)
    except Reject as exc:
        return str(exc)
    return None


def _finite_float(value: float, what: str) -> float:
    f = float(value)
    if not math.isfinite(f):
        raise Reject(f"{what} must be finite, got {f}")
    return f


def _count(value: int, what: str) -> int:
    if value > _MAX_COUNT:
        raise Reject(f"{what} {value} is past 2**63-1")
    return int(value)


def _points(metric: Any, data_kind: str, data: Any, dp: Any, service: str, instance: Any) -> Iterable[tuple[Any, ...]]:
    """The rows of the tael points of one OTLP data point (one, or more for a summary: then
    a generator, so they are built as the slices take them, after every check)."""
    if dp.flags & _FLAG_NO_RECORDED_VALUE:
        raise Reject("data point has the NO_RECORDED_VALUE flag (no value to store)")
    time_ns = checked_ns(dp.time_unix_nano, "time_unix_nano")
    if not time_ns:
        raise Reject("time_unix_nano is missing")
    start_ns = checked_ns(dp.start_time_unix_nano, "start_time_unix_nano") or None
    attrs = attrs_dict(dp.attributes)
    if instance is not None and "service.instance.id" not in attrs:
        attrs["service.instance.id"] = instance
    common = (time_ns, metric.name, service, metric.unit, start_ns)
    temporality = _TEMPORALITIES.get(getattr(data, "aggregation_temporality", 0), "cumulative")
    if data_kind in ("gauge", "sum"):
        which = dp.WhichOneof("value")
        if which is None:
            raise Reject("number data point has no value")
        value = _finite_float(dp.as_double if which == "as_double" else dp.as_int, "value")
        if data_kind == "gauge":
            return [_point(common, "gauge", value, attrs)]
        return [_point(common, "sum", value, attrs, monotonic=bool(data.is_monotonic), temporality=temporality)]
    count = _count(dp.count, "count")
    total = _finite_float(dp.sum, "sum") if data_kind == "summary" or dp.HasField("sum") else None
    value = total / count if count and total is not None else 0.0
    if data_kind == "summary":
        if len(dp.quantile_values) > MAX_QUANTILES:
            raise Reject(
                f"summary data point has {len(dp.quantile_values):,} quantile_values, over the limit of "
                f"{MAX_QUANTILES:,} (each is stored as a point with a copy of the attributes)"
            )
        summary_attrs = {**attrs, "otel.metric.type": "summary"}
        first = _point(common, "histogram", _finite_float(value, "sum/count"), summary_attrs, count=count, total=total)
        return _summary_points(first, summary_attrs, dp.quantile_values, common)
    lo = _finite_float(dp.min, "min") if dp.HasField("min") else None
    hi = _finite_float(dp.max, "max") if dp.HasField("max") else None
    if data_kind == "exponential_histogram":
        return [
            _point(
                common,
                "histogram",
                _finite_float(value, "sum/count"),
                {**attrs, "otel.metric.type": "exponential_histogram"},
                temporality=temporality,
                count=count,
                total=total,
                lo=lo,
                hi=hi,
            )
        ]
    buckets = [_count(c, f"bucket_counts[{i}]") for i, c in enumerate(dp.bucket_counts)]
    bounds = [_finite_float(b, f"explicit_bounds[{i}]") for i, b in enumerate(dp.explicit_bounds)]
    if buckets or bounds:
        if len(buckets) != len(bounds) + 1:
            raise Reject(f"{len(buckets)} bucket_counts for {len(bounds)} explicit_bounds (need bounds + 1)")
        bucket_counts: list[int] | None = buckets
        explicit_bounds: list[float] | None = bounds
    else:
        bucket_counts = explicit_bounds = None
    return [
        _point(
            common,
            "histogram",
            _finite_float(value, "sum/count"),
            attrs,
            temporality=temporality,
            count=count,
            total=total,
            lo=lo,
            hi=hi,
            buckets=bucket_counts,
            bounds=explicit_bounds,
        )
    ]
