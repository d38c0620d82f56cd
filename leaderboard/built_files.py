"""What a leaderboard folder may hold when it is published: exactly the files `build` wrote, unchanged, each what its
name says it is, and no links.

`build` records every file it wrote with its SHA-256 in BUILD_FILE (published with the site) and keeps the case ids of
its runs in the harness cache (never in the site), so `publish` can refuse a face render saved as plots/face.png, an
image pasted into a page, a volume renamed chart.png, a link to /etc/passwd, or a case id typed into README.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

from harness.core.config import default_cache_dir
from harness.core.files import atomic_write_text

BUILD_FILE = "build.json"
SCHEMA = "harness-leaderboard-build/1"
TEXT_TYPES = {".html", ".css", ".js", ".csv", ".json", ".md", ".txt", ".svg"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def ids_folder(salt_dir: Path | None = None) -> Path:
    """Where a build keeps the case ids it must never publish: beside the cohort salts, in the harness cache."""
    return Path(salt_dir) if salt_dir else default_cache_dir() / "leaderboard-salts"


def files_of(folder: Path) -> tuple[list[Path], list[Path]]:
    """(regular files, links) under `folder`, never following a link."""
    files, links = [], []
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in dirs + names:
            path = Path(root) / name
            if path.is_symlink():
                links.append(path)
            elif name in names:
                files.append(path)
    return sorted(files), sorted(links)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record_build(out: Path, case_ids, salt_dir: Path | None = None) -> str:
    """Write BUILD_FILE (every file of `out` with its hash) and keep `case_ids` in the harness cache; returns the id."""
    build_id = uuid.uuid4().hex
    files, _ = files_of(out)
    listing = {p.relative_to(out).as_posix(): sha256(p) for p in files if p.name != BUILD_FILE or p.parent != out}
    atomic_write_text(out / BUILD_FILE, json.dumps({"schema": SCHEMA, "build_id": build_id, "files": listing},
                                                   indent=1, sort_keys=True) + "\n")
    folder = ids_folder(salt_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"build-{build_id}.ids.json"
    atomic_write_text(path, json.dumps(sorted(map(str, case_ids))) + "\n")
    path.chmod(0o600)
    return build_id


def read_build(site: Path) -> dict | None:
    try:
        doc = json.loads((site / BUILD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("files"), dict):
        return None
    return doc


def case_ids_of(site: Path, salt_dir: Path | None = None) -> list[str] | None:
    """The case ids the build of `site` saw (None when this machine did not build it)."""
    doc = read_build(site)
    if doc is None:
        return None
    try:
        ids = json.loads((ids_folder(salt_dir) / f"build-{doc.get('build_id')}.ids.json").read_text())
    except (OSError, ValueError):
        return None
    return [str(i) for i in ids] if isinstance(ids, list) else None


def content_problem(path: Path) -> str | None:
    """Why the file's bytes are not what its name says (None when they are)."""
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix == ".png":
        return None if data.startswith(PNG_MAGIC) else "is not a PNG image"
    if suffix == ".parquet":
        return None if data[:4] == b"PAR1" and data[-4:] == b"PAR1" else "is not a Parquet file"
    if suffix in TEXT_TYPES:
        if b"\0" in data:
            return "is binary, not text"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return "is not UTF-8 text"
        if suffix == ".svg" and "<svg" not in text[:4096]:
            return "is not an SVG image"
        if "data:image" in text or "data:application" in text:
            return "embeds a file (a data: URI)"
    return None


def check_built(site: Path) -> list[str]:
    """Findings ("file: what") for everything in `site` that `build` did not write as it is now: files that are not
    in BUILD_FILE or were changed since, and files whose content is not their type (links: anonymize.scan)."""
    doc = read_build(site)
    if doc is None:
        return [f"{BUILD_FILE}: missing or unreadable; only a folder made by `harness leaderboard build` is published"]
    listed: dict = doc["files"]
    files, _ = files_of(site)
    findings, seen = [], set()
    for path in files:
        rel = path.relative_to(site).as_posix()
        if rel == BUILD_FILE:
            continue
        seen.add(rel)
        if rel not in listed:
            findings.append(f"{rel}: not made by the build")
        elif sha256(path) != listed[rel]:
            findings.append(f"{rel}: changed since the build")
        if problem := content_problem(path):
            findings.append(f"{rel}: {problem}")
    findings += [f"{rel}: made by the build but missing; rebuild" for rel in sorted(set(listed) - seen)]
    return findings
