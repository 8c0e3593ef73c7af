"""The documents of the full-text index and its schema (docs/format/index.md).

One Tantivy document per span with payload text and per log record with a body.
A document holds only what the index itself needs: the words (``text``; a JSON
payload by its leaves: :func:`index_texts`), the character grams of Chinese,
Japanese and Thai text (``grams``: :func:`grams_of`), what
finds and orders candidates (``signal``, ``time``), the key the record is read
back by (``lsn``, ``k1``..``k3``), and the filters a search asks the index for,
because filtering after the read-back costs 3-10x the search time, and reading a
trace's logs to match their bodies up to 40x (``service``, ``level``, and a log's
``trace``: the last 8 bytes of its trace id, as a number; measured in
docs/format/index.md). Everything else of the record is read from the tiers.
What a document indexes of long texts is capped (:data:`INDEX_MAX_CHARS`,
:data:`INDEX_MAX_TEXTS`): their beginning; the records are stored whole.

Documents are built column-wise from a block as JSON text, which Tantivy parses
without holding the GIL (``IndexWriter.add_json``): a batch's JSON documents are
joined by Arrow from its columns, so the Python work per log record is one list
item and one call. The record-by-record builders (:func:`span_document`,
:func:`log_document`) give the same text for records read from the cold tier.
"""

from __future__ import annotations

import re
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
TOKENIZER: Final = "tael_words"
"""The tokenizer of ``text``: runs of letters and digits outside :data:`UNSPACED`."""
GRAMS_TOKENIZER: Final = "tael_grams"
"""The tokenizer of ``grams``: whitespace (the grams are made by :func:`grams_of`)."""

UNSPACED: Final[tuple[tuple[int, int], ...]] = (
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK and Kangxi radicals
    (0x3005, 0x3007),  # iteration mark, closing mark, ideographic zero
    (0x3021, 0x3029),  # Hangzhou numerals
    (0x3038, 0x303B),
    (0x3041, 0x3096),  # Hiragana
    (0x309D, 0x309F),
    (0x30A1, 0x30FA),  # Katakana (without the middle dot ・)
    (0x30FC, 0x30FF),  # ー and iteration marks
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # halfwidth Katakana
    (0x20000, 0x3134F),  # CJK extensions B..G
)
"""Code point ranges of scripts written without spaces between words (Chinese,
Japanese kana and kanji, Thai, Lao, Myanmar, Khmer): their text is indexed as
character grams (``grams``), never as words (``text``). Korean (Hangul) is written
with spaces and stays in ``text``."""

_UNSPACED_RUST = "".join(f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in UNSPACED)
WORDS_PATTERN: Final = f"[[\\p{{Alphabetic}}\\p{{N}}]--[{_UNSPACED_RUST}]]+"
"""The regular expression (Rust ``regex`` syntax) of a ``text`` token: a run of what
Tantivy's simple tokenizer keeps (``char::is_alphanumeric``: Alphabetic or Number)
outside :data:`UNSPACED`. For text without those scripts it splits exactly as the
simple tokenizer (tests/test_search_unspaced.py compares them)."""
UNSPACED_RE2: Final = f"[{_UNSPACED_RUST}]"
"""A character of :data:`UNSPACED`, for Arrow's (RE2) regular expressions."""
_RUN: Final = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in UNSPACED) + "]+")

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
    ("grams", "text", {"indexing": {"record": "position", "tokenizer": GRAMS_TOKENIZER}, "fast": False}),
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


# ---------------------------------------------------------------- what is indexed of a text

STRUCTURAL_KEYS: Final = frozenset({"role", "type", "finish_reason", "id", "tool_call_id", "mime_type", "index"})
"""Keys of a JSON payload whose string values are not indexed (they name the shape of
a message, not what it says): see :func:`index_texts`."""
FOLDED_MARKS: Final = "\u0610-\u061a\u0640\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7\u06e8\u06ea-\u06ed"
"""Characters the ``text`` field leaves out, in documents and queries alike: Arabic
vowel and recitation marks (harakat, tanwin, shadda, sukun, the superscript alef,
Quranic annotation marks) and the tatweel (a stretching stroke). Arabic is mostly written
without the marks, so ``مرحبا`` must find ``مرحبًا``; they are letters to Tantivy's
tokenizer (Unicode Alphabetic), which would otherwise keep them inside the word."""
_FOLD: Final = re.compile(f"[{FOLDED_MARKS}]")
_FOLD_RE2: Final = f"[{FOLDED_MARKS}]"


def fold(text: str) -> str:
    """``text`` without :data:`FOLDED_MARKS` (the text field's form of it)."""
    return _FOLD.sub("", text) if _FOLD.search(text) else text


def _fold_column(texts: pa.Array) -> pa.Array:
    """:func:`fold` of each text of a string column (one regular expression pass when none has a mark)."""
    if not pc.any(pc.match_substring_regex(texts, _FOLD_RE2)).as_py():
        return texts
    return pc.replace_substring_regex(texts, _FOLD_RE2, "")


