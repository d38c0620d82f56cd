"""Privacy and damage QC of a defaced volume: did the face go, did the brain stay, and a picture to check by eye.

Measures (all on the input's grid):
- brain_voxels_changed: voxels of the original's brain mask (harness.imaging.brainmask, computed on the original, not
  through the registration, so a misplaced template cannot hide its damage) whose value changed. Must be 0 for
  deface and reface; quickshear's value is reported as is.
- face_fraction_changed: fraction of face-region head voxels (template face region warped onto the subject,
  intersected with the original's head mask) whose value changed.
- face_surface_change_mm: the skin surface seen from the front (anterior depth map: distance in mm from the front
  of the field of view to the first head voxel of each right-left/superior-inferior column) compared between
  original and defaced, mean absolute difference over the columns that hold face-region head voxels. A column
  left with no head at all counts as the full field-of-view depth.
- nothing_changed: no voxel differs from the original (a defacer that did nothing, or a "defaced" file that is a
  copy of the original).
- registration: final mutual information, its refusal threshold, rotation, scales, seconds.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from harness.imaging.brainmask import head_mask, head_threshold
from harness.imaging.render import RenderSpec, Slices, render, resolve_window
from harness.core.volume import Volume


def anterior_depth(mask: np.ndarray, spacing_a: float) -> np.ndarray:
    """Depth (mm) from the anterior edge of the grid to the first True voxel of each (x, z) column (RAS grid)."""
    n = mask.shape[1]
    from_front = mask[:, ::-1, :]
    hit = from_front.any(axis=1)
    first = np.argmax(from_front, axis=1).astype(np.float32)
    first[~hit] = n
    return first * np.float32(spacing_a)


def measure(original: Volume, defaced: Volume, changed: np.ndarray, *, face: np.ndarray | None, brain: np.ndarray, registration=None) -> dict:
    threshold = head_threshold(original)
    head_before = head_mask(original, threshold)
    head_after = head_mask(defaced, threshold)
    qc: dict = {
        "voxels_changed": int(changed.sum()),
        "brain_voxels": int(brain.sum()),
        "brain_voxels_changed": int((changed & brain).sum()),
        "nothing_changed": not bool(changed.any()),
    }
    if face is not None:
        face_head = face & head_before
        columns = face_head.any(axis=1)
        n_face = int(face_head.sum())
        qc["face_region_voxels"] = int(face.sum())
        qc["face_head_voxels"] = n_face
        qc["face_fraction_changed"] = float((changed & face_head).sum() / n_face) if n_face else 0.0
        if columns.any():
            depth_before = anterior_depth(head_before, original.spacing[1])[columns]
            depth_after = anterior_depth(head_after, original.spacing[1])[columns]
            qc["face_surface_change_mm"] = float(np.mean(np.abs(depth_after - depth_before)))
        else:
            qc["face_surface_change_mm"] = 0.0
        qc["changed_outside_face_region"] = int((changed & ~face).sum())
    if registration is not None:
        qc["registration"] = registration.summary(original.modality)
    return qc


def _surface_image(volume: Volume, threshold: float, height: int) -> Image.Image:
    """Anterior surface render: the depth map lit from the front-above (Lambert), viewed from the front."""
    mask = head_mask(volume, threshold)
    depth = anterior_depth(mask, volume.spacing[1])  # (x, z) in mm
    hit = depth < volume.shape[1] * volume.spacing[1]
    filled = np.where(hit, depth, depth[hit].max() if hit.any() else 0.0)
    gx, gz = np.gradient(ndimage.gaussian_filter(filled, 1.5), volume.spacing[0], volume.spacing[2])  # no voxel terraces
    normal = np.stack([-gx, -gz, np.ones_like(gx)])
    normal /= np.linalg.norm(normal, axis=0)
    light = np.array([0.0, 0.35, 1.0]) / np.linalg.norm([0.0, 0.35, 1.0])  # from the front, a little above
    lambert = np.clip(np.tensordot(light, normal, axes=1), 0.0, 1.0)
    near = float(depth[hit].min()) if hit.any() else 0.0
    fade = np.clip(1.0 - (depth - near) / 150.0, 0.35, 1.0)  # farther surfaces a little darker
    img = np.where(hit, 30.0 + 225.0 * lambert * fade, 0.0).astype(np.uint8)[::-1, ::-1].T
    out = Image.fromarray(np.ascontiguousarray(img), mode="L")  # rows superior->inferior, patient right on the left
    sx, sz = volume.spacing[0], volume.spacing[2]
    width = max(1, round(height * (img.shape[1] * sx) / (img.shape[0] * sz)))
    return out.resize((width, height), Image.Resampling.BILINEAR)


def qc_png(original: Volume, defaced: Volume, *, title: str = "", size: int = 320) -> bytes:
    """2 x 2 sheet: mid-sagittal original | defaced (same window), anterior surface original | defaced."""
    window = resolve_window(original, "auto")
    spec = RenderSpec(plane="sagittal", slices=Slices("mid"), window=window, size=size)
    sag = [Image.open(io.BytesIO(render(v, spec)[0].png)) for v in (original, defaced)]
    threshold = head_threshold(original)
    surf = [_surface_image(v, threshold, sag[0].height) for v in (original, defaced)]
    col_w = max(max(i.width for i in sag), max(i.width for i in surf))
    pad = 18
    sheet = Image.new("L", (2 * col_w, 2 * sag[0].height + 2 * pad), 0)
    draw = ImageDraw.Draw(sheet)
    labels = ("original", f"defaced {title}".strip())
    for col in range(2):
        x = col * col_w
        draw.text((x + 4, 2), f"{labels[col]} - mid-sagittal", fill=255)
        sheet.paste(sag[col], (x + (col_w - sag[col].width) // 2, pad))
        y = pad + sag[0].height
        draw.text((x + 4, y + 2), f"{labels[col]} - anterior surface", fill=255)
        sheet.paste(surf[col], (x + (col_w - surf[col].width) // 2, y + pad))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()
