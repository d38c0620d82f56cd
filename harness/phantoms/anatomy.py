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

from harness.core.files import atomic_write_bytes
from harness.core.hashing import content_key
from harness.core.config import default_cache_dir
from harness.core.errors import HarnessError
from harness.imaging.brainmask import largest_component

ANATOMY_VERSION = 8
GRID_MM = 1.2
# The template T1 (white matter 0.85) at the skin: where a face render of the template itself puts it (0.6 x Otsu
# = 0.21). Lower levels raise the faint head-holder frame in front of the template's eyes (0.1-0.2) as skin.
SKIN_T1 = 0.2

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
TEMPLATE_EYE_CENTRES = ((60, 197, 92), (117, 197, 92))
_EYE_RADIUS_MM = 11.5
_BRAIN_SEED = (88, 128, 130)
_FORAMEN_Z = 62
COLIN27_DIR = Path("/usr/share/mricron/templates")


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



def derive_labels(t1: np.ndarray, zooms) -> np.ndarray:
    """Label map (uint8, codes above) of the pydeface average head, on its own voxel grid."""
    d = t1.astype(np.float32)
    # The head-holder frame of the average is faint (30-60): a higher threshold and an opening drop it; a one-voxel
    # dilation then restores the soft edge of the skin.
    head = _head_mask(d, 60, 30)
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
    eyes, orbits = _eyes(d.shape, zooms, TEMPLATE_EYE_CENTRES, head)
    brain = ndi.binary_dilation(seeds == seed, iterations=6) & (d > 110) & (depth > min_depth - 2) & ~orbits
    brain[:, :, : _FORAMEN_Z - 3] = False
    brain = ndi.binary_fill_holes(ndi.binary_closing(brain, iterations=3))
    box = (slice(60, 118), slice(95, 190), slice(100, 160))
    return _assemble(d, zooms, head, depth, brain, eyes, floor_z=_FORAMEN_Z - 3, midline_x=_BRAIN_SEED[0], upper_z=125,
                     ventricle_box=box, thresholds=dict(air=70, shell=230, rim=160, face_bone=120, gm=170, wm=295, vent=245))


def derive_colin_labels(t1: np.ndarray, brain_mask: np.ndarray, zooms) -> np.ndarray:
    """Label map of Colin27 (ch2.nii.gz, 1 mm MNI grid) using its brain mask ch2bet.nii.gz."""
    d = t1.astype(np.float32)
    head = _head_mask(d, 20, 8)
    depth = ndi.distance_transform_edt(head, sampling=zooms)
    eyes, orbits = _eyes(d.shape, zooms, ((57, 188, 36), (125, 188, 36)), head)
    brain = ndi.binary_fill_holes(brain_mask & head & ~orbits)
    floor = int(np.nonzero(brain.any(axis=(0, 1)))[0].min())
    box = (slice(58, 124), slice(85, 178), slice(68, 128))
    return _assemble(d, zooms, head, depth, brain, eyes, floor_z=floor, midline_x=90, upper_z=88,
                     ventricle_box=box, thresholds=dict(air=18, shell=60, rim=40, face_bone=30, gm=50, wm=96, vent=52))


def _head_mask(d: np.ndarray, threshold: float, edge: float) -> np.ndarray:
    head = largest_component(ndi.binary_opening(d > threshold, _ball(3)))
    head = ndi.binary_dilation(head, iterations=1) & (d > edge)
    head = ndi.binary_fill_holes(head)
    for k in range(head.shape[2]):
        head[:, :, k] = ndi.binary_fill_holes(head[:, :, k])
    return head


def _eyes(shape, zooms, centres, head) -> tuple[np.ndarray, np.ndarray]:
    """Globes as spheres at the template's eye centres (read off by eye), and the orbits around them."""
    grid = np.indices(shape, dtype=np.float32)
    eyes = np.zeros(shape, bool)
    orbits = np.zeros(shape, bool)
    for c in centres:
        r2 = sum(((grid[i] - c[i]) * zooms[i]) ** 2 for i in range(3))
        eyes |= (r2 <= _EYE_RADIUS_MM**2) & head
        orbits |= r2 <= (_EYE_RADIUS_MM + 9.0) ** 2
    return eyes, orbits


