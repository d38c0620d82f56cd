"""One phantom head: the labelled average head, warped so that every case is a different person in a different pose.

A case is built in three steps, all driven by one numpy Generator (deterministic by seed):
1. geometry: a random output grid (isotropic 1.0-1.3 mm, or anisotropic thick slices such as 1x1x3 mm), a random
   pose (rotation up to ~10 degrees, translation up to ~10 mm, head size +-6 %), a smooth random deformation
   of the whole head that is stronger over the face, and a face identity: localised moves of the facial features
   (harness.phantoms.face_shape), drawn from the case's seed on a stream of its own and zero inside the skull;
2. labels and T1 texture are pulled through that mapping onto the output grid (labels nearest, texture linear);
   task generators then edit the labels in output space (ventricles, lesions, haemorrhage) with `pull_labels`,
   a smooth displacement, so ground truth is always computed on exactly the voxels that are written;
3. intensities per contrast from the labels (`synthesize_mr`), the skin from the template's own intensity (`skin`),
   plus bias field, Rician noise and a scanner scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from harness.phantoms import anatomy as A
from harness.phantoms import face_shape

# Names what make_head and the synthesis make of an atlas; it keys every cached sample cohort, so a change to the
# heads (2: distinct face features, skin from the template's own intensity) rebuilds them.
HEAD_VERSION = 2

# Lesion label codes used in output-space label maps, after the anatomy codes 0-9.
NECROSIS, OEDEMA, ENHANCING, NONENHANCING, MENINGIOMA, BLOOD, INFARCT, SINUS_FLUID, SWELLING = range(10, 19)

BRAIN_LABELS = (A.GM, A.WM)
INTRACRANIAL_LABELS = (A.CSF, A.VENTRICLE, A.FRONTAL_HORN, A.GM, A.WM, NECROSIS, OEDEMA, ENHANCING, NONENHANCING, MENINGIOMA, BLOOD, INFARCT)

SKIN_T1 = A.SKIN_T1
SKIN_BAND_VOX, SKIN_OUTSIDE_VOX = 4, 2
# What the template's own intensity decides in that band: its soft tissue, the bone and air under thin skin (lips,
# nose, nostrils; their thresholded labels tear the mouth). Eyes keep their label (the vitreous is dark on T1).
SKIN_BAND_LABELS = (A.BACKGROUND, A.SCALP, A.BONE, A.AIR)

# Relative MR intensities per label (white matter on T1 = 0.85). Texture from the real template is added on top.
MR_CONTRAST = {
    #           bg    scalp bone  csf   vent  fh    gm    wm    eye   air   necr  oed   enh   nonenh mening blood infarct fluid swell
    "t1":    (0.0, 0.95, 0.10, 0.18, 0.16, 0.16, 0.58, 0.85, 0.30, 0.02, 0.22, 0.48, 0.55, 0.42, 0.57, 0.60, 0.25, 0.30, 0.60),
    "t1c":   (0.0, 1.00, 0.10, 0.18, 0.16, 0.16, 0.60, 0.86, 0.30, 0.02, 0.22, 0.50, 1.35, 0.44, 1.25, 0.62, 0.25, 0.35, 0.75),
    "t2":    (0.0, 0.60, 0.06, 1.55, 1.60, 1.60, 0.92, 0.62, 1.50, 0.02, 1.45, 1.22, 0.95, 1.28, 0.92, 0.70, 1.40, 1.40, 1.10),
    "flair": (0.0, 0.75, 0.06, 0.12, 0.10, 0.10, 0.92, 0.66, 0.20, 0.02, 0.55, 1.38, 1.02, 1.32, 0.95, 0.90, 0.30, 0.90, 1.10),
}
# How much of the template's own texture (its deviation from its label means) each contrast keeps; negative
# inverts it (T2-like contrasts are roughly inverted T1 inside the brain).
MR_TEXTURE = {"t1": 1.0, "t1c": 1.0, "t2": -0.5, "flair": -0.35}


@dataclass
class Head:
    """A warped head on its output grid: labels (uint8, codes above), T1 texture and the grid's RAS affine."""

    labels: np.ndarray
    texture: np.ndarray
    affine: np.ndarray
    face_amplitude_mm: float
    pose: dict
    face_features_mm: dict = field(default_factory=dict)  # the identity: each feature's move (face_shape.FEATURES)
    face: np.ndarray | None = None  # bool: the face (face_shape.face_region), where `skin` reads the template's skin

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    def surface_mm(self) -> float:
        """Distance-transform value of the outermost voxel layer of a mask on this grid."""
        return max(self.spacing) * 1.01

    def voxel_mm(self) -> float:
        sx, sy, sz = self.spacing
        return sx * sy * sz


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def smooth_field(rng: np.random.Generator, shape, control: tuple[int, int, int], amplitude: float) -> np.ndarray:
    """A smooth random scalar field on `shape`: Gaussian noise on a coarse control grid, cubic-upsampled to a quarter
    of the resolution, then linearly to full size (the field is smooth, so the second step loses nothing visible)."""
    coarse = rng.standard_normal(control)
    mid_shape = tuple(max(c, -(-s // 4)) for s, c in zip(shape, control))
    mid = ndi.zoom(coarse, [m / c for m, c in zip(mid_shape, control)], order=3, mode="nearest", grid_mode=True)
    field = ndi.zoom(mid, [s / m for s, m in zip(shape, mid.shape)], order=1, mode="nearest", grid_mode=True)
    field = field[: shape[0], : shape[1], : shape[2]]
    pad = [(0, s - f) for s, f in zip(shape, field.shape)]
    if any(p[1] for p in pad):
        field = np.pad(field, pad, mode="edge")
    return (field * amplitude).astype(np.float32)


def choose_spacing(rng: np.random.Generator, allow_anisotropic: bool = True) -> tuple[float, float, float]:
    if allow_anisotropic and rng.random() < 0.3:
        inplane = float(rng.choice([0.9, 1.0, 1.1]))
        return (inplane, inplane, float(rng.choice([2.5, 3.0])))
    iso = float(rng.choice([1.0, 1.1, 1.2, 1.3]))
    return (iso, iso, iso)


def make_head(atlas: A.Atlas, rng: np.random.Generator, spacing=None, *, resolution_scale: float = 1.0) -> Head:
    """Warp the atlas into a new subject and pose on a new grid (see module doc). resolution_scale > 1 coarsens
    the output grid (used by fast tests)."""
    spacing = np.array(spacing if spacing is not None else choose_spacing(rng), float) * resolution_scale
    angles = np.deg2rad(rng.uniform(-1, 1, 3) * np.array([10.0, 6.0, 8.0]))  # pitch, roll, yaw
    R = _rotation(*angles)
    size = rng.uniform(0.94, 1.06)
    aniso = rng.uniform(0.96, 1.04, 3)
    S = np.diag(size * aniso)
    shift = rng.uniform(-10, 10, 3)
    centre = atlas.affine[:3, :3] @ ((np.array(atlas.labels.shape) - 1) / 2) + atlas.affine[:3, 3]
    M = R @ S  # subject (atlas) mm -> scanner mm, about the atlas centre

    # Output grid: axis-aligned in scanner space, covering the posed head.
    idx = np.argwhere(atlas.labels[::4, ::4, ::4] > 0) * 4
    world = idx @ atlas.affine[:3, :3].T + atlas.affine[:3, 3]
    posed = (world - centre) @ M.T + centre + shift
    lo, hi = posed.min(0) - 6, posed.max(0) + 6
    shape = np.ceil((hi - lo) / spacing).astype(int)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = lo

    # Pull map: output voxel -> scanner mm -> atlas mm (inverse pose) -> + smooth deformation -> atlas voxel.
    # The map is smooth, so it is computed on every STEP-th output voxel and interpolated linearly (exact for the
    # affine part); only the final label/texture lookups run at full resolution.
    step = 4
    coarse_shape = tuple(int(n) for n in np.ceil(shape / step).astype(int) + 1)
    grid = np.indices(coarse_shape, dtype=np.float32).reshape(3, -1).T * step
    scanner = grid * spacing.astype(np.float32) + lo.astype(np.float32)
    Minv = np.linalg.inv(M).astype(np.float32)
    subj = (scanner - (centre + shift).astype(np.float32)) @ Minv.T + centre.astype(np.float32)
    inv_atlas = np.linalg.inv(atlas.affine).astype(np.float32)
    vox = subj @ inv_atlas[:3, :3].T + inv_atlas[:3, 3]

    ashape = np.array(atlas.labels.shape, np.float32)
    face_amp = float(rng.uniform(2.5, 4.5))
    control = np.array((5, 6, 6))
    # The face is the anterior-inferior part of the atlas: the deformation is up to 2.5x stronger there.
    fy = vox[:, 1] / ashape[1]
    fz = vox[:, 2] / ashape[2]
    face_weight = 1.0 + 1.5 * np.clip((fy - 0.55) / 0.3, 0, 1) * np.clip((0.6 - fz) / 0.3, 0, 1)
    ctrl_coords = (vox / ashape * (control - 1)).T
    warped = vox.copy()
    for axis in range(3):
        knots = rng.standard_normal(tuple(control)).astype(np.float32) * 2.0 * (face_amp / 3.0)
        disp_mm = ndi.map_coordinates(knots, ctrl_coords, order=3, mode="nearest") * face_weight
        warped[:, axis] += disp_mm / A.GRID_MM
    coarse = warped.T.reshape(3, *coarse_shape)
    fine = np.indices(tuple(shape), dtype=np.float32) / step
    coords = np.stack([ndi.map_coordinates(coarse[i], fine, order=1, mode="nearest") for i in range(3)])
    del fine
    face = face_shape.draw_face(_face_rng(rng)) if atlas.source in A.PYDEFACE_HEADS else {}
    if face:
        _move_features(coords, atlas, face)
    face_mask = _face_mask(coords, atlas) if atlas.source in A.PYDEFACE_HEADS else None
    labels = ndi.map_coordinates(atlas.labels, coords, order=0, mode="constant", cval=0)
    texture = ndi.map_coordinates(atlas.t1, coords, order=1, mode="constant", cval=0.0)
    pose = {
        "rotation_deg": [round(float(a), 2) for a in np.rad2deg(angles)],
        "translation_mm": [round(float(s), 2) for s in shift],
        "scale": [round(float(s), 4) for s in size * aniso],
    }
    return Head(labels.astype(np.uint8), texture.astype(np.float32), affine, face_amp, pose,
                {k: round(v, 2) for k, v in face.items()}, face_mask)


def _face_mask(coords: np.ndarray, atlas: A.Atlas) -> np.ndarray:
    """Which output voxels show the face (pull map in atlas voxels -> pydeface template voxels -> face_region)."""
    to_template = (np.linalg.inv(face_shape.template_affine()) @ atlas.affine).astype(np.float32)
    ijk = coords.reshape(3, -1).T @ to_template[:3, :3].T + to_template[:3, 3]
    return (face_shape.face_region(ijk) > 0.5).reshape(coords.shape[1:])


def _face_rng(rng: np.random.Generator) -> np.random.Generator:
    """The face's own random stream, spawned from the case's seed: drawing a face consumes nothing from `rng`, so
    every other draw of a case (grid, pose, lesions, noise) is what it was before faces had features."""
    seq = getattr(rng.bit_generator, "seed_seq", None)
    if seq is None:
        raise ValueError("phantom generators draw from a SeedSequence-seeded Generator (np.random.default_rng(seq))")
    return np.random.default_rng(seq.spawn(1)[0])


def _move_features(coords: np.ndarray, atlas: A.Atlas, face: dict[str, float]) -> None:
    """Apply a face identity to a pull map (atlas voxel coordinates per output voxel, (3, ...), changed in place):
    an output voxel showing atlas point x now shows x - u(x), so the tissue at x appears moved by u. Only voxels
    inside the features' support are touched."""
    shaper = face_shape.shaper_for(atlas)
    lo, hi = shaper.support()
    to_mm = atlas.affine.astype(np.float32)
    to_vox = np.linalg.inv(atlas.affine).astype(np.float32)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])], np.float32)
    corners = corners @ to_vox[:3, :3].T + to_vox[:3, 3]
    inside = np.ones(coords.shape[1:], bool)
    for axis in range(3):
        inside &= (coords[axis] >= corners[:, axis].min()) & (coords[axis] <= corners[:, axis].max())
    points = coords[:, inside].T @ to_mm[:3, :3].T + to_mm[:3, 3]
    moved = points - shaper.displacement(points, face)
    coords[:, inside] = (moved @ to_vox[:3, :3].T + to_vox[:3, 3]).T


