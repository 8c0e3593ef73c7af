"""The full-text index: a Tantivy index under ``<data>/index/`` over span payload
text and log bodies, and the background indexer that keeps it near-real-time.

The index is derived state. Each document is a pointer to one record (its
signal, time and key in fast fields), the two filters a search asks the index for
(service, level) and the tokenised text; the record itself is always read from
the store, so a search never returns something the store no longer holds. The
documents and the schema are tael/_searchdocs.py (docs/format/index.md); an index
with another schema (written by an earlier tael) is rebuilt at the next writable
open. The indexer consumes applied WAL batches in LSN order and
commits at least every ``Settings.index_commit_interval_s``; after each commit
it records the WAL position it covers (``indexed_lsn`` in the hot tier's meta
table), the WAL keeps every segment past that position, and a reopen indexes
again whatever a crash left uncommitted. Layout: docs/architecture.md.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tantivy

from ._blobs import Payloads
from ._block import Block
from ._errors import StorageError
from ._layout import GROUP_END, GROUP_ROWS, Group
from ._searchdocs import (
    DOC_LOG,
    DOC_SPAN,
    GRAMS_TOKENIZER,
    TOKENIZER,
    WORDS_PATTERN,
    block_documents,
    fold,
    has_unspaced,
    index_texts,
    query_grams,
    schema,
    schema_matches,
    split_unspaced,
    trace_term,
    unspaced_runs,
)

__all__ = ["DOC_LOG", "DOC_SPAN", "Indexer", "TextIndex", "group_docs", "matches", "parse_text", "span_key"]

log = logging.getLogger(__name__)

_MAX_TOKEN_BYTES = 40  # Tantivy's default: tokens of 40 bytes or more are not indexed
_PIECES = re.compile(r'"([^"]*)"?|([^\s"]+)')
_MASK64 = (1 << 64) - 1
_RETRY_S = 1.0  # first pause before indexing again after a failure; doubles up to _MAX_RETRY_S
_MAX_RETRY_S = 30.0
_CLOSE_TIMEOUT_S = 20.0  # longest a close waits for the indexer's last commit


def _analyzer() -> tantivy.TextAnalyzer:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(WORDS_PATTERN))
        .filter(tantivy.Filter.remove_long(_MAX_TOKEN_BYTES))
        .filter(tantivy.Filter.lowercase())
        .build()
    )


def _grams_analyzer() -> tantivy.TextAnalyzer:
    return tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build()


def is_grams(tokens: list[str]) -> bool:
    """Whether a token sequence of a parsed query is one of the ``grams`` field (its
    tokens are characters of unspaced scripts, which ``text`` tokens never hold)."""
    return has_unspaced(tokens[0])


def matches(texts: list[str], terms: list[list[str]]) -> bool:
    """Whether the texts hold every token sequence of a parsed query, each within one
    text, as the index decides it: a token too long to be indexed is left out but keeps
    its position, so the words around it are not adjacent for a phrase. ``texts`` are
    payload texts as stored: they are taken apart (and cut) as the index takes them
    (:func:`tael._searchdocs.index_texts`). A ``grams`` sequence (the bigrams of a run
    of unspaced characters, or one such character) matches exactly where a text holds
    that run as a substring, so it is checked as one, without making the text's grams."""
    texts = [fold(t) for t in index_texts(texts)]
    split = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(WORDS_PATTERN)).build()
    lower = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(WORDS_PATTERN)).filter(tantivy.Filter.lowercase()).build()
    )
    words: list[list[str | None]] | None = None
    for seq in terms:
        if is_grams(seq):
            run = seq[0] + "".join(gram[1] for gram in seq[1:])
            if not any(run in t for t in texts):
                return False
            continue
        if words is None:
            words = [
                [
                    None if len(raw.encode()) >= _MAX_TOKEN_BYTES else tok
                    for raw, tok in zip(split.analyze(t), lower.analyze(t), strict=True)
                ]
                for t in texts
            ]
        if not any(_holds(tokens, seq) for tokens in words):
            return False
    return True


