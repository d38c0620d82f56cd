"""Atomic file writes (readers - a resumed run, another process, a crash - never see a partial file), and the
identity of a file on disk (what must not change for a digest computed earlier to still hold)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path, data: bytes, *, durable: bool = True) -> Path:
    """Write via a temporary file in the same folder, fsync, then rename: readers never see a partial file.

    durable=False skips the fsync, for caches whose readers check each entry's hash (a crash may then leave an
    empty entry, which is ignored and rewritten, never a wrong one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text: str, *, durable: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def file_identity(path) -> dict:
    """What must stay the same for a file (or a folder's files) to hold the same bytes as when it was hashed.

    The status-change time (ctime) is in it because a file rewritten in place keeps its inode and, written to the same
    size by a tool that restores timestamps (cp -p, rsync -t, an anonymiser), its size and mtime too; every write sets
    ctime, and no tool can set it back."""
    path = Path(path).resolve()
    if path.is_dir():
        files = []
        for root, _, names in os.walk(path):
            for name in names:
                st = os.stat(os.path.join(root, name))
                files.append((os.path.relpath(os.path.join(root, name), path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
        return {"folder": str(path), "files": sorted(files)}
    st = path.stat()
    return {"file": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def read_cache_entry(path) -> dict | None:
    """A small JSON cache entry, or None when it is missing or damaged (the caller computes it again)."""
    try:
        entry = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) else None


def write_cache_entry(path, entry: dict) -> None:
    """Write a small JSON cache entry atomically, without fsync (read_cache_entry treats a crash's empty file as
    missing); a read-only or full cache only costs the next run the work again."""
    try:
        atomic_write_text(path, json.dumps(entry), durable=False)
    except OSError:
        pass
