"""NIfTI-1/2 reading (sform/qform, scl_slope, 4D frames) and writing with a dtype that cannot overflow."""

from __future__ import annotations

import gzip
import tempfile
import warnings
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from harness.core.files import atomic_write_bytes
from harness.core.errors import HarnessWarning, VolumeError
from harness.core.volume import Volume, to_canonical

# Below this, a voxel value only makes sense as Hounsfield units of air: the volume is CT.
CT_AIR_THRESHOLD_HU = -500.0
# A header is a claim: a few KB can declare 32767^3 voxels, and nibabel allocates what the header says before reading.
MAX_VOXELS = 2**29  # 2 GiB as float32; a 0.5 mm whole-head CT (512 x 512 x 800) is 2**27.6


def guess_modality(data: np.ndarray) -> str:
    return "CT" if float(np.min(data)) < CT_AIR_THRESHOLD_HU else "MR"


def check_finite(data: np.ndarray, path) -> None:
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise VolumeError(path, f"{bad} voxels are NaN or infinite; fix or mask them before evaluation")


def _spatial_shape(shape: tuple[int, ...], path, frame: int | None) -> None:
    spatial = [n for n in shape[:3]]
    if len(shape) < 3 or min(spatial) <= 1:
        raise VolumeError(path, f"is a 2D image (shape {tuple(shape)}); a 3D volume is needed")
    extra = [n for n in shape[3:] if n > 1]
    if len(extra) > 1:
        raise VolumeError(path, f"has {len(shape)} dimensions (shape {tuple(shape)}); only 3D or 4D volumes are supported")
    if extra and frame is None:
        raise VolumeError(path, f"is 4D with {extra[0]} frames (shape {tuple(shape)}); choose one with --frame N (0-based)")
    if extra and not 0 <= frame < extra[0]:
        raise VolumeError(path, f"frame {frame} does not exist; the volume has frames 0..{extra[0] - 1}")


def check_declared_size(img, path) -> None:
    """Refuse, before any voxel is read, a header that declares more voxels than MAX_VOXELS, or (uncompressed) more
    bytes than the file holds."""
    path = Path(path)
    shape = tuple(int(n) for n in img.header.get_data_shape())
    voxels = int(np.prod(shape, dtype=object))
    if voxels > MAX_VOXELS:
        raise VolumeError(path, f"header declares {voxels:,} voxels (shape {shape}), more than the {MAX_VOXELS:,} "
                                "harness reads; the header is wrong or the volume needs cropping first")
    if not path.name.lower().endswith((".gz", ".mgz")):  # .mgz is gzip-compressed MGH
        declared = voxels * img.header.get_data_dtype().itemsize + int(img.header.get_data_offset())
        size = path.stat().st_size
        if size < declared:
            raise VolumeError(path, f"truncated: the header declares {declared:,} bytes (shape {shape}), the file "
                                    f"holds {size:,}")


def load_nifti(path, *, modality: str | None = None, frame: int | None = None) -> Volume:
    path = Path(path)
    try:
        img = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError, OSError, EOFError, zlib.error,
            ValueError, gzip.BadGzipFile) as exc:
        raise VolumeError(path, f"not a readable NIfTI file ({exc.__class__.__name__}: {exc})") from None
    shape = tuple(int(n) for n in img.shape)
    _spatial_shape(shape, path, frame)
    check_declared_size(img, path)
    try:
        if len(shape) > 3:
            index = (slice(None),) * 3 + tuple(frame if n > 1 else 0 for n in shape[3:])
            data = np.asarray(img.dataobj[index], dtype=np.float32)
        else:
            data = np.asarray(img.get_fdata(dtype=np.float32))
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise VolumeError(path, f"voxel data is truncated or corrupt ({exc.__class__.__name__}: {exc})") from None
    except MemoryError:
        raise VolumeError(path, f"too large to load into memory (shape {shape})") from None
    check_finite(data, path)
    header = img.header
    sform_code = int(header["sform_code"]) if "sform_code" in header else 1
    qform_code = int(header["qform_code"]) if "qform_code" in header else 1
    if sform_code == 0 and qform_code == 0:
        warnings.warn(
            f"{path}: header has neither sform nor qform; orientation taken from voxel sizes only (assumed RAS)",
            HarnessWarning,
            stacklevel=2,
        )
    if sform_code > 0:
        sform = np.asarray(header.get_sform(), dtype=np.float64)
        if not np.all(np.isfinite(sform)) or abs(np.linalg.det(sform[:3, :3])) < 1e-9:
            # nibabel would silently fall back to a pixdim-only affine; a wrong orientation is worse than no answer
            raise VolumeError(path, "header sform is singular or not finite; voxel geometry is unknown")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise VolumeError(path, "header affine is singular or not finite; voxel geometry is unknown")
    data, affine, stored = to_canonical(data, affine)
    meta = {"source_format": "nifti", "stored_orientation": stored}
    if frame is not None and len(shape) > 3:
        meta["frame"] = frame
    return Volume(data, affine, modality or guess_modality(data), meta)


def storage_dtype(data: np.ndarray) -> np.dtype:
    """The smallest safe dtype: integers stay integers (int16 if they fit, else int32), anything else float32."""
    finite = data[np.isfinite(data)]
    if finite.size and np.array_equal(finite, np.round(finite)):
        lo, hi = float(finite.min()), float(finite.max())
        for dtype in (np.uint8, np.int16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return np.dtype(dtype)
    return np.dtype(np.float32)


def save_nifti(volume: Volume, path, dtype=None) -> Path:
    """Write a volume as NIfTI (.nii or .nii.gz) with its geometry in both sform and qform."""
    path = Path(path)
    dtype = np.dtype(dtype) if dtype is not None else storage_dtype(volume.data)
    data = volume.data
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        data = np.clip(np.round(data), info.min, info.max)
    img = nib.Nifti1Image(data.astype(dtype), volume.affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_sform(volume.affine, code=1)
    img.set_qform(volume.affine, code=1)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise VolumeError(path, "output name must end in .nii or .nii.gz")
    # nibabel chooses compression from the suffix, so serialise in memory and write atomically.
    suffix = ".nii.gz" if path.name.lower().endswith(".gz") else ".nii"
    return atomic_write_bytes(path, _nifti_bytes(img, suffix))


def _nifti_bytes(img, suffix: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / f"volume{suffix}"
        nib.save(img, str(target))
        return target.read_bytes()
