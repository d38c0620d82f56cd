"""The Volume: float32 voxels in canonical RAS orientation, with an affine, a modality and PHI-free metadata.

Canonical RAS means voxel axis 0 runs towards patient Right, axis 1 towards Anterior, axis 2 towards Superior
(the closest axis permutation/flip to the stored orientation; an oblique affine stays oblique). Every loader
returns volumes in this orientation so render, defacers and tasks never have to think about storage order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Mapping

import nibabel as nib
import numpy as np

MODALITIES = ("MR", "CT")

# Keys allowed in Volume.meta. Anything else (names, IDs, dates, institutions, free-text descriptions) is dropped,
# so PHI cannot travel further than the loader even by accident.
SAFE_META_KEYS = frozenset(
    {
        "source_format",
        "body_part",
        "slice_thickness_mm",
        "kvp",
        "convolution_kernel",
        "manufacturer",
        "manufacturer_model",
        "field_strength_t",
        "repetition_time_ms",
        "echo_time_ms",
        "stored_orientation",
        "gantry_tilt_deg",
        "frame",
        "n_frames",
    }
)


@dataclass(frozen=True, eq=False)
class Volume:
    data: np.ndarray
    affine: np.ndarray
    modality: str
    meta: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self):
        data = np.asarray(self.data)
        if data.ndim != 3:
            raise ValueError(f"a Volume is 3D, got shape {data.shape}")
        if data.dtype != np.float32:
            data = data.astype(np.float32)
        data.setflags(write=False)
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {affine.shape}")
        affine = affine.copy()
        affine.setflags(write=False)
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        unsafe = set(self.meta) - SAFE_META_KEYS
        if unsafe:
            raise ValueError(f"metadata keys not on the PHI-free allow-list: {sorted(unsafe)}")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis (column norms of the affine)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        return "".join(nib.aff2axcodes(self.affine))

    @cached_property
    def content_hash(self) -> str:
        """sha256 over voxels, affine and modality: the identity used in every cache key."""
        h = hashlib.sha256()
        h.update(self.modality.encode())
        h.update(str(self.data.shape).encode())
        h.update(np.round(self.affine, 6).astype("<f8").tobytes())
        # hashed in place: a tobytes() copy of a CT volume costs as much as the hash itself
        h.update(memoryview(np.ascontiguousarray(self.data, dtype="<f4")).cast("B"))
        return h.hexdigest()

    @cached_property
    def intensity_range(self) -> tuple[float, float]:
        return float(self.data.min()), float(self.data.max())

    def with_data(self, data: np.ndarray, **meta) -> "Volume":
        """Same geometry and modality, new voxels (e.g. a defaced copy)."""
        if tuple(np.shape(data)) != self.shape:
            raise ValueError(f"new data shape {np.shape(data)} differs from {self.shape}")
        return Volume(data, self.affine, self.modality, {**self.meta, **meta})

    def world_to_voxel(self, xyz) -> np.ndarray:
        """World RAS mm -> fractional voxel indices."""
        xyz = np.asarray(xyz, dtype=np.float64)
        inv = np.linalg.inv(self.affine)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def voxel_to_world(self, ijk) -> np.ndarray:
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]


def to_canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Reorder/flip array axes so they run closest to R, A, S; returns (data, affine, stored orientation code)."""
    stored = "".join(nib.aff2axcodes(affine))
    ornt = nib.io_orientation(affine)
    target = nib.orientations.axcodes2ornt("RAS")
    transform = nib.orientations.ornt_transform(ornt, target)
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return data, affine, stored
    new_data = nib.orientations.apply_orientation(data, transform)
    new_affine = affine @ nib.orientations.inv_ornt_aff(transform, data.shape)
    return np.ascontiguousarray(new_data), new_affine, stored
