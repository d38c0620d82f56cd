"""Rendering: a Volume plus a RenderSpec gives PNG images, deterministically (same input -> same bytes).

Display convention (radiological), documented because models and users rely on it:
- axial: viewed from the feet; patient RIGHT on image LEFT, anterior at the top;
- coronal: viewed from the front; patient RIGHT on image LEFT, superior at the top;
- sagittal: viewed from the patient's left; anterior on image LEFT, superior at the top.
Pixel aspect follows the voxel spacing, so anisotropic volumes are not distorted. An oblique affine is displayed
on its voxel grid (as most viewers do); positions in mm come from the affine.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import re
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from harness.core.files import atomic_write_bytes
from harness.core.errors import HarnessError
from harness.core.volume import Volume
from harness.imaging import render_cache

PLANES = ("axial", "coronal", "sagittal")
PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}
WORLD_LETTER = {0: "x", 1: "y", 2: "z"}
# CT window presets (centre, width) in HU.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "bone": (600.0, 2800.0),
    "soft": (50.0, 350.0),
}
# MR auto window: these percentiles of the head voxels of the cranial vault of the image being rendered - at or above
# the centre of its brain and not in front of the brain - map to black and white. Not the whole head: defacers
# remove or replace the face, and a window over the whole head moved with it (3 sample nph-evans T1s: up to 1.6 %
# of its width), shifting the grey levels of every defaced MR image, brain included. Not the brain alone: that
# window saturates scalp fat and made the tumour baseline misread enhancement on 2 more of the 8 sample cases.
MR_PERCENTILES = (0.5, 99.5)
MR_AUTO_WINDOW = "cranial-vault-1"  # in the spec key of "auto" renders: a new recipe makes new images
MIN_BRAIN_VOXELS = 1000  # fewer (not a head, a thin slab): the whole head decides the window, as before
PNG_COMPRESS_LEVEL = 1  # byte-identical across runs; on head slices level 1 is ~2x faster than 6 for ~15% more bytes


class RenderError(HarnessError):
    pass


_SLICE_KINDS = ("mid", "all", "index", "fraction", "mm", "every", "every_mm")


@dataclass(frozen=True)
class Slices:
    """Which slices to take along the plane's axis.

    kind: "mid" (the middle slice), "all", "index" (0-based indices), "fraction" (0..1 of the axis),
    "mm" (world coordinate along the plane normal: x for sagittal, y for coronal, z for axial), "every" (step in
    slices) or "every_mm" (step in mm).
    """

    kind: Literal["mid", "all", "index", "fraction", "mm", "every", "every_mm"] = "mid"
    values: tuple[float, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Slices":
        """CLI syntax: mid | all | 40,52,60 | 25%,50% | -12mm,30mm | every:4 | every:5mm."""
        t = text.strip().lower().replace(" ", "")
        if t in ("mid", "all"):
            return cls(t)  # type: ignore[arg-type]
        try:
            if t.startswith("every:"):
                step = t[len("every:"):]
                if step.endswith("mm"):
                    value = float(step[:-2])
                    kind = "every_mm"
                else:
                    value = int(step)
                    kind = "every"
                if value <= 0:
                    raise ValueError
                return cls(kind, (value,))  # type: ignore[arg-type]
            parts = [p for p in t.split(",") if p]
            if parts and all(p.endswith("%") for p in parts):
                values = tuple(float(p[:-1]) / 100 for p in parts)
                if any(not 0 <= v <= 1 for v in values):
                    raise ValueError
                return cls("fraction", values)
            if parts and all(p.endswith("mm") for p in parts):
                return cls("mm", tuple(float(p[:-2]) for p in parts))
            if parts and all(re.fullmatch(r"-?\d+", p) for p in parts):
                return cls("index", tuple(int(p) for p in parts))
        except ValueError:
            pass
        raise RenderError(f"cannot read slice selection {text!r}; use mid, all, 40,52 (indices), 25%,50%, -12mm,30mm, every:4 or every:5mm")

    def resolve(self, volume: Volume, plane: str) -> list[int]:
        axis = PLANE_AXIS[plane]
        n = volume.shape[axis]
        if self.kind == "mid":
            return [n // 2]
        if self.kind == "all":
            return list(range(n))
        if self.kind == "every":
            return list(range(0, n, int(self.values[0])))
        if self.kind == "every_mm":
            step = max(1, round(self.values[0] / volume.spacing[axis]))
            return list(range(0, n, step))
        if self.kind == "fraction":
            return [int(round(f * (n - 1))) for f in self.values]
        if self.kind == "index":
            bad = [int(i) for i in self.values if not 0 <= i < n]
            if bad:
                raise RenderError(f"slice index {bad[0]} is outside the {plane} range 0..{n - 1}")
            return [int(i) for i in self.values]
        positions = slice_positions_mm(volume, plane)
        lo, hi = min(positions[0], positions[-1]), max(positions[0], positions[-1])
        out = []
        for mm in self.values:
            if not lo - 0.5 * volume.spacing[axis] <= mm <= hi + 0.5 * volume.spacing[axis]:
                raise RenderError(f"{WORLD_LETTER[axis]}={mm:g} mm is outside the volume ({WORLD_LETTER[axis]} from {lo:.1f} to {hi:.1f} mm)")
            out.append(int(np.argmin(np.abs(positions - mm))))
        return out

    def __str__(self) -> str:
        return self.kind if not self.values else f"{self.kind}:{','.join(f'{v:g}' for v in self.values)}"


@dataclass(frozen=True)
class RenderSpec:
    """Everything that decides the pixels. Frozen and hashable; `.key` is stable across processes and versions."""

    plane: Literal["axial", "coronal", "sagittal"] = "axial"
    slices: Slices = field(default_factory=Slices)
    window: str | tuple[float, float] = "auto"  # a preset name, "auto", or (centre, width)
    size: int = 512  # long side of each image (or of each montage tile), in pixels
    montage: tuple[int, int] | None = None  # (rows, cols) to tile all slices into one image; (0, 0) = near-square
    labels: bool = False  # slice label and left/right letters on each image

    def __post_init__(self):
        if self.plane not in PLANES:
            raise RenderError(f"plane must be one of {', '.join(PLANES)}, got {self.plane!r}")
        if isinstance(self.window, str):
            if self.window != "auto" and self.window not in WINDOW_PRESETS:
                raise RenderError(f"unknown window {self.window!r}; presets: auto, {', '.join(WINDOW_PRESETS)}, or CENTER/WIDTH")
        else:
            centre, width = (float(v) for v in self.window)
            if not (math.isfinite(centre) and math.isfinite(width) and width > 0):
                raise RenderError(f"window width must be positive and finite, got {self.window!r}")
            object.__setattr__(self, "window", (centre, width))
        if not 8 <= int(self.size) <= 4096:
            raise RenderError(f"size must be between 8 and 4096 pixels, got {self.size}")
        if self.montage is not None:
            rows, cols = (int(v) for v in self.montage)
            if rows < 0 or cols < 0 or (rows == 0) != (cols == 0):
                raise RenderError(f"montage must be ROWSxCOLS with positive numbers, or auto; got {self.montage}")
            object.__setattr__(self, "montage", (rows, cols))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["slices"] = {"kind": self.slices.kind, "values": list(self.slices.values)}
        d["window"] = self.window if isinstance(self.window, str) else list(self.window)
        d["montage"] = list(self.montage) if self.montage else None
        return d

    @classmethod
    def from_dict(cls, data) -> "RenderSpec":
        """The spec `to_dict()` wrote (read back from a stored transcript: any malformed field is a RenderError)."""
        try:
            slices = data["slices"]
            kind, values = slices["kind"], slices.get("values") or ()
            if kind not in _SLICE_KINDS:
                raise ValueError(f"unknown slice kind {kind!r}")
            window = data.get("window", "auto")
            montage = data.get("montage")
            number = float if kind in ("fraction", "mm", "every_mm") else int
            return cls(plane=data["plane"], slices=Slices(kind, tuple(number(v) for v in values)),
                       window=window if isinstance(window, str) else tuple(window), size=int(data["size"]),
                       montage=tuple(montage) if montage is not None else None, labels=bool(data.get("labels", False)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RenderError(f"not a render spec ({type(exc).__name__}: {exc})") from None

    @property
    def key(self) -> str:
        recipe = {"auto_window": MR_AUTO_WINDOW} if self.window == "auto" else {}
        payload = json.dumps({"render_spec": 1, **recipe, **self.to_dict()}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RenderedImage:
    png: bytes
    plane: str
    slices: tuple[int, ...]
    positions_mm: tuple[float, ...]
    window: tuple[float, float]
    width: int
    height: int
    spec_key: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.png).hexdigest()


def parse_window(text: str) -> str | tuple[float, float]:
    """CLI syntax: auto | brain | subdural | stroke | bone | soft | CENTER/WIDTH (e.g. 40/80)."""
    t = text.strip().lower()
    if "/" in t:
        try:
            c, w = (float(v) for v in t.split("/"))
            return (c, w)
        except ValueError:
            raise RenderError(f"cannot read window {text!r}; use a preset or CENTER/WIDTH like 40/80") from None
    return t


def parse_montage(text: str | None) -> tuple[int, int] | None:
    if text is None or text.lower() in ("", "none", "off"):
        return None
    if text.lower() == "auto":
        return (0, 0)
    m = re.fullmatch(r"(\d+)x(\d+)", text.lower())
    if not m:
        raise RenderError(f"cannot read montage {text!r}; use ROWSxCOLS like 4x4, or auto")
    return (int(m.group(1)), int(m.group(2)))


_auto_windows: "weakref.WeakKeyDictionary[Volume, tuple[float, float]]" = weakref.WeakKeyDictionary()


def resolve_window(volume: Volume, window) -> tuple[float, float]:
    """(centre, width). "auto" = brain window for CT; for MR the 0.5-99.5 percentiles of the head voxels of the
    image's cranial vault (`window_region`)."""
    if not isinstance(window, str):
        return window
    if window != "auto":
        return WINDOW_PRESETS[window]
    if volume.modality == "CT":
        return WINDOW_PRESETS["brain"]
    if volume not in _auto_windows:
        # kept with the render cache by content: the brain mask behind it costs ~0.5-1 s a volume, and every new view
        # of the volume (an agent's next slice, harness view) needs the same window
        centre, width = render_cache.remembered(volume, "mr-auto-window", MR_AUTO_WINDOW, _mr_auto_window)
        _auto_windows[volume] = (float(centre), float(width))
    return _auto_windows[volume]


