"""What the local cache holds (`harness cache`): one entry per folder or database the harness writes there.

Everything in the cache can be made again (at a cost); some of it shows faces or holds face embeddings and should not
outlive a study that is done: `harness cache clear --faces` removes exactly those kinds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CacheKind:
    name: str  # the folder (or database file) under the cache directory
    holds: str
    faces: bool  # made from your volumes and showing faces, or face embeddings (biometric templates)


KINDS: tuple[CacheKind, ...] = (
    CacheKind("defaced", "defaced volumes, by content of the original and the defacer", True),
    CacheKind("converted", "voxels of DICOM series, converted once", True),
    CacheKind("renders", "rendered slice images of the volumes models saw", True),
    CacheKind("face-attack", "face embeddings of the re-identification attack (biometric)", True),
    CacheKind("hf-volumes", "volumes of Hugging Face datasets, as files", True),
    CacheKind("hf-datasets", "Hugging Face dataset downloads", True),
    CacheKind("face-poses", "head poses the face renders are taken from", False),
    CacheKind("cohorts", "generated sample cohorts (synthetic phantoms)", False),
    CacheKind("anatomy", "phantom anatomy built from the template head", False),
    CacheKind("responses.sqlite", "model replies, by request", False),
    CacheKind("scores.sqlite", "text-metric scores (BERTScore and others)", False),
    CacheKind("file-digests", "content hashes of files, by path, size and times", False),
    CacheKind("volume-ids", "content hashes of volumes, by file identity", False),
    CacheKind("weights", "model weights checked against their sha256 (DeepDefacer)", False),
    CacheKind("leaderboard-salts", "secret salts that hash case ids on published leaderboards: removing them gives "
                                   "a cohort new hashed ids", False),
)
BY_NAME = {k.name: k for k in KINDS}


@dataclass(frozen=True)
class CacheUsage:
    kind: CacheKind | None  # None: something the harness does not write
    path: Path
    files: int
    bytes: int


def _paths(folder: Path, kind: CacheKind) -> list[Path]:
    """The kind's path, and a database's write-ahead log and shared-memory files beside it."""
    main = folder / kind.name
    if kind.name.endswith(".sqlite"):
        return [main, *(folder / f"{kind.name}{s}" for s in ("-wal", "-shm", "-journal"))]
    return [main]


def _size(path: Path) -> tuple[int, int]:
    if path.is_symlink() or path.is_file():
        return 1, path.lstat().st_size
    files = total = 0
    for p in path.rglob("*"):
        if p.is_symlink() or p.is_file():
            files += 1
            total += p.lstat().st_size
    return files, total


def usage(folder: Path) -> list[CacheUsage]:
    """What is in the cache folder: each known kind that exists, then whatever else is there (not the harness's)."""
    out, known = [], set()
    for kind in KINDS:
        candidates = _paths(folder, kind)
        known.update(p.name for p in candidates)
        paths = [p for p in candidates if p.exists() or p.is_symlink()]
        if paths:
            sizes = [_size(p) for p in paths]
            out.append(CacheUsage(kind, folder / kind.name, sum(f for f, _ in sizes), sum(b for _, b in sizes)))
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.name not in known:
                out.append(CacheUsage(None, p, *_size(p)))
    return out


def clear(folder: Path, kinds: list[CacheKind]) -> None:
    """Remove these kinds from the cache folder (their sizes: usage). Nothing but the named kinds is touched."""
    for kind in kinds:
        for path in _paths(folder, kind):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()


def human(n: float) -> str:
    """Bytes as a person reads them (decimal units)."""
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
