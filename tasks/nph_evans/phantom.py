"""nph-evans phantoms: T1 heads whose lateral ventricles are enlarged by a smooth displacement to a drawn Evans ratio.

Ground truth is measured on the written label maps (see `evans_ratio`), never taken from the drawn target.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from harness.phantoms import anatomy as A
from harness.phantoms.generator import PhantomGenerator
from harness.phantoms import head as P
from tasks.seg_fidelity.segment import LEFT_RIGHT, midline_x, paint

ER_RANGE = (0.22, 0.40)


def evans_ratio(frontal_horns: np.ndarray, intracranial: np.ndarray, spacing) -> dict:
    """Evans ratio from masks on an axial (third-axis) slice stack.

    Frontal-horn width on slice k = left-right extent (first axis) of the frontal-horn mask on that slice, in mm,
    counted in whole voxels (max index - min index + 1) x voxel size. The slice with the widest frontal horns is
    chosen (ties: the lowest index); inner-skull width = left-right extent of the intracranial mask on that same
    slice. ER = frontal-horn width / inner-skull width.
    """
    sx = float(spacing[0])
    best = None
    for k in range(frontal_horns.shape[2]):
        xs = np.nonzero(frontal_horns[:, :, k].any(axis=1))[0]
        if xs.size == 0:
            continue
        width = (xs[-1] - xs[0] + 1) * sx
        if best is None or width > best[1]:
            best = (k, width)
    if best is None:
        raise ValueError("the frontal-horn mask is empty")
    k, fh = best
    xs = np.nonzero(intracranial[:, :, k].any(axis=1))[0]
    skull = (xs[-1] - xs[0] + 1) * sx
    return {"evans_ratio": fh / skull, "frontal_horn_width_mm": fh, "inner_skull_width_mm": skull, "slice_index": int(k)}


def freesurfer_labels(labels: np.ndarray, ventricles: np.ndarray) -> np.ndarray:
    """The phantom's exact tissue labels in FreeSurfer's numbers (what seg-fidelity reads): lateral ventricles 4/43,
    cerebral white matter 2/41, grey matter 3/42, other CSF 24; left and right split as the harness segmentation
    splits them. uint8, as the sample cohort writes masks."""
    gm, wm = labels == A.GM, labels == A.WM
    out = np.zeros(labels.shape, dtype=np.int32)
    mid = midline_x(ventricles, gm | wm)
    paint(out, wm, LEFT_RIGHT["wm"], mid)
    paint(out, gm, LEFT_RIGHT["gm"], mid)
    paint(out, ventricles, LEFT_RIGHT["ventricle"], mid)
    out[labels == A.CSF] = 24
    return out.astype(np.uint8)


def _ventricle_centre(labels: np.ndarray) -> np.ndarray:
    """Between the frontal horns' centre and the whole ventricles' centre: the horns grow most, the rest follows."""
    horns = np.array(ndi.center_of_mass(labels == A.FRONTAL_HORN))
    whole = np.array(ndi.center_of_mass(np.isin(labels, (A.VENTRICLE, A.FRONTAL_HORN))))
    return 0.7 * horns + 0.3 * whole


def _er_of(labels: np.ndarray, spacing) -> float:
    return evans_ratio(labels == A.FRONTAL_HORN, np.isin(labels, P.INTRACRANIAL_LABELS), spacing)["evans_ratio"]


def enlarge_ventricles(head: P.Head, target_er: float) -> float:
    """Push tissue away from the ventricles (a smooth radial displacement, wider left-right) until the Evans ratio
    reaches the target, or pull it in when the head's own ratio is above it; returns the strength used (mm, negative
    = shrink). Bisection on a crop around the ventricles."""
    c = _ventricle_centre(head.labels)
    sp = head.spacing
    half = np.ceil(np.array([75.0, 80.0, 60.0]) / sp).astype(int)
    lo = np.maximum(np.round(c).astype(int) - half, 0)
    hi = np.minimum(np.round(c).astype(int) + half, head.labels.shape)
    crop = head.labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    cc = c - lo
    sigma = 36.0

    def field(strength, shape, centre):
        return P.radial_pull(shape, centre, sp, strength, sigma, weights=(1.0, 0.6, 0.7))

    base = _er_of(crop, sp)
    # Grow (positive strength) or shrink (negative) the ventricles; beyond ~sigma the pull map would fold over.
    a, b = (0.0, 0.9 * sigma) if base < target_er else (-0.5 * sigma, 0.0)
    for _ in range(10):
        mid = (a + b) / 2
        er = _er_of(P.pull(crop, field(mid, crop.shape, cc), 0), sp)
        a, b = (mid, b) if er < target_er else (a, mid)
    strength = (a + b) / 2
    P.pull_head(head, field(strength, head.labels.shape, c))
    return strength


def make_case(atlas: A.Atlas, rng: np.random.Generator, *, resolution_scale: float = 1.0) -> dict:
    """Return {"head", "images": {"t1": int16 array}, "truth_masks": {...}, "facts": {...}} for one case."""
    head = P.make_head(atlas, rng, resolution_scale=resolution_scale)
    target = float(rng.uniform(*ER_RANGE))
    strength = enlarge_ventricles(head, target)
    bias = P.bias_field(rng, head.labels.shape, float(rng.uniform(0.05, 0.2)))
    t1 = P.synthesize_mr(head, "t1", rng, noise=float(rng.uniform(0.015, 0.04)), bias=bias)
    frontal = head.labels == A.FRONTAL_HORN
    intracranial = np.isin(head.labels, P.INTRACRANIAL_LABELS)
    truth = evans_ratio(frontal, intracranial, head.spacing)
    ventricles = np.isin(head.labels, (A.VENTRICLE, A.FRONTAL_HORN))
    return {
        "head": head,
        "images": {"t1": P.to_scanner_units(t1, rng)},
        "masks": {
            "frontal_horns": frontal,
            "ventricles": ventricles,
            "intracranial": intracranial,
            "labels": freesurfer_labels(head.labels, ventricles),
        },
        "truth": truth,
        "facts": {"target_evans_ratio": round(target, 4), "enlargement_mm": round(strength, 2)},
    }


class NphPhantoms(PhantomGenerator):
    """T1 heads with ventricles enlarged to Evans ratios drawn from ER_RANGE."""

    name = "nph-evans"
    version = "2"  # 2: writes the exact label map (labels.nii.gz) and a seg-fidelity row
    seed_stream = 0
    default_n = 10
    tasks = ("nph-evans", "seg-fidelity")

    def make_case(self, atlas, rng, index, *, resolution_scale=1.0) -> dict:
        return make_case(atlas, rng, resolution_scale=resolution_scale)


PHANTOMS = NphPhantoms()
