"""Photo-like surface renders of a head's face: what a face-recognition attack on a head scan looks at.

A render is a pure function of (volume, pose, view): the volume is smoothed (Gaussian, 1.2 mm), the skin is the
isosurface at a threshold (CT: -400 HU, halfway between air and soft tissue; MR: 0.6 x an Otsu split of the voxel
histogram, which keeps the skin where a T1's dark fat and bright noise would otherwise move it), and orthographic
rays through a face-centred window find its first crossing (a coarse march, then a fine one around the crossing
and linear interpolation between the last sample outside and the first inside). Normals are the volume gradient
at the hit; shading is ambient 0.15 + Lambert 0.75 + Blinn-Phong specular 0.25 (exponent 30).
Measured with dlib's HOG detector: cruder renders (first voxel above a threshold, depth-map normals) found 2 of 8
phantom faces; this recipe found the pydeface average head and the phantoms' faces in most views.

The window is fixed in mm around the pose's anchor (the point between the eyes), so every volume on one grid and
pose (an original and its defaced copies) is framed identically and a render is never resized.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from harness.core.volume import Volume
from harness.imaging.brainmask import otsu

# Names the render recipe; it goes into every cache key of what is computed from renders.
FACE_RENDER_VERSION = "raycast-2"
# Written into every face render PNG (an uncompressed text chunk): the leaderboard's publish scan refuses any file
# that carries it, wherever it was copied to.
FACE_RENDER_MARK = "harness face render: shows a face, never to be published"
PIXEL_MM = 1.0
# The window around the anchor (between the eyes), in mm: wide enough for the face at 30 degrees of yaw, from
# the forehead to below the chin.
HALF_WIDTH_MM = 100.0
ABOVE_MM, BELOW_MM = 70.0, 130.0
# Rays start this far in front of the anchor (the nose tip lies ~35 mm in front of the eyes' centres) and end this
# far behind it (the cut surface a defacer leaves lies behind the face; past it the head is of no interest).
FRONT_MM, BACK_MM = 60.0, 90.0
# The coarse step is thinner than any facial feature after smoothing (the nose and lips are > 8 mm thick).
COARSE_MM, FINE_MM = 4.0, 0.5
SMOOTH_MM = 1.2
CT_SKIN_HU = -400.0
MR_SKIN_OF_OTSU = 0.6
AMBIENT, DIFFUSE, SPECULAR, SHININESS = 0.15, 0.75, 0.25, 30.0


@dataclass(frozen=True)
class FacePose:
    """Where a face is and which way it looks, in the world (RAS mm) of a volume: the anchor between the eyes and
    the head's own right, anterior and superior unit vectors (orthonormal)."""

    anchor: tuple[float, float, float]
    right: tuple[float, float, float]
    anterior: tuple[float, float, float]
    superior: tuple[float, float, float]

    def as_dict(self) -> dict:
        return {k: [round(float(v), 4) for v in getattr(self, k)] for k in ("anchor", "right", "anterior", "superior")}


@dataclass(frozen=True)
class View:
    """A camera: yaw in degrees about the head's superior axis (positive turns the face towards its left, so the
    camera sees more of the right cheek) and a light direction in camera coordinates (image right, image up,
    towards the viewer)."""

    yaw_deg: float
    light: tuple[float, float, float]

    @property
    def name(self) -> str:
        side = "front" if self.yaw_deg == 0 else f"yaw{self.yaw_deg:+g}"
        return f"{side}-light{'A' if self.light == LIGHT_A else 'B'}"