def _mr_auto_window(volume: Volume) -> list[float]:
    sample = volume.data[window_region(volume)][::2, ::2, ::2].ravel()
    lo_all, hi_all = float(sample.min()), float(sample.max())
    head = sample[sample > lo_all + 0.02 * (hi_all - lo_all)]
    if head.size == 0:
        head = sample
    lo, hi = (float(v) for v in np.percentile(head, MR_PERCENTILES))
    if hi <= lo:
        lo, hi = lo_all, max(hi_all, lo_all + 1.0)
    return [(lo + hi) / 2.0, hi - lo]


def window_region(volume: Volume) -> tuple[slice, slice, slice]:
    """The block the MR auto window is taken from: slices at or above the centre of the brain, rows not in front of
    it (canonical RAS grid) - brain, skull and scalp, where defacers do not work. The whole volume when its brain
    mask finds no brain."""
    from harness.imaging.brainmask import brain_mask  # on use: the mask pulls scipy.ndimage

    brain = brain_mask(volume)
    per_slice = brain.sum(axis=(0, 1))
    if int(per_slice.sum()) < MIN_BRAIN_VOXELS:
        return slice(None), slice(None), slice(None)
    centre = int(round(float(np.average(np.arange(per_slice.size), weights=per_slice))))
    front = int(np.nonzero(brain.any(axis=(0, 2)))[0].max())
    return slice(None), slice(0, front + 1), slice(centre, None)


