"""Defaced volumes on disk, keyed by the input's content hash and the defacer's identity.

cache_dir/defaced/<content_key(volume=..., defacer=...)>/ holds defaced.nii.gz, changed.nii.gz and qc.json
(QC + timings). Each file is written atomically and qc.json last, so a folder with qc.json is complete. A QC measured
with another volume's brain mask (a case's T1 for its FLAIR) has that volume's content hash in its key.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from defacers.base import DefacedVolume, Defacer
from harness.core.errors import HarnessError
from harness.core.files import atomic_write_text
from harness.core.hashing import content_key
from harness.imaging.io import load_nifti, save_nifti
from harness.imaging.io.lazy import remembered_volume
from harness.core.volume import Volume

CACHE_LAYOUT = 1


def cache_key(defacer: Defacer, volume_hash: str, reference_hash: str | None = None) -> str:
    # without a brain reference the key is what it always was, so existing caches stay valid
    reference = {} if reference_hash is None else {"brain_reference": reference_hash}
    return content_key(kind="defaced", layout=CACHE_LAYOUT, volume=volume_hash, defacer=defacer.identity, **reference)


def cache_folder(defacer: Defacer, volume_hash: str, cache_dir, reference_hash: str | None = None) -> Path:
    return Path(cache_dir) / "defaced" / cache_key(defacer, volume_hash, reference_hash)


def cached_record(defacer: Defacer, volume_hash: str, cache_dir, reference_hash: str | None = None) -> dict | None:
    """The QC record of a finished entry for this input, without reading any volume; None when there is none."""
    try:
        record = json.loads((cache_folder(defacer, volume_hash, cache_dir, reference_hash) / "qc.json").read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("volume") == volume_hash and "qc" in record else None


def _hash_of(volume) -> str | None:
    return None if volume is None else volume.content_hash


def defaced_volume(defacer: Defacer, volume, cache_dir, brain_reference=None):
    """The defaced volume as a sample sees it: lazy when it is cached and its hash is remembered, else read or made.
    brain_reference: as for deface_cached (it is part of the cache key, so pass what the deface stage passed)."""
    reference_hash = _hash_of(brain_reference)
    folder = cache_folder(defacer, volume.content_hash, cache_dir, reference_hash)
    if cached_record(defacer, volume.content_hash, cache_dir, reference_hash) is None:
        return deface_cached(defacer, volume, cache_dir, brain_reference).volume

    def load() -> Volume:
        defaced = _load_defaced(folder, volume)[1]  # a sample shows the defaced voxels: the change mask stays unread
        return defaced if defaced is not None else deface_cached(defacer, volume, cache_dir, brain_reference).volume

    return remembered_volume(folder / "defaced.nii.gz", load, cache_dir, verify=False, defaced_from=volume.content_hash)


def deface_cached(defacer: Defacer, volume: Volume, cache_dir, brain_reference: Volume | None = None) -> DefacedVolume:
    """`defacer.deface(volume, brain_reference)`, read back from cache_dir when the same volume was defaced the same way
    (and measured with the same brain reference) before."""
    folder = cache_folder(defacer, volume.content_hash, cache_dir, _hash_of(brain_reference))
    qc_path = folder / "qc.json"
    if qc_path.is_file():
        hit = _load(folder, volume)
        if hit is not None:
            return hit
    result = defacer.deface(volume, brain_reference)
    save_nifti(result.volume, folder / "defaced.nii.gz")
    save_nifti(volume.with_data(result.changed.astype(np.float32)), folder / "changed.nii.gz", dtype=np.uint8)
    record = {"qc": result.qc, "timings": result.timings, "defacer": defacer.identity, "volume": volume.content_hash}
    atomic_write_text(qc_path, json.dumps(record, indent=1, sort_keys=True, default=float))
    return result


def _load(folder: Path, volume: Volume) -> DefacedVolume | None:
    """The cached result, or None when the folder is unusable (it is then recomputed and overwritten)."""
    record, defaced = _load_defaced(folder, volume)
    if defaced is None:
        return None
    try:
        changed = load_nifti(folder / "changed.nii.gz", modality="MR").data > 0.5
    except (OSError, ValueError, HarnessError):
        return None
    if changed.shape != volume.shape:
        return None
    return DefacedVolume(defaced, changed, record["qc"], record.get("timings", {}), from_cache=True)


def _load_defaced(folder: Path, volume: Volume) -> tuple[dict, Volume | None]:
    """(qc record, defaced volume) of a cache folder; the volume is None when the folder is unusable."""
    try:
        record = json.loads((folder / "qc.json").read_text())
        data = load_nifti(folder / "defaced.nii.gz", modality=volume.modality).data
    except (OSError, ValueError, KeyError, HarnessError):  # a damaged entry is recomputed and overwritten
        return {}, None
    if not isinstance(record, dict) or "qc" not in record or data.shape != volume.shape or record.get("volume") != volume.content_hash:
        return {}, None
    # The affine comes from the input (NIfTI stores it as float32), so the result hashes like a fresh one.
    return record, volume.with_data(data)