def _assemble(d, zooms, head, depth, brain, eyes, *, floor_z, midline_x, upper_z, ventricle_box, thresholds) -> np.ndarray:
    """Tissue labels from a head mask, a brain mask and intensity thresholds (in the template's own units)."""
    t = thresholds
    intracranial = ndi.binary_fill_holes(ndi.binary_dilation(brain, iterations=2)) & head & ~eyes
    labels = np.zeros(d.shape, np.uint8)
    labels[head] = SCALP

    # Internal air: dark, thick regions inside the head below the brain (nasal cavity, sinuses, pharynx).
    dark = (d < t["air"]) & head & (depth > 4) & ~intracranial
    air = ndi.binary_opening(dark, iterations=2)
    # Bone: a shell just outside the intracranial space (dark there), plus the dark rim around internal air.
    dist_ic = ndi.distance_transform_edt(~intracranial, sampling=zooms)
    shell = head & ~intracranial & (((dist_ic <= 6.5) & (d < t["shell"])) | (dist_ic <= 3.0))
    shell[:, :, :floor_z] = False  # the intracranial mask is cut flat there; that cut is not bone
    rim = ndi.binary_dilation(air, iterations=2) & ~air & head & (d < t["rim"]) & ~intracranial
    face_bone = head & ~intracranial & (d < t["face_bone"]) & (depth > 5) & ~air
    labels[shell | rim | face_bone] = BONE
    labels[air] = AIR
    labels[eyes] = EYE  # spheres at the globes (the templates' globes are round and ~23 mm across)

    labels[intracranial] = CSF
    labels[brain & (d >= t["gm"])] = GM
    labels[brain & (d >= t["wm"])] = WM

    # Lateral ventricles: darker-than-white-matter voxels deep in the brain; of the candidate components, the one
    # with most voxels off the midline high in the brain (the interhemispheric fissure and cisterns lie on it).
    grid = np.indices(d.shape, dtype=np.float32)
    deep = ndi.binary_erosion(brain, iterations=8)
    box = np.zeros_like(deep)
    box[ventricle_box] = True
    lab, n = ndi.label(deep & box & (d < t["vent"]))
    off_midline = (np.abs(grid[0] - midline_x) >= 5) & (grid[2] >= upper_z)
    score = np.bincount(lab[off_midline].ravel(), minlength=n + 1)
    score[0] = 0
    vent = lab == int(np.argmax(score))
    if vent.sum() < 2000:
        raise AnatomyError("could not find the lateral ventricles in the template")
    labels[vent] = VENTRICLE
    ys = np.nonzero(vent)[1]
    front_y = ys.max() - 0.38 * (ys.max() - ys.min())
    labels[vent & (grid[1] >= front_y)] = FRONTAL_HORN
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


def colin27_files() -> tuple[Path, Path] | None:
    """Colin27 and its brain mask from Debian's mricron-data, when installed (optional)."""
    head, brain = COLIN27_DIR / "ch2.nii.gz", COLIN27_DIR / "ch2bet.nii.gz"
    return (head, brain) if head.exists() and brain.exists() else None


def atlas_key(name: str, sources: list[Path]) -> str:
    """An atlas's content hash, from its template files alone (no need to derive or read the atlas)."""
    digest = hashlib.sha256(b"".join(hashlib.sha256(p.read_bytes()).digest() for p in sources)).hexdigest()
    derivation = {"derivation": DERIVATION_VERSIONS[name]} if name in DERIVATION_VERSIONS else {}
    return content_key(anatomy=ANATOMY_VERSION, name=name, template=digest, grid_mm=GRID_MM, **derivation)