def slice_positions_mm(volume: Volume, plane: str) -> np.ndarray:
    """World coordinate (x, y or z in mm) of each slice's centre along the plane's normal axis."""
    axis = PLANE_AXIS[plane]
    centre = (np.array(volume.shape, dtype=float) - 1) / 2
    ijk = np.tile(centre, (volume.shape[axis], 1))
    ijk[:, axis] = np.arange(volume.shape[axis])
    return volume.voxel_to_world(ijk)[:, axis]


def display_slice(volume: Volume, plane: str, index: int) -> tuple[np.ndarray, float, float]:
    """The 2D array as displayed (rows top->bottom, cols left->right) and its (row, col) pixel spacing in mm."""
    data, (si, sj, sk) = volume.data, volume.spacing
    if plane == "axial":
        s, row_sp, col_sp = data[:, :, index], sj, si
    elif plane == "coronal":
        s, row_sp, col_sp = data[:, index, :], sk, si
    else:
        s, row_sp, col_sp = data[index, :, :], sk, sj
    # For all three planes the displayed image is the slice with both axes reversed, transposed (see module doc).
    return s[::-1, ::-1].T, row_sp, col_sp


def display_size(shape2d: tuple[int, int], row_sp: float, col_sp: float, size: int) -> tuple[int, int]:
    height_mm, width_mm = shape2d[0] * row_sp, shape2d[1] * col_sp
    scale = size / max(height_mm, width_mm)
    return max(1, round(width_mm * scale)), max(1, round(height_mm * scale))


