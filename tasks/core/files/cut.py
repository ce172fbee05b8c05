"""copytruncate that never loses or duplicates a line written while it runs.

logrotate copies the live file and then truncates it: whatever a writer appends between
the end of the copy and the truncate is lost. Here the copy ends at ``cut``, an offset that
is a multiple of the filesystem block size *and* follows a newline; the copied range is
then removed from the start of the live file with ``fallocate(FALLOC_FL_COLLAPSE_RANGE)``,
which the kernel does under the inode lock, atomically with respect to appends. Bytes
after ``cut`` (the last few KiB, written before or during the copy) stay in the live file
and go with the next rotation. Lines are never split, since the cut follows a newline.

Needs a filesystem with collapse-range (ext4, XFS) and a writer that opens with
``O_APPEND`` (as logrotate's copytruncate does). Elsewhere (tmpfs, NFS) the classic
copy-and-truncate is used and the result says it may lose lines. A file where no block
boundary follows a newline yet (smaller than a block, say) is left for the next run.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass
from pathlib import Path

FALLOC_FL_COLLAPSE_RANGE = 0x08
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
MAX_PROBES = 1 << 16  # block boundaries looked at, newest first (256 MiB of 4 KiB blocks)


@dataclass(frozen=True)
class Cut:
    copied: int  # bytes now in the rotated file
    kept: int  # bytes left in the live file (written after the cut)
    lossless: bool  # False: copy-and-truncate was used; appends during it may be lost


def find_cut(fd: int, size: int, block: int) -> int:
    """The largest offset < ``size`` that is a multiple of ``block`` and follows a newline; 0 if none."""
    k = (size - 1) // block
    probes = 0
    while k > 0 and probes < MAX_PROBES:
        if os.pread(fd, 1, k * block - 1) == b"\n":
            return k * block
        k -= 1
        probes += 1
    return 0


def _copy_range(src_fd: int, dest: Path, length: int, mode: int) -> None:
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        offset = 0
        while offset < length:
            n = os.copy_file_range(src_fd, out, length - offset, offset, offset)
            if n == 0:
                raise OSError(errno.EIO, f"short read copying {dest}")
            offset += n
        os.fsync(out)
    finally:
        os.close(out)


def _collapse(fd: int, length: int) -> bool:
    if _libc.fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
        return False
    raise OSError(err, os.strerror(err))


def collapse_supported(directory: Path) -> bool:
    """Whether the filesystem of ``directory`` collapses ranges (tried on a scratch file there)."""
    fd, name = -1, directory / f".maintd-collapse-probe-{os.getpid()}"
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        block = os.fstat(fd).st_blksize or 4096
        os.write(fd, b"\n" * (3 * block))
        return _collapse(fd, block)
    except OSError:
        return False
    finally:
        if fd >= 0:
            os.close(fd)
        name.unlink(missing_ok=True)


COLLAPSING_FILESYSTEMS = frozenset({"ext4", "xfs"})


def collapse_expected(directory: Path) -> bool:
    """Whether ``directory`` is on ext4 or XFS, by the mount table (read-only: for dry runs)."""
    best, fstype = "", ""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return False
    path = str(directory.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3:
            point = fields[1].replace("\\040", " ")
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, fstype = point, fields[2]
    return fstype in COLLAPSING_FILESYSTEMS


def copy_and_cut(live: Path, dest: Path, collapse: bool) -> Cut | None:
    """Move the whole lines of ``live`` into the new file ``dest``; ``live`` keeps its inode.
    None: nothing moved (no block boundary follows a newline yet; the next run will find one)."""
    fd = os.open(live, os.O_RDWR)
    try:
        st = os.fstat(fd)
        if collapse:
            cut = find_cut(fd, st.st_size, st.st_blksize or 4096)
            if not cut:
                return None
            _copy_range(fd, dest, cut, st.st_mode & 0o7777)
            if not _collapse(fd, cut):
                dest.unlink()
                raise OSError(errno.EOPNOTSUPP, "collapse range refused")
            os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
            return Cut(cut, os.fstat(fd).st_size, True)
        # logrotate's way: copy to the current end, then truncate (appends in between are lost).
        size = os.fstat(fd).st_size
        _copy_range(fd, dest, size, st.st_mode & 0o7777)
        os.ftruncate(fd, 0)
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
        return Cut(size, 0, False)
    finally:
        os.close(fd)
