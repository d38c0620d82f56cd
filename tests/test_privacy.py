"""Privacy/damage QC measures, brain masks and the registration's coordinate conventions."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.defacer_helpers import COLIN27, COLIN27_BRAIN, colin27, synthetic_ct
from harness.imaging import brainmask
from defacers import qc as privacy
from harness.imaging.io import load_nifti
from defacers.registration import to_sitk
from harness.core.volume import Volume


def _box_head(shape=(40, 50, 40)) -> Volume:
    data = np.zeros(shape, np.float32)
    data[5:35, 5:45, 5:35] = 100.0  # a "head": a box; anterior face at j = 44
    return Volume(data, np.diag([1.0, 2.0, 1.0, 1.0]), "MR")


def test_anterior_depth_in_mm():
    v = _box_head()
    depth = privacy.anterior_depth(v.data > 50, v.spacing[1])
    assert depth[20, 20] == pytest.approx((50 - 45) * 2.0)  # 5 empty voxels of 2 mm in front of the face
    assert depth[0, 0] == pytest.approx(50 * 2.0)  # a column that misses the head counts the full depth


def test_measure_counts_face_and_brain_changes():
    v = _box_head()
    face = np.zeros(v.shape, bool)
    face[:, 35:, :20] = True
    brain = np.zeros(v.shape, bool)
    brain[15:25, 15:30, 15:30] = True
    new = v.data.copy()
    new[:, 40:45, 5:20] = 0.0  # remove the front 5 voxels (10 mm) of the lower face
    changed = new != v.data
    qc = privacy.measure(v, v.with_data(new), changed, face=face, brain=brain)
    assert qc["brain_voxels_changed"] == 0
    assert qc["face_fraction_changed"] == pytest.approx(5 / 10)  # 10 face-region head voxels deep, 5 removed
    assert qc["face_surface_change_mm"] == pytest.approx(10.0)
    assert qc["changed_outside_face_region"] == 0
    new = new.copy()
    new[20, 20, 20] = 0.0
    qc = privacy.measure(v, v.with_data(new), new != v.data, face=face, brain=brain)
    assert qc["brain_voxels_changed"] == 1


def test_qc_png_is_a_deterministic_sheet():
    v = _box_head()
    new = v.data.copy()
    new[:, 40:45, 5:20] = 0.0
    png = privacy.qc_png(v, v.with_data(new), title="test")
    assert png == privacy.qc_png(v, v.with_data(new), title="test")
    img = Image.open(io.BytesIO(png))
    assert img.mode == "L" and img.width > 100 and img.height > 100


def test_to_sitk_uses_lps_physical_points():
    affine = np.array([[0.9, 0.1, 0.0, -90.0], [-0.1, 0.9, 0.0, -120.0], [0.0, 0.0, 1.2, -70.0], [0, 0, 0, 1]])
    image = to_sitk(np.zeros((4, 5, 6), np.float32), affine)
    assert image.GetSize() == (4, 5, 6)
    ijk = (3, 1, 5)
    ras = affine[:3, :3] @ ijk + affine[:3, 3]
    lps = image.TransformIndexToPhysicalPoint(ijk)
    np.testing.assert_allclose(lps, [-ras[0], -ras[1], ras[2]], atol=1e-9)


@pytest.mark.skipif(not (COLIN27.is_file() and COLIN27_BRAIN.is_file()), reason="Colin27 + ch2bet (mricron-data) not installed")
def test_mr_brain_mask_matches_ch2bet():
    mask = brainmask.brain_mask(colin27())
    reference = load_nifti(COLIN27_BRAIN).data > 0
    assert brainmask.dice(mask, reference) > 0.92  # docstring: 0.932


@pytest.mark.skipif(not COLIN27.is_file(), reason="Colin27 (mricron-data) not installed")
def test_ct_brain_mask_finds_the_intracranial_space():
    mr = colin27()
    ct = synthetic_ct(mr)
    assert brainmask.dice(brainmask.brain_mask(ct), brainmask.mr_brain_mask(mr)) > 0.9
