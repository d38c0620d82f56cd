"""Hugging Face datasets: a local dataset folder (save_to_disk output, or Parquet/JSON files with a README
`configs:` block) or a hub id ("hf:owner/name", only where the network allows).

Rows follow the manifest schema (harness.data.sources.manifest). A volume column may hold a path (relative to the
dataset folder) or the file's bytes (a `bytes` value or {"bytes": ..., "path": ...}); bytes are written once to
<cache>/hf-volumes/<sha256>.nii[.gz] so the case can point at a file. Only NIfTI bytes are accepted.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness.core.files import atomic_write_bytes
from harness.core.config import default_cache_dir
from harness.data.sources.manifest import ManifestError, drop_nulls, hf_cache, role_columns, rows_to_cases


def _materialize(value, cache: Path):
    if isinstance(value, dict) and "bytes" in value:
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
        gz = data[:2] == b"\x1f\x8b"
        if not gz and not (len(data) >= 348 and (data[344:348] in (b"n+1\0", b"ni1\0", b"n+2\0"))):
            raise ValueError("volume bytes are not NIfTI (gzip or n+1 header)")
        digest = hashlib.sha256(data).hexdigest()
        path = cache / "hf-volumes" / f"{digest}.nii{'.gz' if gz else ''}"
        if not path.exists():
            atomic_write_bytes(path, data)
        return str(path)
    return value


def _load(location: str, cache_dir=None):
    import datasets

    datasets.disable_progress_bars()
    path = Path(location)
    try:
        if path.exists():
            if (path / "dataset_info.json").exists() or (path / "state.json").exists() or (path / "dataset_dict.json").exists():
                ds = datasets.load_from_disk(str(path))
            else:
                ds = datasets.load_dataset(str(path), cache_dir=hf_cache(cache_dir))
        else:
            ds = datasets.load_dataset(location, cache_dir=hf_cache(cache_dir))
    except Exception as exc:
        raise ManifestError(f"{location}: cannot load the Hugging Face dataset ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if isinstance(ds, (datasets.DatasetDict, dict)):
        split = "test" if "test" in ds else "train" if "train" in ds else next(iter(ds))
        ds = ds[split]
    return ds


def read(location: str, task, *, limit=None, cache_dir=None):
    ds = _load(location, cache_dir)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    base = Path(location) if Path(location).exists() else cache
    rows, problems = [], []
    for n, row in enumerate(ds, start=1):
        row = drop_nulls(dict(row))
        try:
            for role in role_columns(task):
                if role in row:
                    row[role] = _materialize(row[role], cache)
            if isinstance(row.get("volumes"), dict):
                row["volumes"] = {k: _materialize(v, cache) for k, v in row["volumes"].items()}
        except ValueError as exc:
            problems.append((str(row.get("id") or f"row {n}"), str(exc)))
            continue
        rows.append(row)
    cases, more = rows_to_cases(rows, base, task, limit=limit)
    return cases, problems + more