def _holds(tokens: list[str | None], seq: list[str]) -> bool:
    n = len(seq)
    first = seq[0]
    return any(tokens[i : i + n] == seq for i, tok in enumerate(tokens) if tok == first)


def parse_text(text: object) -> list[list[str]]:
    """A query string as a list of token sequences, every one of which must match:
    each bare word (one token, or a phrase if the tokenizer splits it, like
    ``rate-limit``) and each quoted phrase. A run of characters of unspaced scripts
    (Chinese, Japanese, Thai: ``tael._searchdocs.UNSPACED``) in a word or phrase is a
    sequence of its own, matched in the ``grams`` field as a substring
    (:func:`tael._searchdocs.query_grams`); the rest of that word or phrase is
    tokenized as before, so ``GPT模型`` asks for ``gpt`` and for ``模型``, each anywhere."""
    if type(text) is not str:
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    analyzer = _analyzer()
    out = []
    for phrase, word in _PIECES.findall(text):
        piece = fold(phrase if phrase else word)
        runs = unspaced_runs(piece)
        if runs:
            out += [query_grams(run) for run in runs]
            piece = " ".join(split_unspaced(piece))
        tokens = analyzer.analyze(piece)
        if tokens:
            out.append(tokens)
    if not out:
        raise ValueError(f"text has no searchable words: {text!r}")
    return out


