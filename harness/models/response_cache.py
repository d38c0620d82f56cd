"""On-disk response cache (SQLite). A re-run of a finished evaluation makes zero model calls.

The key is built from content (see request_key): model id, revision and endpoint, the exact messages with image
content hashes, tool specs, sampling params and the tool-call protocol. Only deterministic requests (temperature 0
or a fixed seed) are stored unless the caller asks otherwise.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from harness.core.hashing import content_key
from harness.core.config import default_cache_dir
from harness.models.types import Reply

CACHE_VERSION = 1


def request_key(spec, messages, tools, sampling) -> str:
    return content_key(
        response_cache=CACHE_VERSION,
        backend=spec.backend,
        model=spec.model,
        revision=spec.revision,
        endpoint=spec.endpoint,
        native_tools=spec.uses_native_tools,
        extra_body=spec.extra_body,
        messages=[m.to_record(labels=False) for m in messages],
        tools=[t.to_openai() for t in tools],
        sampling=sampling.to_dict(),
    )


class ResponseCache:
    def __init__(self, path: Path | str | None = None, *, cache_nondeterministic: bool = False):
        self.path = Path(path) if path is not None else default_cache_dir() / "responses.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.cache_nondeterministic = cache_nondeterministic
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT, reply TEXT, created REAL)")
        self.hits = 0
        self.misses = 0

    def wants(self, sampling) -> bool:
        return self.cache_nondeterministic or sampling.deterministic

    def get(self, key: str) -> Reply | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return Reply.from_record({**json.loads(row[0]), "cached": True})

    def put(self, key: str, model: str, reply: Reply) -> None:
        record = json.dumps(reply.to_record(), separators=(",", ":"))
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)", (key, model, record, time.time()))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
