"""Converted volumes: the voxels of a slow-to-read source (a DICOM series) kept in the harness cache, so the next read
of an unchanged series loads an array instead of parsing every slice with pydicom.

cache_dir/converted/<content hash>.npy holds the voxels in the smallest dtype that gives the float32 voxels back bit
for bit (int16 for a CT in whole Hounsfield units: half the bytes of float32 and as fast to read); their geometry,
modality and metadata are the hash memo's record of the source file (imaging.io.lazy), which is what decides the
content hash. An entry is used only when the volume it makes has exactly the content hash the memo remembers for the
source, so a damaged entry is read from the source again and rewritten, never served. Entries hold face-bearing
voxels of the original: like the defacer cache's copies they live in the local cache only (nothing publishes .npy).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from harness.core.files import atomic_write_bytes
from harness.core.volume import Volume
from harness.imaging.io.nifti import storage_dtype

FORMAT = (1, 0)  # .npy format version written and accepted
STORED_DTYPES = {np.dtype(t) for t in (np.uint8, np.int16, np.int32, np.float32)}


def entry_path(cache_dir, content_hash: str) -> Path:
    return Path(cache_dir) / "converted" / f"{content_hash}.npy"


def read_converted(cache_dir, record: dict) -> Volume | None:
    """The volume a memo record (content hash, modality, shape, affine, meta) describes, from its converted entry;
    None when there is no usable entry (missing, damaged, or a record without metadata)."""
    if "meta" not in record:
        return None
    try:
        with open(entry_path(cache_dir, record["content_hash"]), "rb") as fh:
            if np.lib.format.read_magic(fh) != FORMAT:
                return None
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(fh)
            # the header is checked before anything is allocated: a damaged one cannot ask for a huge array
            if tuple(shape) != tuple(record["shape"]) or fortran_order or dtype not in STORED_DTYPES:
                return None
            count = int(np.prod(shape))
            stored = np.fromfile(fh, dtype=dtype, count=count)
    except (OSError, ValueError, EOFError):
        return None
    if stored.size != count:
        return None
    volume = Volume(stored.reshape(shape).astype(np.float32), record["affine"], record["modality"], record["meta"])
    return volume if volume.content_hash == record["content_hash"] else None


def keep_converted(cache_dir, volume: Volume) -> None:
    """Write the volume's converted entry (atomically; a read-only or full cache only costs the next read the parse)."""
    data = np.ascontiguousarray(volume.data)
    stored = data.astype(storage_dtype(data))
    if stored.dtype != data.dtype and not np.array_equal(stored.astype(np.float32).view(np.uint32), data.view(np.uint32)):
        stored = data  # -0.0 (or anything else an integer cannot give back bit for bit) is kept as float32
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, stored, version=FORMAT, allow_pickle=False)
    try:
        # no fsync: a crash's partial entry fails the content-hash check and is rewritten
        atomic_write_bytes(entry_path(cache_dir, volume.content_hash), buffer.getvalue(), durable=False)
    except OSError:
        pass
