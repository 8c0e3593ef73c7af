"""The full-text index's documents (docs/format/index.md): exactly the documented fields
and values, the same documents from the indexer and from a rebuild out of the tiers,
their JSON text byte for byte, and an index written with the earlier schema rebuilt."""

from __future__ import annotations

import json
import random
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
import tantivy
from hypothesis import given, settings
from hypothesis import strategies as st

import tael
from tael._errors import StorageError
from tael._models import SPAN_STATUSES
from tael._search import DOC_LOG, DOC_SPAN, TextIndex, matches, parse_text
from tael._searchdocs import (
    FIELDS,
    TOKENIZER,
    json_strings,
    log_document,
    log_documents,
    schema,
    schema_matches,
    span_document,
    trace_term,
)

from .conftest import make_log, make_span
from .data.make_format1_store import SETTINGS as FORMAT1_SETTINGS
from .data.make_format1_store import TARBALL

WORDS = ["alpha", "beta", "gamma", "delta", "rate", "limit", "timeout"]
SERVICES = ["api", "db", 'we"ird\\svc']
PROMPT = "gen_ai.prompt"
T0 = 1_767_225_600 * 10**9


def _analyzer() -> Any:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .build()
    )


def index_documents(path: Path) -> dict[int, list[dict[str, Any]]]:
    """Every document of the index at ``path`` by signal: its fast fields, and the
    values of the indexed-only fields and the words of ``text`` that find it."""
    index = tantivy.Index.open(str(path))
    index.register_tokenizer(TOKENIZER, _analyzer())
    s = schema()
    searcher = index.searcher()

    def addrs(query: Any) -> list[tuple[int, int]]:
        return [(a.segment_ord, a.doc) for _score, a in searcher.search(query, limit=100_000).hits]

    out: dict[int, list[dict[str, Any]]] = {}
    for signal in (DOC_SPAN, DOC_LOG):
        of_signal = tantivy.Query.term_query(s, "signal", signal)
        found = searcher.search(of_signal, limit=100_000).hits
        docs = [a for _score, a in found]
        fast = {name: searcher.fast_field_values(name, docs) for name in ("time", "lsn", "k1", "k2", "k3")}
        rows = [dict(zip(fast, values, strict=True)) for values in zip(*fast.values(), strict=True)]
        by_addr = {(a.segment_ord, a.doc): row for a, row in zip(docs, rows, strict=True)}

        def tag(field: str, value: Any, term: Any, of_signal: Any = of_signal, rows: Any = by_addr) -> None:
            q = tantivy.Query.boolean_query([(tantivy.Occur.Must, of_signal), (tantivy.Occur.Must, term)])
            for addr in addrs(q):
                rows[addr].setdefault(field, []).append(value)

        for svc in SERVICES:
            tag("service", svc, tantivy.Query.term_query(s, "service", svc))
        for level in range(25):
            tag("level", level, tantivy.Query.term_query(s, "level", level))
        for word in WORDS:
            tag("words", word, tantivy.Query.term_query(s, "text", word))
        out[signal] = rows
    return out


def trace_docs(path: Path, terms: list[int]) -> dict[int, int]:
    """How many log documents hold each ``trace`` value."""
    index = tantivy.Index.open(str(path))
    index.register_tokenizer(TOKENIZER, _analyzer())
    searcher = index.searcher()
    return {t: searcher.search(tantivy.Query.term_query(schema(), "trace", t), limit=100_000).count for t in terms}


def corpus(rng: random.Random) -> tuple[list[list[tael.Span]], list[list[tael.LogRecord]]]:
    span_batches, log_batches = [], []
    n = 0
    for b in range(3):
        spans, logs = [], []
        for _ in range(20):
            n += 1
            attrs: dict[str, Any] = {"n": n}
            events = []
            kind = rng.randrange(4)
            if kind == 0:
                attrs[PROMPT] = " ".join(rng.choices(WORDS, k=4))
            elif kind == 1:  # long: the blob store (threshold 64 bytes below)
                attrs[PROMPT] = " ".join(rng.choices(WORDS, k=30))
            elif kind == 2:
                events.append(tael.SpanEvent(time_ns=T0, name="exception", attributes={"exception.message": "beta"}))
            spans.append(
                make_span(
                    trace_id=rng.randbytes(16).hex(),
                    span_id=rng.randbytes(8).hex(),
                    service=rng.choice(SERVICES),
                    status=rng.choice(SPAN_STATUSES),
                    start_ns=T0 + n * 1_000 + b,
                    end_ns=T0 + n * 1_000 + 500,
                    attributes=attrs,
                    events=events,
                )
            )
            body = rng.choice(["", " ".join(rng.choices(WORDS, k=3)), " ".join(rng.choices(WORDS, k=40)), 'a "q"\n\\'])
            traced = rng.random() < 0.5
            logs.append(
                make_log(
                    time_ns=T0 + n * 1_000,
                    body=body,
                    service=rng.choice(SERVICES),
                    severity_number=rng.randrange(25),
                    trace_id=rng.randbytes(16).hex() if traced else None,
                )
            )
        span_batches.append(spans)
        log_batches.append(logs)
    return span_batches, log_batches


