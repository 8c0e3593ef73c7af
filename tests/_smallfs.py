"""A real small filesystem for disk-full tests: a sparse image file formatted ext4 and
mounted through a loop device, so ENOSPC comes from the kernel exactly as on a full
production disk (every writer sees it: LMDB, the WAL, Tantivy's segment files).

Use the ``small_fs`` fixture from tests/conftest.py (``small_fs(size_mb) -> Path``), or
:func:`mounted` directly. Mounting needs root, ``/dev/loop-control`` and the
``mkfs.ext4``, ``losetup``, ``mount`` and ``umount`` programs; where any is missing the
test is skipped with the reason (:func:`unavailable`). Any other failure to set the
filesystem up fails the test.

:func:`fill` writes a filler file until the filesystem refuses (to the last byte the
kernel hands out); deleting the filler frees the space again.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_TOOLS = ("mkfs.ext4", "losetup", "mount", "umount")
FILLER = ".filler"


def unavailable() -> str | None:
    """Why a loop-mounted filesystem cannot be made here, or None if it can be tried."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "mounting a loop filesystem needs root"
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        return f"programs not installed: {', '.join(missing)}"
    if not Path("/dev/loop-control").exists():
        return "no loop device support (/dev/loop-control is missing)"
    return None


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


class NoLoopDevice(RuntimeError):
    """Every loop device is taken (or its /dev node is missing in this container)."""


@contextlib.contextmanager
def mounted(base: Path, size_mb: int) -> Iterator[Path]:
    """Make a ``size_mb`` MiB ext4 filesystem in a sparse file under ``base``, mount it on
    ``base/mnt`` and yield that directory; unmount and detach the loop device on exit,
    whatever happened inside (a busy mount is retried, then detached lazily)."""
    if size_mb < 8:
        raise ValueError(f"size_mb must be at least 8 (ext4's journal needs room), got {size_mb}")
    base.mkdir(parents=True, exist_ok=True)
    image = base / "fs.img"
    mnt = base / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(size_mb << 20)
    # -m 0: no blocks reserved for root (the tests run as root and must see ENOSPC)
    out = _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
    if out.returncode:
        raise RuntimeError(f"mkfs.ext4 failed: {out.stderr.strip()}")
    out = _run("losetup", "--find", "--show", str(image))
    if out.returncode:
        raise NoLoopDevice(f"losetup found no free loop device: {out.stderr.strip()}")
    device = out.stdout.strip()
    try:
        out = _run("mount", "-t", "ext4", device, str(mnt))
        if out.returncode:
            if not Path(device).exists():
                raise NoLoopDevice(f"{device} has no device node here: {out.stderr.strip()}")
            raise RuntimeError(f"mount {device} on {mnt} failed: {out.stderr.strip()}")
        try:
            yield mnt
        finally:
            _unmount(mnt)
    finally:
        out = _run("losetup", "-d", device)
        if out.returncode and "No such device" not in out.stderr:
            log.error("losetup -d %s failed: %s", device, out.stderr.strip())


def _unmount(mnt: Path) -> None:
    gc.collect()  # objects in reference cycles may still hold files open (Tantivy's mmaps)
    for _ in range(20):
        out = _run("umount", str(mnt))
        if out.returncode == 0:
            return
        if "not mounted" in out.stderr:
            return
        time.sleep(0.25)  # a process still closing files on it (a killed subprocess)
    log.error("umount %s kept failing (%s): detaching it lazily", mnt, out.stderr.strip())
    out = _run("umount", "-l", str(mnt))
    if out.returncode:
        raise RuntimeError(f"cannot unmount {mnt}: {out.stderr.strip()}")


def fill(directory: Path, *, leave: int = 0, chunk: int = 1 << 20) -> Path:
    """Write ``directory/.filler`` until the filesystem is full to the last byte: large
    writes first, then smaller ones down to one byte; then give ``leave`` bytes back
    (a nearly full disk). Returns the filler's path; delete it to free the space."""
    path = directory / FILLER
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        size = chunk
        block = b"\xa5" * chunk
        while size:
            try:
                n = os.write(fd, block[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2
                continue
            if n < size:
                size = n or size // 2
        if leave:
            os.ftruncate(fd, max(os.fstat(fd).st_size - leave, 0))
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def release(filler: Path, n: int) -> None:
    """Give ``n`` bytes of the filler back to the filesystem."""
    with open(filler, "r+b") as f:
        f.truncate(max(f.seek(0, os.SEEK_END) - n, 0))


def free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize
