"""Content-addressed keys shared by every cache (defaced volumes, renders, model replies) and by sample ids.

A key is the sha256 of a canonical JSON document listing everything that decides the cached value; callers name
each ingredient explicitly (volume content hash, defacer name+version+params, render spec key, model id, ...).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.core.files import file_identity, read_cache_entry, write_cache_entry


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


_fingerprints: dict[tuple, str] = {}


def fingerprint(path) -> str:
    """sha256 of a file's bytes, or of a folder's sorted (relative name, file sha256) list; cached per mtime."""
    p = Path(path)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(f.relative_to(p).as_posix().encode() + b"\0" + fingerprint(f).encode())
        return h.hexdigest()
    try:
        st = p.stat()
    except OSError:
        return "missing"
    if not p.is_file():  # a device (/dev/zero) never ends; check_volume rejects its row
        return "not-a-regular-file"
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _fingerprints:
        _fingerprints[key] = _remembered_digest(p)
    return _fingerprints[key]


_digest_folder: Path | None = None


def use_digest_cache(cache_dir) -> None:
    """Remember file digests under cache_dir/file-digests by file identity (path, size, mtime, ctime, inode): a run's
    start then stats a large cohort instead of reading every byte of it again. None: digests live for the process
    only."""
    global _digest_folder
    _digest_folder = None if cache_dir is None else Path(cache_dir) / "file-digests"


def _remembered_digest(p: Path) -> str:
    entry = None
    if _digest_folder is not None:
        entry = _digest_folder / f"{content_key(kind='file-sha256', identity=file_identity(p))}.json"
        digest = (read_cache_entry(entry) or {}).get("sha256")
        if isinstance(digest, str) and len(digest) == 64:
            return digest
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    if entry is not None:
        write_cache_entry(entry, {"sha256": h.hexdigest()})
    return h.hexdigest()
