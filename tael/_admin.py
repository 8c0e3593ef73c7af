"""Work on a data directory that takes its lock whole: rebuilding the full-text index
(which is also how the payload keys kept with the data change). Above Store: it opens one."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from ._datasettings import chosen_payload_keys, store_payload_keys
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
    keys = chosen_payload_keys(payload_attributes, settings)  # checked before anything changes
    lock = DirLock(root)
    lock.acquire()
    try:
        # the index goes first: a crash before the new keys are stored leaves no index at
        # all (the next open builds it with the stored keys), never one of other keys
        TextIndex.remove(root / "index")
        if keys is not None:
            store_payload_keys(root, keys, settings)
    finally:
        lock.release()
    if keys is not None and settings is not None:
        settings = dataclasses.replace(settings, payload_attributes=keys)
    with Store(root, settings) as store:  # opening with no index builds it from the tiers
        return store.stats().index_documents