def _words(text: str) -> set[str]:
    return {w for w in _analyzer().analyze(text) if w in WORDS}


def test_documents_hold_exactly_the_documented_fields_from_the_indexer_and_a_rebuild(tmp_path: Path) -> None:
    span_batches, log_batches = corpus(random.Random(7))
    data = tmp_path / "data"
    with tael.Store(data, tael.Settings(payload_blob_min_bytes=64)) as store:
        for spans, logs in zip(span_batches, log_batches, strict=True):
            store.insert_spans(spans)
            store.insert_logs(logs)
        store.flush()
        assert store.stats().blobs > 0
        with store._hot.reader() as txn:
            log_keys = {t: (lsn, idx) for (t, lsn, idx), _f, _lsn in store._hot.records(txn, "logs")}
    meta = json.loads((data / "index" / "meta.json").read_bytes())
    assert [(f["name"], f["type"]) for f in meta["schema"]] == [(name, kind) for name, kind, _ in FIELDS]
    assert schema_matches(meta)
    assert all(not f["options"].get("stored") for f in meta["schema"]), "nothing is stored"

    spans = [s for batch in span_batches for s in batch]
    logs = [r for batch in log_batches for r in batch]
    payload = set(tael.Settings().payload_attributes)

    def texts(s: tael.Span) -> list[str]:
        out = [v for k, v in s.attributes.items() if k in payload and isinstance(v, str)]
        return out + [v for e in s.events for k, v in e.attributes.items() if k in payload and isinstance(v, str)]

    def want_spans(span_lsn: dict[str, int] | None) -> list[dict[str, Any]]:
        out = []
        for s in spans:
            if not texts(s):
                continue
            trace, span = bytes.fromhex(s.trace_id), bytes.fromhex(s.span_id)
            words = sorted(set().union(*map(_words, texts(s))))
            row = {
                "time": s.start_ns,
                "lsn": 0 if span_lsn is None else span_lsn[s.span_id],
                "k1": int.from_bytes(trace[:8]),
                "k2": int.from_bytes(trace[8:]),
                "k3": int.from_bytes(span),
                "service": [s.service],
                "level": [SPAN_STATUSES.index(s.status)],
            }
            if words:
                row["words"] = words
            out.append(row)
        return sorted(out, key=lambda r: r["k3"])

    want_logs = []
    for r in logs:
        if not r.body:
            continue
        lsn, idx = log_keys[r.time_ns]
        row: dict[str, Any] = {
            "time": r.time_ns,
            "lsn": lsn,
            "k1": idx,
            "k2": None,
            "k3": None,
            "service": [r.service],
            "level": [r.severity_number],
        }
        if _words(r.body):
            row["words"] = sorted(_words(r.body))
        want_logs.append(row)
    want_logs.sort(key=lambda r: (r["time"], r["lsn"], r["k1"]))

    def normal(docs: dict[int, list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        for rows in docs.values():
            for row in rows:
                if "words" in row:
                    row["words"] = sorted(row["words"])
        return sorted(docs[DOC_SPAN], key=lambda r: r["k3"]), sorted(
            docs[DOC_LOG], key=lambda r: (r["time"], r["lsn"], r["k1"])
        )

    got_spans, got_logs = normal(index_documents(data / "index"))
    # spans: each batch's documents carry the WAL position of the frame it came in
    span_lsn = {
        s.span_id: next(r["lsn"] for r in got_spans if r["k3"] == int(s.span_id, 16)) for s in spans if texts(s)
    }
    lsns = [sorted({span_lsn[s.span_id] for s in batch if texts(s)}) for batch in span_batches]
    assert all(len(x) == 1 for x in lsns) and lsns == sorted(lsns) and lsns[0][0] > 0
    assert got_spans == want_spans(span_lsn)
    assert got_logs == want_logs
    terms = [trace_term(bytes.fromhex(r.trace_id)) for r in logs if r.trace_id and r.body]
    assert trace_docs(data / "index", terms) == {t: terms.count(t) for t in terms}

    assert tael.rebuild_index(data, tael.Settings(payload_blob_min_bytes=64)) == len(want_logs) + len(got_spans)
    rebuilt_spans, rebuilt_logs = normal(index_documents(data / "index"))
    assert rebuilt_spans == want_spans(None)  # indexed from the tiers: WAL position 0
    assert rebuilt_logs == want_logs
    assert trace_docs(data / "index", terms) == {t: terms.count(t) for t in terms}


def test_the_json_text_of_a_document_byte_for_byte() -> None:
    trace, span = bytes.fromhex("0102030405060708090a0b0c0d0e0f10"), bytes.fromhex("1112131415161718")
    assert span_document(1_700, trace, span, 'a"b', 2, 4096, ["x y", "é\n"]) == (
        '{"signal":1,"time":1700,"lsn":4096,"k1":72623859790382856,"k2":651345242494996240,'
        '"k3":1230066625199609624,"service":"a\\"b","level":2,"text":["x y","é\\n"]}'
    )
    assert log_document(-5, 4096, 3, "api", 17, trace, "body\t\\") == (
        '{"signal":2,"time":-5,"lsn":4096,"k1":3,"service":"api","level":17,'
        '"trace":651345242494996240,"text":"body\\t\\\\"}'
    )
    assert log_document(0, 1, 0, "api", 0, None, "x") == (
        '{"signal":2,"time":0,"lsn":1,"k1":0,"service":"api","level":0,"text":"x"}'
    )
    assert trace_term(trace) == int.from_bytes(trace[8:])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=30), st.integers(0, 29), st.data())
