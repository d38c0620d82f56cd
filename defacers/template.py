"""The average head with a face and its face mask, shipped (MIT licence) in the pydeface wheel.

mean_reg2mean.nii.gz: 176 x 256 x 256, ~1 mm, T1-weighted average head. facemask.nii.gz on the same grid:
1 = keep, 0 = face. Found through importlib.resources so no path is hard-coded.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from defacers.base import Defacer, DefacerError
from harness.imaging.brainmask import head_mask, head_threshold
from harness.imaging.io import load_nifti
from defacers.registration import Registration, RegistrationError, check_fit, register_cached
from harness.core.volume import Volume


@dataclass(frozen=True, eq=False)
class HeadTemplate:
    head: Volume
    face: np.ndarray  # bool, True = face voxel (to remove or replace)
    key: str


@lru_cache(maxsize=1)
def pydeface_template() -> HeadTemplate:
    try:
        data = importlib.resources.files("pydeface") / "data"
        head_path, mask_path = data / "mean_reg2mean.nii.gz", data / "facemask.nii.gz"
        if not (head_path.is_file() and mask_path.is_file()):
            raise FileNotFoundError
    except (ModuleNotFoundError, FileNotFoundError):
        raise DefacerError(
            "the average head template is missing: it ships in the pydeface wheel (pip install pydeface==2.1.0)"
        ) from None
    head = load_nifti(str(head_path), modality="MR")
    mask = load_nifti(str(mask_path), modality="MR")
    if mask.shape != head.shape:
        raise DefacerError("pydeface template and face mask differ in shape; reinstall pydeface")
    face = mask.data < 0.5
    key = hashlib.sha256((head.content_hash + mask.content_hash).encode()).hexdigest()[:16]
    return HeadTemplate(head, face, key)


# A real head has skin where the template has its face: at least this fraction of the template's face-region head
# voxels must land on subject head voxels (Colin27 ~0.9; a skull-stripped brain ~0).
MIN_FACE_OVERLAP = 0.5


@dataclass(frozen=True, eq=False)
class TemplateFit:
    registration: Registration
    face: np.ndarray  # bool on the subject grid
    template_on_subject: np.ndarray  # template intensities resampled onto the subject grid (0 outside)
    seconds: float


def fit_template(volume: Volume) -> TemplateFit:
    """Place the template face on `volume`, or refuse (RegistrationError) when the fit is implausible."""
    start = time.perf_counter()
    tpl = pydeface_template()
    reg = register_cached(volume, tpl.head, tpl.key)
    check_fit(reg, volume.modality)
    face = reg.warp(tpl.face.astype(np.float32), tpl.head.affine, volume, linear=False, outside=0.0) > 0.5
    warped = reg.warp(tpl.head.data, tpl.head.affine, volume, linear=True, outside=0.0)
    template_face_head = face & (warped > head_threshold(tpl.head))
    n = int(template_face_head.sum())
    overlap = float((template_face_head & head_mask(volume)).sum() / n) if n else 0.0
    reg.qc["face_overlap"] = round(overlap, 3)
    if n == 0 or overlap < MIN_FACE_OVERLAP:
        raise RegistrationError(
            f"no face where the head template puts one (only {overlap:.0%} of the template's face lands on "
            f"head tissue, need {MIN_FACE_OVERLAP:.0%}); the input looks skull-stripped, cropped or not a head. "
            "Refusing to deface."
        )
    return TemplateFit(reg, face, warped, time.perf_counter() - start)


class TemplateDefacer(Defacer):
    """A defacer whose output or QC depends on the template: the template's content is part of its identity."""

    # registration to the 176x256x256 template peaks near 0.85 GB (NOTES: reface on Colin27); 1.5 GB leaves room
    resources = {"num_cpus": 1, "memory": 1_500_000_000}

    @property
    def identity(self) -> dict:
        return {**super().identity, "template": pydeface_template().key}
