"""A face's identity: localised, smooth shape changes of the facial features of the pydeface average head.

Faces of different people differ feature by feature (eye spacing and depth, brow ridge, nose length, width,
projection and bridge, cheekbones, lips, jaw width, chin), not by a global scale: a warp of the whole head leaves
one face that dlib's embedding still calls the same person. Each feature here moves a region of the face - a
compact, smooth bump (weight (1 - r^2)^3 inside an ellipsoid, zero outside) - along one direction by an amount
drawn from N(0, sd), with sds of the order of adult anthropometric spread (a few mm; Farkas' norms). Bilateral
features move both sides mirror-symmetrically.

The displacement is exactly zero in and within CLEARANCE_MM of the intracranial space of the atlas, and ramps up
over RAMP_MM beyond, more slowly than any displacement can reach: no voxel is pulled from inside the skull into the
face or the other way, so brain, ventricles and lesions are the same voxels whatever face a case gets.

Landmarks are pydeface template voxel indices, read off its skin surface (the midline profile and axial outlines).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

from harness.phantoms import anatomy as A

# The face: in front of the temples and below the brow (pydeface template voxel j and k). What changes a face (a
# second face source, the skin taken from the template's intensity) stays inside it, so the skull around the brain
# and the vertex - where the Evans ratio's inner skull width and head extent are measured - keep their labelled skin.
FACE_FRONT_J, FACE_TOP_K = 175.0, 112.0
FACE_FADE_VOX = 8.0

CLEARANCE_MM = 3.0
RAMP_MM = 12.0
# The largest move any voxel gets (mm): below RAMP_MM, so the ramp above keeps intracranial voxels where they are.
MAX_SHIFT_MM = 9.0


@dataclass(frozen=True)
class Part:
    centre_vox: tuple[float, float, float]  # pydeface template voxel (i right, j anterior, k superior)
    radii_mm: tuple[float, float, float]  # support ellipsoid
    direction: tuple[float, float, float]  # unit move (RAS) for a positive draw


@dataclass(frozen=True)
class Feature:
    name: str
    sd_mm: float
    parts: tuple[Part, ...]


def _pair(name: str, sd: float, right_vox, radii, direction) -> Feature:
    """A bilateral feature: the right-side part as given, the left one mirrored about the template's midline."""
    mirrored = (2 * MIDLINE_I - right_vox[0], *right_vox[1:])
    left_dir = (-direction[0], *direction[1:])
    return Feature(name, sd, (Part(right_vox, radii, direction), Part(mirrored, radii, left_dir)))


MIDLINE_I = 88.5  # halfway between the template's eye centres
ANTERIOR, SUPERIOR, RIGHT = (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 0.0, 0.0)
FEATURES: tuple[Feature, ...] = (
    _pair("eye spacing", 1.8, (117, 197, 92), (15, 20, 14), RIGHT),
    _pair("eye depth", 2.0, (117, 205, 92), (16, 16, 13), ANTERIOR),
    Feature("brow ridge", 2.0, (Part((MIDLINE_I, 225, 110), (45, 16, 12), ANTERIOR),)),
    Feature("nose length", 4.0, (Part((MIDLINE_I, 238, 62), (14, 18, 14), (0.0, 0.3, -0.95)),)),
    Feature("nose projection", 3.0, (Part((MIDLINE_I, 240, 64), (14, 14, 18), ANTERIOR),)),
    Feature("nose bridge", 2.0, (Part((MIDLINE_I, 228, 84), (10, 12, 14), ANTERIOR),)),
    _pair("nose width", 1.5, (102, 228, 58), (10, 14, 12), RIGHT),
    _pair("cheekbones", 3.0, (135, 205, 78), (18, 22, 18), (0.7, 0.7, 0.0)),
    _pair("cheek fullness", 3.0, (128, 210, 50), (20, 22, 20), (0.6, 0.8, 0.0)),
    Feature("lips", 2.0, (Part((MIDLINE_I, 228, 40), (22, 14, 12), ANTERIOR),)),
    _pair("mouth width", 2.0, (106, 220, 40), (10, 14, 10), RIGHT),
    _pair("jaw width", 3.5, (140, 172, 24), (22, 30, 24), RIGHT),
    Feature("chin projection", 3.0, (Part((MIDLINE_I, 222, 20), (26, 18, 16), ANTERIOR),)),
    Feature("face height", 5.0, (Part((MIDLINE_I, 215, 18), (50, 40, 30), (0.0, 0.0, -1.0)),)),
)


