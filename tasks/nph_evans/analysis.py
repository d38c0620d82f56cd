"""Image analysis behind nph-evans: the segmentation route (3D, on the T1 volume) and the 2D slice reader the
scripted VLM baseline applies to the PNGs it is shown. Both measure the Evans ratio the way automated tools do:
widest left-right extent of the frontal horns over axial slices, inner-skull width on that same slice.

Intensities are read relative to white matter (the 80th percentile of the brain), so the thresholds below hold for
any scanner scale and for windowed PNGs alike (T1: CSF ~0.2, bone ~0.1, grey matter ~0.7, white matter ~1).
- Ventricles (3D): voxels darker than VENTRICLE_LEVEL more than 20 mm inside the head (air and the unenclosed dark
  skull band excluded) and 40-110 mm below the vertex; of those connected components, the lateral ventricles are the
  ones with most voxels off the midline at the level of the ventricle bodies (50-100 mm below the vertex), centred
  within 25 mm of the midline - the rules a human uses to tell them from sulci, cisterns and the fourth ventricle;
  dark components within ATTACH_VOXELS of those are taken back (a thin horn tip cut off by one partial-volume neck);
  then grown by 2 voxels into partial-volume voxels (< GROW_LEVEL).
- Frontal horns: the anterior FRONTAL_HORN_FRACTION of the lateral ventricles' antero-posterior extent (the part in
  front of the foramina of Monro). In 2D (one image): dark regions deep in the brain, in its anterior 42 %, centred
  near the midline, with their partial-volume rim.
- Inner skull: on T1 the skull and a thin CSF layer are both dark, so the inner table cannot be thresholded; on each
  row through the brain the intracranial edge is taken in the middle of the dark band between the brain's edge and
  the scalp's inner edge (on the sample cohort within 2.4 mm of the label-map width on every case).
Measured on the built-in sample cohort (10 phantoms, seed 0): Evans-ratio MAE 0.004 (3D route; frontal-horn widths
within 1.2 mm of the label maps), 0.005 (2D reader through the agent tools), 0.004 (2D reader on the single-turn
montage); NPH call correct on 10/10 for all three.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from PIL import Image, ImageDraw
from scipy.spatial import ConvexHull, QhullError

from harness.imaging.brainmask import brain_mask, largest_component
from harness.core.volume import Volume

VENTRICLE_LEVEL = 0.45  # relative to white matter: between CSF (~0.2) and the caudate/white matter around the horns
TISSUE_LEVEL = 0.4  # brain tissue (and scalp) above this
DARK_LEVEL = 0.3  # skull/CSF band below this
SCALP_LEVEL = 0.45  # the scalp's inner edge: back above this after the dark band
HEAD_LEVEL = 0.1  # head vs air
FRONTAL_HORN_FRACTION = 0.38
VENTRICLE_DEPTH_MM = 20.0
VENTRICLE_BELOW_VERTEX_MM = (40.0, 110.0)
VENTRICLE_BODY_BELOW_VERTEX_MM = (50.0, 100.0)
MIN_VENTRICLE_SCORE_FRACTION = 0.3
MAX_VENTRICLE_OFFSET_MM = 25.0  # a lateral-ventricle component's centre lies this close to the midline
GROW_LEVEL = 0.6
GROW_VOXELS = 2
ATTACH_VOXELS = 3
HORN_BRAIN_DEPTH_MM = 15.0
HORN_MAX_Y_FRACTION = 0.42  # of the brain's antero-posterior extent on the image, from the front
NPH_THRESHOLD = 0.3



def head_region(norm: np.ndarray) -> np.ndarray:
    """The head (filled) in a WM-normalised image or volume. Holes are filled before picking the largest part, so
    a closed scalp ring keeps the dark skull and the brain inside it."""
    return largest_component(ndi.binary_fill_holes(norm > HEAD_LEVEL))


# --- inner skull (2D, one axial slice, first axis = left-right) ---------------------------------------------------

def slice_head(norm: np.ndarray) -> np.ndarray:
    """The head on one axial slice: the convex hull of its large lit parts. A hull, not a filled outline, because a
    defacer's cut (quickshear's plane) can open the scalp ring, and a filled open ring loses the dark skull band the
    inner-skull edge is found in; small parts (burnt-in labels) are left out."""
    lab, n = ndi.label(norm > HEAD_LEVEL)
    if n == 0:
        return np.zeros(norm.shape, dtype=bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    big = np.isin(lab, np.nonzero(sizes >= max(0.01 * norm.size, 0.05 * sizes.max()))[0])
    return _convex_hull(big)


def _convex_hull(mask: np.ndarray) -> np.ndarray:
    """Pixels inside the convex hull of a 2D mask (the mask itself when it is degenerate)."""
    pts = np.argwhere(mask & ~ndi.binary_erosion(mask))  # the hull of a shape is the hull of its outline
    if len(pts) < 3:
        return mask
    try:
        hull = ConvexHull(pts)
    except QhullError:
        return mask
    canvas = Image.new("1", (mask.shape[1], mask.shape[0]), 0)  # PIL: x = second axis, y = first axis
    ImageDraw.Draw(canvas).polygon([(float(c), float(r)) for r, c in pts[hull.vertices]], fill=1, outline=1)
    return np.asarray(canvas, dtype=bool) | mask


def _band_edge(norm: np.ndarray, head: np.ndarray, x: int, y: int, step: int) -> float:
    """From the brain edge at (x, y) outward: the middle of the dark band before the scalp (in pixels)."""
    start, seen_dark = x, False
    n = norm.shape[0]
    while 0 <= x + step < n and head[x + step, y]:
        x += step
        v = norm[x, y]
        if v < DARK_LEVEL:
            seen_dark = True
        elif seen_dark and v > SCALP_LEVEL:
            return (start + x) / 2.0
    return (start + x) / 2.0  # no scalp seen (cropped field of view): the head's edge bounds the band


def slice_brain(norm: np.ndarray, head: np.ndarray, spacing_xy: tuple[float, float]) -> np.ndarray:
    """Brain tissue of one slice: tissue more than 8 mm under the head surface, cut loose from the scalp by a 3 mm
    erosion, largest part, grown back and hole-filled (the ventricles inside)."""
    depth = ndi.distance_transform_edt(head, sampling=spacing_xy)
    tissue = norm > TISSUE_LEVEL
    r = max(1, int(round(3.0 / min(spacing_xy))))
    core = largest_component(ndi.binary_erosion(tissue & (depth > 8.0), iterations=r))
    if not core.any():
        return core
    return ndi.binary_fill_holes(ndi.binary_dilation(core, iterations=r) & tissue)


def inner_skull_extent(norm: np.ndarray, head: np.ndarray, brain: np.ndarray) -> tuple[float, float, int] | None:
    """(left, right, row) of the widest inner-skull chord of a slice, in pixel coordinates of the first axis
    (edges, not centres: left = first pixel - 0.5). None when the slice holds no brain."""
    best = None
    for y in np.nonzero(brain.any(axis=0))[0]:
        xs = np.nonzero(brain[:, y])[0]
        left = _band_edge(norm, head, int(xs[0]), int(y), -1) - 0.5
        right = _band_edge(norm, head, int(xs[-1]), int(y), +1) + 0.5
        if best is None or right - left > best[1] - best[0]:
            best = (left, right, int(y))
    return best


# --- the segmentation route (3D) ----------------------------------------------------------------------------------

@dataclass
class Segmentation:
    ventricles: np.ndarray  # bool, volume grid
    frontal_horns: np.ndarray
    evans_ratio: float | None
    frontal_horn_width_mm: float | None
    inner_skull_width_mm: float | None
    slice_index: int | None
    reason: str | None = None  # why no ratio could be measured


def normalise(volume: Volume) -> np.ndarray:
    """The T1 volume smoothed (0.7 mm) and divided by its white-matter level."""
    sp = np.array(volume.spacing)
    data = ndi.gaussian_filter(volume.data.astype(np.float32), 0.7 / sp)
    brain = brain_mask(volume)
    inside = data[brain] if brain.any() else data[data > np.percentile(data, 50)]
    wm = float(np.percentile(inside, 80))
    return data / (wm if wm > 0 else 1.0)


def segment_ventricles(norm: np.ndarray, head: np.ndarray, spacing) -> np.ndarray:
    sp = np.array(spacing, dtype=float)
    depth = ndi.distance_transform_edt(head, sampling=sp)
    zs = np.nonzero(head.any(axis=(0, 1)))[0]
    if zs.size == 0:
        return np.zeros_like(head)
    below = (zs.max() - np.arange(head.shape[2])) * sp[2]
    band = (below >= VENTRICLE_BELOW_VERTEX_MM[0]) & (below <= VENTRICLE_BELOW_VERTEX_MM[1])
    cand = (norm < VENTRICLE_LEVEL) & (depth > VENTRICLE_DEPTH_MM) & head & band[None, None, :]
    lab, n = ndi.label(cand)
    if n == 0:
        return cand
    xs = np.nonzero(head.any(axis=(1, 2)))[0]
    mid = (xs[0] + xs[-1]) / 2.0
    off_mid = (np.abs(np.arange(head.shape[0]) - mid) * sp[0] >= 5.0)[:, None, None]
    body = ((below >= VENTRICLE_BODY_BELOW_VERTEX_MM[0]) & (below <= VENTRICLE_BODY_BELOW_VERTEX_MM[1]))[None, None, :]
    score = np.bincount(lab[cand & off_mid & body].ravel(), minlength=n + 1)
    score[0] = 0
    if score.max() == 0:
        return np.zeros_like(cand)
    keep = np.nonzero(score >= MIN_VENTRICLE_SCORE_FRACTION * score.max())[0]
    centres = ndi.center_of_mass(cand, lab, keep)
    keep = [i for i, c in zip(keep, centres) if abs(c[0] - mid) * sp[0] < MAX_VENTRICLE_OFFSET_MM]
    vent = np.isin(lab, keep)
    # A thin horn tip can be cut off from its horn by one partial-volume neck: take back dark components that close.
    near = ndi.binary_dilation(vent, iterations=ATTACH_VOXELS)
    vent |= np.isin(lab, np.unique(lab[near & cand]))
    # Hysteresis: the thin tips of the horns are dark only in partial volume; grow into them, not past them.
    rim = ndi.binary_dilation(vent, iterations=GROW_VOXELS) & (norm < GROW_LEVEL) & head
    return vent | rim


def frontal_horns_of(ventricles: np.ndarray) -> np.ndarray:
    ys = np.nonzero(ventricles.any(axis=(0, 2)))[0]
    if ys.size == 0:
        return ventricles.copy()
    front = ys.max() - FRONTAL_HORN_FRACTION * (ys.max() - ys.min())
    return ventricles & (np.arange(ventricles.shape[1]) >= front)[None, :, None]


def segment_evans(volume: Volume) -> Segmentation:
    """The segmentation route: lateral ventricles, frontal horns, the slice with the widest horns and the inner-skull
    width there (whole voxels, like the ground truth: (max - min + 1) x voxel size)."""
    norm = normalise(volume)
    return evans_of_ventricles(volume, segment_ventricles(norm, head_region(norm), volume.spacing), norm)


def evans_of_ventricles(volume: Volume, ventricles: np.ndarray, norm: np.ndarray | None = None) -> Segmentation:
    """The Evans ratio of given lateral ventricles (this module's segmentation, or a label map's): frontal horns =
    their anterior part, the slice with the widest horns, the inner-skull width measured on the T1 there."""
    sp = volume.spacing
    norm = normalise(volume) if norm is None else norm
    vent = np.asarray(ventricles, dtype=bool)
    horns = frontal_horns_of(vent)
    widths = np.zeros(volume.shape[2])
    for k in np.nonzero(horns.any(axis=(0, 1)))[0]:
        xs = np.nonzero(horns[:, :, k].any(axis=1))[0]
        widths[k] = (xs[-1] - xs[0] + 1) * sp[0]
    if not widths.any():
        return Segmentation(vent, horns, None, None, None, None, "no lateral ventricles found")
    k = int(np.argmax(widths))
    head2d = slice_head(norm[:, :, k])  # per slice: in 3D the skull band is not enclosed (the neck is open)
    brain2d = slice_brain(norm[:, :, k], head2d, (sp[0], sp[1]))
    extent = inner_skull_extent(norm[:, :, k], head2d, brain2d | horns[:, :, k])
    if extent is None:
        return Segmentation(vent, horns, None, float(widths[k]), None, k, "no brain on the frontal-horn slice")
    skull = (extent[1] - extent[0]) * sp[0]
    return Segmentation(vent, horns, float(widths[k] / skull), float(widths[k]), float(skull), k)


# --- the 2D reader of rendered axial images (the scripted VLM baseline) ---------------------------------------------

@dataclass(frozen=True)
class SliceReading:
    """What one axial image shows, in its pixels (x to the right, y down): the frontal horns' left-right extent and
    the widest inner-skull chord, each as (left edge, right edge, row)."""

    horns: tuple[float, float, int] | None
    skull: tuple[float, float, int] | None

    @property
    def horn_width(self) -> float:
        return 0.0 if self.horns is None else self.horns[1] - self.horns[0]

    @property
    def skull_width(self) -> float:
        return 0.0 if self.skull is None else self.skull[1] - self.skull[0]

    @property
    def ratio(self) -> float | None:
        if self.horns is None or self.skull is None or self.skull_width <= 0:
            return None
        return self.horn_width / self.skull_width


def read_axial_image(pixels: np.ndarray, mm_per_px: float | None = None) -> SliceReading:
    """Frontal horns and inner skull on one radiological axial image (anterior at the top). The ratio of the two
    pixel widths is the slice's Evans ratio whatever the scale; mm_per_px (when the viewer says it) only sets the
    sizes of the morphology, else a 150 mm wide head is assumed."""
    img = np.asarray(pixels, dtype=np.float32).T  # (x, y): first axis left-right, like the volume reader
    lit = img[img > 0]
    if lit.size < 100:
        return SliceReading(None, None)
    head = slice_head(img / max(float(np.percentile(lit, 90)), 1.0))
    if head.sum() < 100:
        return SliceReading(None, None)
    xs = np.nonzero(head.any(axis=1))[0]
    width = xs[-1] - xs[0] + 1
    mm = float(mm_per_px) if mm_per_px else 150.0 / width
    inner = head & (ndi.distance_transform_edt(head) * mm > 12.0)
    if not inner.any():
        return SliceReading(None, None)
    wm = float(np.percentile(img[inner], 80))
    if wm <= 0:
        return SliceReading(None, None)
    norm = img / wm
    brain = slice_brain(norm, head, (mm, mm))
    if not brain.any():
        return SliceReading(None, None)
    skull = inner_skull_extent(norm, head, brain)
    # Frontal horns: dark regions deep in the brain (> HORN_BRAIN_DEPTH_MM inside its edge: not sulci), in its
    # anterior part (not the cisterns around the midbrain), centred near the midline (not the sylvian fissures).
    depth = ndi.distance_transform_edt(brain) * mm
    bx = np.nonzero(brain.any(axis=1))[0]
    by = np.nonzero(brain.any(axis=0))[0]
    mid_x = (bx[0] + bx[-1]) / 2.0
    y_frac = ((np.arange(img.shape[1]) - by[0]) / max(by[-1] - by[0], 1))[None, :]
    anterior = (y_frac >= 0) & (y_frac <= HORN_MAX_Y_FRACTION)
    dark = (norm < VENTRICLE_LEVEL) & brain & (depth > HORN_BRAIN_DEPTH_MM) & anterior
    lab, n = ndi.label(dark)
    keep = []
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        comp = lab[sl] == i
        cx = np.nonzero(comp.any(axis=1))[0] + sl[0].start
        if comp.sum() * mm * mm >= 15.0 and abs((cx[0] + cx[-1]) / 2.0 - mid_x) * mm < 15.0:
            keep.append(i)
    if not keep:
        return SliceReading(None, skull)
    horns = np.isin(lab, keep)
    # A wing cut off from its horn by a thin partial-volume wall (<= 2.5 mm) still belongs to it.
    near = ndi.binary_dilation(horns, iterations=max(1, int(round(2.5 / mm))))
    horns = np.isin(lab, np.unique(lab[near & (lab > 0)]))
    # Hysteresis: the horns' edges are dark only in partial volume; grow into them by at most 2 mm.
    allowed = (norm < GROW_LEVEL) & brain & anterior
    horns = ndi.binary_dilation(horns, iterations=max(1, int(round(2.0 / mm))), mask=allowed) | horns
    hx = np.nonzero(horns.any(axis=1))[0]
    rows = np.nonzero(horns.any(axis=0))[0]
    row = int(rows[np.argmax(horns[:, rows].sum(axis=0))])
    return SliceReading((hx[0] - 0.5, hx[-1] + 0.5, row), skull)
