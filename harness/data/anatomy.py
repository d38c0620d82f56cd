"""Tissue labels of a real head, derived once from the pydeface average head (which has a face) and cached.

The pydeface wheel ships `mean_reg2mean.nii.gz`, an average T1 head with face (176x256x256, ~1 mm). Phantoms need
tissue classes, not just intensities, so this module derives a label map from it by thresholds and morphology
tuned by eye on this one template (see `derive_labels`; the overlays in the issue's closing note were checked):

    0 background air        4 lateral ventricles (5 = their frontal horns)   8 eyes (globes)
    1 scalp / face soft      6 grey matter                                    9 sinus / airway air
    2 bone (skull, face)     7 white matter
    3 CSF (sulcal, extra-axial, other ventricles)

The labels are approximate (an average head is blurred; the skull base is the least certain region), but every
phantom's ground truth is computed from the labels *after* warping, so truth and image always agree exactly.
The result is resampled to a 1.2 mm working grid and cached under <cache>/anatomy/ keyed by the template's bytes
and ANATOMY_VERSION; deriving takes ~15 s once.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from harness.cache import atomic_write_bytes, content_key, default_cache_dir
from harness.errors import HarnessError

ANATOMY_VERSION = 7
GRID_MM = 1.2

BACKGROUND, SCALP, BONE, CSF, VENTRICLE, FRONTAL_HORN, GM, WM, EYE, AIR = range(10)
LABEL_NAMES = {
    BACKGROUND: "background",
    SCALP: "scalp/face soft tissue",
    BONE: "bone",
    CSF: "CSF",
    VENTRICLE: "lateral ventricle",
    FRONTAL_HORN: "frontal horn",
    GM: "grey matter",
    WM: "white matter",
    EYE: "eye",
    AIR: "sinus/airway air",
}

# Landmarks of the pydeface template in its voxel grid, read off by eye: eye centres, and the axial level of the
# foramen magnum below which nothing is intracranial. They only seed the derivation; the shapes come from the image.
_EYE_CENTRES = ((60, 197, 92), (117, 197, 92))
_EYE_RADIUS_MM = 11.5
_BRAIN_SEED = (88, 128, 130)
_FORAMEN_Z = 62


class AnatomyError(HarnessError):
    pass


@dataclass(frozen=True)
class Atlas:
    """T1 intensities (0..1, WM ~0.85) and tissue labels of one real head on a 1.2 mm grid, with its RAS affine."""

    t1: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    source: str  # "pydeface-mean" (or another template name)
    content_hash: str  # over template bytes + derivation version: goes into every case's meta and the cohort hash

    @property
    def spacing(self) -> float:
        return GRID_MM


def pydeface_template() -> Path:
    try:
        root = resources.files("pydeface") / "data" / "mean_reg2mean.nii.gz"
    except ModuleNotFoundError:
        raise AnatomyError("the sample cohort needs the pydeface package (pip install pydeface) for its average head") from None
    path = Path(str(root))
    if not path.exists():
        raise AnatomyError(f"{path}: pydeface's average head is missing from the installed package")
    return path


def _ball(r: int) -> np.ndarray:
    g = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1]
    return np.sum(g**2, axis=0) <= r * r


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def derive_labels(t1: np.ndarray, zooms) -> np.ndarray:
    """Label map (uint8, codes above) of the pydeface average head, on its own voxel grid."""
    d = t1.astype(np.float32)
    # The head-holder frame of the average is faint (30-60): a higher threshold and an opening drop it; a one-voxel
    # dilation then restores the soft edge of the skin.
    head = _largest(ndi.binary_opening(d > 60, _ball(3)))
    head = ndi.binary_dilation(head, iterations=1) & (d > 30)
    head = ndi.binary_fill_holes(head)
    for k in range(head.shape[2]):
        head[:, :, k] = ndi.binary_fill_holes(head[:, :, k])
    depth = ndi.distance_transform_edt(head, sampling=zooms)

    # Brain: bright tissue deep enough under the surface, cut from scalp and muscle by an erosion; the depth needed
    # grows towards the skull base where temporalis and neck muscles lie close to the brain.
    z = np.arange(d.shape[2])
    min_depth = np.interp(z, [80, 110], [24.0, 11.0])[None, None, :]
    m = (d > 180) & head & (depth > min_depth)
    m[:, :, :_FORAMEN_Z] = False
    seeds, _ = ndi.label(ndi.binary_erosion(m, iterations=5))
    seed = seeds[_BRAIN_SEED]
    if seed == 0:
        raise AnatomyError("the brain seed of the average head is not in brain tissue; template changed?")
    grid = np.indices(d.shape, dtype=np.float32)
    eyes = np.zeros(d.shape, bool)
    orbits = np.zeros(d.shape, bool)
    for c in _EYE_CENTRES:
        r2 = sum(((grid[i] - c[i]) * zooms[i]) ** 2 for i in range(3))
        eyes |= (r2 <= _EYE_RADIUS_MM**2) & head
        orbits |= r2 <= (_EYE_RADIUS_MM + 9.0) ** 2
    brain = ndi.binary_dilation(seeds == seed, iterations=6) & (d > 110) & (depth > min_depth - 2) & ~orbits
    brain[:, :, : _FORAMEN_Z - 3] = False
    brain = ndi.binary_fill_holes(ndi.binary_closing(brain, iterations=3))
    intracranial = ndi.binary_fill_holes(ndi.binary_dilation(brain, iterations=2)) & head & ~eyes

    labels = np.zeros(d.shape, np.uint8)
    labels[head] = SCALP

    # Internal air: dark, thick regions inside the head below the brain (nasal cavity, sinuses, pharynx).
    dark = (d < 70) & head & (depth > 4) & ~intracranial
    air = ndi.binary_opening(dark, iterations=2)
    # Bone: a shell just outside the intracranial space (dark there), plus the dark rim around internal air.
    dist_ic = ndi.distance_transform_edt(~intracranial, sampling=zooms)
    shell = head & ~intracranial & (((dist_ic <= 6.5) & (d < 230)) | (dist_ic <= 3.0))
    shell[:, :, : _FORAMEN_Z - 3] = False  # the intracranial mask is cut flat there; that cut is not bone
    rim = ndi.binary_dilation(air, iterations=2) & ~air & head & (d < 160) & ~intracranial
    face_bone = head & ~intracranial & (d < 120) & (depth > 5) & ~air
    labels[shell | rim | face_bone] = BONE
    labels[air] = AIR

    labels[eyes] = EYE  # spheres at the globes (the template's globes are round and ~23 mm across)

    labels[intracranial] = CSF
    labels[brain & (d >= 170)] = GM
    labels[brain & (d >= 295)] = WM

    # Lateral ventricles: darker-than-white-matter voxels deep in the brain; of the candidate components, the one
    # with most voxels off the midline high in the brain (the interhemispheric fissure and cisterns lie on it).
    deep = ndi.binary_erosion(brain, iterations=8)
    box = np.zeros_like(deep)
    box[60:118, 95:190, 100:160] = True
    lab, n = ndi.label(deep & box & (d < 245))
    off_midline = (np.abs(grid[0] - _BRAIN_SEED[0]) >= 5) & (grid[2] >= 125)
    score = np.bincount(lab[off_midline].ravel(), minlength=n + 1)
    score[0] = 0
    vent = lab == int(np.argmax(score))
    if vent.sum() < 2000:
        raise AnatomyError("could not find the lateral ventricles in the average head")
    labels[vent] = VENTRICLE
    ys = np.nonzero(vent)[1]
    front_y = ys.max() - 0.38 * (ys.max() - ys.min())
    fh = vent & (grid[1] >= front_y)
    labels[fh] = FRONTAL_HORN
    return labels


def _resample_to_grid(t1: np.ndarray, labels: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop to the head and resample onto an axis-aligned GRID_MM grid (T1 linear, labels nearest)."""
    idx = np.argwhere(labels > 0)
    lo, hi = idx.min(0) - 4, idx.max(0) + 5
    corners = np.array([[i, j, k] for i in (lo[0], hi[0]) for j in (lo[1], hi[1]) for k in (lo[2], hi[2])], float)
    world = corners @ affine[:3, :3].T + affine[:3, 3]
    wlo, whi = world.min(0), world.max(0)
    shape = np.ceil((whi - wlo) / GRID_MM).astype(int)
    new_affine = np.diag([GRID_MM, GRID_MM, GRID_MM, 1.0])
    new_affine[:3, 3] = wlo
    inv = np.linalg.inv(affine)
    mat = inv[:3, :3] @ new_affine[:3, :3]
    off = inv[:3, :3] @ new_affine[:3, 3] + inv[:3, 3]
    t1_new = ndi.affine_transform(t1, mat, off, output_shape=tuple(shape), order=1, mode="constant", cval=0.0)
    lab_new = ndi.affine_transform(labels, mat, off, output_shape=tuple(shape), order=0, mode="constant", cval=0)
    return t1_new.astype(np.float32), lab_new.astype(np.uint8), new_affine


def load_atlas(cache_dir=None) -> Atlas:
    """The labelled average head, derived on first use and cached (a few MB, compressed)."""
    path = pydeface_template()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    key = content_key(anatomy=ANATOMY_VERSION, template=digest, grid_mm=GRID_MM)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / "anatomy" / f"pydeface-mean-{key[:16]}.npz"
    if target.exists():
        try:
            with np.load(target) as z:
                return Atlas(z["t1"], z["labels"], z["affine"], "pydeface-mean", key)
        except (OSError, ValueError, KeyError):
            target.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, never trusted
    img = nib.load(str(path))
    t1 = np.asarray(img.get_fdata(dtype=np.float32))
    labels = derive_labels(t1, img.header.get_zooms()[:3])
    wm = float(np.median(t1[labels == WM]))
    t1_grid, lab_grid, affine = _resample_to_grid(t1 / wm * 0.85, labels, np.asarray(img.affine, float))
    buf = io.BytesIO()
    np.savez_compressed(buf, t1=t1_grid, labels=lab_grid, affine=affine)
    atomic_write_bytes(target, buf.getvalue())
    return Atlas(t1_grid, lab_grid, affine, "pydeface-mean", key)
