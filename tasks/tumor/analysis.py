"""What tumor-slice and tumor-dx share: the axial montage of the brain they show, reading it back as tiles, and the
image analysis of their scripted baselines (abnormal FLAIR signal, enhancement, lesion components).

The montage range comes from the volume's geometry, never from ground truth: the head's top (the vertex, which no
defacer touches) found by thresholding, then BRAIN_DEPTH_MM below it, one tile every ~TILE_STEP_MM. Defacers only
change the face, so original and defaced volumes of a case get the same tiles.

The baselines analyse only what a model is shown: the PNG images and the prompt/tool text (slice numbers and grid).
Image labels (ImagePart.label) are never read, because they are never sent to a model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import convex_hull_image

from harness.imaging import render_cache
from harness.models.types import Message
from harness.imaging.render import RenderSpec, Slices, slice_positions_mm
from harness.core.volume import Volume
from tasks.common import image_array, split_tiles, text_of
from tasks.tumor.vocabulary import ROLE_NAMES, ROLES  # noqa: F401 - the montage reader's names for the contrasts

TILE_STEP_MM = 5.0  # tiles this far apart: a correct pick on the nearest tile is within the 5 mm hit tolerance
BRAIN_DEPTH_MM = (12.0, 132.0)  # below the vertex: from just under the skull top to the skull base
MAX_TILES = 30
TILE_SIZE = 160  # pixels, long side of one tile


# --- the montage ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Montage:
    """Axial slices shown as one tiled image per contrast: indices in display order (left to right, top to bottom)."""

    indices: tuple[int, ...]
    rows: int
    cols: int
    step: int
    spacing_mm: float

    def spec(self, size: int = TILE_SIZE) -> RenderSpec:
        return RenderSpec(plane="axial", slices=Slices("index", self.indices), size=size, montage=(self.rows, self.cols), labels=True)


def head_top(volume: Volume) -> int:
    """Highest axial slice that still holds head (voxels above 10% of a robust maximum). Kept with the render cache,
    so a sample whose montage is cached reads no voxels."""
    return render_cache.remembered(volume, "tumor-head-top", HEAD_TOP_VERSION, _head_top)


HEAD_TOP_VERSION = 1  # bump when _head_top changes: its value is cached by volume content


def _head_top(volume: Volume) -> int:
    data = volume.data
    hi = float(np.percentile(data[::2, ::2, ::2], 99.5))
    bright = (data > 0.1 * hi).sum(axis=(0, 1))
    # a few stray noise voxels do not make a slice part of the head
    rows = np.nonzero(bright >= max(20, 0.002 * data.shape[0] * data.shape[1]))[0]
    return int(rows.max()) if rows.size else data.shape[2] - 1


def brain_montage(volume: Volume, step_mm: float = TILE_STEP_MM, max_tiles: int = MAX_TILES) -> Montage:
    """The axial montage over the brain: from the vertex down to the skull base, one tile every ~step_mm."""
    dz = float(volume.spacing[2])
    top = head_top(volume)
    n = volume.shape[2]
    hi = max(0, min(n - 1, top - int(round(BRAIN_DEPTH_MM[0] / dz))))
    lo = max(0, top - int(round(BRAIN_DEPTH_MM[1] / dz)))
    step = max(1, int(round(step_mm / dz)))
    while (hi - lo) // step + 1 > max_tiles:
        step += 1
    indices = tuple(range(lo, hi + 1, step))
    cols = math.ceil(math.sqrt(len(indices)))
    rows = math.ceil(len(indices) / cols)
    return Montage(indices, rows, cols, step, dz)


def slice_geometry(volume: Volume, index: int) -> dict:
    """The world position of an axial slice and the slice thickness, for scoring distances in mm."""
    z = slice_positions_mm(volume, "axial")
    index = int(min(max(index, 0), len(z) - 1))
    return {"slice_mm": round(float(z[index]), 3), "slice_thickness_mm": round(float(volume.spacing[2]), 4)}


# --- reading a montage back (what the baselines do with the images they are shown) --------------------------------

_TILES_RE = re.compile(r"slices \((\d[\d,\s]*)\)|slices?[^\n:(]*:\s*(\d[\d,\s]*)", re.IGNORECASE)
_GRID_RE = re.compile(r"(\d+)\s*rows?\s*(?:x|by|×)\s*(\d+)\s*col", re.IGNORECASE)


def read_tile_layout(text: str) -> tuple[list[int], int, int] | None:
    """(slice indices, rows, cols) of a montage from the text that came with it, or None.

    Prompts and view_montage results both list the slices ("... slices: 12, 16, 20"); the grid is stated in the
    prompt ("5 rows x 5 columns") and is near-square (cols = ceil(sqrt(n))) for view_montage."""
    m = _TILES_RE.search(text)
    if not m:
        return None
    indices = [int(t) for t in re.findall(r"\d+", m.group(1) or m.group(2))]
    if not indices:
        return None
    g = _GRID_RE.search(text)
    if g:
        rows, cols = int(g.group(1)), int(g.group(2))
    else:
        cols = math.ceil(math.sqrt(len(indices)))
        rows = math.ceil(len(indices) / cols)
    return indices, rows, cols


def label_free(shape: tuple[int, int]) -> np.ndarray:
    """Pixels away from the burnt-in slice label (top-left) and the R/L letters (mid left and right edges)."""
    h, w = shape
    band = max(10, h // 24) + 6
    ok = np.ones(shape, bool)
    ok[:band, :] = False
    ok[h // 2 - band:h // 2 + band, :band + 4] = False
    ok[h // 2 - band:h // 2 + band, w - band - 4:] = False
    return ok


def tool_montages(messages: Sequence[Message]) -> list[tuple[str, np.ndarray, list[int], int, int]]:
    """(role, image, slice indices, rows, cols) of every view_montage result so far, in order."""
    out = []
    for m in messages:
        if m.role == "tool" and m.name == "view_montage" and m.images:
            layout = read_tile_layout(text_of(m))
            if layout:
                out.append((text_of(m).split()[0], image_array(m.images[0]), *layout))
    return out


def axial_count(messages: Sequence[Message]) -> int:
    """Number of axial slices, from the volume_info result the agent asked for first."""
    for m in messages:
        if m.role == "tool" and m.name == "volume_info":
            found = re.search(r"axial: (\d+) slices", text_of(m))
            if found:
                return int(found.group(1))
    return 1


# --- image analysis on a stack of tiles (same slices, one list per contrast) ------------------------------------

def head_masks(stack: np.ndarray) -> np.ndarray:
    """Per tile, the head: pixels above a dark background, holes bright, largest component."""
    out = np.zeros(stack.shape, bool)
    ok = label_free(stack.shape[1:])
    for k, tile in enumerate(stack):
        m = ndi.binary_opening((tile > 20) & ok, iterations=1)
        m = ndi.binary_fill_holes(ndi.binary_closing(m, iterations=2))
        lab, n = ndi.label(m)
        if n:
            sizes = ndi.sum(m, lab, range(1, n + 1))
            out[k] = lab == (int(np.argmax(sizes)) + 1)
    return out


def relative_depth(heads: np.ndarray) -> np.ndarray:
    """Per tile, each head pixel's distance from the head's edge over the head's equivalent radius (0 at the
    scalp, ~1 at the centre), so thresholds do not depend on tile size or head size."""
    out = np.zeros(heads.shape, float)
    for k, m in enumerate(heads):
        if m.any():
            radius = math.sqrt(m.sum() / math.pi)
            out[k] = ndi.distance_transform_edt(m) / radius
    return out


@dataclass
class Findings:
    """What the image analysis found on a stack of tiles (indices = slice numbers in stack order)."""

    indices: list[int]
    abnormal_area: np.ndarray  # pixels of T2/FLAIR-bright tissue plus enhancing lesions with their cores, per tile
    enhancing_area: np.ndarray  # pixels of enhancing tissue per tile
    components: list[dict]  # enhancing lesions: tiles, area, ring, depth, side
    abnormal_components: int
    oedema_ratio: float  # FLAIR-bright area outside the (bright) enhancing lesions over their area
    side: str | None


def _typical(stack: np.ndarray, where: np.ndarray) -> float:
    values = stack[where]
    return float(np.median(values)) if values.size else 1.0


def analyse(tiles: dict[str, np.ndarray], min_area_frac: float = 0.0015) -> Findings:
    """Abnormal signal and enhancement on stacks of tiles (role -> array [n_tiles, h, w], uint8).

    Needs "flair" (or "t2"); enhancement needs "t1" and "t1c". Intensities are read relative to each contrast's
    typical deep-brain value, so the auto-windowed renders of different volumes compare."""
    bright_role = "flair" if "flair" in tiles else "t2"
    base = tiles[bright_role].astype(float)
    heads = head_masks(tiles.get("t1", tiles[bright_role]))
    depth = relative_depth(heads)
    deep = depth > 0.35
    inside = depth > 0.06  # leaves out scalp fat and skull
    n, h, w = base.shape
    min_area = max(4, int(min_area_frac * h * w))
    typ = _typical(base, deep)
    # markedly brighter than the typical brain: half way from its median to white (the renders are windowed so
    # that normal tissue sits in the middle of the grey range; FLAIR-bright lesions and oedema saturate)
    abnormal = inside & (base > typ + 0.5 * (255.0 - typ)) & (base > typ * 1.2)
    if "t2" in tiles and bright_role != "t2":  # oedema and tumour are bright on both; cortex only on FLAIR
        t2 = tiles["t2"].astype(float)
        typ2 = _typical(t2, deep)
        abnormal &= t2 > typ2 + 0.35 * (255.0 - typ2)
    # an opening of ~5 pixels removes the thin bright ribbons of normal cortex (~2-3 mm) and keeps lesions
    bright = np.stack([ndi.binary_opening(a, iterations=2) for a in abnormal])
    # lesions are compact blobs that continue over neighbouring tiles; speckle (cortex, vessels) is not
    lab, n_abn = ndi.label(bright)
    keep = np.zeros(n_abn + 1, bool)
    for c, sl in enumerate(ndi.find_objects(lab), 1):
        m = lab[sl] == c
        if m.sum(axis=(1, 2)).max() >= 3 * min_area:
            keep[c] = True
    bright = keep[lab]
    n_abnormal = int(keep.sum())

    enhancing = np.zeros_like(abnormal)
    rc = np.ones(base.shape)
    if "t1" in tiles and "t1c" in tiles:
        t1 = tiles["t1"].astype(float)
        t1c = tiles["t1c"].astype(float)
        r1, rc = t1 / max(_typical(t1, deep), 1.0), t1c / max(_typical(t1c, deep), 1.0)
        enhancing = (depth > 0.02) & heads & (rc - r1 > 0.3) & (rc > 1.25)
        enhancing = np.stack([ndi.binary_opening(e) for e in enhancing])
    comps = []
    lab, n_enh = ndi.label(enhancing)
    head_cx = [float(np.nonzero(m)[1].mean()) if m.any() else w / 2 for m in heads]
    for c in range(1, n_enh + 1):
        m = lab == c
        per_tile = m.sum(axis=(1, 2))
        if per_tile.max() < min_area:
            continue
        k = int(np.argmax(per_tile))
        mk = m[k]
        # necrosis: T1c-dark tissue enclosed by the enhancing rim (its convex hull), even where the rim is open;
        # the largest share over the lesion's bigger sections (a rim is often capped by solid tissue)
        hole = 0.0
        for j in np.nonzero(per_tile >= 0.4 * per_tile.max())[0]:
            hull_j = convex_hull_image(m[j])
            hole = max(hole, float((hull_j & ~m[j] & (rc[j] < 0.6)).sum() / max(hull_j.sum(), 1)))
        # an extra-axial mass abuts the skull (dark on T1c) over a broad base; an intra-axial one is wrapped in
        # brain. Over the same bigger sections, so that a near-tie between two sections cannot flip the reading.
        contact, min_depth = 0.0, 1.0
        for j in np.nonzero(per_tile >= 0.4 * per_tile.max())[0]:
            hull_j = convex_hull_image(m[j])
            ring = ndi.binary_dilation(hull_j, iterations=3) & ~hull_j & heads[j]
            contact = max(contact, float((rc[j][ring] < 0.35).mean()) if ring.any() else 0.0)
            min_depth = min(min_depth, float(depth[j][m[j]].min()))
        xs = np.nonzero(mk)[1]
        comps.append({"tile": k, "area": int(per_tile.max()), "volume": int(m.sum()), "hole_fraction": round(hole, 3),
                      "min_depth": round(min_depth, 3), "skull_contact": round(contact, 3),
                      "side": "right" if xs.mean() < head_cx[k] else "left"})  # radiological: patient right on image left
    comps.sort(key=lambda c: -c["volume"])
    lesion = np.zeros_like(enhancing)
    for k in range(n):  # each enhancing section with what it encloses (the necrotic core of an open ring too)
        lab2, n2 = ndi.label(enhancing[k])
        for c in range(1, n2 + 1):
            lesion[k] |= convex_hull_image(lab2 == c)
    oedema_px = float((bright & ~ndi.binary_dilation(lesion, iterations=1)).sum())
    bright = bright | lesion  # the necrotic core of a ring is part of the tumour, though FLAIR-dark
    lesion_px = float(lesion.sum())
    ratio = oedema_px / lesion_px if lesion_px else float("inf") if oedema_px else 0.0
    sides = {c["side"] for c in comps}
    if not comps and bright.any():
        k = int(np.argmax(bright.sum(axis=(1, 2))))
        xs = np.nonzero(bright[k])[1]
        sides = {"right" if xs.mean() < head_cx[k] else "left"}
    side = None if not sides else sides.pop() if len(sides) == 1 else "both"
    return Findings(list(range(n)), bright.sum(axis=(1, 2)), lesion.sum(axis=(1, 2)), comps, n_abnormal, ratio, side)


def stack_from_images(images: dict[str, np.ndarray], n: int, rows: int, cols: int) -> dict[str, np.ndarray]:
    """role -> montage image  =>  role -> [n, h, w] tiles (all roles cut to the smallest tile shape)."""
    tiles = {r: split_tiles(img, rows, cols, n) for r, img in images.items()}
    h = min(t[0].shape[0] for t in tiles.values())
    w = min(t[0].shape[1] for t in tiles.values())
    return {r: np.stack([t[:h, :w] for t in ts]) for r, ts in tiles.items()}