def radial_pull(shape, centre_vox, spacing, strength_mm: float, sigma_mm: float, weights=(1.0, 1.0, 1.0)):
    """Displacement (in voxels, per axis) that pushes tissue away from `centre` (strength > 0) with a Gaussian
    fall-off; used as a pull map (sample at x - u), so structures around the centre grow or are shoved aside."""
    sp = np.asarray(spacing, np.float32)
    grids = [(np.arange(n, dtype=np.float32) - c) * s for n, c, s in zip(shape, centre_vox, sp)]
    X, Y, Z = np.meshgrid(*grids, indexing="ij", sparse=True)
    r2 = X**2 + Y**2 + Z**2
    g = np.exp(-r2 / (2 * sigma_mm**2))
    r = np.sqrt(r2) + 1e-3
    # displacement magnitude peaks ~sigma from the centre and vanishes at the centre
    mag = strength_mm * g * np.minimum(r / sigma_mm, 1.0)
    return [(mag * comp / r * w / s).astype(np.float32) for comp, w, s in zip((X, Y, Z), weights, sp)]


def pull(volume: np.ndarray, disp, order: int) -> np.ndarray:
    """Resample `volume` at x - disp(x) (disp in voxels per axis)."""
    idx = np.indices(volume.shape, dtype=np.float32)
    coords = [idx[i] - np.broadcast_to(disp[i], volume.shape) for i in range(3)]
    cval = 0
    return ndi.map_coordinates(volume, coords, order=order, mode="nearest" if order else "constant", cval=cval).astype(volume.dtype)


