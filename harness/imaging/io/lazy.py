"""Volumes whose content hash is known before their voxels are read.

Every cache (defaced volumes, renders, model replies, sample ids) is keyed by a volume's content hash, and reading a
DICOM series or a .nii.gz only to learn that hash costs far more than the cached work it unlocks (a 98-slice CT
series: about 0.35 s). So the hash is remembered per file identity - the absolute path, size, modification time,
status-change time and inode of the file, or of every file in a DICOM folder - plus the loader's version; a file
changed in any of those ways is read again. A volume found in this memo is a LazyVolume: it reads its voxels on
first use, which a fully cached sample never makes. An unchanged DICOM series is parsed once: later reads take its
converted voxels from the cache (imaging.io.converted), checked against the remembered hash.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from harness.core.files import file_identity, read_cache_entry, write_cache_entry
from harness.core.hashing import content_key
from harness.core.volume import Volume
from harness.imaging.io.converted import keep_converted, read_converted

# Bump when a loader's output changes for the same file (orientation, rescaling, DICOM sorting): old hashes lapse.
LOADER_VERSION = 2  # 2: MONOCHROME1 flipped over the series range, never for CT


class HashMemo:
    """identity key -> the volume's content hash and header facts (modality, shape, affine), one small JSON file
    each under cache_dir/volume-ids (safe across processes)."""

    def __init__(self, cache_dir):
        self.folder = Path(cache_dir) / "volume-ids"

    @staticmethod
    def key(path, **facts) -> str:
        return content_key(kind="volume-id", loader=LOADER_VERSION, identity=file_identity(path), **facts)

    def get(self, key: str) -> dict | None:
        record = read_cache_entry(self.folder / f"{key}.json")
        if record is None:
            return None
        try:
            header = {"modality": str(record["modality"]), "shape": tuple(int(n) for n in record["shape"]),
                      "affine": np.array(record["affine"], dtype=np.float64).reshape(4, 4)}
            content_hash = record["content_hash"]
        except (ValueError, KeyError, TypeError):
            return None
        if not (isinstance(content_hash, str) and len(content_hash) == 64 and len(header["shape"]) == 3):
            return None
        meta = record.get("meta")  # absent in records written before it was kept: then read with the voxels
        if isinstance(meta, dict) and all(isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in meta.items()):
            header["meta"] = meta
        return {"content_hash": content_hash, **header}

    def put(self, key: str, volume: Volume) -> None:
        record = {"content_hash": volume.content_hash, "modality": volume.modality, "shape": list(volume.shape),
                  "affine": np.asarray(volume.affine).tolist()}
        if all(isinstance(v, (str, int, float)) for v in volume.meta.values()):
            record["meta"] = dict(volume.meta)
        write_cache_entry(self.folder / f"{key}.json", record)

    def content_hash(self, key: str) -> str | None:
        record = self.get(key)
        return record["content_hash"] if record else None


class LazyVolume:
    """Stands in for a Volume: its content hash and header (modality, shape, affine, metadata, spacing, orientation,
    the voxel/world maps, with_data) come from the memo; anything else (data, ...) reads the voxels once.

    rewrite_record(volume): called after a read that the memo's record must follow (other content, or a record from
    before metadata was kept). verify: check the voxels read against the remembered hash. Off for the harness's own cache files, which are
    only ever replaced by an atomic rename (a new inode, so a new identity); on for users' files."""

    def __init__(self, load: Callable[[], Volume], record: dict, rewrite_record: Callable[[Volume], None] | None = None,
                 verify: bool = True):
        self._load = load
        self._record = record
        self._rewrite_record = rewrite_record
        self._verify = verify
        self._volume: Volume | None = None
        self._lock = threading.Lock()

    content_hash = property(lambda self: self._record["content_hash"])
    modality = property(lambda self: self._record["modality"])
    shape = property(lambda self: self._record["shape"])
    affine = property(lambda self: self._record["affine"])
    # the header-only members of Volume, computed from the memo's affine exactly as Volume computes them
    spacing = property(Volume.spacing.fget)
    orientation = property(Volume.orientation.fget)
    world_to_voxel = Volume.world_to_voxel
    voxel_to_world = Volume.voxel_to_world
    # a defaced copy of a volume needs only its header: the original's voxels stay unread
    with_data = Volume.with_data

    @property
    def meta(self):
        return self._record["meta"] if "meta" in self._record else self.volume.meta

    @property
    def volume(self) -> Volume:
        with self._lock:
            if self._volume is None:
                volume = self._load()
                if self._verify and volume.content_hash != self.content_hash:
                    # the file was replaced without changing size, mtime or inode (or a loader changed without a
                    # version bump): trust the voxels from now on and correct the memo
                    warnings.warn(f"volume content changed behind an unchanged file identity (hash "
                                  f"{self.content_hash[:12]} -> {volume.content_hash[:12]}); using what was read")
                    self._record = {"content_hash": volume.content_hash, "modality": volume.modality,
                                    "shape": volume.shape, "affine": volume.affine, "meta": volume.meta}
                    if self._rewrite_record:
                        self._rewrite_record(volume)
                elif "meta" not in self._record and self._rewrite_record and volume.content_hash == self.content_hash:
                    self._rewrite_record(volume)  # a record from before metadata was kept: complete it, once
                self._volume = volume
            return self._volume

    @property
    def loaded(self) -> bool:
        return self._volume is not None

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.volume, name)


def remembered_volume(path, load: Callable[[], Volume], cache_dir, verify: bool = True, **facts) -> Volume | LazyVolume:
    """The volume at `path` as `load()` reads it: lazy when its hash is remembered, else read now and remembered.

    facts: whatever else decides what load() returns (modality, the input a defaced file belongs to, ...);
    verify: as for LazyVolume."""
    memo = HashMemo(cache_dir)
    try:
        key = memo.key(path, **facts)
    except OSError:  # missing or unreadable: the loader says what is wrong with it
        return load()
    convert = slow_to_read(path)
    if convert:
        load = _keeping_converted(load, cache_dir)
    record = memo.get(key)
    if record is not None:
        if convert:
            load = _converted_first(load, cache_dir, record)
        return LazyVolume(load, record, rewrite_record=lambda v: memo.put(key, v), verify=verify)
    volume = load()
    memo.put(key, volume)
    return volume


def slow_to_read(path) -> bool:
    """A DICOM series (a folder, or a file that is not NIfTI): parsing it costs 32-157 ms for a sample CT, reading
    its converted voxels back and checking their hash 5-23 ms (benchmarks/converted.py). A .nii.gz is not converted:
    copies of ct-report's defaced volumes too saved about 5 ms of harness CPU per sample (within the noise) for
    twice the disk."""
    from harness.imaging.io import is_nifti

    path = Path(path)
    return path.is_dir() or not is_nifti(path)


def _keeping_converted(load: Callable[[], Volume], cache_dir) -> Callable[[], Volume]:
    def read_source() -> Volume:
        volume = load()
        keep_converted(cache_dir, volume)
        return volume

    return read_source


def _converted_first(load: Callable[[], Volume], cache_dir, record: dict) -> Callable[[], Volume]:
    # the entry is keyed and checked by the hash the memo remembers for this file identity, the same trust a cached
    # render of it already gets; a missing or damaged entry is read from the source (and rewritten)
    return lambda: read_converted(cache_dir, record) or load()
