"""Content-addressed keys shared by every cache (defaced volumes, renders, model replies) and by sample ids.

A key is the sha256 of a canonical JSON document listing everything that decides the cached value; callers name
each ingredient explicitly (volume content hash, defacer name+version+params, render spec key, model id, ...).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


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