def pull_head(head: Head, disp) -> None:
    head.labels = pull(head.labels, disp, 0)
    head.texture = pull(head.texture, disp, 1)


def blob(shape, centre_vox, spacing, radii_mm, rng: np.random.Generator, roughness: float = 0.15) -> np.ndarray:
    """A lumpy ellipsoid mask: radius modulated by a smooth random field (so lesions are not perfect spheres)."""
    sp = np.asarray(spacing, np.float32)
    radii = np.asarray(radii_mm, np.float32)
    reach = (radii.max() * (1 + 2 * roughness) / sp + 2).astype(int)
    c = np.round(centre_vox).astype(int)
    lo = np.maximum(c - reach, 0)
    hi = np.minimum(c + reach + 1, shape)
    sub = tuple(slice(a, b) for a, b in zip(lo, hi))
    grids = [((np.arange(a, b, dtype=np.float32) - cc) * s / r) for a, b, cc, s, r in zip(lo, hi, centre_vox, sp, radii)]
    X, Y, Z = np.meshgrid(*grids, indexing="ij")
    rho = np.sqrt(X**2 + Y**2 + Z**2)
    bumps = smooth_field(rng, rho.shape, (4, 4, 4), roughness) if min(rho.shape) > 1 else 0
    mask = np.zeros(shape, bool)
    mask[sub] = rho <= 1.0 + bumps
    return mask


