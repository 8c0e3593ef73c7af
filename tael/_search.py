"""The full-text index: a Tantivy index under ``<data>/index/`` over span payload
text and log bodies, and the background indexer that keeps it near-real-time.

The index is derived state. Each document is a pointer to one record (its
signal, time and identity in fast fields) plus the tokenised text; the record
itself is always read from the store, so a search never returns something the
store no longer holds. The indexer consumes applied WAL batches in LSN order and
commits at least every ``Settings.index_commit_interval_s``; after each commit
it records the WAL position it covers (``indexed_lsn`` in the hot tier's meta
table), the WAL keeps every segment past that position, and a reopen indexes
again whatever a crash left uncommitted. Layout: docs/architecture.md.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import tantivy

from ._blobs import Payloads
from ._codec import unpackb
from ._errors import StorageError

log = logging.getLogger(__name__)

DOC_SPAN, DOC_LOG = 1, 2
_TOKENIZER = "tael_text"
_MAX_TOKEN_BYTES = 40  # Tantivy's default: tokens of 40 bytes or more are not indexed
_PIECES = re.compile(r'"([^"]*)"?|([^\s"]+)')
_MASK64 = (1 << 64) - 1
Group = tuple[int, Sequence[Any], int, int]  # (record type, rows, lsn, end lsn), as applied


def _analyzer() -> tantivy.TextAnalyzer:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(_MAX_TOKEN_BYTES))
        .filter(tantivy.Filter.lowercase())
        .build()
    )


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_unsigned_field("signal", indexed=True, fast=True)
    sb.add_integer_field("time", fast=True)
    sb.add_unsigned_field("lsn", fast=True)
    sb.add_unsigned_field("k1", fast=True)
    sb.add_unsigned_field("k2", fast=True)
    sb.add_unsigned_field("k3", fast=True)
    sb.add_unsigned_field("level", indexed=True, fast=True)
    sb.add_text_field("service", tokenizer_name="raw")
    sb.add_text_field("trace", tokenizer_name="raw")
    sb.add_text_field("text", tokenizer_name=_TOKENIZER, index_option="position")
    return sb.build()


def matches(texts: list[str], terms: list[list[str]]) -> bool:
    """Whether the texts hold every token sequence of a parsed query, each within one
    text: the check a stored record passes before a search returns it."""
    analyzer = _analyzer()
    analyzed = [analyzer.analyze(t) for t in texts]
    return all(any(_holds(tokens, seq) for tokens in analyzed) for seq in terms)


def _holds(tokens: list[str], seq: list[str]) -> bool:
    n = len(seq)
    first = seq[0]
    return any(tokens[i : i + n] == seq for i, tok in enumerate(tokens) if tok == first)


def parse_text(text: object) -> list[list[str]]:
    """A query string as a list of token sequences, every one of which must match:
    each bare word (one token, or a phrase if the tokenizer splits it, like
    ``rate-limit``) and each quoted phrase."""
    if type(text) is not str:
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    analyzer = _analyzer()
    out = []
    for phrase, word in _PIECES.findall(text):
        tokens = analyzer.analyze(phrase if phrase else word)
        if tokens:
            out.append(tokens)
    if not out:
        raise ValueError(f"text has no searchable words: {text!r}")
    return out


class TextIndex:
    """The Tantivy index of one store. All writer calls are serialised by ``lock``."""

    def __init__(self, path: Path, *, read_only: bool, heap_bytes: int) -> None:
        self.path = path
        self.read_only = read_only
        self.schema = _schema()
        self.lock = threading.Lock()
        self.writer: Any = None
        try:
            if read_only:
                if not tantivy.Index.exists(str(path)):
                    raise StorageError(f"{path} holds no full-text index")
                self.index = tantivy.Index.open(str(path))
            else:
                path.mkdir(parents=True, exist_ok=True)
                self.index = tantivy.Index(self.schema, path=str(path), reuse=True)
            self.index.register_tokenizer(_TOKENIZER, _analyzer())
            if not read_only:
                self.writer = self.index.writer(heap_size=heap_bytes, num_threads=1)
        except ValueError as exc:
            raise StorageError(f"cannot open the full-text index at {path}: {exc}") from exc

    @staticmethod
    def remove(path: Path) -> None:
        if path.exists():
            shutil.rmtree(path)

    # ------------------------------------------------------------ writes

    def add(self, docs: Sequence[tantivy.Document]) -> None:
        with self.lock:
            for doc in docs:
                self.writer.add_document(doc)

    def commit(self) -> None:
        with self.lock:
            self.writer.commit()
        self.index.reload()

    def delete_from_lsn(self, lsn: int) -> None:
        """Drop documents of WAL batches at or after ``lsn`` (about to be indexed again)."""
        q = tantivy.Query.range_query(self.schema, "lsn", tantivy.FieldType.Unsigned, lsn, None)
        with self.lock:
            self.writer.delete_documents_by_query(q)

    def delete_before(self, signal: int, before: int) -> None:
        """Drop documents of records of one signal with time < ``before`` (retention)."""
        q = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Must, tantivy.Query.term_query(self.schema, "signal", signal)),
                (
                    tantivy.Occur.Must,
                    tantivy.Query.range_query(
                        self.schema, "time", tantivy.FieldType.Integer, None, before, include_upper=False
                    ),
                ),
            ]
        )
        with self.lock:
            self.writer.delete_documents_by_query(q)

    def close(self) -> None:
        if self.writer is not None:
            with self.lock:
                self.writer.wait_merging_threads()
                self.writer = None

    # ------------------------------------------------------------ reads

    def documents(self) -> int:
        return int(self.index.searcher().num_docs)

    def search(
        self,
        signal: int,
        terms: list[list[str]],
        *,
        service: str | None,
        trace: str | None,
        min_level: int | None,
        level: int | None,
        lo: int | None,
        hi: int | None,
        page: int,
        desc: bool = True,
    ) -> Iterator[list[tuple[int, int, int, int]]]:
        """Pages of (time, k1, k2, k3) of matching documents, newest first (oldest
        first with ``desc=False``)."""
        s = self.schema
        must = [tantivy.Query.term_query(s, "signal", signal)]
        for tokens in terms:
            if len(tokens) == 1:
                must.append(tantivy.Query.term_query(s, "text", tokens[0]))
            else:
                words: list[str | tuple[int, str]] = list(tokens)
                must.append(tantivy.Query.phrase_query(s, "text", words))
        if service is not None:
            must.append(tantivy.Query.term_query(s, "service", service))
        if trace is not None:
            must.append(tantivy.Query.term_query(s, "trace", trace))
        if level is not None:
            must.append(tantivy.Query.term_query(s, "level", level))
        if min_level is not None:
            must.append(tantivy.Query.range_query(s, "level", tantivy.FieldType.Unsigned, min_level, None))
        if lo is not None or hi is not None:
            must.append(
                tantivy.Query.range_query(s, "time", tantivy.FieldType.Integer, lo, hi, include_upper=hi is None)
            )
        query = tantivy.Query.boolean_query([(tantivy.Occur.Must, q) for q in must])
        searcher = self.index.searcher()
        offset = 0
        while True:
            result = searcher.search(
                query,
                limit=page,
                offset=offset,
                count=False,
                order_by_field="time",
                order=tantivy.Order.Desc if desc else tantivy.Order.Asc,
            )
            addrs = [addr for _value, addr in result.hits]
            if not addrs:
                return
            cols = [searcher.fast_field_values(name, addrs) for name in ("time", "k1", "k2", "k3")]
            yield list(zip(*cols, strict=True))
            if len(addrs) < page:
                return
            offset += len(addrs)
            page = min(page * 4, 10_000)


# ---------------------------------------------------------------- documents


def span_doc(row: tuple[int, bytes, bytes, str, int], lsn: int, texts: list[str]) -> tantivy.Document:
    """``row``: (start_ns, trace id, span id, service, status code); ``texts``: its payload texts."""
    doc = tantivy.Document()
    trace, span = row[1], row[2]
    doc.add_unsigned("signal", DOC_SPAN)
    doc.add_integer("time", row[0])
    doc.add_unsigned("lsn", lsn)
    doc.add_unsigned("k1", int.from_bytes(trace[:8]))
    doc.add_unsigned("k2", int.from_bytes(trace[8:]))
    doc.add_unsigned("k3", int.from_bytes(span))
    doc.add_unsigned("level", row[4])
    doc.add_text("service", row[3])
    doc.add_text("trace", trace.hex())
    for text in texts:
        doc.add_text("text", text)
    return doc


def log_doc(f: list[Any], lsn: int, index: int, body: str) -> tantivy.Document:
    """``f``: a log record (any body form); ``body``: its text."""
    doc = tantivy.Document()
    doc.add_unsigned("signal", DOC_LOG)
    doc.add_integer("time", f[0])
    doc.add_unsigned("lsn", lsn)
    doc.add_unsigned("k1", lsn)
    doc.add_unsigned("k2", index)
    doc.add_unsigned("k3", 0)
    doc.add_unsigned("level", f[3])
    doc.add_text("service", f[2])
    if f[5] is not None:
        doc.add_text("trace", f[5].hex())
    doc.add_text("text", body)
    return doc


def span_key(k1: int, k2: int, k3: int) -> tuple[bytes, bytes]:
    return (k1 & _MASK64).to_bytes(8) + (k2 & _MASK64).to_bytes(8), (k3 & _MASK64).to_bytes(8)


def group_docs(group: Group, payloads: Payloads) -> list[tantivy.Document]:
    """Documents for one applied WAL batch (rows carry the full text, as in the WAL)."""
    rtype, rows, lsn, _end = group
    docs = []
    if rtype == 1:
        for row in rows:
            if row[7]:
                f = unpackb(row[8])
                texts = payloads.span_texts(f)
                if texts:
                    docs.append(span_doc((row[0], row[1], row[2], row[3], f[8]), lsn, texts))
    elif rtype == 2:
        for i, row in enumerate(rows):
            if row[4]:
                f = unpackb(row[5])
                docs.append(log_doc(f, lsn, i, f[1]))
    return docs


# ---------------------------------------------------------------- the indexer thread


class Indexer:
    """Indexes applied batches on its own thread and commits on an interval, so an
    insert never waits for an index commit. ``flush()`` commits at once."""

    def __init__(
        self,
        index: TextIndex,
        payloads: Payloads,
        *,
        committed_lsn: int,
        interval_s: float,
        max_queued_records: int,
        record_lsn: Callable[[int], None],
    ) -> None:
        self.index = index
        self.payloads = payloads
        self.interval_s = interval_s
        self.max_queued = max_queued_records
        self.record_lsn = record_lsn
        self.committed_lsn = committed_lsn
        self.error: BaseException | None = None
        self.commits = 0
        self._cv = threading.Condition()
        self._queue: deque[Group] = deque()
        self._queued_records = 0
        self._pending_lsn = committed_lsn  # end of the last batch added to the writer
        self._pending_since: float | None = None
        self._flush_to = -1
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"tael-index:{index.path}", daemon=True)
        self._thread.start()

    def submit(self, groups: Sequence[Group]) -> None:
        """Queue applied batches (called by the applier, in LSN order). Waits while the
        queue is full, which bounds memory and, through the applier, the insert rate."""
        n = sum(len(g[1]) for g in groups)
        with self._cv:
            while self._queued_records and self._queued_records + n > self.max_queued and not self._stopping:
                self._cv.wait(1.0)
            self._queue.extend(groups)
            self._queued_records += n
            self._cv.notify_all()

    def flush(self, lsn: int) -> None:
        """Commit everything queued up to ``lsn`` and wait until it is searchable."""
        with self._cv:
            self._flush_to = max(self._flush_to, lsn)
            self._cv.notify_all()
            while self.committed_lsn < lsn:
                if self.error is not None:
                    raise StorageError(f"the full-text index is failing: {self.error!r}")
                if not self._thread.is_alive():
                    raise StorageError("the full-text indexer has stopped")
                self._cv.wait(1.0)

    def close(self) -> None:
        """Index and commit everything queued, then stop."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._due() and not self._stopping:
                    self._cv.wait(self._wait_s())
                groups = list(self._queue)
                self._queue.clear()
                self._queued_records = 0
                stopping = self._stopping
                self._cv.notify_all()
            done = 0
            try:
                for group in groups:
                    docs = group_docs(group, self.payloads)
                    if docs:
                        self.index.add(docs)
                    done += 1
                    self._pending_lsn = group[3]
                    if self._pending_since is None:
                        self._pending_since = time.monotonic()
                if self._due() or stopping:
                    self._commit()
            except Exception as exc:
                log.error("full-text indexing failed (retried): %r", exc)
                with self._cv:
                    # batches not yet added go back first, in order: none is skipped
                    self._queue.extendleft(reversed(groups[done:]))
                    self._queued_records += sum(len(g[1]) for g in groups[done:])
                    self.error = exc
                    self._cv.notify_all()
                if stopping:
                    return  # the WAL keeps what is not indexed; the next open indexes it
                time.sleep(min(self.interval_s, 1.0))
                continue
            if stopping:
                return

    def _wait_s(self) -> float | None:
        if self._pending_since is None:
            return None
        return max(0.0, self._pending_since + self.interval_s - time.monotonic())

    def _due(self) -> bool:
        if self._pending_lsn <= self.committed_lsn:
            return False
        if self._flush_to > self.committed_lsn:
            return True
        return self._pending_since is not None and time.monotonic() - self._pending_since >= self.interval_s

    def _commit(self) -> None:
        lsn = self._pending_lsn
        if lsn <= self.committed_lsn:
            return
        self.index.commit()
        self.record_lsn(lsn)
        with self._cv:
            self.committed_lsn = lsn
            self._pending_since = None
            self.error = None
            self.commits += 1
            self._cv.notify_all()