class TextIndex:
    """The Tantivy index of one store. All writer calls are serialised by ``lock``.

    Tantivy's ``IndexWriter`` is unusable after an error in its indexing worker (a
    full disk while it writes a segment, say): the documents it held are gone, later
    ``add_document`` calls fail with "An index writer was killed", and a later
    ``commit`` may even succeed, committing nothing of what was added. So the first
    error of any writer call marks the writer ``failed``; every later writer call
    raises StorageError at once, until :meth:`reset_writer` replaces the writer with a
    fresh one (which starts from the last committed state on disk). The caller owns
    re-adding what the old writer lost: see :class:`Indexer`."""

    def __init__(self, path: Path, *, read_only: bool, heap_bytes: int) -> None:
        self.path = path
        self.read_only = read_only
        self.schema = schema()
        self.lock = threading.Lock()
        self.writer: Any = None
        self.heap_bytes = heap_bytes
        self.failed: BaseException | None = None
        """The error that broke the current writer (None: the writer is sound)."""
        self.generation = 0
        """How many times the writer was replaced: a caller that added documents to an
        earlier writer knows they are gone."""
        try:
            if read_only:
                if not tantivy.Index.exists(str(path)):
                    raise StorageError(f"{path} holds no full-text index")
            else:
                path.mkdir(parents=True, exist_ok=True)
            if self.current(path) is False:
                raise StorageError(
                    f"the full-text index at {path} was written by an earlier tael (another schema): open the store "
                    "for writing once to rebuild it"
                )
            if read_only:
                self.index = tantivy.Index.open(str(path))
            else:
                self.index = tantivy.Index(self.schema, path=str(path), reuse=True)
            self.index.register_tokenizer(TOKENIZER, _analyzer())
            self.index.register_tokenizer(GRAMS_TOKENIZER, _grams_analyzer())
            if not read_only:
                self.writer = self.index.writer(heap_size=heap_bytes, num_threads=1)
        except ValueError as exc:
            raise StorageError(f"cannot open the full-text index at {path}: {exc}") from exc

    @staticmethod
    def current(path: Path) -> bool | None:
        """Whether the index at ``path`` has this tael's schema (docs/format/index.md):
        None when there is none yet (no ``meta.json``), False for an index written by an
        earlier tael, or one whose meta.json does not parse (both are rebuilt)."""
        try:
            raw = (path / "meta.json").read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read the full-text index at {path}: {exc}") from exc
        try:
            return schema_matches(json.loads(raw))
        except ValueError:
            return False

    @staticmethod
    def remove(path: Path) -> None:
        if path.exists():
            shutil.rmtree(path)

    # ------------------------------------------------------------ writes

    def _call(self, what: str, fn: Callable[[Any], None]) -> None:
        """Run one writer call under the lock; its first failure marks the writer failed."""
        with self.lock:
            if self.writer is None:
                raise StorageError(f"the full-text index writer at {self.path} is closed")
            if self.failed is not None:
                raise StorageError(
                    f"the full-text index writer at {self.path} failed earlier ({self.failed!r}) and must be "
                    "replaced before it is used again"
                )
            try:
                fn(self.writer)
            except Exception as exc:  # tantivy raises ValueError; anything else also breaks it
                # without its traceback: the frames would keep the dead writer (and the
                # directory lock it holds) alive after reset_writer() drops it
                self.failed = exc.with_traceback(None)
                raise StorageError(f"full-text index {what} failed at {self.path}: {exc}") from exc

    def add(self, docs: Sequence[str]) -> None:
        """Add documents (JSON text: tael._searchdocs); Tantivy parses them off the GIL."""

        def run(writer: Any) -> None:
            add = writer.add_json
            for doc in docs:
                add(doc)

        self._call("add", run)

    def commit(self) -> None:
        self._call("commit", lambda writer: writer.commit())
        self.index.reload()

    def reset_writer(self) -> None:
        """Drop the current writer (and every document it had not committed) and open a
        fresh one on the last commit on disk."""
        with self.lock:
            old, self.writer = self.writer, None
            del old  # dropping it releases Tantivy's writer lock on the directory
            try:
                self.writer = self.index.writer(heap_size=self.heap_bytes, num_threads=1)
            except ValueError as exc:
                raise StorageError(f"cannot open a new full-text index writer at {self.path}: {exc}") from exc
            self.failed = None
            self.generation += 1
        self.index.reload()

    def delete_all(self) -> None:
        """Drop every document (a rebuild from the tiers follows, in the same commit)."""
        self._call("delete", lambda writer: writer.delete_all_documents())

    def delete_from_lsn(self, lsn: int) -> None:
        """Drop documents of WAL batches at or after ``lsn`` (about to be indexed again)."""
        q = tantivy.Query.range_query(self.schema, "lsn", tantivy.FieldType.Unsigned, lsn, None)
        self._call("delete", lambda writer: writer.delete_documents_by_query(q))

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
        self._call("delete", lambda writer: writer.delete_documents_by_query(q))

    def close(self) -> None:
        """Let merges finish and release the writer. Never raises for a failed writer:
        what it had not committed is still in the WAL, past the recorded indexed LSN,
        and the next open indexes it again; the failure is logged."""
        with self.lock:
            writer, self.writer = self.writer, None
            failed = self.failed
        if writer is None:
            return
        if failed is not None:
            log.warning(
                "full-text index writer at %s had failed (%r): dropped; the next open indexes the WAL past the "
                "recorded indexed LSN again",
                self.path,
                failed,
            )
            return
        try:
            writer.wait_merging_threads()
        except ValueError as exc:
            log.error(
                "full-text index writer at %s failed while closing (%r); nothing acknowledged is lost: the next open "
                "indexes the WAL past the recorded indexed LSN again",
                self.path,
                exc,
            )

    # ------------------------------------------------------------ reads

    def documents(self) -> int:
        return int(self.index.searcher().num_docs)

    def search(
        self,
        signal: int,
        terms: list[list[str]],
        *,
        service: str | None,
        trace: bytes | None,
        min_level: int | None,
        level: int | None,
        lo: int | None,
        hi: int | None,
        page: int,
        desc: bool = True,
    ) -> Iterator[list[tuple[int, int, int, int]]]:
        """Pages of the keys of matching documents, newest first (oldest first with
        ``desc=False``): (start, k1, k2, k3) of spans, (time, lsn, index, 0) of logs.
        ``service`` equal, ``trace`` a log's trace id (the index holds its last 8 bytes:
        the caller checks the whole id), ``level`` equal (a span status code),
        ``min_level`` at least (a log severity number), ``lo <= time < hi``."""
        s = self.schema
        must = [tantivy.Query.term_query(s, "signal", signal)]
        for tokens in terms:
            field = "grams" if is_grams(tokens) else "text"
            if len(tokens) == 1:
                must.append(tantivy.Query.term_query(s, field, tokens[0]))
            else:
                words: list[str | tuple[int, str]] = list(tokens)
                must.append(tantivy.Query.phrase_query(s, field, words))
        if service is not None:
            must.append(tantivy.Query.term_query(s, "service", service))
        if trace is not None:
            must.append(tantivy.Query.term_query(s, "trace", trace_term(trace)))
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
        names = ("time", "k1", "k2", "k3") if signal == DOC_SPAN else ("time", "lsn", "k1")
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
            cols = [searcher.fast_field_values(name, addrs) for name in names]
            if signal != DOC_SPAN:
                cols.append([0] * len(addrs))
            yield list(zip(*cols, strict=True))
            if len(addrs) < page:
                return
            offset += len(addrs)
            page = min(page * 4, 10_000)