def partial_volume(labels: np.ndarray, lut: np.ndarray, sigma_vox) -> np.ndarray:
    img = lut[labels].astype(np.float32)
    return ndi.gaussian_filter(img, sigma_vox)


def template_means(head: Head) -> np.ndarray:
    """Mean T1 texture per label code of this head (the reference its texture deviates from)."""
    n = int(head.labels.max()) + 1
    counts = np.bincount(head.labels.ravel(), minlength=n)
    sums = np.bincount(head.labels.ravel(), weights=head.texture.ravel(), minlength=n)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    lut = np.zeros(32, np.float32)
    lut[:n] = means
    return lut


def skin(head: Head) -> tuple[np.ndarray, np.ndarray]:
    """Where the skin is, from the template's own intensities: (labels, tissue) for synthesis.

    Labels pulled nearest-neighbour from a 1.2 mm atlas give a stair-stepped, melted skin (no eyelids, lips or
    nostrils in a face render); the template's T1, pulled linearly, still has its real skin with partial volume. So
    in the face (head.face; all of the head when None) within SKIN_BAND_VOX voxels of the air outside the template's skin (its T1 below SKIN_T1, holes filled), and no
    further than SKIN_OUTSIDE_VOX voxels out of the labelled head, background, scalp, bone and air are synthesised as
    scalp scaled by `tissue`, the share of tissue the template's intensity says a voxel holds (0.5 at SKIN_T1).
    Elsewhere tissue is 1 in the labelled head and 0 outside it (so the template's faint head-holder frame, away from
    the skin, never shows). The label map itself (and every truth computed from it) is unchanged."""
    inside = head.labels != A.BACKGROUND
    outside = ~ndi.binary_fill_holes(head.texture >= SKIN_T1)
    band = ndi.binary_dilation(outside, iterations=SKIN_BAND_VOX) & ndi.binary_dilation(inside, iterations=SKIN_OUTSIDE_VOX)
    soft = band & np.isin(head.labels, SKIN_BAND_LABELS)
    if head.face is not None:
        soft &= head.face
    tissue = inside.astype(np.float32)
    tissue[soft] = np.clip(head.texture[soft] / SKIN_T1 - 0.5, 0.0, 1.0)
    labels = head.labels.copy()
    labels[soft] = A.SCALP
    return labels, tissue


