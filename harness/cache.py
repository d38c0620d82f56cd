"""Content-addressed keys and atomic file writes shared by every cache (defaced volumes, renders, model replies).

A key is the sha256 of a canonical JSON document listing everything that decides the cached value; callers name
each ingredient explicitly (volume content hash, defacer name+version+params, render spec key, model id, ...).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/harness, else ~/.cache/harness. Commands take --cache-dir to put it elsewhere."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harness"


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_json_default)


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot put {type(obj).__name__} into a cache key")


def content_key(**ingredients) -> str:
    """sha256 hex of the named ingredients (order-independent, type-stable)."""
    return hashlib.sha256(canonical_json(ingredients).encode()).hexdigest()


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write via a temporary file in the same folder, fsync, then rename: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
