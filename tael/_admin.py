"""Work on a data directory that takes its lock whole: rebuilding the full-text index
(which is also how the payload keys kept with the data change). Above Store: it opens one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._datasettings import store_payload_keys
from ._errors import StorageError
from ._fsutil import DirLock
from ._search import TextIndex
from ._settings import Settings
from ._store import Store


def rebuild_index(
    path: str | Path, settings: Settings | None = None, payload_attributes: Sequence[str] | None = None
) -> int:
    """Rebuild a store's full-text index from its hot and cold tiers; returns the number
    of documents indexed. Takes the writer lock (the store must not be open elsewhere).

    This is how the payload keys kept with the data change: ``payload_attributes`` (or a
    ``settings.payload_attributes`` other than the built-in default) is stored, then every
    record is indexed with it."""
    root = Path(path)
    if not (root / "hot" / "data.mdb").exists():
        raise StorageError(f"{root} is not a tael data directory (no hot/data.mdb)")
    lock = DirLock(root)
    lock.acquire()
    try:
        store_payload_keys(root, payload_attributes, settings)
        TextIndex.remove(root / "index")
    finally:
        lock.release()
    with Store(root, settings) as store:  # opening with no index builds it from the tiers
        return store.stats().index_documents