def to_uint8(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    centre, width = window
    lo = centre - width / 2.0
    scaled = (values.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / width)
    return np.clip(scaled, 0, 255).round().astype(np.uint8)


_font_cache: dict[int, ImageFont.ImageFont] = {}


def _font(size: int):
    if size not in _font_cache:
        _font_cache[size] = ImageFont.load_default(size=size)
    return _font_cache[size]


LABEL_STROKE = 2  # a black outline keeps white labels readable on bright bone and scalp


@functools.lru_cache(maxsize=1024)
def _label_masks(size: int, text: str, anchor: str | None) -> tuple:
    """The glyph masks ImageDraw.text draws for a white label with a black outline - outline, then fill - each with
    its offset from the anchor point. Kept because every tile draws the same side letters (rendering the glyphs was
    a third of a montage's drawing time); drawn with the same bitmap call, the pixels are ImageDraw.text's own."""
    font = _font(size)
    return tuple((font.getmask2(text, "L", None, None, None, width, anchor, ink, (0.0, 0.0), stroke_filled=True), ink)
                 for width, ink in ((LABEL_STROKE, 0), (0, 255)))


def _label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int, anchor: str | None = None) -> None:
    if not isinstance(_font(size), ImageFont.FreeTypeFont):  # Pillow without FreeType: its bitmap font, uncached
        draw.text(xy, text, fill=255, font=_font(size), anchor=anchor, stroke_width=LABEL_STROKE, stroke_fill=0)
        return
    for (mask, (dx, dy)), ink in _label_masks(size, text, anchor):
        draw.draw.draw_bitmap((xy[0] + dx, xy[1] + dy), mask, ink)


