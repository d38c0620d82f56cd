"""Label overlays and per-case montages for looking at cohorts (and at the phantom labels) by eye.

Uses harness.imaging.render's display convention (radiological: patient right on image left). Outputs are PNG bytes.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from harness.imaging.render import display_size, display_slice, resolve_window, to_uint8
from harness.core.volume import Volume

# Colour per label value (BraTS: 1 necrosis red, 2 oedema green, 3/4 enhancing yellow; masks: 1 cyan-ish).
PALETTE = np.array(
    [[0, 0, 0], [255, 60, 60], [60, 220, 60], [255, 230, 0], [255, 230, 0], [255, 0, 255], [200, 200, 0],
     [0, 200, 0], [255, 0, 0], [120, 0, 255]] + [[0, 200, 255]] * 22,
    np.uint8,
)


def tile(volume: Volume, index: int, *, plane: str = "axial", window="auto", labels: np.ndarray | None = None, size: int = 256, alpha: float = 0.4) -> Image.Image:
    """One slice as an RGB image, optionally with a label map blended on top."""
    arr, row_sp, col_sp = display_slice(volume, plane, index)
    grey = to_uint8(arr, resolve_window(volume, window))
    rgb = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
    if labels is not None:
        lab = display_slice(Volume(labels.astype(np.float32), volume.affine, "MR"), plane, index)[0].astype(int)
        colour = PALETTE[np.clip(lab, 0, len(PALETTE) - 1)].astype(np.float32)
        on = (lab > 0)[..., None]
        rgb = np.where(on, (1 - alpha) * rgb + alpha * colour, rgb)
    img = Image.fromarray(rgb.round().astype(np.uint8), mode="RGB")
    return img.resize(display_size(arr.shape, row_sp, col_sp, size), Image.Resampling.BILINEAR)


def sheet(rows: list[list[Image.Image]], gap: int = 2) -> bytes:
    """Tile rows of images into one PNG (rows may differ in length and image size)."""
    width = max(sum(t.width for t in r) + gap * (len(r) - 1) for r in rows)
    height = sum(max(t.height for t in r) for r in rows) + gap * (len(rows) - 1)
    out = Image.new("RGB", (width, height))
    y = 0
    for r in rows:
        x = 0
        for t in r:
            out.paste(t, (x, y))
            x += t.width + gap
        y += max(t.height for t in r) + gap
    buf = io.BytesIO()
    out.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()
