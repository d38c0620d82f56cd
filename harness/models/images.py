"""Respect a model's image limits: downscale images above max_pixels, drop the oldest images beyond max_images.

Every change is returned as a human-readable note that ends up in the reply (and so in the transcript).
Downscaled copies are made once per (image, limit) and reused across requests and retries.
"""

from __future__ import annotations

import io
import math
from dataclasses import replace

from PIL import Image

from harness.models.types import ImagePart, Message

_downscaled: dict[tuple[str, int], ImagePart] = {}


def downscale(image: ImagePart, max_pixels: int) -> ImagePart:
    if image.width * image.height <= max_pixels:
        return image
    key = (image.sha256, max_pixels)
    if key not in _downscaled:
        scale = math.sqrt(max_pixels / (image.width * image.height))
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        with Image.open(io.BytesIO(image.png)) as im:
            small = im.resize(size, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        small.save(buf, format="PNG", compress_level=3)
        new = ImagePart.from_png(buf.getvalue(), spec_key=image.spec_key, label=image.label)
        if len(_downscaled) > 1024:
            _downscaled.clear()
        _downscaled[key] = new
    return _downscaled[key]


def apply_image_limits(messages: list[Message], max_images: int | None, max_pixels: int | None) -> tuple[list[Message], list[str]]:
    notes: list[str] = []
    total = sum(len(m.images) for m in messages)
    drop = max(0, total - max_images) if max_images is not None else 0
    if not drop and max_pixels is None:
        return messages, notes
    out = []
    for m in messages:
        if not m.images:
            out.append(m)
            continue
        parts = []
        for p in m.content:
            if isinstance(p, ImagePart):
                if drop:
                    drop -= 1
                    notes.append(f"dropped image {p.sha256[:12]} (limit {max_images} images per request)")
                    parts.append(f"[an earlier image ({p.label or 'image'}) was removed: this model takes at most {max_images} images per request]")
                    continue
                if max_pixels is not None and p.width * p.height > max_pixels:
                    small = downscale(p, max_pixels)
                    notes.append(f"downscaled image {p.sha256[:12]} from {p.width}x{p.height} to {small.width}x{small.height} (limit {max_pixels} pixels)")
                    p = small
            parts.append(p)
        out.append(replace(m, content=tuple(parts)))
    return out, notes
