"""tumor-slice / tumor-dx phantoms: T1, T1c, T2 and FLAIR heads with one of four textbook lesion patterns.

- glioblastoma: one deep white-matter mass, necrotic core, thick irregular enhancing rim, wide FLAIR oedema that
  follows white matter, mass effect (tissue shoved away);
- low-grade glioma: non-enhancing, T2/FLAIR-bright, T1-dark, fairly sharp margins, little oedema or mass effect;
- metastases: 2-5 round lesions at the grey-white junction, ring-enhancing (solid when small), oedema out of
  proportion to their size;
- meningioma: extra-axial dural-based hemispheric mass along the inner skull, homogeneous enhancement, a dural tail,
  mild oedema, brain pushed away.
Segmentation in BraTS convention: 1 necrosis / non-enhancing tumour core, 2 oedema, 3 enhancing tumour.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from harness.phantoms import anatomy as A
from harness.phantoms.generator import PhantomGenerator
from harness.phantoms import head as P
from tasks.tumor.vocabulary import DIAGNOSES

BRATS = {P.NECROSIS: 1, P.NONENHANCING: 1, P.OEDEMA: 2, P.ENHANCING: 3, P.MENINGIOMA: 3}
LOBES = ("frontal", "parietal", "temporal", "occipital")


def brats_segmentation(labels: np.ndarray) -> np.ndarray:
    seg = np.zeros(labels.shape, np.uint8)
    for code, value in BRATS.items():
        seg[labels == code] = value
    return seg


def slice_areas(seg: np.ndarray, spacing) -> np.ndarray:
    """Tumour area (any label > 0) of each axial (third-axis) slice, in mm^2."""
    return (seg > 0).sum(axis=(0, 1)) * float(spacing[0]) * float(spacing[1])


def _skull_depth(head: P.Head) -> tuple[np.ndarray, np.ndarray]:
    """(intracranial mask, distance from its surface in mm); recomputed only when the labels changed."""
    cached = getattr(head, "_depth_cache", None)
    if cached is not None and cached[0] is head.labels:
        return cached[1], cached[2]
    intracranial = np.isin(head.labels, P.INTRACRANIAL_LABELS)
    depth = ndi.distance_transform_edt(intracranial, sampling=head.spacing)
    head._depth_cache = (head.labels, intracranial, depth)
    return intracranial, depth


def _brain_point(head: P.Head, rng, *, depth_mm: tuple[float, float], labels=(A.WM,)):
    """A random voxel of the given labels whose distance from the skull lies within depth_mm, above the skull base
    (where the anatomy labels are least certain)."""
    intracranial, depth = _skull_depth(head)
    ok = np.isin(head.labels, labels) & (depth >= depth_mm[0]) & (depth <= depth_mm[1])
    zs = np.arange(head.labels.shape[2])[None, None, :]
    zc = ndi.center_of_mass(intracranial)[2]
    ok &= zs > zc - 10 / head.spacing[2]
    idx = np.argwhere(ok)
    if idx.size == 0:
        raise RuntimeError("no place for a lesion in this head")
    return idx[rng.integers(len(idx))].astype(float), depth


def _paint(head: P.Head, mask: np.ndarray, code: int, where=None) -> None:
    m = mask if where is None else mask & where
    head.labels[m] = code


def _mass_effect(head: P.Head, centre, strength_mm: float, sigma_mm: float) -> None:
    if strength_mm > 0:
        P.pull_head(head, P.radial_pull(head.labels.shape, centre, head.spacing, strength_mm, sigma_mm))


def _oedema(head: P.Head, core: np.ndarray, reach_mm: float, rng) -> np.ndarray:
    """Oedema spreads through white matter (finger-like), barely into cortex. Computed in a crop around the core."""
    idx = np.argwhere(core)
    out = np.zeros(core.shape, bool)
    if idx.size == 0:
        return out
    margin = np.ceil(reach_mm * 1.6 / np.array(head.spacing)).astype(int) + 2  # > the largest reach below
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, core.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    dist = ndi.distance_transform_edt(~core[box], sampling=head.spacing)
    reach = reach_mm + np.clip(P.smooth_field(rng, dist.shape, (5, 5, 5), reach_mm * 0.3), -0.5 * reach_mm, 0.5 * reach_mm)
    labels = head.labels[box]
    out[box] = (((labels == A.WM) & (dist <= reach)) | ((labels == A.GM) & (dist <= reach * 0.35))) & ~core[box]
    return out


def _hemisphere_lobe(head: P.Head, centre) -> tuple[str, str]:
    intracranial = np.isin(head.labels, P.INTRACRANIAL_LABELS)
    com = np.array(ndi.center_of_mass(intracranial))
    ext = np.argwhere(intracranial)
    lo, hi = ext.min(0), ext.max(0)
    side = "right" if centre[0] > com[0] else "left"  # RAS: +x is towards the patient's right
    fy = (centre[1] - lo[1]) / max(hi[1] - lo[1], 1)
    fz = (centre[2] - lo[2]) / max(hi[2] - lo[2], 1)
    if fy > 0.6:
        lobe = "frontal"
    elif fy < 0.25:
        lobe = "occipital"
    elif fz < 0.45:
        lobe = "temporal"
    else:
        lobe = "parietal"
    return side, lobe


def glioblastoma(head: P.Head, rng) -> dict:
    centre, _ = _brain_point(head, rng, depth_mm=(28, 60))
    radius = float(rng.uniform(14, 24))
    _mass_effect(head, centre, strength_mm=radius * 0.35, sigma_mm=radius * 1.6)
    sp = head.spacing
    outer = P.blob(head.labels.shape, centre, sp, radius * rng.uniform(0.85, 1.15, 3), rng, roughness=0.18)
    core = P.blob(head.labels.shape, centre + rng.normal(0, 2, 3), sp, radius * rng.uniform(0.6, 0.78, 3), rng, roughness=0.2) & outer
    brain = np.isin(head.labels, (A.GM, A.WM, A.CSF))
    oedema = _oedema(head, outer, float(rng.uniform(12, 25)), rng)
    _paint(head, oedema, P.OEDEMA)
    _paint(head, outer & brain | outer & (head.labels == P.OEDEMA), P.ENHANCING)
    _paint(head, core, P.NECROSIS, where=head.labels == P.ENHANCING)
    side, lobe = _hemisphere_lobe(head, centre)
    return {"diagnosis": "glioblastoma", "hemisphere": side, "lobe": lobe, "lesion_count": 1, "enhancement": "ring",
            "necrosis": True, "oedema": "marked", "mass_effect": True, "location": "intra-axial"}


def low_grade_glioma(head: P.Head, rng) -> dict:
    centre, _ = _brain_point(head, rng, depth_mm=(12, 40), labels=(A.WM, A.GM))
    radius = float(rng.uniform(12, 22))
    _mass_effect(head, centre, strength_mm=radius * 0.12, sigma_mm=radius * 1.5)
    mass = P.blob(head.labels.shape, centre, head.spacing, radius * rng.uniform(0.8, 1.2, 3), rng, roughness=0.12)
    brain = np.isin(head.labels, (A.GM, A.WM))
    halo = _oedema(head, mass, float(rng.uniform(2, 5)), rng)
    _paint(head, halo, P.OEDEMA)
    _paint(head, mass, P.NONENHANCING, where=brain | (head.labels == P.OEDEMA))
    side, lobe = _hemisphere_lobe(head, centre)
    return {"diagnosis": "low-grade glioma", "hemisphere": side, "lobe": lobe, "lesion_count": 1, "enhancement": "none",
            "necrosis": False, "oedema": "minimal", "mass_effect": False, "location": "intra-axial"}


def metastases(head: P.Head, rng) -> dict:
    n = int(rng.integers(2, 6))
    lesions = []
    for _ in range(n):
        centre, _ = _brain_point(head, rng, depth_mm=(6, 22), labels=(A.WM,))
        r = float(rng.uniform(3.5, 10))
        lesions.append((centre, r))
    cores = np.zeros(head.labels.shape, bool)
    necrotic = np.zeros(head.labels.shape, bool)
    for centre, r in lesions:
        cores |= P.blob(head.labels.shape, centre, head.spacing, (r, r, r), rng, roughness=0.06)
        if r > 6:
            necrotic |= P.blob(head.labels.shape, centre, head.spacing, (r * 0.5,) * 3, rng, roughness=0.05)
    oedema = _oedema(head, cores, float(rng.uniform(10, 20)), rng)
    _paint(head, oedema, P.OEDEMA)
    _paint(head, cores, P.ENHANCING, where=np.isin(head.labels, (A.GM, A.WM, A.CSF, P.OEDEMA)))
    _paint(head, necrotic, P.NECROSIS, where=head.labels == P.ENHANCING)
    sides = {_hemisphere_lobe(head, c)[0] for c, _ in lesions}
    side, lobe = _hemisphere_lobe(head, lesions[0][0])
    return {"diagnosis": "metastases", "hemisphere": "both" if len(sides) > 1 else side, "lobe": lobe, "lesion_count": n,
            "enhancement": "ring" if any(r > 6 for _, r in lesions) else "solid", "necrosis": bool(necrotic.any()),
            "oedema": "marked", "mass_effect": False, "location": "intra-axial"}


def meningioma(head: P.Head, rng) -> dict:
    intracranial = np.isin(head.labels, P.INTRACRANIAL_LABELS)
    depth = ndi.distance_transform_edt(intracranial, sampling=head.spacing)
    zs = np.arange(head.labels.shape[2])[None, None, :]
    zc = ndi.center_of_mass(intracranial)[2]
    # on the dura: the outermost intracranial layer, over the convexity
    dura = intracranial & (depth <= head.surface_mm()) & (zs > zc)
    idx = np.argwhere(dura)
    anchor = idx[rng.integers(len(idx))].astype(float)
    inward = np.array(ndi.center_of_mass(intracranial)) - anchor
    inward = inward * np.array(head.spacing)
    inward /= np.linalg.norm(inward)
    radius = float(rng.uniform(12, 22))
    centre = anchor + inward * radius * 0.35 / np.array(head.spacing)
    _mass_effect(head, centre + inward * radius * 0.6 / np.array(head.spacing), strength_mm=radius * 0.45, sigma_mm=radius * 1.3)
    intracranial = np.isin(head.labels, P.INTRACRANIAL_LABELS)
    mass = P.blob(head.labels.shape, centre, head.spacing, (radius, radius, radius * 0.9), rng, roughness=0.06) & intracranial
    tail_depth = ndi.distance_transform_edt(intracranial, sampling=head.spacing)
    tail = P.blob(head.labels.shape, anchor, head.spacing, (radius * 1.8,) * 3, rng, roughness=0.05) & intracranial & (tail_depth <= head.surface_mm() + 0.1)
    oedema = _oedema(head, mass, float(rng.uniform(2, 8)), rng)
    _paint(head, oedema, P.OEDEMA)
    _paint(head, mass | tail, P.MENINGIOMA)
    side, lobe = _hemisphere_lobe(head, centre)
    return {"diagnosis": "meningioma", "hemisphere": side, "lobe": lobe, "lesion_count": 1, "enhancement": "homogeneous",
            "necrosis": False, "oedema": "mild", "mass_effect": True, "location": "extra-axial", "dural_tail": True}


PATTERNS = {"glioblastoma": glioblastoma, "low-grade glioma": low_grade_glioma, "metastases": metastases, "meningioma": meningioma}


def make_case(atlas: A.Atlas, rng: np.random.Generator, diagnosis: str, *, resolution_scale: float = 1.0) -> dict:
    head = P.make_head(atlas, rng, resolution_scale=resolution_scale)
    findings = PATTERNS[diagnosis](head, rng)
    bias = P.bias_field(rng, head.labels.shape, float(rng.uniform(0.05, 0.2)))
    noise = float(rng.uniform(0.015, 0.035))
    images = {c: P.to_scanner_units(P.synthesize_mr(head, c, rng, noise=noise, bias=bias), rng) for c in ("t1", "t1c", "t2", "flair")}
    seg = brats_segmentation(head.labels)
    areas = slice_areas(seg, head.spacing)
    best = int(np.argmax(areas))
    z_mm = P.world_z(head.affine, head.labels.shape)
    enhancing_areas = (seg == 3).sum(axis=(0, 1)) * head.spacing[0] * head.spacing[1]
    vox_ml = head.voxel_mm() / 1000.0
    findings["max_diameter_mm"] = _max_diameter(seg > 0, head.spacing)
    truth = {
        "best_slice": best,
        "best_slice_mm": round(float(z_mm[best]), 2),
        "areas_mm2": [round(float(a), 1) for a in areas],
        "enhancing_areas_mm2": [round(float(a), 1) for a in enhancing_areas],
        "tumour_volume_ml": round(float((seg > 0).sum() * vox_ml), 2),
        "enhancing_volume_ml": round(float((seg == 3).sum() * vox_ml), 2),
        "diagnosis": diagnosis,
        "findings": findings,
    }
    return {"head": head, "images": images, "masks": {"seg": seg}, "truth": truth, "facts": {}}


def _max_diameter(mask: np.ndarray, spacing) -> float:
    """Largest in-plane extent of any single lesion on any axial slice (mm), a RANO-like size."""
    best = 0.0
    for k in np.nonzero(mask.any(axis=(0, 1)))[0]:
        comps, n = ndi.label(mask[:, :, k])
        for i in range(1, n + 1):
            pts = np.argwhere(comps == i) * np.array(spacing[:2])
            if len(pts) > 300:
                pts = pts[np.random.default_rng(0).choice(len(pts), 300, replace=False)]
            d = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)).max()
            best = max(best, float(d))
    return round(best, 1)


class TumorPhantoms(PhantomGenerator):
    """Four-contrast heads with one lesion class per case; tumor-slice and tumor-dx read the same files (the four
    classes cycle over the cases, so n = 8 gives two of each)."""

    name = "tumor"
    version = "1"
    seed_stream = 1
    default_n = 8
    tasks = ("tumor-slice", "tumor-dx")
    classes = DIAGNOSES
    TRUTH = {
        "tumor-slice": ("best_slice", "best_slice_mm", "areas_mm2", "enhancing_areas_mm2", "tumour_volume_ml", "enhancing_volume_ml"),
        "tumor-dx": ("diagnosis", "findings", "tumour_volume_ml"),
    }

    def make_case(self, atlas, rng, index, *, resolution_scale=1.0) -> dict:
        return make_case(atlas, rng, self.class_of(index), resolution_scale=resolution_scale)

    def truth_for(self, task: str, truth: dict) -> dict:
        return {k: truth[k] for k in self.TRUTH[task]}

    def meta_for(self, index: int, made: dict) -> dict:
        return {"lesion_class": made["truth"]["diagnosis"]}


PHANTOMS = TumorPhantoms()