def synthesize_mr(head: Head, contrast: str, rng: np.random.Generator, *, noise: float, bias: np.ndarray) -> np.ndarray:
    """One MR contrast: label means with partial volume + template texture, the skin where the template has it
    (see `skin`), bias field and Rician noise (0..~1.4)."""
    lut = np.zeros(32, np.float32)
    lut[: len(MR_CONTRAST[contrast])] = MR_CONTRAST[contrast]
    sigma = [0.6 / s for s in head.spacing]
    labels, tissue = skin(head)
    base = partial_volume(labels, lut, sigma)
    # Texture only where anatomy is the template's own (lesions and fluids are homogeneous).
    ref = partial_volume(labels, template_means(head), sigma)
    anatomical = np.isin(labels, (A.SCALP, A.GM, A.WM, A.BONE, A.EYE)).astype(np.float32)
    anatomical = ndi.gaussian_filter(anatomical, sigma)
    img = (base + MR_TEXTURE[contrast] * anatomical * (head.texture - ref)) * tissue
    img = np.clip(img, 0, None) * bias
    n1 = rng.standard_normal(img.shape, dtype=np.float32) * noise
    n2 = rng.standard_normal(img.shape, dtype=np.float32) * noise
    return np.sqrt((img + n1) ** 2 + n2**2)


def bias_field(rng: np.random.Generator, shape, strength: float) -> np.ndarray:
    return np.exp(smooth_field(rng, shape, (3, 3, 3), strength))


def to_scanner_units(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Arbitrary scanner scale, stored as integers like real MR (int16 range)."""
    scale = float(rng.uniform(400, 1800))
    return np.clip(np.round(img * scale), 0, 32767).astype(np.int16)


def world_z(affine: np.ndarray, shape) -> np.ndarray:
    """World z (mm) of each axial slice centre."""
    centre = (np.array(shape, float) - 1) / 2
    ijk = np.tile(centre, (shape[2], 1))
    ijk[:, 2] = np.arange(shape[2])
    return (ijk @ affine[:3, :3].T + affine[:3, 3])[:, 2]