def draw_face(rng: np.random.Generator, scale: float = 1.0) -> dict[str, float]:
    """One identity: each feature's move in mm (N(0, sd) x scale, clipped at 2.5 sd x scale)."""
    return {f.name: float(np.clip(rng.standard_normal(), -2.5, 2.5) * f.sd_mm * scale) for f in FEATURES}


class FaceShaper:
    """Displacements of the face features on one atlas (world mm of the pydeface template, which the atlas keeps)."""

    def __init__(self, atlas: A.Atlas, template_affine: np.ndarray):
        self.atlas = atlas
        self.template_affine = np.asarray(template_affine, float)
        intracranial = np.isin(atlas.labels, (A.CSF, A.VENTRICLE, A.FRONTAL_HORN, A.GM, A.WM))
        dist = ndi.distance_transform_edt(~intracranial, sampling=atlas.spacing)
        self.weight = np.clip((dist - CLEARANCE_MM) / RAMP_MM, 0.0, 1.0).astype(np.float32)
        self._inv_atlas = np.linalg.inv(atlas.affine)

    def _centre_mm(self, part: Part) -> np.ndarray:
        return self.template_affine[:3, :3] @ np.asarray(part.centre_vox, float) + self.template_affine[:3, 3]

    def displacement(self, points_mm: np.ndarray, face: dict[str, float]) -> np.ndarray:
        """Move (mm, (N, 3)) of the tissue at atlas world points (N, 3) for the identity `face`."""
        pts = np.asarray(points_mm, np.float32)
        u = np.zeros_like(pts)
        for feature in FEATURES:
            amount = face.get(feature.name, 0.0)
            if amount == 0.0:
                continue
            for part in feature.parts:
                rel = (pts - self._centre_mm(part).astype(np.float32)) / np.asarray(part.radii_mm, np.float32)
                r2 = np.einsum("ij,ij->i", rel, rel)
                inside = r2 < 1.0
                if inside.any():
                    w = (1.0 - r2[inside]) ** 3
                    u[inside] += (w * amount)[:, None] * np.asarray(part.direction, np.float32)
        moved = np.linalg.norm(u, axis=1)
        too_far = moved > MAX_SHIFT_MM
        u[too_far] *= (MAX_SHIFT_MM / moved[too_far])[:, None]
        ijk = pts @ self._inv_atlas[:3, :3].T.astype(np.float32) + self._inv_atlas[:3, 3].astype(np.float32)
        u *= ndi.map_coordinates(self.weight, ijk.T, order=1, mode="constant", cval=0.0)[:, None]
        return u

    def support(self) -> tuple[np.ndarray, np.ndarray]:
        """World-mm bounding box (lo, hi) of every feature's support: outside it the displacement is zero."""
        lo, hi = [], []
        for feature in FEATURES:
            for part in feature.parts:
                c = self._centre_mm(part)
                lo.append(c - part.radii_mm)
                hi.append(c + part.radii_mm)
        return np.min(lo, axis=0), np.max(hi, axis=0)


_SHAPERS: dict[str, FaceShaper] = {}


def shaper_for(atlas: A.Atlas) -> FaceShaper:
    """The FaceShaper of a pydeface-derived atlas, built once per atlas content in a process (~1 s)."""
    if atlas.source not in A.PYDEFACE_HEADS:
        raise ValueError(f"face features are placed on the pydeface average head, not on {atlas.source}")
    if atlas.content_hash not in _SHAPERS:
        _SHAPERS[atlas.content_hash] = FaceShaper(atlas, template_affine())
    return _SHAPERS[atlas.content_hash]


@lru_cache(maxsize=1)
def template_affine() -> np.ndarray:
    """Voxel -> world of the pydeface template, whose voxel indices the landmarks are."""
    import nibabel as nib

    return np.asarray(nib.load(str(A.pydeface_template())).affine, float)


def face_region(template_ijk: np.ndarray) -> np.ndarray:
    """Weight (N,) of pydeface template voxel positions (N, 3): 1 in the face, fading to 0 over FACE_FADE_VOX."""
    front = np.clip((template_ijk[:, 1] - FACE_FRONT_J) / FACE_FADE_VOX, 0, 1)
    below = np.clip((FACE_TOP_K - template_ijk[:, 2]) / FACE_FADE_VOX, 0, 1)
    return front * below
