"""File-system helpers: the one atomic-publish path, directory fsync and the writer lock."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from ._errors import StoreLockedError


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a directory's entries (creations, renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, sync: bool = True, unique: bool = False) -> None:
    """Publish ``data`` at ``path`` all-or-nothing: write ``path.partial``, fsync,
    rename over ``path``, fsync the directory. A crash leaves the old file or the
    new one, never a mix; a leftover ``.partial`` is garbage to delete.

    ``sync=False`` skips both fsyncs, for a caller that publishes many files and
    then makes them durable together with :func:`sync_filesystem` before anything
    refers to them. ``unique=True`` names the temporary file after the process and
    thread, for a path several processes may publish at once (the same bytes)."""
    target = Path(path)
    tag = f".{os.getpid()}.{threading.get_ident()}" if unique else ""
    tmp = target.with_name(f"{target.name}{tag}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    if sync:
        fsync_dir(target.parent)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_SYNCFS = _load_syncfs() if sys.platform.startswith("linux") else None


def sync_filesystem(path: str | os.PathLike[str]) -> None:
    """Make every write to the file system holding ``path`` durable: file data,
    creations and renames. One ``syncfs(2)`` replaces an fsync per file and per
    directory when many small files were published (``os.sync()`` where syncfs is
    not available)."""
    if _SYNCFS is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs({path}) failed: {os.strerror(err)}")
    finally:
        os.close(fd)


def dir_size(path: str | os.PathLike[str]) -> int:
    """Bytes allocated on disk under ``path`` (actual blocks, so sparse files count as stored)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except FileNotFoundError:
                continue  # removed while walking (a checkpoint deleting a segment)
            total += min(st.st_size, st.st_blocks * 512)
    return total


class DirLock:
    """An exclusive ``flock`` on ``<data>/LOCK``, held while a writer has the store open.

    flock is released by the kernel when the process dies, so a crashed writer
    never leaves a stale lock behind.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "LOCK"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = _read_pid(self.path)
                who = f" (pid {holder})" if holder else ""
                raise StoreLockedError(
                    f"{self.path.parent} is open for writing by another process{who}; "
                    "close it there or open with read_only=True",
                    holder,
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_pid(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