def test_json_strings_write_what_orjson_writes(texts: list[str], start: int, data: st.DataObject) -> None:
    start = min(start, len(texts) - 1)
    end = data.draw(st.integers(start, len(texts)))
    arr = pa.array(texts, pa.string())[start:end]  # a slice: offsets into shared buffers
    assert json_strings(arr).to_pylist() == [orjson.dumps(t).decode() for t in texts[start:end]]


def test_column_documents_equal_record_documents() -> None:
    rng = random.Random(3)
    n = 64
    times = [rng.randrange(-(2**63), 2**63) for _ in range(n)]
    traces = [None if rng.random() < 0.4 else rng.randbytes(16) for _ in range(n)]
    bodies = [rng.choice(['a "q" \\ b', "line\nnext\ttab\r", "ctl\x01x", "plain é 😀", "x"]) for _ in range(n)]
    services = [rng.choice(SERVICES) for _ in range(n)]
    levels = [rng.randrange(25) for _ in range(n)]
    for lo, hi in ((0, n), (5, 40)):
        got = log_documents(
            pa.array(times, pa.int64())[lo:hi],
            77,
            pa.array(range(n), pa.int32())[lo:hi],
            pa.array(services)[lo:hi],
            pa.array(levels, pa.int32())[lo:hi],
            pa.array(traces, pa.binary(16))[lo:hi],
            pa.array(bodies)[lo:hi],
        )
        want = [log_document(times[i], 77, i, services[i], levels[i], traces[i], bodies[i]) for i in range(lo, hi)]
        assert got == want
        assert [json.loads(d) for d in got]  # valid JSON


@pytest.mark.parametrize(
    ("text", "query", "found"),
    [
        ("foo bar", '"foo bar"', True),
        (f"foo {'x' * 45} bar", '"foo bar"', False),  # the long token keeps its position
        (f"foo {'x' * 45} bar", "foo bar", True),
        (f"FOO {'é' * 20} Bar", '"foo bar"', False),  # 40 UTF-8 bytes: too long
        (f"FOO {'é' * 19} Bar", f'"foo {"é" * 19} bar"', True),
        ("rate-limit exceeded", "rate-limit", True),
        ("limit rate", '"rate limit"', False),
    ],
)
def test_matches_decides_as_the_index_does(tmp_path: Path, text: str, query: str, found: bool) -> None:
    index = TextIndex(tmp_path / "index", read_only=False, heap_bytes=15 << 20)
    index.add([log_document(1, 1, 0, "api", 9, None, text)])
    index.commit()
    terms = parse_text(query)
    hits = [
        k
        for page in index.search(
            DOC_LOG, terms, service=None, trace=None, min_level=None, level=None, lo=None, hi=None, page=10
        )
        for k in page
    ]
    index.close()
    assert bool(hits) is found
    assert matches([text], terms) is found