# Two key lights as a photographer places them, ~23 degrees above the eyes and ~19 degrees to one side: the probe
# light is the gallery light mirrored, so a re-render differs from the gallery by the side the light comes from (and
# the yaw), not by a light lower than any portrait's. A light only 10 degrees above the eyes, (-0.4, 0.2, 1.0) in
# raycast-1, flattened the shading that is all a render's identity (a render has no albedo: no brows, no lip
# colour) and turned one phantom's frontal re-render 0.60 from its own gallery face: positive-control rank-1 84 %
# on the sample cohort against 100 % with this light (benchmarks/privacy.py).
LIGHT_A = (0.35, 0.45, 1.0)  # front, from the viewer's right and above
LIGHT_B = (-0.35, 0.45, 1.0)  # front, from the viewer's left and above
YAWS = (0.0, 15.0, -15.0, 30.0, -30.0)
GALLERY_VIEW = View(0.0, LIGHT_A)
# What an attack renders of every volume: the frontal gallery view, and every yaw in the other light (probes of
# defaced volumes, and the positive control of originals: the same head seen again differently).
PROBE_VIEWS = tuple(View(y, LIGHT_B) for y in YAWS)
VIEWS = (GALLERY_VIEW, *PROBE_VIEWS)


@dataclass(frozen=True, eq=False)
class FaceRender:
    view: View
    image: np.ndarray  # uint8 (rows superior -> inferior, columns the viewer's left -> right)
    hit_fraction: float  # share of the window's rays that met skin

    def png(self) -> bytes:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("harness", FACE_RENDER_MARK)
        buf = io.BytesIO()
        Image.fromarray(self.image, mode="L").save(buf, format="PNG", pnginfo=info)
        return buf.getvalue()


def skin_threshold(volume: Volume) -> float:
    if volume.modality == "CT":
        return CT_SKIN_HU
    sample = volume.data[::2, ::2, ::2]
    return MR_SKIN_OF_OTSU * otsu(sample[np.isfinite(sample)])


def _camera(pose: FacePose, yaw_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image-right, image-up, towards-viewer) unit vectors in world RAS for a yaw about the head's superior axis."""
    right, anterior, up = (np.asarray(v, dtype=np.float64) for v in (pose.right, pose.anterior, pose.superior))
    t = np.radians(yaw_deg)
    toward = np.cos(t) * anterior + np.sin(t) * right
    # Facing the head, the viewer sees the head's right on the image's left.
    image_right = np.cross(up, toward)
    return image_right, up, toward


def _grid() -> tuple[np.ndarray, np.ndarray]:
    cols = np.arange(-HALF_WIDTH_MM, HALF_WIDTH_MM, PIXEL_MM) + PIXEL_MM / 2
    rows = np.arange(ABOVE_MM, -BELOW_MM, -PIXEL_MM) - PIXEL_MM / 2
    return rows, cols


class _Smoothed:
    """The volume cropped to the box every view's rays pass through, smoothed once for all views."""

    def __init__(self, volume: Volume, pose: FacePose):
        corners = []
        for yaw in {v.yaw_deg for v in VIEWS}:
            r, u, t = _camera(pose, yaw)
            for a in (-HALF_WIDTH_MM, HALF_WIDTH_MM):
                for b in (ABOVE_MM, -BELOW_MM):
                    for c in (FRONT_MM, -BACK_MM):
                        corners.append(np.asarray(pose.anchor) + a * r + b * u + c * t)
        ijk = volume.world_to_voxel(np.array(corners))
        sigma = [SMOOTH_MM / s for s in volume.spacing]
        margin = [int(np.ceil(3 * s)) + 2 for s in sigma]
        lo = [max(0, int(np.floor(ijk[:, k].min())) - margin[k]) for k in range(3)]
        hi = [min(volume.shape[k], int(np.ceil(ijk[:, k].max())) + margin[k] + 1) for k in range(3)]
        self.offset = np.array(lo, dtype=np.float64)
        crop = volume.data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        if crop.size == 0:
            self.data = np.zeros((1, 1, 1), np.float32)
        else:
            self.data = ndimage.gaussian_filter(np.nan_to_num(crop), sigma, mode="nearest")
        self.volume = volume
        self.outside = float(np.nanmin(volume.data)) if volume.data.size else 0.0

        inverse = np.linalg.inv(volume.affine)
        self._linear = inverse[:3, :3].astype(np.float32)
        self._shift = (inverse[:3, 3] - self.offset).astype(np.float32)

    def voxels(self, world: np.ndarray) -> np.ndarray:
        """World points (..., 3) as indices into the cropped array (..., 3), float32."""
        return np.asarray(world, np.float32) @ self._linear.T + self._shift

    def directions(self, world: np.ndarray) -> np.ndarray:
        return np.asarray(world, np.float32) @ self._linear.T

    def sample(self, ijk: np.ndarray) -> np.ndarray:
        """Values at cropped-array indices (..., 3); outside the field of view is air (the volume's minimum)."""
        flat = ijk.reshape(-1, 3).T
        out = ndimage.map_coordinates(self.data, flat, order=1, mode="constant", cval=self.outside)
        return out.reshape(ijk.shape[:-1])


