"""Where the cold tier's files live: a local directory, or any ``pyarrow.fs``
filesystem (S3 and S3-compatible stores first), chosen by ``Settings.cold_uri``
and ``Settings.cold_filesystem``.

Two implementations of one small interface, addressed by a file's path relative
to the tier's root (``spans/date=2026-01-01/part-0000000042.parquet``):

- ``LocalFiles``: a directory, ``<data>/cold`` by default. A new file is written
  as ``<path>.partial`` beside its place (``stage``), then published as
  ``atomic_write`` does: fsync, rename, fsync the directory.
- ``RemoteFiles``: a filesystem and a base path in it. On an object store a file
  is published with one PUT (S3 makes an object visible whole or not at all; a
  large file is a multipart upload, also published whole when it completes);
  elsewhere as a temp file moved into place. The upload is verified (the object
  exists with the expected size) before ``publish`` returns, so the manifest
  commit that evicts the records from the hot tier only ever names a file that
  is in the bucket. A new file is written to a private file in ``<data>/cache``
  first (``stage``), uploaded from there, and kept as the cached copy. Reads go
  through ``FileCache``, whole files under ``<data>/cache``.

The format of the files is ``_cold``'s business; this module only moves bytes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from ._errors import StorageError
from ._fsutil import atomic_write, fsync_dir

log = logging.getLogger(__name__)

_DATASETS = ("spans", "logs", "metrics", "metrics_5m", "metrics_1h")
LAYOUT = re.compile(rf"({'|'.join(_DATASETS)})/date=\d{{4}}-\d{{2}}-\d{{2}}/part-\d{{10}}\.parquet(\.partial)?")
"""Paths (relative to the tier's root) tael writes. Outside ``<data>/cold`` only these
are ever deleted as orphans, so a directory or prefix shared with other data loses
nothing else."""

LOCATION_FILE = "cold-location.json"
"""``<data>/cold-location.json``: where a store's cold files are, once it has published one
outside ``<data>/cold``. Opening the store with settings naming another place fails."""

OWNER_OBJECT = "_tael_owner.json"
"""``<prefix>/_tael_owner.json`` on a remote cold tier: ``{"owner": "<hex>"}``, the id of the
data directory whose cold files the prefix holds (also in its ``cold-location.json``).
Another data directory is refused there: each sweeps orphans by its own manifest, so two
stores sharing a prefix would delete each other's files."""

_ATOMIC_PUT = frozenset({"s3", "gcs"})
"""Filesystems (``FileSystem.type_name``) whose writes appear all at once, on close."""

_UPLOAD_PIECE = 8 << 20  # bytes read from a staged file per write to an upload stream

Source: TypeAlias = "str | pa.NativeFile"
"""What the Parquet readers open: a local path, or an open file (a cached or downloaded copy)."""


class LocationTaken(StorageError):
    """The cold location holds another data directory's files (``OWNER_OBJECT``)."""


class LocalFiles:
    """Cold files in a local directory, published durably with ``atomic_write``.

    ``<data>/cold`` is tael's own: anything there the manifest does not name is an
    orphan. A directory named by ``cold_uri`` may be shared: only paths of the layout
    are ever deleted there."""

    remote = False

    def __init__(self, root: Path, *, owned: bool = True) -> None:
        self.root = root
        self.owned = owned
        self.location = str(root)
        self.location_file: Path | None = None
        """Written (once) before the first publish: see ``LOCATION_FILE``."""
        self._created: dict[str, list[Path]] = {}
        """Directories made for a staged file, fsynced into their parents when it is published."""

    def describe(self, rel: str) -> str:
        return str(self.root / rel)

    def stage(self, rel: str) -> Path:
        """Where to write a new file before it is published: ``<rel>.partial`` beside its
        place (an orphan the next open removes if the store dies first)."""
        target = self.root / rel
        self._created.setdefault(rel, []).extend(_make_dirs(target.parent))
        return target.with_name(f"{target.name}.partial")

    def publish_file(self, rel: str, staged: Path) -> None:
        """Durably place a staged file (fsync, rename, fsync dir): the ``atomic_write``
        protocol for a file written in pieces."""
        _record_location(self)
        target = self.root / rel
        fd = os.open(staged, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(staged, target)
        fsync_dir(target.parent)
        for d in self._created.pop(rel, []):
            fsync_dir(d.parent)

    def delete(self, rels: Iterable[str]) -> None:
        dirs = set()
        for rel in rels:
            p = self.root / rel
            try:
                p.unlink()
            except FileNotFoundError:
                log.warning("cold file %s was already gone", p)
            dirs.add(p.parent)
        for d in dirs:
            _remove_if_empty(d)
            fsync_dir(d.parent if not d.exists() else d)

    def discard(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)
        self._created.pop(rel, None)

    def sweep(self, live: set[str]) -> int:
        removed = 0
        if not self.root.exists():
            return 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                p = Path(dirpath) / name
                rel = p.relative_to(self.root).as_posix()
                if rel not in live and (self.owned or LAYOUT.fullmatch(rel)):
                    log.warning("removing orphan cold file %s (not in the manifest)", p)
                    p.unlink()
                    removed += 1
        for dataset_dir in self.root.iterdir():
            if dataset_dir.is_dir() and (self.owned or dataset_dir.name in _DATASETS):
                for part in dataset_dir.iterdir():
                    if part.is_dir():
                        _remove_if_empty(part)
        if removed:
            fsync_dir(self.root)
        return removed

    def listing(self) -> list[str]:
        if not self.root.is_dir():
            return []
        rels = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(rel for rel in rels if self.owned or LAYOUT.fullmatch(rel))

    def size(self, rel: str) -> int | None:
        try:
            return (self.root / rel).stat().st_size
        except FileNotFoundError:
            return None

    @contextmanager
    def open(self, rel: str, size: int) -> Iterator[Source]:
        yield str(self.root / rel)

    @contextmanager
    def open_direct(self, rel: str) -> Iterator[Source]:
        yield str(self.root / rel)


class FileCache:
    """Whole copies of remote cold files under ``<data>/cache``, least recently used
    evicted once they total more than ``max_bytes``.

    The directory is the only state (recency is the files' mtime, touched on each
    hit), so processes sharing a data directory (a writer and read-only readers)
    share the cache and each keeps it within the limit. A copy is trusted only
    with the size the manifest records; anything else is fetched again. Files
    never change once published, so a copy never goes stale; a file the manifest
    drops is dropped here too (and an unknown one ages out)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def _path(self, rel: str) -> Path:
        return self.root / rel.replace("/", "_")

    def open(self, rel: str, size: int) -> pa.NativeFile | None:
        """An open copy of ``rel`` if one is cached with ``size`` bytes; it stays readable
        even if evicted meanwhile (the file is open)."""
        p = self._path(rel)
        try:
            f = pa.OSFile(str(p), "r")
        except FileNotFoundError:
            return None
        if f.size() != size:
            log.warning("cached cold file %s has %d bytes, expected %d: fetching it again", p, f.size(), size)
            f.close()
            self.drop(rel)
            return None
        with contextlib.suppress(OSError):  # evicted by another process meanwhile: the open file still reads
            os.utime(p)
        return f

    def put(self, rel: str, data: bytes) -> None:
        """Keep a copy (best effort: a cache that cannot be written only costs downloads)."""
        if len(data) > self.max_bytes:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write(self._path(rel), data, sync=False, unique=True)  # a writer and readers share the cache
        except OSError as exc:
            log.warning("cannot cache cold file %s in %s: %s", rel, self.root, exc)
            return
        self._trim()

    def scratch(self, rel: str) -> Path:
        """A private temporary path for writing ``rel`` before it is uploaded (in the cache
        directory, so :meth:`adopt` is a rename; a leftover ages out as a ``.partial``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f"{rel.replace('/', '_')}.{os.getpid()}.{threading.get_ident()}.partial"

    def adopt(self, rel: str, path: Path) -> None:
        """Keep the local file ``path`` (``rel``'s bytes, just uploaded) as its cached copy,
        or delete it if the cache cannot hold it (best effort, like :meth:`put`)."""
        try:
            if path.stat().st_size > self.max_bytes:
                path.unlink()
                return
            os.replace(path, self._path(rel))
        except OSError as exc:
            log.warning("cannot cache cold file %s in %s: %s", rel, self.root, exc)
            path.unlink(missing_ok=True)
            return
        self._trim()

    def drop(self, rel: str) -> None:
        self._path(rel).unlink(missing_ok=True)

    def size(self) -> int:
        return sum(size for _mtime, size, _p in self._entries())

    def _entries(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of the cached copies, and of ``.partial`` leftovers over an
        hour old (younger ones may be a copy being written)."""
        out = []
        stale = time.time() - 3600
        try:
            with os.scandir(self.root) as it:
                for e in it:
                    try:
                        st = e.stat()
                    except FileNotFoundError:
                        continue
                    if e.name.endswith(".partial") and st.st_mtime > stale:
                        continue
                    out.append((st.st_mtime, st.st_size, Path(e.path)))
        except FileNotFoundError:
            pass
        return out

    def _trim(self) -> None:
        with self._lock:
            entries = self._entries()
            total = sum(size for _m, size, _p in entries)
            for _mtime, size, p in sorted(entries):
                if total <= self.max_bytes:
                    break
                p.unlink(missing_ok=True)
                total -= size


class RemoteFiles:
    """Cold files in a ``pyarrow.fs`` filesystem under ``base`` (``bucket/prefix`` on S3),
    read through a local ``FileCache``."""

    remote = True

    def __init__(self, fs: pafs.FileSystem, base: str, *, location: str, cache: FileCache) -> None:
        self.fs = fs
        self.base = base.rstrip("/")
        self.location = location
        self.cache = cache
        inner = fs.base_fs if isinstance(fs, pafs.SubTreeFileSystem) else fs
        self.atomic_put = inner.type_name in _ATOMIC_PUT
        self.location_file: Path | None = None
        """Written (once) before the first publish: see ``LOCATION_FILE``."""
        self._fetching = [threading.Lock() for _ in range(64)]
        self._undeleted: set[str] = set()
        """Files whose delete failed (the store unreachable): retried before each publish."""
        self.owner: str | None = None
        """This data directory's id at this location (None until its first file goes there)."""
        self._claimed = False
        self._attempted: OrderedDict[str, None] = OrderedDict()
        """The latest uploads tried: only those can need discarding (an upload that failed
        may still have landed), not the files of a change it stopped before they were sent."""

    def key(self, rel: str) -> str:
        return f"{self.base}/{rel}" if self.base else rel

    def describe(self, rel: str) -> str:
        return f"{self.location.rstrip('/')}/{rel}"

    # ------------------------------------------------------------ writes

    def stage(self, rel: str) -> Path:
        """Where to write a new file before it is uploaded: a private file in the cache directory."""
        return self.cache.scratch(rel)

    def publish_file(self, rel: str, staged: Path) -> None:
        """Upload a staged file and verify it is there whole; raises StorageError otherwise
        (the caller then keeps the records where they are). The staged file then becomes
        the cached copy (the first read needs no download)."""
        _record_location(self)
        self.claim()
        if self._undeleted:
            self._delete_keys(sorted(self._undeleted), missing_ok=True)
        key = self.key(rel)
        self._attempted[rel] = None
        if len(self._attempted) > 4096:
            self._attempted.popitem(last=False)
        size = staged.stat().st_size
        try:
            if self.atomic_put:
                self._upload(staged, key)
            else:
                self.fs.create_dir(key.rpartition("/")[0], recursive=True)
                self._upload(staged, key + ".partial")
                self.fs.move(key + ".partial", key)
            info = self.fs.get_file_info(key)
        except OSError as exc:
            raise StorageError(f"uploading cold file {self.describe(rel)} failed: {_one_line(exc)}") from exc
        if info.type != pafs.FileType.File or info.size != size:
            raise StorageError(
                f"uploaded cold file {self.describe(rel)} does not verify: "
                f"{info.size if info.type == pafs.FileType.File else 'no'} bytes stored, {size} sent"
            )
        self.cache.adopt(rel, staged)

    def _upload(self, staged: Path, key: str) -> None:
        """Copy a local file to ``key``, a piece at a time (a large one is a multipart upload)."""
        with open(staged, "rb") as src, self.fs.open_output_stream(key) as out:
            while piece := src.read(_UPLOAD_PIECE):
                out.write(piece)

    def claim(self) -> None:
        """Make sure the prefix is this data directory's (``OWNER_OBJECT``), marking it so
        on first use; raises StorageError if it belongs to another."""
        if self._claimed:
            return
        key = self.key(OWNER_OBJECT)
        try:
            with self.fs.open_input_stream(key) as f:
                found = json.loads(f.read())["owner"]
        except FileNotFoundError:
            found = None
        except OSError as exc:
            raise StorageError(f"cannot read {self.describe(OWNER_OBJECT)}: {_one_line(exc)}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"{self.describe(OWNER_OBJECT)} is not a tael owner marker: {exc}") from exc
        if found is not None and found != self.owner:
            raise LocationTaken(
                f"the cold location {self.location} holds the cold files of another tael data directory "
                f"(owner {found}; this one is {self.owner}): two stores must never share a cold prefix, "
                "since each deletes files its own manifest does not name. Give this store its own Settings.cold_uri"
            )
        if found is None:
            assert self.owner is not None, "the location is recorded before it is claimed"
            body = json.dumps({"owner": self.owner}).encode() + b"\n"
            try:
                if self.atomic_put:
                    with self.fs.open_output_stream(key) as out:
                        out.write(body)
                else:
                    if self.base:
                        self.fs.create_dir(self.base, recursive=True)
                    with self.fs.open_output_stream(key + ".partial") as out:
                        out.write(body)
                    self.fs.move(key + ".partial", key)
            except OSError as exc:
                raise StorageError(f"cannot write {self.describe(OWNER_OBJECT)}: {_one_line(exc)}") from exc
        self._claimed = True

    def delete(self, rels: Iterable[str]) -> None:
        """Delete files the manifest no longer names. A failure is logged, not raised (the
        change that dropped them has committed); they are retried before the next publish
        and, failing that, swept as orphans at the next open."""
        rels = list(rels)
        for rel in rels:
            self.cache.drop(rel)
        self._delete_keys([self.key(rel) for rel in rels])

    def discard(self, rel: str) -> None:
        self.cache.drop(rel)
        if rel not in self._attempted:
            return  # never sent
        del self._attempted[rel]
        keys = [self.key(rel)] + ([] if self.atomic_put else [self.key(rel) + ".partial"])
        self._delete_keys(keys, missing_ok=True)

    def _delete_keys(self, keys: list[str], *, missing_ok: bool = False) -> None:
        parents = set()
        for key in keys:
            try:
                self.fs.delete_file(key)
            except FileNotFoundError:
                if not missing_ok:
                    log.warning("cold file %s was already gone", key)
            except OSError as exc:
                log.warning("cannot delete cold file %s (retried later): %s", key, _one_line(exc))
                self._undeleted.add(key)
                continue
            self._undeleted.discard(key)
            parents.add(key.rpartition("/")[0])
        for d in parents:
            self._remove_dir_if_empty(d)

    def _remove_dir_if_empty(self, d: str) -> None:
        """Object stores keep a "directory" object for an emptied prefix; remove it so a
        dropped partition leaves nothing behind."""
        try:
            if not self.fs.get_file_info(pafs.FileSelector(d, allow_not_found=True)):
                self.fs.delete_dir(d)
        except OSError as exc:
            log.debug("cannot remove empty directory %s: %s", d, exc)

    def sweep(self, live: set[str]) -> int:
        """Delete the files under ``base`` in tael's layout that the manifest does not name.
        An unreachable store is logged, not raised: the store opens, and the orphans
        (only ever of a change that did not commit) wait for the next open."""
        if self.owner is None:
            return 0  # nothing of this store was ever sent here: no orphans of its own
        try:
            self.claim()  # another store's prefix raises: its files are not orphans of ours
            rels = self.listing()
        except LocationTaken:
            raise
        except StorageError as exc:
            log.warning("cannot look for orphan cold files in %s (left for the next open): %s", self.location, exc)
            return 0
        doomed = [rel for rel in rels if rel not in live]
        for rel in doomed:
            log.warning("removing orphan cold file %s (not in the manifest)", self.describe(rel))
        self._delete_keys([self.key(rel) for rel in doomed], missing_ok=True)
        return len(doomed)

    def listing(self) -> list[str]:
        """Paths in tael's layout under ``base`` (anything else there is not ours)."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.base, recursive=True, allow_not_found=True))
        except OSError as exc:
            raise StorageError(f"cannot list cold files in {self.location}: {_one_line(exc)}") from exc
        cut = len(self.base) + 1 if self.base else 0
        out = []
        for info in infos:
            if info.type == pafs.FileType.File:
                rel = info.path[cut:]
                if LAYOUT.fullmatch(rel):
                    out.append(rel)
        return sorted(out)

    def size(self, rel: str) -> int | None:
        try:
            info = self.fs.get_file_info(self.key(rel))
        except OSError as exc:
            raise StorageError(f"cannot stat cold file {self.describe(rel)}: {_one_line(exc)}") from exc
        return info.size if info.type == pafs.FileType.File else None

    # ------------------------------------------------------------ reads

    @contextmanager
    def open(self, rel: str, size: int) -> Iterator[Source]:
        """The file, from the cache or downloaded whole (and cached). A file gone from
        the store raises FileNotFoundError (a merge or retention removed it after the
        reader's snapshot: the read is retried); anything else StorageError."""
        src = self.cache.open(rel, size)
        if src is None:
            with self._fetching[hash(rel) % len(self._fetching)]:  # one download of a file at a time
                src = self.cache.open(rel, size)
                if src is None:
                    data = self._download(rel, size)
                    self.cache.put(rel, data)
                    src = pa.BufferReader(data)
        try:
            yield src
        finally:
            src.close()

    @contextmanager
    def open_direct(self, rel: str) -> Iterator[Source]:
        """The file in the store itself, bypassing the cache (ranged reads: for checks)."""
        try:
            f = self.fs.open_input_file(self.key(rel))
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot read cold file {self.describe(rel)}: {_one_line(exc)}") from exc
        try:
            yield f
        finally:
            f.close()

    def _download(self, rel: str, size: int) -> bytes:
        try:
            with self.fs.open_input_file(self.key(rel)) as f:
                data = bytes(f.read())
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot read cold file {self.describe(rel)}: {_one_line(exc)}") from exc
        if len(data) != size:
            raise StorageError(f"cold file {self.describe(rel)} holds {len(data)} bytes, the manifest says {size}")
        return data

    def dataset(self, files: list[tuple[str, int, str]], schema: pa.Schema) -> ds.Dataset:
        """A pyarrow dataset reading (path, size, date) files straight from the store,
        with the hive ``date`` column (for engines scanning it, such as DuckDB)."""
        fmt = ds.ParquetFileFormat()
        fragments = [
            fmt.make_fragment(self.key(rel), self.fs, ds.field("date") == date, file_size=size)
            for rel, size, date in files
        ]
        return ds.FileSystemDataset(fragments, schema.append(pa.field("date", pa.string())), fmt, self.fs)


# ---------------------------------------------------------------- choosing the place


def open_files(data_dir: Path, settings: Any) -> LocalFiles | RemoteFiles:
    """The place ``settings`` name for a store's cold files (see ``Settings.cold_uri``)."""
    uri: str | None = settings.cold_uri
    fs = settings.cold_filesystem
    default = data_dir / "cold"
    if fs is not None:
        if not isinstance(fs, pafs.FileSystem):
            raise ValueError(f"Settings.cold_filesystem must be a pyarrow.fs.FileSystem, got {fs!r}")
        base = uri or ""
    elif uri is None:
        files: LocalFiles | RemoteFiles = LocalFiles(default)
        _check_location(data_dir, files, True)
        return files
    elif uri.startswith("s3://"):
        base = uri[len("s3://") :].strip("/")
        if not base:
            raise ValueError(f"Settings.cold_uri must name a bucket (s3://bucket/prefix), got {uri!r}")
        fs = s3_filesystem(settings)
    elif "://" in uri:
        try:
            fs, base = pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"Settings.cold_uri {uri!r} names no filesystem pyarrow knows: {exc}") from exc
    else:
        base = uri
        fs = pafs.LocalFileSystem()
    if isinstance(fs, pafs.LocalFileSystem):
        if not base:
            raise ValueError("Settings.cold_uri must name a directory when cold_filesystem is a LocalFileSystem")
        root = Path(base).expanduser().resolve()
        is_default = root == default.resolve()
        files = LocalFiles(root, owned=is_default)
    else:
        if fs.type_name == "s3":
            location = f"s3://{base.strip('/')}"
        elif isinstance(fs, pafs.SubTreeFileSystem):
            location = f"subtree://{fs.base_path.rstrip('/')}/{base.strip('/')}"
        else:
            location = f"{fs.type_name}://{base}"
        files = RemoteFiles(fs, base, location=location, cache=FileCache(data_dir / "cache", settings.cold_cache_bytes))
        is_default = False
    _check_location(data_dir, files, is_default)
    return files


def s3_filesystem(settings: Any) -> pafs.S3FileSystem:
    """An S3 filesystem from the ``cold_s3_*`` settings; unset ones use the AWS defaults
    (environment, config files, instance metadata)."""
    timeout = float(settings.cold_request_timeout_s)
    kw: dict[str, Any] = {
        "connect_timeout": timeout,
        "request_timeout": timeout,
        "allow_delayed_open": True,  # a small file is then one PutObject, sent on close
    }
    if (settings.cold_s3_access_key is None) != (settings.cold_s3_secret_key is None):
        raise ValueError("Settings.cold_s3_access_key and cold_s3_secret_key must be set together")
    if settings.cold_s3_access_key is not None:
        kw["access_key"] = settings.cold_s3_access_key
        kw["secret_key"] = settings.cold_s3_secret_key
    if settings.cold_s3_region is not None:
        kw["region"] = settings.cold_s3_region
    endpoint: str | None = settings.cold_s3_endpoint
    if endpoint is not None:
        scheme, sep, hostport = endpoint.rstrip("/").partition("://")
        if sep:
            if scheme not in ("http", "https"):
                raise ValueError(f"Settings.cold_s3_endpoint must be an http(s) URL, got {endpoint!r}")
            kw["scheme"] = scheme
            kw["endpoint_override"] = hostport
        else:
            kw["endpoint_override"] = endpoint
    return pafs.S3FileSystem(**kw)


def _check_location(data_dir: Path, files: LocalFiles | RemoteFiles, is_default: bool) -> None:
    """Refuse settings that name another place than the one holding this store's cold
    files: the manifest would name files that are not there, and new ones would go
    elsewhere."""
    marker = data_dir / LOCATION_FILE
    try:
        record = json.loads(marker.read_text())
        recorded = record["location"]
        if isinstance(files, RemoteFiles) and recorded == files.location:
            files.owner = record.get("owner")
            if files.owner is None:  # recorded before owners were: give it one now
                files.owner = record["owner"] = uuid.uuid4().hex
                atomic_write(marker, json.dumps(record).encode() + b"\n")
    except FileNotFoundError:
        recorded = None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"{marker} does not read: {exc}") from exc
    if recorded is None:
        if not is_default and _holds_parquet(data_dir / "cold"):
            raise StorageError(
                f"{data_dir} keeps its cold files in {data_dir / 'cold'}, but the settings put the cold tier "
                f"at {files.location}: open it without Settings.cold_uri"
            )
        if not is_default:
            files.location_file = marker
        return
    if is_default or recorded != files.location:
        raise StorageError(
            f"{data_dir} keeps its cold files in {recorded} (recorded in {marker}), but the settings put the "
            f"cold tier at {files.location}: open it with Settings.cold_uri naming {recorded}"
        )


def _record_location(files: LocalFiles | RemoteFiles) -> None:
    """Before a store's first cold file goes outside ``<data>/cold``, record where."""
    marker = files.location_file
    if marker is not None and not marker.exists():
        if isinstance(files, RemoteFiles) and files.owner is None:
            files.owner = uuid.uuid4().hex
        record = {"location": files.location, "owner": getattr(files, "owner", None)}
        atomic_write(marker, json.dumps(record).encode() + b"\n")
    files.location_file = None


def _holds_parquet(root: Path) -> bool:
    return root.is_dir() and any(name.endswith(".parquet") for _d, _s, names in os.walk(root) for name in names)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _make_dirs(path: Path) -> list[Path]:
    """mkdir -p, returning the directories created (outermost first) so their parents
    can be fsynced once something durable is in them."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
    return list(reversed(missing))


def _remove_if_empty(d: Path) -> None:
    if d.is_dir() and not any(d.iterdir()):
        d.rmdir()
