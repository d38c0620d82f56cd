"""Test helpers for the defacer tests: real heads when installed, and a minimal synthetic CT made from an MR head.

The synthetic CT only needs what defacers and QC look at: air, skin/soft tissue, fat, a skull shell, and brain
with CSF/grey/white contrast in Hounsfield units. (A realistic CT phantom generator lives with the cohorts.)
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
from scipy import ndimage

from harness.imaging.brainmask import head_mask, mr_brain_mask
from harness.imaging.io import load_nifti
from harness.core.volume import Volume

COLIN27 = Path("/usr/share/mricron/templates/ch2.nii.gz")
COLIN27_BRAIN = Path("/usr/share/mricron/templates/ch2bet.nii.gz")


def pydeface_head_path() -> Path:
    return Path(str(importlib.resources.files("pydeface") / "data" / "mean_reg2mean.nii.gz"))


def synthetic_ct(mr: Volume, seed: int = 0) -> Volume:
    """Tissue classes of an MR head mapped to HU: air -1000, fat -90, soft tissue 40, bone 1100, CSF 8, GM 38, WM 28."""
    data = mr.data
    head = ndimage.binary_fill_holes(head_mask(mr))
    brain = mr_brain_mask(mr)
    out = np.full(mr.shape, -1000.0, dtype=np.float32)
    lo_b, hi_b = np.percentile(data[brain], [25, 70])
    out[brain] = np.where(data[brain] < lo_b, 8.0, np.where(data[brain] < hi_b, 38.0, 28.0))
    outside = head & ~brain
    distance = ndimage.distance_transform_edt(~brain, sampling=mr.spacing)
    level = float(np.percentile(data[outside], 60))
    # A closed shell 2-7 mm outside the brain (a skull base too), thickened where the MR is dark (bone).
    skull = outside & (((distance > 2.0) & (distance <= 7.0)) | ((distance <= 8.0) & (data < level)))
    out[outside] = np.where(data[outside] > np.percentile(data[outside], 85), -90.0, 40.0)
    out[skull] = 1100.0
    rng = np.random.default_rng(seed)
    out += rng.normal(0.0, 5.0, size=out.shape).astype(np.float32)
    return Volume(np.round(out), mr.affine, "CT", {})


def colin27() -> Volume:
    return load_nifti(COLIN27)
