"""HU-based detectors of the ct-report scripted baseline, run on the images it was shown (never on the volume).

Input: a brain-window (40/80) and a bone-window (600/2800) image of the same axial slices, as montages (tiles
in a grid) or single slices, with their pixel size in mm. Pixel grey levels are turned back into Hounsfield
units through the window (the brain window saturates above 80 HU, so bone is found in the bone window).

Per tile: the head (soft tissue or bone), the skull (bone), the intracranial space (holes of the closed skull
ring), then
- blood: hyperdense (>= 56 HU) blobs inside the intracranial space, classified by where they lie against the
  inner skull: extra-axial (at case level a convex lens = epidural, a crescent = subdural), intraventricular
  (deep, against CSF-dark ventricle), intraparenchymal; subarachnoid: faintly hyperdense (48-62 HU) sulcal
  pixels at least 6 mm below the inner skull (clear of bone partial volume), away from those blobs;
- ventricles (CSF-dark, deep, central): Evans-like ratio (frontal-horn width / inner-skull width) and the septum
  position against the inner-skull midline (midline shift);
- chronic infarct: a large CSF-dark wedge reaching the cortex, away from the ventricles;
- fracture: a gap in the skull ring over the vault (where a 5 mm closing had to bridge the bone);
- extracranial: air in the paranasal sinuses left vs right (fluid replaces the air on one side), and soft-tissue
  lumps of haematoma density (48-64 HU) outside the skull - in front of the orbits (periorbital) or over the
  vault (scalp haematoma).
Every threshold is in HU or mm, so the detectors do not depend on the image size.
Display convention (harness.imaging.render): patient right on image left, anterior at the top.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import math

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import convex_hull_image

BRAIN_WINDOW = (40.0, 80.0)
BONE_WINDOW = (600.0, 2800.0)

BLOOD_HU = 56.0
CSF_HU = 18.0
BONE_HU = 150.0
SWELLING_HU = (48.0, 64.0)


def to_hu(gray: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    centre, width = window
    return gray.astype(np.float32) * (width / 255.0) + (centre - width / 2.0)


def label_mask(shape: tuple[int, int]) -> np.ndarray:
    """Pixels covered by the render's labels (slice number at the top left, R and L at mid height)."""
    h, w = shape
    font = max(10, h // 24)
    mask = np.zeros(shape, bool)
    mask[: font + 6, : int(w * 0.75)] = True
    mid = h // 2
    mask[max(0, mid - font): mid + font, : font + 8] = True
    mask[max(0, mid - font): mid + font, w - font - 8:] = True
    return mask


# Morphology with disks through distance transforms: the cost does not grow with the radius (a 10 mm closing on
# a 256 px tile with a disk structuring element costs ~50x more).
def _radius(radius_px: float) -> float:
    return float(max(1, int(round(radius_px))))


def _small_disk(r: float) -> np.ndarray | None:
    """The same disk as a structuring element when it is small enough to be the cheaper route."""
    if r > 3:
        return None
    n = int(r)
    y, x = np.ogrid[-n:n + 1, -n:n + 1]
    return x * x + y * y <= r * r


def _dilate(mask: np.ndarray, radius_px: float) -> np.ndarray:
    r = _radius(radius_px)
    if not mask.any():
        return mask.copy()
    disk = _small_disk(r)
    if disk is not None:
        return ndi.binary_dilation(mask, structure=disk)
    return ndi.distance_transform_edt(~mask) <= r


def _erode(mask: np.ndarray, radius_px: float) -> np.ndarray:
    r = _radius(radius_px)
    disk = _small_disk(r)
    if disk is not None:
        return ndi.binary_erosion(mask, structure=disk, border_value=0)
    pad = int(r) + 1  # outside the image counts as background
    return (ndi.distance_transform_edt(np.pad(mask, pad)) > r)[pad:-pad, pad:-pad]


def _open(mask: np.ndarray, radius_px: float) -> np.ndarray:
    return _dilate(_erode(mask, radius_px), radius_px) & mask


def _close(mask: np.ndarray, radius_px: float) -> np.ndarray:
    pad = int(_radius(radius_px)) + 2
    padded = np.pad(mask, pad)
    return _erode(_dilate(padded, radius_px), radius_px)[pad:-pad, pad:-pad] | mask


@dataclass
class Blob:
    kind: str  # extra (extra-axial) | iph | ivh
    side: str  # right | left (patient)
    area_mm2: float
    thickness_mm: float
    tile: int
    solidity: float = 1.0  # area / convex hull area: a lens is convex, a crescent is not


@dataclass
class TileFacts:
    index: int
    brain: bool  # a closed skull ring with a real intracranial area
    ic_area_mm2: float = 0.0
    ic_width_mm: float = 0.0
    blobs: list[Blob] = field(default_factory=list)
    sah_mm2: float = 0.0
    sah_side: str = ""
    ventricle_width_mm: float = 0.0
    ventricle_area_mm2: float = 0.0
    septum_offset_mm: float | None = None  # + = towards patient left
    infarct_mm2: float = 0.0
    infarct_side: str = ""
    fracture_side: str = ""
    gap_mm2: float = 0.0  # skull-ring gap bridged by the closing
    air_right_mm2: float = 0.0
    air_left_mm2: float = 0.0
    lumps: list[tuple[str, str, float]] = field(default_factory=list)  # (where, side, area mm2)


def analyse_tile(brain_gray: np.ndarray, bone_gray: np.ndarray, mm_per_px: float, index: int, position: float) -> TileFacts:
    """Facts of one slice. position: 0 (lowest slice shown) .. 1 (highest)."""
    px2 = mm_per_px ** 2
    ignore = label_mask(brain_gray.shape)
    b = ndi.median_filter(to_hu(brain_gray, BRAIN_WINDOW), size=3)
    k = to_hu(bone_gray, BONE_WINDOW)
    k[ignore] = -1000.0
    b[ignore] = -1000.0
    head = ndi.binary_fill_holes(k > -400)
    bone = k > BONE_HU
    facts = TileFacts(index, False)
    if head.sum() * px2 < 2000:
        return facts
    h, w = head.shape
    cols = np.nonzero(head.any(0))[0]
    head_mid = (cols[0] + cols[-1]) / 2.0
    rows_h = np.nonzero(head.any(1))[0]
    head_top, head_bottom = rows_h[0], rows_h[-1]

    # intracranial space: holes of the (slightly closed) skull ring
    # a closing bridges fracture lines, foramina and thin (partial-volume) bone, so a broken ring still encloses
    # the brain; the wider closing only when the narrow one leaves the ring open
    for radius in (5.0, 10.0):
        closed = _close(bone, radius / mm_per_px)
        ic = ndi.binary_fill_holes(closed) & ~closed
        lab, n = ndi.label(ic)
        if n:
            sizes = ndi.sum(ic, lab, range(1, n + 1))
            ic = lab == (1 + int(np.argmax(sizes)))
        if ic.sum() * px2 >= 3000:
            break
    ic_area = ic.sum() * px2
    facts.ic_area_mm2 = float(ic_area)
    _extracranial(facts, b, k, head, bone, ic, mm_per_px, head_mid, head_top, head_bottom, position)
    if ic_area < 3000:
        return facts
    facts.brain = True
    ic_cols = np.nonzero(ic.any(0))[0]
    facts.ic_width_mm = float((ic_cols[-1] - ic_cols[0] + 1) * mm_per_px)
    midline = (ic_cols[0] + ic_cols[-1]) / 2.0
    depth = ndi.distance_transform_edt(ic) * mm_per_px
    inner = ic & (depth > 2.0)

    def side_of(x: float) -> str:
        return "right" if x < midline else "left"  # radiological display

    # blood
    blood = inner & (b >= BLOOD_HU)
    blood = _open(blood, 0.8 / mm_per_px)
    csf = inner & (b < CSF_HU) & (depth > 12.0)
    ventricles = _open(csf, 1.0 / mm_per_px)
    lab, n = ndi.label(blood)
    if n:
        to_blood, nearest = ndi.distance_transform_edt(lab == 0, return_indices=True)
        owner = lab[nearest[0], nearest[1]]  # which blob each pixel is closest to
        dark_inner = (b < CSF_HU) & inner
    for i in range(1, n + 1):
        comp = lab == i
        area = comp.sum() * px2
        if area < 25:
            continue
        d = depth[comp]
        ys, xs = np.nonzero(comp)
        rim = (owner == i) & (to_blood > 0) & (to_blood <= _radius(2.5 / mm_per_px))
        near_vent = (rim & dark_inner).sum() / max(rim.sum(), 1)
        thickness = float(ndi.distance_transform_edt(comp).max() * 2 * mm_per_px)
        if d.min() < 4.0:
            # extra-axial: thickness through the collection vs its length along the skull
            kind = "extra"
        elif near_vent > 0.1 and d.min() > 10.0:
            kind = "ivh"
        else:
            kind = "iph"
        hull = convex_hull_image(comp)
        facts.blobs.append(Blob(kind, side_of(xs.mean()), float(area), thickness, index, float(comp.sum() / max(hull.sum(), 1))))
    # subarachnoid blood: faint hyperdensity in the sulci, deep enough to be clear of the skull's partial volume
    faint = ic & (depth >= 6.0) & (b >= 48.0) & (b < 62.0) & ~_dilate(blood, 3.0 / mm_per_px)
    facts.sah_mm2 = float(faint.sum() * px2)
    if faint.any():
        facts.sah_side = side_of(np.nonzero(faint)[1].mean())

    # ventricles: frontal-horn width and septum position
    lab, n = ndi.label(ventricles)
    if n:
        sizes = ndi.sum(ventricles, lab, range(1, n + 1)) * px2
        keep = [i + 1 for i, s in enumerate(sizes) if s >= 20]
        vent = np.isin(lab, keep)
        if vent.any():
            facts.ventricle_area_mm2 = float(vent.sum() * px2)
            vc = np.nonzero(vent.any(0))[0]
            facts.ventricle_width_mm = float((vc[-1] - vc[0] + 1) * mm_per_px)
            big = sorted(keep, key=lambda i: -sizes[i - 1])[:2]
            if len(big) == 2 and min(sizes[big[0] - 1], sizes[big[1] - 1]) >= 40:
                xa = np.nonzero(lab == big[0])[1]
                xb = np.nonzero(lab == big[1])[1]
                lo, hi = (xa, xb) if xa.mean() < xb.mean() else (xb, xa)
                septum = (lo.max() + hi.min()) / 2.0
                if abs(septum - midline) * mm_per_px < 25:
                    facts.septum_offset_mm = float((septum - midline) * mm_per_px)

    # chronic infarct: a broad CSF-dark region reaching the cortex, away from the ventricles
    dark = ic & (b < 22.0) & (b > -200)
    dark = _open(dark, 3.0 / mm_per_px)
    lab, n = ndi.label(dark)
    for i in range(1, n + 1):
        comp = lab == i
        area = comp.sum() * px2
        d = depth[comp]
        if area >= 150 and d.min() < 6.0 and np.median(d) < 25:
            if area > facts.infarct_mm2:
                facts.infarct_mm2 = float(area)
                facts.infarct_side = side_of(np.nonzero(comp)[1].mean())

    # fracture: where the closing had to bridge the skull ring (a lucent line through the bone)
    gap = closed & ~ndi.binary_dilation(bone) & _dilate(ic, 2.0 / mm_per_px)
    gap = ndi.binary_opening(gap)
    facts.gap_mm2 = float(gap.sum() * px2)
    if gap.any():
        facts.fracture_side = side_of(np.nonzero(gap)[1].mean())
    return facts


def _extracranial(facts, b, k, head, bone, ic, mm_per_px, head_mid, head_top, head_bottom, position) -> None:
    px2 = mm_per_px ** 2
    h, w = head.shape
    # sinus air: air enclosed by the head, in the front half, outside the intracranial space
    air = head & (k < -400) & ~ic
    air = _open(air, 1.0 / mm_per_px)
    front = np.zeros_like(air)
    front[: int(head_top + 0.5 * (head_bottom - head_top)), :] = True
    air &= front
    xs = np.nonzero(air)[1]
    facts.air_right_mm2 = float((xs < head_mid - 3.0 / mm_per_px).sum() * px2)
    facts.air_left_mm2 = float((xs > head_mid + 3.0 / mm_per_px).sum() * px2)
    # soft-tissue lumps of haematoma density outside the skull
    lo, hi = SWELLING_HU
    outside = head & ~_dilate(bone | ic, 3.0 / mm_per_px)
    lump = outside & (b >= lo) & (b <= hi)
    lump = _open(lump, 2.5 / mm_per_px)
    lab, n = ndi.label(lump)
    for i in range(1, n + 1):
        comp = lab == i
        area = comp.sum() * px2
        if area < 60:
            continue
        ys, xs = np.nonzero(comp)
        fy = (ys.mean() - head_top) / max(head_bottom - head_top, 1)
        where = "orbital" if (fy < 0.3 and position < 0.45) else "scalp"
        side = "right" if xs.mean() < head_mid else "left"
        facts.lumps.append((where, side, float(area)))


# --- case level ---------------------------------------------------------------------------------------------------

def _side_of(sides: list[str]) -> str:
    right, left = sides.count("right"), sides.count("left")
    return "bilateral" if right and left and min(right, left) >= max(right, left) / 2 else ("right" if right >= left else "left")


def case_facts(tiles: list[TileFacts]) -> dict:
    """What the report says, from the facts of every slice (lowest first). Keys are the report template's."""
    n = len(tiles)
    pos = {t.index: t.index / max(n - 1, 1) for t in tiles}
    brain = [t for t in tiles if t.brain]
    facts: dict = {"assessable": bool(brain)}

    # extra-axial blood: a lens (convex) is epidural, a crescent subdural
    extra = [b for t in brain for b in t.blobs if b.kind == "extra"]
    if sum(b.area_mm2 for b in extra) >= 150:
        solidity = float(np.median([b.solidity for b in extra]))
        kind = "edh" if solidity >= 0.68 else "sdh"
        facts[kind] = {"side": _side_of([b.side for b in extra]), "thickness_mm": round(max(b.thickness_mm for b in extra))}
    # deep blood: on both sides of one slice = layering in the ventricles; otherwise a parenchymal haematoma
    deep = [b for t in brain for b in t.blobs if b.kind in ("iph", "ivh")]
    bilateral = any({b.side for b in t.blobs if b.kind in ("iph", "ivh")} == {"right", "left"} for t in brain)
    ivh = [b for b in deep if b.kind == "ivh"]
    if bilateral or sum(b.area_mm2 for b in ivh) >= 60:
        facts["ivh"] = True
        deep = [b for b in deep if b.kind == "iph" and b.area_mm2 >= 150]
    if sum(b.area_mm2 for b in deep) >= 100:
        big = max(deep, key=lambda b: b.area_mm2)
        facts["iph"] = {"side": big.side, "diameter_mm": round(2 * math.sqrt(big.area_mm2 / math.pi))}

    sah = [t for t in brain if t.sah_mm2 >= 20]
    if sah and not extra:
        facts["sah"] = {"side": _side_of([t.sah_side for t in sah])}

    # midline: the septum consistently off the inner-skull midline
    offsets = [t.septum_offset_mm for t in brain if t.septum_offset_mm is not None]
    if len(offsets) >= 2 and (all(o >= 3 for o in offsets) or all(o <= -3 for o in offsets)):
        shift = float(np.median(offsets))
        facts["midline_shift"] = {"mm": round(abs(shift), 1), "direction": "left" if shift > 0 else "right"}

    # ventricles: frontal-horn width over inner-skull width, above the skull base
    ratios = [t.ventricle_width_mm / t.ic_width_mm for t in brain if t.ic_width_mm and 0.4 <= pos[t.index] <= 0.75 and t.ventricle_area_mm2 >= 100]
    if ratios and max(ratios) > 0.5:
        facts["hydrocephalus"] = {"ratio": round(max(ratios), 2)}

    # chronic infarct above the skull base (the temporal fossae and cisterns are CSF-dark too)
    inf = [t for t in brain if pos[t.index] >= 0.5 and t.infarct_mm2 >= 200]
    if inf:
        facts["chronic_infarct"] = {"side": _side_of([t.infarct_side for t in inf])}

    # fracture: the skull ring bridged in at least two slices over the vault
    fx = [t for t in brain if pos[t.index] >= 0.5 and t.gap_mm2 >= 5]
    if len(fx) >= 2:
        facts["skull_fracture"] = {"side": _side_of([t.fracture_side for t in fx])}

    # sinuses: air on one side only (fluid has replaced it) in the slices below the brain's mid level
    low = [t for t in tiles if pos[t.index] < 0.5]
    air_r, air_l = sum(t.air_right_mm2 for t in low), sum(t.air_left_mm2 for t in low)
    facts["sinuses_seen"] = max(air_r, air_l) >= 300
    if facts["sinuses_seen"] and min(air_r, air_l) < 0.2 * max(air_r, air_l):
        facts["sinus_disease"] = {"side": "right" if air_r < air_l else "left"}

    # soft-tissue lumps of haematoma density: in front of the orbits, or over the vault
    orbital = [(s, a) for t in tiles for w, s, a in t.lumps if w == "orbital" and a >= 60]
    scalp = [(s, a) for t in tiles for w, s, a in t.lumps if w == "scalp" and a >= 60 and pos[t.index] >= 0.3]
    if orbital:
        facts["orbital"] = {"side": _side_of([s for s, _ in orbital])}
    if scalp:
        facts["scalp_haematoma"] = {"side": _side_of([s for s, _ in scalp])}
    return facts
