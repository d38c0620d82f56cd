"""Label maps made elsewhere (FreeSurfer aseg.mgz / aparc+aseg.mgz, SLANT, SynthSeg, any NIfTI label volume) read
onto the grid of the volume they segment.

A label map is read with nibabel (NIfTI or MGH), checked (3D, whole non-negative numbers up to 65535, a declared size
the file can hold), put in canonical RAS like every volume, and - when its grid is not the volume's (FreeSurfer's
conformed 256^3 space, a map of a resampled image) - resampled onto the volume's grid by nearest neighbour through
both affines (labels must not be interpolated); `LabelMap.resampled_from` then names the map's own grid, for the QC.
Problems raise VolumeError naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from harness.core.errors import VolumeError
from harness.core.volume import Volume, to_canonical
from harness.imaging.io.nifti import check_declared_size

GRID_ATOL_MM = 1e-3  # affines closer than this are one grid (NIfTI stores them as float32)
MAX_LABEL = 65535


@dataclass(frozen=True)
class LabelMap:
    labels: np.ndarray  # int32, on the volume's grid
    resampled_from: dict | None  # the map's own grid when it was resampled ({"shape", "spacing_mm", "orientation"})


def read_label_map(path) -> tuple[np.ndarray, np.ndarray, str]:
    """(labels as int32 in canonical RAS, their affine, the stored orientation) of a NIfTI or MGH file."""
    path = Path(path)
    if not path.is_file():
        raise VolumeError(path, "label map not found" if not path.exists() else "label map is not a regular file")
    try:
        img = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, zlib.error, ValueError, gzip.BadGzipFile) as exc:
        raise VolumeError(path, f"not a readable NIfTI or MGH label map ({exc.__class__.__name__}: {exc})") from None
    shape = tuple(int(n) for n in img.shape)
    if len(shape) < 3 or min(shape[:3]) < 1 or any(n != 1 for n in shape[3:]):
        raise VolumeError(path, f"a label map must be 3D, not of shape {shape}")
    check_declared_size(img, path)
    try:
        data = np.asanyarray(img.dataobj).reshape(shape[:3])
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise VolumeError(path, f"voxel data is truncated or corrupt ({exc.__class__.__name__}: {exc})") from None
    if data.dtype.kind not in "iub":
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
            raise VolumeError(path, "is not a label map: it holds non-integer values (an image, not labels?)")
    if data.size and (data.min() < 0 or data.max() > MAX_LABEL):
        raise VolumeError(path, f"label values must lie in 0..{MAX_LABEL}, found {data.min():g}..{data.max():g}")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise VolumeError(path, "header affine is singular or not finite; voxel geometry is unknown")
    labels, affine, stored = to_canonical(data.astype(np.int32), affine)
    return labels, affine, stored


def label_map_on(path, volume: Volume) -> LabelMap:
    """The label map at `path` on `volume`'s grid (nearest neighbour when the grids differ; 0 outside the map)."""
    labels, affine, stored = read_label_map(path)
    if labels.shape == tuple(volume.shape) and np.allclose(affine, volume.affine, atol=GRID_ATOL_MM):
        return LabelMap(labels, None)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    source = {"shape": list(labels.shape), "spacing_mm": [round(float(s), 3) for s in spacing], "orientation": stored,
              "method": "nearest neighbour"}
    to_map = np.linalg.inv(affine) @ volume.affine  # volume voxel -> label-map voxel
    out = np.zeros(volume.shape, dtype=np.int32)
    ii, jj = np.meshgrid(np.arange(volume.shape[0]), np.arange(volume.shape[1]), indexing="ij")
    for k in range(volume.shape[2]):  # slice by slice: the coordinates of a whole grid would take GBs
        ijk = np.stack([ii.ravel(), jj.ravel(), np.full(ii.size, k), np.ones(ii.size)])
        coords = (to_map @ ijk)[:3]
        out[:, :, k] = ndi.map_coordinates(labels, coords, order=0, mode="constant", cval=0).reshape(ii.shape)
    return LabelMap(out, source)