def _draw_labels(img: Image.Image, plane: str, index: int, position_mm: float) -> None:
    draw = ImageDraw.Draw(img)
    size = max(10, img.height // 24)
    letter = WORLD_LETTER[PLANE_AXIS[plane]]
    _label(draw, (4, 2), f"#{index} {letter}={position_mm:+.1f}mm", size)
    left, right = ("A", "P") if plane == "sagittal" else ("R", "L")
    _label(draw, (4, img.height // 2), left, size, "lm")
    _label(draw, (img.width - 4, img.height // 2), right, size, "rm")


def _tile(volume: Volume, spec: RenderSpec, index: int, window, position: float) -> Image.Image:
    arr, row_sp, col_sp = display_slice(volume, spec.plane, index)
    img = Image.fromarray(to_uint8(arr, window), mode="L")
    img = img.resize(display_size(arr.shape, row_sp, col_sp, spec.size), Image.Resampling.BILINEAR)
    if spec.labels:
        _draw_labels(img, spec.plane, index, position)
    return img


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def montage_grid(n: int, montage: tuple[int, int]) -> tuple[int, int]:
    rows, cols = montage
    if (rows, cols) == (0, 0):
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
    if rows * cols < n:
        raise RenderError(f"montage {rows}x{cols} has room for {rows * cols} slices but {n} were selected")
    return rows, cols


def render(volume: Volume, spec: RenderSpec) -> list[RenderedImage]:
    """Render the spec's slices: one image per slice, or one montage image when spec.montage is set.

    Read from the render cache when it is on and holds this (volume content, spec); only a miss touches the voxels."""
    stored = render_cache.load(volume.content_hash, spec.key)
    if stored is not None:
        return [_from_facts(png, facts, spec.key) for png, facts in stored]
    images = _render(volume, spec)
    render_cache.save(volume.content_hash, spec.key, [(img.png, _facts(img)) for img in images])
    return images


def _facts(img: RenderedImage) -> dict:
    return {"plane": img.plane, "slices": list(img.slices), "positions_mm": list(img.positions_mm),
            "window": list(img.window), "width": img.width, "height": img.height}


def _from_facts(png: bytes, facts: dict, spec_key: str) -> RenderedImage:
    return RenderedImage(png, facts["plane"], tuple(int(i) for i in facts["slices"]),
                         tuple(float(p) for p in facts["positions_mm"]), tuple(float(w) for w in facts["window"]),
                         int(facts["width"]), int(facts["height"]), spec_key)


def _render(volume: Volume, spec: RenderSpec) -> list[RenderedImage]:
    indices = spec.slices.resolve(volume, spec.plane)
    if not indices:
        raise RenderError("the slice selection is empty")
    window = tuple(float(w) for w in resolve_window(volume, spec.window))  # plain floats, as the cache returns them
    positions = slice_positions_mm(volume, spec.plane)
    tiles = [_tile(volume, spec, i, window, float(positions[i])) for i in indices]
    if spec.montage is None:
        return [
            RenderedImage(_png(t), spec.plane, (i,), (round(float(positions[i]), 3),), window, t.width, t.height, spec.key)
            for t, i in zip(tiles, indices)
        ]
    rows, cols = montage_grid(len(tiles), spec.montage)
    tw, th = tiles[0].size
    sheet = Image.new("L", (cols * tw, rows * th), 0)
    for n, tile in enumerate(tiles):
        sheet.paste(tile, ((n % cols) * tw, (n // cols) * th))
    return [
        RenderedImage(_png(sheet), spec.plane, tuple(indices), tuple(round(float(positions[i]), 3) for i in indices), window, sheet.width, sheet.height, spec.key)
    ]


def write_pngs(images: list[RenderedImage], out_dir, stem: str) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for img in images:
        name = f"{stem}_{img.plane}_{img.slices[0]:03d}.png" if len(img.slices) == 1 else f"{stem}_{img.plane}_montage_{img.slices[0]:03d}-{img.slices[-1]:03d}.png"
        paths.append(atomic_write_bytes(out / name, img.png))
    return paths
