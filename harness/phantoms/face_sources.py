"""A second real face for the phantoms: Colin27's face on the pydeface average head.

Faces built from one head stay one person to a face-recognition model, however their features are moved (measured:
benchmarks/phantom_faces.py). Colin27 (mricron-data's ch2.nii.gz: one man, 27 scans averaged) has a sharper,
individual face, but its field of view ends ~28 mm below the eyes, so it cannot be a phantom head of its own.
Placed on the pydeface head by the defacers' own template fit (affine) and intensity-matched on white matter, it
replaces the pydeface head's T1 outside the skull wherever it has data, fading in over FADE_MM from the edge of its
field of view and from the skull; below its field of view (lips, chin, jaw) the pydeface head completes it. Inside
the skull (brain, ventricles: where every lesion and every truth is) the pydeface head is kept voxel for voxel,
labels and intensities alike. Outside it, the skin labels follow the new skin.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from harness.core.volume import Volume
from harness.imaging.brainmask import largest_component
from harness.phantoms import anatomy as A
from harness.phantoms.face_shape import face_region, template_affine

FADE_MM = 8.0
# Colin27 starts this far outside the intracranial space (the same clearance the face features keep).
SKULL_CLEARANCE_MM = 3.0
INTRACRANIAL = (A.CSF, A.VENTRICLE, A.FRONTAL_HORN, A.GM, A.WM)


def colin27_face(t1: np.ndarray, labels: np.ndarray, affine: np.ndarray, colin: Volume, skin_t1: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(T1, labels) of the pydeface atlas (T1 in units of white matter = 0.85, skin at skin_t1) with Colin27's face,
    on the atlas's grid. Raises defacers.registration.RegistrationError if Colin27 does not fit."""
    from defacers.registration import resample_onto
    from defacers.template import fit_template

    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    head = Volume(t1, affine, "MR")
    fit = fit_template(colin)  # maps Colin27 onto the pydeface head (the defacers' template)
    colin_here = resample_onto(colin.data, colin.affine, head, fit.registration.transform.GetInverse(),
                               linear=True, outside=-1.0)
    covered = colin_here > -0.5  # inside Colin27's field of view (its air is 0, beyond it -1)
    wm = (labels == A.WM) & (colin_here > 0)
    scale = float(np.median(t1[wm]) / np.median(colin_here[wm]))

    intracranial = np.isin(labels, INTRACRANIAL)
    from_skull = ndi.distance_transform_edt(~intracranial, sampling=zooms)
    from_edge = ndi.distance_transform_edt(covered, sampling=zooms)
    weight = np.clip((from_skull - SKULL_CLEARANCE_MM) / FADE_MM, 0, 1) * np.clip(from_edge / FADE_MM, 0, 1)
    weight *= _face_region(t1.shape, affine)
    mixed = (t1 + weight * (np.clip(colin_here, 0, None) * scale - t1)).astype(np.float32)

    new_head = ndi.binary_fill_holes(largest_component(mixed >= skin_t1))
    relabel = (weight > 0.5) & ~intracranial
    out = labels.copy()
    out[relabel & (labels == A.BACKGROUND) & new_head] = A.SCALP
    out[relabel & (labels != A.BACKGROUND) & ~new_head] = A.BACKGROUND
    return mixed, out


def _face_region(shape, affine: np.ndarray) -> np.ndarray:
    """face_shape.face_region on every voxel of a grid (Colin27's face only: its scalp and diploe, placed by an
    affine fit, would blur the inner table around the brain)."""
    to_template = np.linalg.inv(template_affine()) @ affine
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1).T @ to_template[:3, :3].T.astype(np.float32)
    return face_region(ijk + to_template[:3, 3].astype(np.float32)).reshape(shape)
