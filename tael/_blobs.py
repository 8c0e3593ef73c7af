"""The payload blob store and the rules for what counts as payload text.

Payload text is the large free text telemetry from LLM applications carries:
prompts, completions, tool input and output, exception stack traces (span
attributes named in ``Settings.payload_attributes``, on the span or its events)
and log bodies. A payload at least ``Settings.payload_blob_min_bytes`` long is
stored once under ``<data>/blobs/`` by the sha256 of its UTF-8 text,
zstd-compressed, and the record keeps the 32-byte digest (a msgpack ``bin``,
which no attribute value can otherwise be) in its place. Reads put the text back.

The blob files are written by the hot tier's applier inside the LMDB
transaction that first references them, and made durable with one
``syncfs`` before that transaction commits (see ``HotTier.apply``), so a
committed reference always names a durable blob. Layout: docs/format/blobs.md.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import zstandard

from ._errors import CorruptionError
from ._fsutil import atomic_write
from ._layout import EVENT_ATTRS, EVENT_NAME, LOG_BODY, SPAN_ATTRS, SPAN_EVENTS
from ._payloadkeys import PayloadKeys

log = logging.getLogger(__name__)

DIGEST_BYTES = 32
_CACHE_BYTES = 64 << 20  # decompressed blob texts kept in memory for repeated reads


def digest_of(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class Payloads:
    """Which values of a record are payload text, and which of those go to the blob store."""

    def __init__(self, keys: tuple[str, ...], min_bytes: int) -> None:
        self.keys = PayloadKeys(keys)
        """The rules of ``Settings.payload_attributes`` (tael/_payloadkeys.py)."""
        self.min_bytes = min_bytes

    def _big(self, text: str) -> bool:
        n = len(text)
        return n >= self.min_bytes or (n * 4 >= self.min_bytes and len(text.encode()) >= self.min_bytes)

    def _attrs_flag(self, attrs: dict[str, Any], event: str | None) -> int:
        if not attrs:
            return 0
        flag = 0
        for key in self.keys.of(attrs) if event is None else self.keys.of_event(event, attrs):
            value = attrs[key]
            if type(value) is str:
                if self._big(value):
                    return 2
                flag = 1
        return flag

    def span_flag(self, attrs: dict[str, Any], events: list[Any]) -> int:
        """0: no payload text; 1: payload text, all short; 2: some payload goes to the blob store.

        ``events``: the record's event arrays ([time, name, attributes])."""
        flag = self._attrs_flag(attrs, None)
        if flag == 2:
            return 2
        for ev in events:
            flag = max(flag, self._attrs_flag(ev[EVENT_ATTRS], ev[EVENT_NAME]))
            if flag == 2:
                return 2
        return flag

    def log_flag(self, body: str) -> int:
        return 2 if self._big(body) else 1

    # ------------------------------------------------------------ records (unpacked arrays)

    def externalize_span(self, f: list[Any]) -> list[tuple[bytes, str]]:
        """Replace the long payload texts of a span record by their digests, in place;
        returns (digest, text) of each."""
        out: list[tuple[bytes, str]] = []
        if f[SPAN_ATTRS]:
            self._externalize_attrs(f[SPAN_ATTRS], self.keys.of(f[SPAN_ATTRS]), out)
        for ev in f[SPAN_EVENTS]:
            if ev[EVENT_ATTRS]:
                self._externalize_attrs(ev[EVENT_ATTRS], self.keys.of_event(ev[EVENT_NAME], ev[EVENT_ATTRS]), out)
        return out

    def _externalize_attrs(self, attrs: dict[str, Any], keys: list[str], out: list[tuple[bytes, str]]) -> None:
        for key in keys:
            value = attrs[key]
            if type(value) is str and self._big(value):
                digest = digest_of(value)
                attrs[key] = digest
                out.append((digest, value))

    def externalize_log(self, f: list[Any]) -> list[tuple[bytes, str]]:
        body = f[LOG_BODY]
        if type(body) is str and self._big(body):
            digest = digest_of(body)
            f[LOG_BODY] = digest
            return [(digest, body)]
        return []

    def span_texts(self, f: list[Any]) -> list[str]:
        """The payload texts of a span record (digests are left out: restore first)."""
        attrs = f[SPAN_ATTRS]
        out = [v for k in self.keys.of(attrs) if type(v := attrs[k]) is str] if attrs else []
        for ev in f[SPAN_EVENTS]:
            if attrs := ev[EVENT_ATTRS]:
                out += [v for k in self.keys.of_event(ev[EVENT_NAME], attrs) if type(v := attrs[k]) is str]
        return out