INDEX_MAX_CHARS: Final = 1 << 20
"""Most characters (code points, default 1 MiB of them: 1,048,576) of text one document
indexes, over all its texts (a span's payload texts after :func:`index_texts` takes
JSON apart; a log record's body): past it each text is indexed by its beginning
(:func:`index_texts`). Bounds the indexer's memory and time per record, whatever a
client sends: uncapped, a 10 MB JSON payload took ~500 MB. Records are stored whole."""
INDEX_MAX_TEXTS: Final = 1 << 16
"""Most texts (65,536) one span document indexes: payload texts and the leaves of JSON
payloads, each one text, the first ones in order (a JSON array of a million numbers
is a million texts)."""
JSON_MAX_CHARS: Final = 4 << 20
"""A payload text longer than this (code points, 4 Mi) is not parsed as JSON (parsing
costs memory by the number of values in it, not by what is indexed): it is indexed
as plain text, by its beginning, keys and punctuation included."""
_JSON_DEPTH: Final = 3  # a JSON string inside a JSON value inside ... is parsed up to this deep
_JSONISH: Final = re.compile(r"\s*[\[{]")


def index_texts(texts: list[str]) -> list[str]:
    """The texts a span's payload texts are indexed as. A text that is a JSON array or
    object (``gen_ai.input.messages``, tool call arguments, OpenInference's JSON
    ``input.value``) is indexed by its leaves, not by its punctuation and keys: each
    string and number in it becomes a text of its own (so words of two leaves are
    never adjacent for a phrase), except the string values of :data:`STRUCTURAL_KEYS`
    (``"role": "user"``, ``"type": "text"``); a string leaf that is itself JSON (tool
    call arguments inside a message) is taken apart the same way. Any other text, one
    that does not parse, and one longer than :data:`JSON_MAX_CHARS` are indexed as
    they are.

    What comes out is bounded: the first :data:`INDEX_MAX_TEXTS` texts, and of those at
    most :data:`INDEX_MAX_CHARS` characters together (:func:`capped`)."""
    out: list[str] = []
    for text in texts:
        if len(out) >= INDEX_MAX_TEXTS:
            break
        _add_text(text, out, 0)
    return capped(out[:INDEX_MAX_TEXTS])


def capped(texts: list[str], budget: int = INDEX_MAX_CHARS) -> list[str]:
    """``texts`` holding at most ``budget`` characters together: when they hold more,
    every text longer than some length ``L`` is cut to its first ``L`` characters,
    ``L`` the largest for which the total fits; shorter texts stay whole (so a short
    completion beside a huge prompt is indexed whole, and a single text keeps its first
    ``budget`` characters)."""
    lengths = [len(t) for t in texts]
    if sum(lengths) <= budget:
        return texts
    left, rest = budget, len(lengths)
    for n in sorted(lengths):
        if n * rest > left:
            break
        left -= n
        rest -= 1
    level = left // rest
    return [t if len(t) <= level else t[:level] for t in texts]


def _add_text(text: str, out: list[str], depth: int) -> None:
    if depth < _JSON_DEPTH and len(text) <= JSON_MAX_CHARS and _JSONISH.match(text):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, (list, dict)):
            _add_leaves(value, out, depth + 1)
            return
    out.append(text)


def _add_leaves(root: list[Any] | dict[str, Any], out: list[str], depth: int) -> None:
    stack: list[Any] = [root]  # not recursive: orjson parses nesting deeper than Python's recursion limit
    while stack and len(out) < INDEX_MAX_TEXTS:
        value = stack.pop()
        if type(value) is str:
            if value:
                _add_text(value, out, depth)
        elif type(value) is dict:
            items = [v for k, v in value.items() if not (k in STRUCTURAL_KEYS and type(v) is str)]
            stack.extend(reversed(items))
        elif type(value) is list:
            stack.extend(reversed(value))
        elif type(value) in (int, float):
            out.append(str(value))


def grams_of(text: str) -> list[str]:
    """The ``grams`` tokens of a text: for each run of :data:`UNSPACED` characters, its
    overlapping character bigrams in order, then its characters one by one. A query
    for two or more such characters is the phrase of its bigrams (:func:`query_grams`),
    so it matches exactly where the text holds them as a substring; one for a single
    character is that character. The unigrams after each run also keep the bigrams of
    two runs from being adjacent."""
    out: list[str] = []
    for run in _RUN.findall(text):
        if len(run) > 1:
            out += [run[i : i + 2] for i in range(len(run) - 1)]
        out += run
    return out


_LONG_RUN: Final = 256  # a run at least this long has its grams written by numpy, not as str objects


