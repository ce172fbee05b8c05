"""The log part of a snapshot: the last lines of each configured file (glob patterns, the
newest few files of each), masked. Files are read from their end, at most ``MAX_BYTES``."""

from __future__ import annotations

import glob
import os
from typing import Any

from tasks.core.incident.mask import mask_text

MAX_BYTES = 4 * 2**20
BLOCK = 64 * 1024
MAX_LINE = 2000


def tail(path: str, lines: int) -> tuple[list[str], bool]:
    """The last ``lines`` lines of ``path`` and whether the file holds more."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        end = pos = fh.tell()
        data = b""
        while pos > 0 and data.count(b"\n") <= lines and end - pos < MAX_BYTES:
            step = min(BLOCK, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    text = data.decode("utf-8", "replace").splitlines()
    if pos > 0 and text:
        text = text[1:]  # the first line read is probably cut
    return text[-lines:], pos > 0 or len(text) > lines


def snapshot(patterns: list[str], lines: int, per_pattern: int, *owners: Any) -> dict[str, Any]:
    files: dict[str, Any] = {}
    for pattern in patterns:
        matches = [p for p in glob.glob(pattern) if os.path.isfile(p)]
        if not matches:
            files[pattern] = {"error": "no such file" if not glob.has_magic(pattern) else "no file matches"}
            continue
        matches.sort(key=lambda p: os.path.getmtime(p), reverse=True)
        for path in matches[:per_pattern]:
            try:
                kept, more = tail(path, lines)
                st = os.stat(path)
            except OSError as exc:
                files[path] = {"error": exc.strerror or str(exc)}
                continue
            files[path] = {"lines": [mask_text(line[:MAX_LINE], *owners) for line in kept], "truncated": more,
                           "size": st.st_size, "modified": st.st_mtime}
    return {"files": files}
