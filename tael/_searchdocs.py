"""The documents of the full-text index and its schema (docs/format/index.md).

One Tantivy document per span with payload text and per log record with a body.
A document holds only what the index itself needs: the words (``text``), what
finds and orders candidates (``signal``, ``time``), the key the record is read
back by (``lsn``, ``k1``..``k3``), and the filters a search asks the index for,
because filtering after the read-back costs 3-10x the search time, and reading a
trace's logs to match their bodies up to 40x (``service``, ``level``, and a log's
``trace``: the last 8 bytes of its trace id, as a number; measured in
docs/format/index.md). Everything else of the record is read from the tiers.

Documents are built column-wise from a block as JSON text, which Tantivy parses
without holding the GIL (``IndexWriter.add_json``): a batch's JSON documents are
joined by Arrow from its columns, so the Python work per log record is one list
item and one call. The record-by-record builders (:func:`span_document`,
:func:`log_document`) give the same text for records read from the cold tier.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import tantivy

from ._blobs import BlobStore, Payloads
from ._block import Block, attrs_of, events_of, span_records
from ._layout import SPAN_ATTRS, SPAN_EVENTS
from ._models import SPAN_STATUSES

DOC_SPAN: Final = 1
DOC_LOG: Final = 2
TOKENIZER: Final = "tael_text"

_U64: Final = {"indexed": False, "fast": True}
FIELDS: Final[tuple[tuple[str, str, dict[str, Any]], ...]] = (
    ("signal", "u64", {"indexed": True, "fast": False}),
    ("time", "i64", _U64),
    ("lsn", "u64", _U64),
    ("k1", "u64", _U64),
    ("k2", "u64", _U64),
    ("k3", "u64", _U64),
    ("service", "text", {"indexing": {"record": "basic", "tokenizer": "raw"}, "fast": False}),
    ("level", "u64", {"indexed": True, "fast": False}),
    ("trace", "u64", {"indexed": True, "fast": False}),
    ("text", "text", {"indexing": {"record": "position", "tokenizer": TOKENIZER}, "fast": False}),
)
"""The schema, field by field: (name, Tantivy type, the options tael sets, as Tantivy's
meta.json writes them). None is stored. docs/format/index.md says what each holds."""


def schema() -> tantivy.Schema:
    """The Tantivy schema of :data:`FIELDS`."""
    sb = tantivy.SchemaBuilder()
    for name, kind, opts in FIELDS:
        if kind == "text":
            sb.add_text_field(
                name, tokenizer_name=opts["indexing"]["tokenizer"], index_option=opts["indexing"]["record"]
            )
        elif kind == "u64":
            sb.add_unsigned_field(name, indexed=opts["indexed"], fast=opts["fast"])
        else:
            sb.add_integer_field(name, indexed=opts["indexed"], fast=opts["fast"])
    return sb.build()


def _holds(have: dict[str, Any], want: dict[str, Any]) -> bool:
    return all(
        _holds(have.get(k) or {}, v) if isinstance(v, dict) else have.get(k, False) == v for k, v in want.items()
    )


def schema_matches(meta: Any) -> bool:
    """Whether a Tantivy ``meta.json`` (parsed) describes an index of this schema: the
    same fields in order, each with the options of :data:`FIELDS` (an index written by
    an earlier tael has other fields, and is rebuilt)."""
    fields = meta.get("schema") if isinstance(meta, dict) else None
    if not isinstance(fields, list) or len(fields) != len(FIELDS):
        return False
    return all(
        isinstance(f, dict)
        and f.get("name") == name
        and f.get("type") == kind
        and isinstance(f.get("options"), dict)
        and _holds(f["options"], opts)
        for f, (name, kind, opts) in zip(fields, FIELDS, strict=True)
    )


# ---------------------------------------------------------------- JSON text


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def json_strings(arr: pa.Array) -> pa.Array:
    """The JSON string literal of each value of a string array (no nulls), as orjson
    writes it: ``"`` and ``\\`` escaped, tab, newline and carriage return as ``\\t``,
    ``\\n``, ``\\r``, everything else as is. Arrow kernels do the escaping, over the
    whole column; a column holding another control character goes value by value
    through orjson (which writes those as ``\\b``, ``\\f`` or ``\\u00XX``)."""
    n = len(arr)
    if n == 0:
        return pa.array([], pa.string())
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset : arr.offset + n + 1]
    data = arr.buffers()[2]
    u8 = np.frombuffer(data, np.uint8)[offsets[0] : offsets[-1]] if data is not None else np.empty(0, np.uint8)
    out = arr
    if (u8 == 0x5C).any():
        out = pc.replace_substring(out, "\\", "\\\\")
    if (u8 == 0x22).any():
        out = pc.replace_substring(out, '"', '\\"')
    low = u8[u8 < 0x20]
    if len(low):
        if not np.isin(low, (0x09, 0x0A, 0x0D)).all():
            return pa.array([_dumps(v) for v in arr.to_pylist()], pa.string())
        for byte, escaped in ((0x09, "\\t"), (0x0A, "\\n"), (0x0D, "\\r")):
            if (low == byte).any():
                out = pc.replace_substring(out, chr(byte), escaped)
    return pc.binary_join_element_wise('"', out, '"', "")


def _json_few(arr: pa.Array) -> pa.Array:
    """:func:`json_strings` of a column with few distinct values (a service): each
    distinct value written once."""
    enc = pc.dictionary_encode(arr)
    literals = pa.array([_dumps(v) for v in enc.dictionary.to_pylist()], pa.string())
    return literals.take(enc.indices)


# ---------------------------------------------------------------- documents


def span_document(start: int, trace: bytes, span: bytes, service: str, status: int, lsn: int, texts: list[str]) -> str:
    """The document of one span: its start, the WAL position it came in (0 when indexed
    from the tiers), its trace id (k1, k2: big-endian halves) and span id (k3), service,
    status code (level) and payload texts."""
    return (
        f'{{"signal":{DOC_SPAN},"time":{start},"lsn":{lsn},"k1":{int.from_bytes(trace[:8])},'
        f'"k2":{int.from_bytes(trace[8:])},"k3":{int.from_bytes(span)},"service":{_dumps(service)},'
        f'"level":{status},"text":{_dumps(texts)}}}'
    )


def log_document(t: int, lsn: int, index: int, service: str, severity: int, trace: bytes | None, body: str) -> str:
    """The document of one log record: its key (time, WAL position ``lsn``, ``index`` in
    that batch: k1), service, severity number (level), the last 8 bytes of its trace id
    (:func:`trace_term`; no ``trace`` without one) and body."""
    traced = "" if trace is None else f',"trace":{trace_term(trace)}'
    return (
        f'{{"signal":{DOC_LOG},"time":{t},"lsn":{lsn},"k1":{index},"service":{_dumps(service)},'
        f'"level":{severity}{traced},"text":{_dumps(body)}}}'
    )


def trace_term(trace: bytes) -> int:
    """The ``trace`` value of a log document of this trace id: its last 8 bytes,
    big-endian, the random part of a W3C trace id and the whole of a 64-bit one
    (whose first 8 bytes are zero)."""
    return int.from_bytes(trace[8:])


def _trace_pieces(traces: pa.Array) -> pa.Array:
    """``,"trace":N`` of each trace id of a binary(16) column; null where it is null."""
    n = len(traces)
    if traces.null_count == n:
        return pa.nulls(n, pa.string())
    data = np.frombuffer(traces.buffers()[1], np.dtype(">u8"))[2 * traces.offset + 1 : 2 * (traces.offset + n) : 2]
    mask = None if traces.null_count == 0 else pc.is_null(traces).to_numpy(zero_copy_only=False)
    numbers = pa.array(data.astype(np.uint64), pa.uint64(), mask=mask)
    return pc.binary_join_element_wise(',"trace":', pc.cast(numbers, pa.string()), "")


def log_documents(
    times: pa.Array,
    lsns: pa.Array | int,
    indexes: pa.Array,
    services: pa.Array,
    levels: pa.Array,
    traces: pa.Array,
    bodies: pa.Array,
) -> list[str]:
    """:func:`log_document` of each row of these columns, joined column-wise."""
    if len(times) == 0:
        return []
    lsn = str(lsns) if isinstance(lsns, int) else pc.cast(lsns, pa.string())
    docs = pc.binary_join_element_wise(
        f'{{"signal":{DOC_LOG},"time":',
        pc.cast(times, pa.string()),
        ',"lsn":',
        lsn,
        ',"k1":',
        pc.cast(indexes, pa.string()),
        ',"service":',
        _json_few(services),
        ',"level":',
        pc.cast(levels, pa.string()),
        _trace_pieces(traces),
        ',"text":',
        json_strings(bodies),
        "}",
        "",  # the separator
        null_handling="replace",
        null_replacement="",  # no trace piece for a record without a trace id
    )
    out: list[str] = docs.to_pylist()
    return out


def block_documents(block: Block, lsn: int, payloads: Payloads) -> list[str]:
    """The documents of a WAL block of spans or logs (none for metric points): the rows its
    ``payload`` column flags; every text is in the block, its rows numbered from 0 in
    the batch that came at WAL position ``lsn``."""
    if block.signal == "metrics":
        return []
    rows = pc.indices_nonzero(block.column("payload"))
    if block.signal == "logs":
        return _log_documents(block, rows, lsn, None)
    return _span_documents(block, rows.to_pylist(), lsn, payloads, None)


def stored_block_documents(block: Block, payloads: Payloads, blobs: BlobStore) -> list[str]:
    """The documents of a hot-tier block of spans or logs (an index build): rows chosen
    by what they hold, not by the ``payload`` column (a block migrated from hot format 2
    has it 0), long texts read back from the blob store. A log's key is its
    ``wal_lsn`` and ``batch_index``; spans are indexed with WAL position 0."""
    if block.signal == "metrics":
        return []
    if block.signal == "logs":
        texty = pc.or_(pc.not_equal(block.column("body"), ""), pc.is_valid(block.column("body_blob")))
        return _log_documents(block, pc.indices_nonzero(texty), 0, blobs)
    maybe = pc.is_valid(block.column("payload_refs"))
    for key in payloads.keys:
        if not (key.isascii() and key.isprintable()) or any(c in key for c in '"\\/'):
            # a JSON writer may escape it (\uXXXX, \/): no quick test, parse every row
            maybe = pa.array([True] * block.n)
            break
        for name in ("attributes", "events"):
            maybe = pc.or_(maybe, pc.match_substring(block.column(name), f'"{key}"'))
    return _span_documents(block, pc.indices_nonzero(maybe).to_pylist(), 0, payloads, blobs)


def _log_documents(block: Block, rows: pa.Array, lsn: int, blobs: BlobStore | None) -> list[str]:
    every = len(rows) == block.n

    def col(name: str) -> pa.Array:
        arr = block.column(name)
        return arr if every else arr.take(rows)

    bodies = col("body")
    if blobs is not None:
        digests = col("body_blob")
        if digests.null_count < len(digests):
            read = blobs.read
            bodies = pa.array(
                [b if d is None else read(d) for b, d in zip(bodies.to_pylist(), digests.to_pylist(), strict=True)],
                pa.string(),
            )
    if block.has("wal_lsn"):
        lsns: pa.Array | int = col("wal_lsn")
        indexes = col("batch_index")
    else:
        lsns, indexes = lsn, rows
    return log_documents(col("time_ns"), lsns, indexes, col("service"), col("severity_number"), col("trace_id"), bodies)


def _span_documents(block: Block, rows: list[int], lsn: int, payloads: Payloads, blobs: BlobStore | None) -> list[str]:
    if not rows:
        return []
    take = pa.array(rows, pa.int64())
    starts = block.column("start_ns").take(take).to_pylist()
    traces = block.column("trace_id").take(take).to_pylist()
    spans = block.column("span_id").take(take).to_pylist()
    services = block.column("service").take(take).to_pylist()
    statuses = pc.index_in(block.column("status").take(take), pa.array(SPAN_STATUSES)).to_pylist()
    attrs = block.column("attributes").take(take).to_pylist()
    events = block.column("events").take(take).to_pylist()
    refs = block.column("payload_refs").take(take).to_pylist() if blobs is not None else [None] * len(rows)
    texts_of = payloads.span_texts
    scratch: list[Any] = [None] * (max(SPAN_ATTRS, SPAN_EVENTS) + 1)
    docs = []
    for i, row in enumerate(rows):
        if refs[i] is not None and blobs is not None:  # some texts are in the blob store: the record, restored
            texts = texts_of(blobs.restore_span(span_records(block.batch(), [row])[0]))
        else:
            scratch[SPAN_ATTRS] = attrs_of(attrs[i])
            scratch[SPAN_EVENTS] = events_of(events[i])
            texts = texts_of(scratch)
        if texts:
            docs.append(span_document(starts[i], traces[i], spans[i], services[i], statuses[i], lsn, texts))
    return docs