# ---------------------------------------------------------------- documents


def span_key(k1: int, k2: int, k3: int) -> tuple[bytes, bytes]:
    """The (trace id, span id) a span document's k1..k3 hold."""
    return (k1 & _MASK64).to_bytes(8) + (k2 & _MASK64).to_bytes(8), (k3 & _MASK64).to_bytes(8)


def group_docs(group: Group, payloads: Payloads) -> list[str]:
    """Documents for one applied WAL batch (its block carries the full text, as in the WAL)."""
    _rtype, block, lsn, _end = group
    if not isinstance(block, Block):
        return []
    return block_documents(block, lsn, payloads)


def _after(t: int) -> int | None:
    return t + 1 if t < (1 << 63) - 1 else None  # None: no upper bound


def missing_documents(
    index: TextIndex, signal: int, expected: Iterable[tuple[int, int, int, int]], *, chunk: int = 4096
) -> tuple[int, int, list[tuple[int, int, int, int]]]:
    """Which records have no document (``tael check``): ``expected`` are the (time,
    k1, k2, k3) of records that must be searchable, in time order; each chunk of them
    is looked up among the documents of its time range. Returns (records checked,
    records missing, up to 5 of the missing)."""
    checked = missing = 0
    examples: list[tuple[int, int, int, int]] = []
    buf: list[tuple[int, int, int, int]] = []

    def run() -> None:
        nonlocal checked, missing
        want = {(k1, k2, k3): t for t, k1, k2, k3 in buf}
        pages = index.search(
            signal,
            [],
            service=None,
            trace=None,
            min_level=None,
            level=None,
            lo=buf[0][0],
            hi=_after(buf[-1][0]),
            page=1000,
            desc=False,
        )
        for page in pages:
            for _t, k1, k2, k3 in page:
                want.pop((k1, k2, k3), None)
            if not want:
                break
        checked += len(buf)
        missing += len(want)
        examples.extend((t, *key) for key, t in itertools.islice(want.items(), 5 - len(examples)))
        buf.clear()

    for rec in expected:
        if len(buf) >= chunk and rec[0] != buf[-1][0]:
            run()
        buf.append(rec)
    if buf:
        run()
    return checked, missing, examples


# ---------------------------------------------------------------- the indexer thread


@dataclass(slots=True)
class _Rebuild:
    """One :meth:`Indexer.rebuild` asked of the indexer's thread, and its outcome."""

    build: Callable[[TextIndex], tuple[int, int]]
    done: threading.Event = field(default_factory=threading.Event)
    documents: int = 0
    error: BaseException | None = None