def span_digests(f: list[Any]) -> list[bytes]:
    """Digests a span record refers to (attribute values that are bytes)."""
    out = [v for v in f[SPAN_ATTRS].values() if type(v) is bytes]
    for ev in f[SPAN_EVENTS]:
        out += [v for v in ev[EVENT_ATTRS].values() if type(v) is bytes]
    return out


def log_digests(f: list[Any]) -> list[bytes]:
    return [f[LOG_BODY]] if type(f[LOG_BODY]) is bytes else []


class BlobStore:
    """``<data>/blobs/<2 hex>/<62 hex>``: one zstd frame per distinct payload text."""

    def __init__(self, root: Path, *, level: int) -> None:
        self.root = root
        self.level = level
        self._cache: OrderedDict[bytes, str] = OrderedDict()
        self._cache_bytes = 0
        self._cache_lock = threading.Lock()
        self._local = threading.local()

    def path(self, digest: bytes) -> Path:
        h = digest.hex()
        return self.root / h[:2] / h[2:]

    def _compressor(self) -> zstandard.ZstdCompressor:
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=self.level, write_checksum=True)
        return c

    def write(self, digest: bytes, text: str) -> int:
        """Place one blob (not yet durable: the caller syncs the file system before any
        reference to it commits); returns its size on disk."""
        data = self._compressor().compress(text.encode())
        p = self.path(digest)
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, data, sync=False)
        return len(data)

    def read(self, digest: bytes) -> str:
        """The text of a blob. FileNotFoundError if it is gone (a reader's snapshot may
        predate a garbage collection; the read is then retried)."""
        with self._cache_lock:
            text = self._cache.get(digest)
            if text is not None:
                self._cache.move_to_end(digest)
                return text
        p = self.path(digest)
        raw = p.read_bytes()
        try:
            text = zstandard.ZstdDecompressor().decompress(raw).decode()
        except (zstandard.ZstdError, UnicodeDecodeError) as exc:
            raise CorruptionError(f"blob {p} is damaged: {exc}", path=str(p)) from exc
        if hashlib.sha256(text.encode()).digest() != digest:
            raise CorruptionError(f"blob {p} does not hash to its name", path=str(p))
        with self._cache_lock:
            if digest not in self._cache:
                self._cache[digest] = text
                self._cache_bytes += len(text)
                while self._cache_bytes > _CACHE_BYTES and self._cache:
                    _d, old = self._cache.popitem(last=False)
                    self._cache_bytes -= len(old)
        return text

    def remove(self, digest: bytes) -> None:
        with self._cache_lock:
            text = self._cache.pop(digest, None)
            if text is not None:
                self._cache_bytes -= len(text)
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            log.warning("blob %s was already gone", digest.hex())

    def missing(self, digests: Iterable[bytes]) -> list[Path]:
        """The paths of the blob files among ``digests`` that do not exist (``tael check``:
        the catalog names them, so their records' payload text is lost)."""
        return [p for p in map(self.path, digests) if not p.is_file()]

    def files(self) -> Iterator[tuple[bytes | None, Path]]:
        """(digest or None for a stray name, path) of every file under blobs/."""
        if not self.root.is_dir():
            return
        for sub in os.scandir(self.root):
            if not sub.is_dir():
                yield None, Path(sub.path)
                continue
            for entry in os.scandir(sub.path):
                name = sub.name + entry.name
                try:
                    digest = bytes.fromhex(name) if len(name) == DIGEST_BYTES * 2 else None
                except ValueError:
                    digest = None
                yield digest, Path(entry.path)

    def restore_span(self, f: list[Any]) -> list[Any]:
        """Put payload texts back in place of their digests, in place; returns ``f``."""
        attrs = f[SPAN_ATTRS]
        for k, v in attrs.items():
            if type(v) is bytes:
                attrs[k] = self.read(v)
        for ev in f[SPAN_EVENTS]:
            for k, v in ev[EVENT_ATTRS].items():
                if type(v) is bytes:
                    ev[EVENT_ATTRS][k] = self.read(v)
        return f

    def restore_log(self, f: list[Any]) -> list[Any]:
        if type(f[LOG_BODY]) is bytes:
            f[LOG_BODY] = self.read(f[LOG_BODY])
        return f