def _cached_atlas(name: str, sources: list[Path], derive, cache_dir, *, on_grid: bool = False) -> Atlas:
    """The atlas `name` made from `sources` by derive() -> (t1, labels, affine), remembered under cache_dir.
    derive gives the template's own grid and intensities (normalised and resampled here), or with on_grid=True an
    atlas grid and normalised T1 already (an atlas derived from another)."""
    key = atlas_key(name, sources)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / "anatomy" / f"{name}-{key[:16]}.npz"
    if target.exists():
        try:
            with np.load(target) as z:
                return Atlas(z["t1"], z["labels"], z["affine"], name, key)
        except (OSError, ValueError, KeyError):
            target.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, never trusted
    t1, labels, affine = derive()
    if not on_grid:
        wm = float(np.median(t1[labels == WM]))
        t1, labels, affine = _resample_to_grid(t1 / wm * 0.85, labels, affine)
    buf = io.BytesIO()
    np.savez_compressed(buf, t1=t1, labels=labels, affine=affine)
    atomic_write_bytes(target, buf.getvalue())
    return Atlas(t1, labels, affine, name, key)


def load_atlas(cache_dir=None) -> Atlas:
    """The labelled pydeface average head (always available), derived on first use and cached (~5 MB)."""
    path = pydeface_template()

    def derive():
        img = nib.load(str(path))
        t1 = np.asarray(img.get_fdata(dtype=np.float32))
        return t1, derive_labels(t1, img.header.get_zooms()[:3]), np.asarray(img.affine, float)

    return _cached_atlas(PYDEFACE_ATLAS, [path], derive, cache_dir)


PYDEFACE_ATLAS, COLIN27_ATLAS, COLIN27_FACE_ATLAS = "pydeface-mean", "colin27", "pydeface-colin27-face"
# Bumped whenever an atlas derived from another changes (face_sources for the Colin27 face).
DERIVATION_VERSIONS = {COLIN27_FACE_ATLAS: 2}
# Atlases on the pydeface head's world and skull (the face features' landmarks hold on them).
PYDEFACE_HEADS = (PYDEFACE_ATLAS, COLIN27_FACE_ATLAS)


def load_colin27_face(cache_dir=None) -> Atlas | None:
    """The pydeface atlas with Colin27's face (harness.phantoms.face_sources) when mricron-data is installed; on the
    pydeface atlas's own grid, derived from it in a few seconds and cached."""
    files = colin27_files()
    if files is None:
        return None

    def derive():
        from harness.imaging.io import load_volume
        from harness.phantoms.face_sources import colin27_face

        base = load_atlas(cache_dir)
        return (*colin27_face(base.t1, base.labels, base.affine, load_volume(files[0]), SKIN_T1), base.affine)

    return _cached_atlas(COLIN27_FACE_ATLAS, [pydeface_template(), files[0]], derive, cache_dir, on_grid=True)


def load_colin27(cache_dir=None) -> Atlas | None:
    """The labelled Colin27 head when mricron-data is installed, else None."""
    files = colin27_files()
    if files is None:
        return None

    def derive():
        img = nib.load(str(files[0]))
        t1 = np.asarray(img.get_fdata(dtype=np.float32))
        brain = np.asarray(nib.load(str(files[1])).dataobj) > 0
        return t1, derive_colin_labels(t1, brain, img.header.get_zooms()[:3]), np.asarray(img.affine, float)

    return _cached_atlas(COLIN27_ATLAS, list(files), derive, cache_dir)


def load_atlases(cache_dir=None, *, include_colin27: bool = False) -> list[Atlas]:
    """The heads the sample cohorts are built from: the pydeface average, and the same head with Colin27's face when
    mricron-data is installed (a second real face: one source makes one person to a face-recognition model).

    Colin27 phantoms (include_colin27=True, when mricron-data is installed) have sharper brains, but their face
    soft tissue comes out too dark: the template-based defacers then find almost no face to remove (27 % face
    overlap, refused).
    """
    colin = load_colin27(cache_dir) if include_colin27 else None
    return [a for a in (load_atlas(cache_dir), load_colin27_face(cache_dir), colin) if a is not None]


def atlas_keys(*, include_colin27: bool = False) -> list[str]:
    """The content hashes of load_atlases(...)'s atlases, in its order, without deriving or reading them."""
    files = colin27_files()
    keys = [atlas_key(PYDEFACE_ATLAS, [pydeface_template()])]
    if files:
        keys.append(atlas_key(COLIN27_FACE_ATLAS, [pydeface_template(), files[0]]))
    if files and include_colin27:
        keys.append(atlas_key(COLIN27_ATLAS, list(files)))
    return keys
