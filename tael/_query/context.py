"""What a query reads, and the one rule for reading it: a snapshot of both tiers.

Each read takes one LMDB snapshot of the hot tier and the cold manifest together,
so a record moving between tiers is seen exactly once. A cold file may be
unlinked (retention, merge) after the snapshot listed it; the read is then
retried on a fresh snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

from .._blobs import BlobStore, Payloads
from .._cold import ColdFile, ColdTier
from .._errors import StorageError
from .._hot import HotTier
from .._search import TextIndex
from .._settings import Settings

_T = TypeVar("_T")
_READ_ATTEMPTS = 3


class ReadContext:
    """The parts of an open store a query reads, and how to take a snapshot of them.

    ``check_open`` is the Store's own gate: it refuses use after close and, on a
    writer, waits until every acknowledged write is readable (the read barrier).
    """

    def __init__(
        self,
        *,
        path: Path,
        settings: Settings,
        hot: HotTier,
        cold: ColdTier,
        blobs: BlobStore,
        payloads: Payloads,
        index: TextIndex | None,
        read_only: bool,
        check_open: Callable[[], None],
    ) -> None:
        self.path = path
        self.settings = settings
        self.hot = hot
        self.cold = cold
        self.blobs = blobs
        self.payloads = payloads
        self.index = index
        self.read_only = read_only
        self.check_open = check_open

    def text_index(self) -> TextIndex:
        """The full-text index, as of its latest commit."""
        if self.index is None:  # a read-only store opens the index on first use
            self.index = TextIndex(
                self.path / "index", read_only=True, heap_bytes=self.settings.index_writer_heap_bytes
            )
        elif self.read_only:
            self.index.index.reload()  # another process commits; a writer reloads after its own commits
        return self.index

    def read(self, fn: Callable[[Any, list[ColdFile]], _T], *, pin: bool = False) -> _T:
        """``fn(txn, manifest)`` on one LMDB snapshot, again on a fresh one (a bounded number
        of times) if a file it reads went away, which a merge or retention may do to files
        the snapshot names. With ``pin`` (long reads: SQL), this process's maintenance keeps
        the snapshot's files until ``fn`` returns; another process's may still remove them."""
        self.check_open()
        for _attempt in range(_READ_ATTEMPTS):
            try:
                if not pin:
                    with self.hot.reader() as txn:
                        return fn(txn, self.hot.manifest(txn))
                with ExitStack() as stack:

                    def snapshot() -> tuple[Any, list[ColdFile]]:
                        txn = stack.enter_context(self.hot.reader())
                        return txn, self.hot.manifest(txn)

                    with self.cold.pinned(snapshot) as (txn, manifest):
                        return fn(txn, manifest)
            except FileNotFoundError as exc:
                missing = exc
        raise StorageError(
            f"files (cold Parquet or payload blobs) kept disappearing under a read of {self.path}: {missing}"
        )