def render_face(volume: Volume, pose: FacePose, view: View, *, smoothed: _Smoothed | None = None,
                threshold: float | None = None) -> FaceRender:
    smoothed = smoothed or _Smoothed(volume, pose)
    threshold = skin_threshold(volume) if threshold is None else threshold
    image_right, up, toward = _camera(pose, view.yaw_deg)
    rows, cols = _grid()
    plane = smoothed.voxels(np.asarray(pose.anchor) + rows[:, None, None] * up + cols[None, :, None] * image_right)
    step = smoothed.directions(toward)  # one mm towards the viewer, in voxels

    # Coarse march from the front; the first sample inside the skin brackets the crossing with the one before it.
    depths = np.arange(FRONT_MM, -BACK_MM - COARSE_MM, -COARSE_MM)
    coarse = smoothed.sample(plane[:, :, None, :] + depths[None, None, :, None].astype(np.float32) * step)  # (H, W, D)
    inside = coarse > threshold
    inside[:, :, 0] = False  # a head cut by the window's front is no face (and gives no bracket)
    hit = inside.any(axis=2)
    k = np.argmax(inside, axis=2)
    start = depths[np.maximum(k - 1, 0)]
    fine_steps = np.arange(0.0, COARSE_MM + FINE_MM / 2, FINE_MM)
    fine_depths = start[..., None] - fine_steps  # (H, W, F)
    fine = smoothed.sample(plane[:, :, None, :] + fine_depths[..., None].astype(np.float32) * step)
    fine_inside = fine > threshold
    j = np.clip(np.argmax(fine_inside, axis=2), 1, fine_steps.size - 1)
    before = np.take_along_axis(fine, (j - 1)[..., None], axis=2)[..., 0]
    after = np.take_along_axis(fine, j[..., None], axis=2)[..., 0]
    frac = np.clip((threshold - before) / np.where(after - before == 0, 1, after - before), 0.0, 1.0)
    depth = np.take_along_axis(fine_depths, (j - 1)[..., None], axis=2)[..., 0] - frac * FINE_MM
    pts = (plane + depth[..., None].astype(np.float32) * step)[hit]

    # Normals: the outward gradient of the smoothed volume at the surface (central differences along world axes).
    grad = np.stack([smoothed.sample(pts + e) - smoothed.sample(pts - e)
                     for e in smoothed.directions(np.eye(3) * 0.75)], axis=-1)
    normal = -grad / np.maximum(np.linalg.norm(grad, axis=-1, keepdims=True), 1e-6)
    n_cam = np.stack([normal @ image_right, normal @ up, normal @ toward], axis=-1)
    light = np.asarray(view.light) / np.linalg.norm(view.light)
    half = light + np.array([0.0, 0.0, 1.0])
    half /= np.linalg.norm(half)
    shade = (AMBIENT + DIFFUSE * np.clip(n_cam @ light, 0, 1) + SPECULAR * np.clip(n_cam @ half, 0, 1) ** SHININESS)
    image = np.zeros(hit.shape, np.float32)
    image[hit] = np.clip(shade, 0, 1) * 255.0
    return FaceRender(view, image.round().astype(np.uint8), float(hit.mean()))


def render_faces(volume: Volume, pose: FacePose, views=VIEWS) -> list[FaceRender]:
    smoothed = _Smoothed(volume, pose)
    threshold = skin_threshold(volume)
    return [render_face(volume, pose, v, smoothed=smoothed, threshold=threshold) for v in views]