class Indexer:
    """Indexes applied batches on its own thread and commits on an interval, so an
    insert never waits for an index commit. ``flush()`` commits at once.

    Failure handling (a full disk, typically): ``committed_lsn`` (and the
    ``indexed_lsn`` recorded through ``record_lsn``) only ever advances after a
    commit of a sound writer that holds every document of every batch in between, so
    it never passes a record that is not in a committed index. When any writer call
    fails, the writer is taken as broken (see :class:`TextIndex`): the indexer stops
    adding to it, keeps absorbing applied batches by position only (they are in the
    WAL, which keeps every segment past ``committed_lsn``), and after a pause
    (1 s, doubling up to 30 s), or at once when ``flush()`` asks, replaces the writer,
    drops documents at or past ``committed_lsn`` and indexes the batches from
    ``committed_lsn`` on again, read back from the WAL through ``reread``, then
    commits. Each failure is logged. ``flush()`` raises StorageError when an attempt
    that began after it was called fails; closing never retries (the next open
    indexes the WAL past the recorded position) and never raises."""

    def __init__(
        self,
        index: TextIndex,
        payloads: Payloads,
        *,
        committed_lsn: int,
        interval_s: float,
        max_queued_records: int,
        record_lsn: Callable[[int], None],
        reread: Callable[[int, int], Iterator[Group]],
    ) -> None:
        self.index = index
        self.payloads = payloads
        self.interval_s = interval_s
        self.max_queued = max_queued_records
        self.record_lsn = record_lsn
        self.reread = reread
        self.committed_lsn = committed_lsn
        self.error: BaseException | None = None
        """The last failure, until a commit succeeds."""
        self._first_error: BaseException | None = None  # the failure that broke the writer
        self.failures = 0
        self.commits = 0
        self._cv = threading.Condition()
        self._queue: deque[Group] = deque()
        self._queued_records = 0
        self._pending_lsn = committed_lsn  # end of the last batch taken from the queue
        self._pending_since: float | None = None
        self._flush_to = -1
        self._stopping = False
        self._broken = False  # the writer lost documents: rebuild [committed_lsn, _pending_lsn) from the WAL
        self._generation = index.generation
        self._retry_at = 0.0
        self._retry_pause = _RETRY_S
        self._retry_for = 0  # a flush() wants an attempt numbered at least this, without the pause
        self._attempts = 0  # work rounds begun (adding, committing or recovering)
        self._failed_attempt = 0  # the number of the last round that failed
        self._rebuild: _Rebuild | None = None  # asked of the thread by rebuild()
        self._covered = -1  # batches ending at or before this are in a rebuild's snapshot: not indexed again
        self._rebuilt = False  # a rebuild's documents wait for a commit, whatever the positions say
        self._thread = threading.Thread(target=self._loop, name=f"tael-index:{index.path}", daemon=True)
        self._thread.start()

    def submit(self, groups: Sequence[Group]) -> None:
        """Queue applied batches (called by the applier, in LSN order). Waits while the
        queue is full, which bounds memory and, through the applier, the insert rate."""
        n = sum(len(g[GROUP_ROWS]) for g in groups)
        with self._cv:
            while self._queued_records and self._queued_records + n > self.max_queued and not self._stopping:
                self._cv.wait(1.0)
            self._queue.extend(groups)
            self._queued_records += n
            self._cv.notify_all()

    def flush(self, lsn: int) -> None:
        """Commit everything queued up to ``lsn`` and wait until it is searchable.

        Raises StorageError if an indexing attempt begun after this call fails (the
        disk is still full, say): the records stay in the WAL and are indexed by a
        later retry or at the next open."""
        with self._cv:
            self._flush_to = max(self._flush_to, lsn)
            began = self._attempts
            self._retry_for = max(self._retry_for, began + 1)
            self._cv.notify_all()
            while self.committed_lsn < lsn:
                if self._failed_attempt > began:
                    first = f" (first failure: {self._first_error})" if self._first_error is not self.error else ""
                    raise StorageError(
                        f"the full-text index at {self.index.path} cannot commit: {self.error}{first}; the records "
                        f"past WAL position {self.committed_lsn} are kept in the WAL and indexed when a retry "
                        "succeeds (or at the next open)"
                    ) from self.error
                if not self._thread.is_alive():
                    raise StorageError("the full-text indexer has stopped")
                self._cv.wait(1.0)

    def rebuild(self, build: Callable[[TextIndex], tuple[int, int]]) -> int:
        """Replace every document of the index, while batches keep arriving, by what
        ``build`` adds (it indexes one snapshot of the tiers and returns how many documents
        and the WAL position that snapshot covers), then the batches past that position;
        one commit makes the new index searchable, until which searches see the old one.
        Runs on the indexer's thread between rounds. The caller keeps records from moving
        between the tiers meanwhile (``Store.rebuild_index`` holds the compactor's lock).
        A failure leaves the old index (its writer is replaced and the WAL past its commit
        indexed again, as after any failure) and raises StorageError. Returns the number
        of documents of the snapshot."""
        request = _Rebuild(build)
        with self._cv:
            if self._rebuild is not None:
                raise StorageError(f"the full-text index at {self.index.path} is being rebuilt already")
            self._rebuild = request
            self._cv.notify_all()
            while not request.done.is_set():
                if not self._thread.is_alive():
                    raise StorageError("the full-text indexer has stopped")
                self._cv.wait(1.0)
        if request.error is not None:
            raise StorageError(
                f"rebuilding the full-text index at {self.index.path} failed (the previous index stays): "
                f"{request.error}"
            ) from request.error
        return request.documents

    def _run_rebuild(self, request: _Rebuild, groups: list[Group]) -> list[Group]:
        """The thread's part of :meth:`rebuild`; returns the batches of ``groups`` still to
        index (those past the snapshot). Raises what fails, after marking it on ``request``."""
        try:
            self.index.reset_writer()  # a fresh writer: nothing uncommitted rides along
            self._generation = self.index.generation
            self.index.delete_all()
            request.documents, end = request.build(self.index)
        except BaseException as exc:
            request.error = exc
            self._discard_rebuild()
            raise
        # every batch submitted before the snapshot ends at or before ``end`` (the applier
        # submits what it applied): they are in it, including those still queued
        self._covered = max(self._covered, end)
        self._pending_lsn = max(self._pending_lsn, end)
        self._pending_since = time.monotonic()
        self._flush_to = max(self._flush_to, self._pending_lsn)
        self._rebuilt = True
        log.info("full-text index at %s rebuilt from the tiers: %d documents", self.index.path, request.documents)
        return [g for g in groups if g[GROUP_END] > end]

    def close(self) -> bool:
        """Index and commit everything queued (unless the writer is broken), then stop.

        Returns False if the thread did not stop within ``_CLOSE_TIMEOUT_S`` (stuck in a
        Tantivy call): the store then closes without it, and must not touch the writer
        (the thread may hold its lock). Nothing is lost: the next open indexes the WAL
        past the recorded indexed LSN."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(_CLOSE_TIMEOUT_S)
        if self._thread.is_alive():
            log.error(
                "the full-text indexer of %s did not stop within %.0f s: closing without it (the next open indexes "
                "the WAL from position %d again)",
                self.index.path,
                _CLOSE_TIMEOUT_S,
                self.committed_lsn,
            )
            return False
        return True

    def _ready(self) -> bool:
        """Called holding _cv: whether the thread has something to do now."""
        if self._stopping or self._queue or self._rebuild is not None:
            return True
        if self._broken:
            return self._retry_due()
        return self._due()

    def _retry_due(self) -> bool:
        # a flush() that began before the last attempt retries at once, without the pause
        return self._attempts < self._retry_for or time.monotonic() >= self._retry_at

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._ready():
                    self._cv.wait(self._wait_s())
                groups = [g for g in self._queue if g[GROUP_END] > self._covered]
                self._queue.clear()
                self._queued_records = 0
                stopping = self._stopping
                request = None if stopping else self._rebuild
                self._cv.notify_all()
                if self.index.generation != self._generation or self.index.failed is not None:
                    self._broken = True  # another caller (retention) broke or replaced the writer
                if self._broken:
                    # the documents of these batches will be read back from the WAL
                    if groups:
                        self._pending_lsn = groups[-1][GROUP_END]
                        groups = []
                    if stopping:
                        log.warning(
                            "full-text index at %s closes %d WAL bytes behind (from position %d): they are "
                            "indexed at the next open",
                            self.index.path,
                            self._pending_lsn - self.committed_lsn,
                            self.committed_lsn,
                        )
                        return
                    if not self._retry_due() and request is None:  # a rebuild replaces the writer anyway
                        continue
                self._attempts += 1
                attempt = self._attempts
            done = 0
            recovering = self._broken
            try:
                if recovering and not self._recover():
                    log.warning(
                        "full-text index at %s closes behind (from WAL position %d), interrupted while indexing "
                        "again: the next open indexes the rest",
                        self.index.path,
                        self.committed_lsn,
                    )
                    return
                if request is not None:
                    groups = self._run_rebuild(request, groups)
                for group in groups:
                    docs = group_docs(group, self.payloads)
                    if docs:
                        self.index.add(docs)
                    done += 1
                    self._pending_lsn = group[GROUP_END]
                    if self._pending_since is None:
                        self._pending_since = time.monotonic()
                if recovering or self._due() or stopping or request is not None:
                    self._commit()
                if request is not None:
                    self._finish_rebuild(request)
            except Exception as exc:
                if request is not None and request.error is None:
                    request.error = exc
                    self._discard_rebuild()
                self._fail(exc, groups[done:], attempt)
                if request is not None:
                    self._finish_rebuild(request)
                if stopping:
                    log.error(
                        "full-text index at %s closes behind (from WAL position %d): the next open indexes the rest",
                        self.index.path,
                        self.committed_lsn,
                    )
                    return  # the WAL keeps what is not indexed; the next open indexes it
                continue
            if stopping:
                return

    def _discard_rebuild(self) -> None:
        """Drop a failed rebuild's uncommitted deletes and documents at once, before its
        caller lets maintenance run again: retention commits through the same writer, and
        must never commit half a rebuild. The indexer's recovery then indexes the WAL past
        the last commit again, as after any failure."""
        try:
            self.index.reset_writer()
        except Exception:  # no writer at all: every call, a commit included, now fails safe
            log.exception("full-text index at %s: no new writer after a failed rebuild", self.index.path)

    def _finish_rebuild(self, request: _Rebuild) -> None:
        with self._cv:
            self._rebuild = None
            request.done.set()
            self._cv.notify_all()

    def _fail(self, exc: BaseException, left: list[Group], attempt: int) -> None:
        # batches not added are absorbed by position: the retry reads them back from the WAL
        pending = left[-1][3] if left else self._pending_lsn
        pause = self._retry_pause  # only this thread changes it
        # logged before flush() can see the failure, so whoever it raises to finds it logged
        log.error(
            "full-text indexing at %s failed (%d WAL bytes from position %d wait in the WAL; retried in %.0f s): %s",
            self.index.path,
            pending - self.committed_lsn,
            self.committed_lsn,
            pause,
            exc,
        )
        with self._cv:
            self._pending_lsn = pending
            if self._first_error is None:
                self._first_error = exc
            self._broken = True
            self.error = exc
            self.failures += 1
            self._failed_attempt = attempt
            self._retry_at = time.monotonic() + pause
            self._retry_pause = min(pause * 2, _MAX_RETRY_S)
            self._cv.notify_all()

    def _recover(self) -> bool:
        """Replace the broken writer and index every batch past ``committed_lsn`` again,
        read back from the WAL; the commit that follows makes them searchable. Returns
        False if the store started closing meanwhile (shutdown does not wait for this)."""
        lo, hi = self.committed_lsn, self._pending_lsn
        self.index.reset_writer()
        self._generation = self.index.generation
        self.index.delete_from_lsn(lo)  # in case a failed commit did reach the disk
        docs = 0
        for group in self.reread(lo, hi):
            if self._stopping:
                return False
            batch = group_docs(group, self.payloads)
            if batch:
                self.index.add(batch)
                docs += len(batch)
        self._pending_lsn = hi
        self._pending_since = time.monotonic()
        self._flush_to = max(self._flush_to, hi)  # commit now
        log.warning(
            "full-text index at %s: new writer, %d documents of WAL positions %d..%d indexed again",
            self.index.path,
            docs,
            lo,
            hi,
        )
        return True

    def _wait_s(self) -> float | None:
        if self._broken:
            return max(0.0, self._retry_at - time.monotonic())
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
        if lsn <= self.committed_lsn and not self._broken and not self._rebuilt:
            return
        self._rebuilt = False
        self.index.commit()
        if self.index.generation != self._generation:
            raise StorageError("the full-text index writer was replaced before this commit")
        self.record_lsn(lsn)
        with self._cv:
            self.committed_lsn = lsn
            self._pending_since = None
            self._broken = False
            self._retry_pause = _RETRY_S
            self.error = self._first_error = None
            self.commits += 1
            self._cv.notify_all()