def _format1_index(path: Path) -> None:
    """An empty index with the schema tael wrote before docs/format/index.md's (format 1)."""
    sb = tantivy.SchemaBuilder()
    sb.add_unsigned_field("signal", indexed=True, fast=True)
    sb.add_integer_field("time", fast=True)
    for name in ("lsn", "k1", "k2", "k3"):
        sb.add_unsigned_field(name, fast=True)
    sb.add_unsigned_field("level", indexed=True, fast=True)
    sb.add_text_field("service", tokenizer_name="raw")
    sb.add_text_field("trace", tokenizer_name="raw")
    sb.add_text_field("text", tokenizer_name=TOKENIZER, index_option="position")
    TextIndex.remove(path)
    path.mkdir()
    tantivy.Index(sb.build(), path=str(path))


def test_an_index_with_the_earlier_schema_is_rebuilt_at_a_writable_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tael.Store(data) as store:
        store.insert_logs([make_log(time_ns=T0 + i, body=f"alpha {i}") for i in range(10)])
        store.insert_spans([make_span(start_ns=T0, end_ns=T0 + 1, attributes={PROMPT: "alpha beta"})])
    _format1_index(data / "index")
    assert TextIndex.current(data / "index") is False
    with tael.Store(data, read_only=True) as reader, pytest.raises(StorageError, match="earlier tael"):
        reader.query_logs(text="alpha")
    with tael.Store(data) as store:
        assert TextIndex.current(data / "index") is True
        assert store.stats().index_documents == 11
        assert len(store.query_logs(text="alpha", limit=100)) == 10
        assert len(store.query_traces(text="beta")) == 1
    with tael.Store(data, read_only=True) as reader:
        assert len(reader.query_logs(text="alpha", limit=100)) == 10
    (data / "index" / "meta.json").write_text("{not json")  # damaged: rebuilt as well
    with tael.Store(data) as store:
        assert store.stats().index_documents == 11


def test_the_format1_store_index_is_rebuilt_in_the_current_schema(tmp_path: Path) -> None:
    """The migration fixture (tests/test_migration.py checks every answer): its index has
    the format-1 schema, and the first writable open rebuilds it from the tiers."""
    with tarfile.open(TARBALL) as tar:
        tar.extractall(tmp_path, filter="data")
    data = tmp_path / "data"
    old = json.loads((data / "index" / "meta.json").read_bytes())
    assert "trace" in [f["name"] for f in old["schema"]] and not schema_matches(old)
    with tael.Store(data, FORMAT1_SETTINGS) as store:
        assert schema_matches(json.loads((data / "index" / "meta.json").read_bytes()))
        docs = store.stats().index_documents
        assert docs == 290  # every log with a body and span with payload text, hot and cold: as before
        assert len(store.query_logs(text="handled", limit=1000)) == 149


def test_the_format_page_lists_the_schema() -> None:
    """docs/format/index.md's schema table names every field, in order, with its type."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "format" / "index.md").read_text()
    section = page.split("## Schema", 1)[1].split("\n#", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| `")]
    assert [(name.strip().strip("`"), kind.strip().strip("`")) for name, kind in rows] == [
        (name, kind) for name, kind, _ in FIELDS
    ]


def test_a_rebuild_finds_payload_attributes_whatever_their_keys(tmp_path: Path) -> None:
    """A rebuild picks hot span rows by their attribute and event JSON; keys a JSON writer
    may escape (non-ASCII, ``/``, quotes) are found too."""
    data = tmp_path / "data"
    keys = ("gen_ai.prompt", "ключ", "a/b", 'q"k')
    s = tael.Settings(payload_attributes=keys)
    spans = [
        make_span(start_ns=T0 + i, end_ns=T0 + i + 1, attributes={key: f"alpha w{i}"}) for i, key in enumerate(keys)
    ]
    spans.append(
        make_span(
            start_ns=T0 + 9,
            end_ns=T0 + 10,
            events=[tael.SpanEvent(time_ns=T0, name="e", attributes={"ключ": "alpha w9"})],
        )
    )
    with tael.Store(data, s) as store:
        store.insert_spans(spans)
        store.flush()
        assert len(store.query_traces(text="alpha", limit=100)) == 5
    assert tael.rebuild_index(data, s) == 5
    with tael.Store(data, s) as store:
        assert {sp.span_id for sp in store.query_traces(text="alpha", limit=100)} == {sp.span_id for sp in spans}
