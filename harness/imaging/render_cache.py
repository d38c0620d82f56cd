"""Rendered images on disk, keyed by (volume content hash, render spec key, renderer version).

A render depends only on the voxels, the affine, the modality and the spec, so one entry serves every model,
condition and run that shows the same volume the same way (the original of a case is rendered once for all models;
`harness view` re-renders from here). Off until `use_render_cache(folder)` is called: `harness eval` and
`harness view` turn it on under their --cache-dir; library calls and tests render fresh unless they ask.

Layout: cache_dir/renders/<key[:2]>/<key>/ with 0.png, 1.png, ... and meta.json written last, so a folder with
meta.json is complete; cache_dir/renders/derived/ keeps the values a task derives from the voxels to choose what to
render (`remembered`). An entry whose PNG bytes no longer match the sha256 in meta.json is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from harness.core.files import atomic_write_bytes, atomic_write_text, read_cache_entry, write_cache_entry
from harness.core.hashing import content_key

# Bump when the renderer's output changes for the same volume and spec (windowing, resampling, labels, PNG encoding).
RENDERER_VERSION = 1

_lock = threading.Lock()
_folder: Path | None = None
stats = {"hits": 0, "misses": 0}


def use_render_cache(cache_dir) -> None:
    """Cache renders under cache_dir/renders (None turns the cache off)."""
    global _folder
    with _lock:
        _folder = None if cache_dir is None else Path(cache_dir) / "renders"


def render_cache_folder() -> Path | None:
    return _folder


def remembered(volume, name: str, version: int, compute):
    """compute(volume) - a JSON value derived from the voxels that decides what to render (e.g. which slices) - kept
    with the renders by (content hash, name, version), so a cached sample needs neither it nor the voxels."""
    if _folder is None:
        return compute(volume)
    path = _folder / "derived" / f"{content_key(kind='derived', name=name, version=version, volume=volume.content_hash)}.json"
    entry = read_cache_entry(path)
    if entry is not None and "value" in entry:
        return entry["value"]
    value = compute(volume)
    write_cache_entry(path, {"value": value})
    return value


def entry_key(volume_hash: str, spec_key: str) -> str:
    return content_key(kind="render", renderer=RENDERER_VERSION, volume=volume_hash, spec=spec_key)


def _entry(key: str) -> Path:
    return _folder / key[:2] / key


def load(volume_hash: str, spec_key: str) -> list[tuple[bytes, dict]] | None:
    """[(png, image facts)] for a complete, intact entry; None when off, absent or damaged."""
    if _folder is None:
        return None
    folder = _entry(entry_key(volume_hash, spec_key))
    try:
        meta = json.loads((folder / "meta.json").read_text())
        out = []
        for i, facts in enumerate(meta["images"]):
            png = (folder / f"{i}.png").read_bytes()
            if hashlib.sha256(png).hexdigest() != facts["sha256"]:
                return None
            out.append((png, facts))
    except (OSError, ValueError, KeyError, TypeError):
        stats["misses"] += 1
        return None
    stats["hits"] += 1
    return out


def save(volume_hash: str, spec_key: str, images: list[tuple[bytes, dict]]) -> None:
    """Store [(png, image facts)]; a full disk or a read-only cache only costs the next render its time."""
    if _folder is None:
        return
    folder = _entry(entry_key(volume_hash, spec_key))
    try:
        for i, (png, _) in enumerate(images):
            atomic_write_bytes(folder / f"{i}.png", png, durable=False)
        meta = {"volume": volume_hash, "spec": spec_key, "renderer": RENDERER_VERSION,
                "images": [{**facts, "sha256": hashlib.sha256(png).hexdigest()} for png, facts in images]}
        atomic_write_text(folder / "meta.json", json.dumps(meta, sort_keys=True), durable=False)
    except OSError:
        pass