def _grams_line(text: str) -> str:
    """``" ".join(grams_of(text))``, without a str object per gram for long runs (a
    megabyte of Chinese is two million grams: ~250 MB as a list of str)."""
    pieces = []
    for run in _RUN.findall(text):
        n = len(run)
        if n < _LONG_RUN:
            pieces.append(" ".join([run[i : i + 2] for i in range(n - 1)] + list(run)))
            continue
        cps = np.frombuffer(run.encode("utf-32-le"), np.uint32)
        line = np.full(3 * (n - 1) + 2 * n - 1, ord(" "), np.uint32)
        bigrams = line[: 3 * (n - 1)].reshape(n - 1, 3)
        bigrams[:, 0] = cps[:-1]
        bigrams[:, 1] = cps[1:]
        line[3 * (n - 1) :: 2] = cps
        pieces.append(line.tobytes().decode("utf-32-le"))
    return " ".join(pieces)


def query_grams(run: str) -> list[str]:
    """The ``grams`` token sequence a query's run of :data:`UNSPACED` characters must match."""
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]


def unspaced_runs(text: str) -> list[str]:
    """The runs of :data:`UNSPACED` characters in a text."""
    return _RUN.findall(text)


def has_unspaced(text: str) -> bool:
    return _RUN.search(text) is not None


def split_unspaced(text: str) -> list[str]:
    """The pieces of a text between its runs of :data:`UNSPACED` characters."""
    return _RUN.split(text)


def _grams_piece(texts: list[str]) -> str:
    grams = [g for t in texts if _RUN.search(t) and (g := _grams_line(t))]
    return f',"grams":{_dumps(grams)}' if grams else ""


# ---------------------------------------------------------------- documents


def span_document(start: int, trace: bytes, span: bytes, service: str, status: int, lsn: int, texts: list[str]) -> str:
    """The document of one span: its start, the WAL position it came in (0 when indexed
    from the tiers), its trace id (k1, k2: big-endian halves) and span id (k3), service,
    status code (level) and payload texts (as :func:`index_texts` takes them apart;
    their :func:`grams_of` when they hold unspaced scripts)."""
    texts = index_texts(texts)
    return (
        f'{{"signal":{DOC_SPAN},"time":{start},"lsn":{lsn},"k1":{int.from_bytes(trace[:8])},'
        f'"k2":{int.from_bytes(trace[8:])},"k3":{int.from_bytes(span)},"service":{_dumps(service)},'
        f'"level":{status},"text":{_dumps([fold(t) for t in texts])}{_grams_piece(texts)}}}'
    )


def log_document(t: int, lsn: int, index: int, service: str, severity: int, trace: bytes | None, body: str) -> str:
    """The document of one log record: its key (time, WAL position ``lsn``, ``index`` in
    that batch: k1), service, severity number (level), the last 8 bytes of its trace id
    (:func:`trace_term`; no ``trace`` without one) and body (as it is, its first
    :data:`INDEX_MAX_CHARS` characters, and their :func:`grams_of` when they hold
    unspaced scripts)."""
    traced = "" if trace is None else f',"trace":{trace_term(trace)}'
    body = body[:INDEX_MAX_CHARS]
    return (
        f'{{"signal":{DOC_LOG},"time":{t},"lsn":{lsn},"k1":{index},"service":{_dumps(service)},'
        f'"level":{severity}{traced},"text":{_dumps(fold(body))}{_grams_piece([body])}}}'
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
    if (pc.max(pc.binary_length(bodies)).as_py() or 0) > INDEX_MAX_CHARS:  # bytes: no body is longer in characters
        bodies = pc.utf8_slice_codeunits(bodies, 0, INDEX_MAX_CHARS)  # code points, despite the name
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
        json_strings(_fold_column(bodies)),
        _log_grams(bodies),
        "}",
        "",  # the separator
        null_handling="replace",
        null_replacement="",  # no trace piece for a record without a trace id
    )
    out: list[str] = docs.to_pylist()
    return out


def _log_grams(bodies: pa.Array) -> pa.Array:
    """``,"grams":[...]`` of each body holding unspaced scripts; null for the others
    (one regular expression pass over the column finds them)."""
    has = pc.match_substring_regex(bodies, UNSPACED_RE2)
    if not pc.any(has).as_py():
        return pa.nulls(len(bodies), pa.string())
    rows = pc.indices_nonzero(has).to_pylist()
    pieces: list[str | None] = [None] * len(bodies)
    for i, body in zip(rows, bodies.take(rows).to_pylist(), strict=True):
        pieces[i] = _grams_piece([body])
    return pa.array(pieces, pa.string())


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
    for rule in payloads.keys.rules:
        key = rule.partition(":")[2] or rule  # the attribute part (a superset: on any event)
        if not (key.isascii() and key.isprintable()) or any(c in key for c in '"\\/'):
            # a JSON writer may escape it (\uXXXX, \/): no quick test, parse every row
            maybe = pa.array([True] * block.n)
            break
        for name in ("attributes", "events"):
            if "*" in key:
                pattern = '"' + r'(?:[^".\\]|\\.)+'.join(re.escape(piece) for piece in key.split("*")) + '"'
                maybe = pc.or_(maybe, pc.match_substring_regex(block.column(name), pattern))
            else:
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
