"""The QC record every defacer gets from the base class (`Defacer.deface`), whatever its `_deface` returns."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import defacers
from defacers import Defacer, DefacerError, DefacerOutput
from harness.imaging.brainmask import brain_mask
from tests.conftest import make_head


class FrontHalfRemover(Defacer):
    """A careless defacer: its 'face' region is the whole front half of the head, frontal brain included."""

    name = "test:front-half"
    version = "0"

    def _deface(self, volume):
        face = np.zeros(volume.shape, bool)
        face[:, volume.shape[1] * 5 // 8:, :] = True
        return DefacerOutput(np.where(face, 0.0, volume.data), face, timings={"deface": 0.0}, qc={"note": "careless"})


def test_brain_damage_is_measured_on_the_original_brain():
    head = make_head()
    result = FrontHalfRemover().deface(head)
    removed_brain = int((brain_mask(head) & result.changed).sum())
    assert removed_brain > 0  # the test head really has brain in the removed region
    # A brain mask of the defaced volume no longer holds the removed brain, and would report 0 here.
    assert result.qc["brain_voxels_changed"] == removed_brain
    assert result.qc["brain_voxels"] == int(brain_mask(head).sum())


def test_the_base_class_completes_the_record():
    head = make_head()
    result = FrontHalfRemover().deface(head)
    qc = result.qc
    assert qc["defacer"] == {"name": "test:front-half", "version": "0", "params": {}}
    assert qc["note"] == "careless"  # the defacer's own entries are kept
    assert qc["voxels_changed"] == int(result.changed.sum()) > 0
    assert qc["changed_outside_face_region"] == 0 and qc["face_fraction_changed"] > 0.9
    assert "registration" not in qc  # none was given
    assert set(result.timings) == {"deface", "qc", "total"}
    np.testing.assert_array_equal(result.changed, result.volume.data != head.data)


def test_voxels_are_clipped_and_rounded_like_the_input():
    head = make_head(modality="CT")  # integer HU

    class Overshoot(Defacer):
        name = "test:overshoot"

        def _deface(self, volume):
            return DefacerOutput(volume.data + 1e6 + 0.3, face=None)

    out = Overshoot().deface(head).volume.data
    assert out.max() == head.data.max() and np.array_equal(out, np.round(out))


def test_a_defacer_that_changes_the_grid_is_a_bug_report():
    class Cropper(Defacer):
        name = "test:cropper"

        def _deface(self, volume):
            return DefacerOutput(volume.data[1:], face=None)

    with pytest.raises(DefacerError, match="test:cropper changed the volume's geometry"):
        Cropper().deface(make_head())


def test_original_is_the_input_with_its_trivial_record():
    head = make_head()
    result = defacers.get("original").deface(head)
    assert result.volume is head and not result.changed.any()
    assert "brain_voxels" not in result.qc  # no brain mask is computed for the identity
    assert result.qc["brain_voxels_changed"] == 0


# --- each native family, on a real head, with a face region that reaches into the brain ------------------------------

def _frontal_lobe_cut(face: np.ndarray, volume, mm: float = 15.0) -> np.ndarray:
    """The face region and the front `mm` of the brain: a face mask that cuts into the frontal lobe."""
    brain = brain_mask(volume)
    ys = np.nonzero(brain.any(axis=(0, 2)))[0]
    front = np.arange(volume.shape[1]) > ys.max() - mm / volume.spacing[1]
    return face | (brain & front[None, :, None])


@pytest.fixture(scope="module")
def colin():
    from tests.defacer_helpers import COLIN27, colin27

    if not COLIN27.is_file():
        pytest.skip("Colin27 (Debian package mricron-data) is not installed")
    return colin27()


@pytest.mark.slow
@pytest.mark.parametrize("family", ["quickshear", "deface", "reface"])
def test_each_native_defacer_reports_the_brain_it_removed(family, colin, monkeypatch):
    """A defacer whose cut reaches the brain must say so: counted on the original's brain mask, never the defaced
    volume's (which no longer holds the removed brain and would report nothing)."""
    import dataclasses

    module = importlib.import_module(f"defacers.{family}")
    if family == "quickshear":
        real_shear = module.shear_region
        monkeypatch.setattr(module, "shear_region", lambda brain, spacing, buffer_mm: real_shear(brain, spacing, -30.0))
    else:
        real_fit = module.fit_template
        monkeypatch.setattr(module, "fit_template",
                            lambda volume: (lambda fit: dataclasses.replace(fit, face=_frontal_lobe_cut(fit.face, volume)))(real_fit(volume)))
    result = defacers.get(family).deface(colin)
    removed_brain = int((brain_mask(colin) & result.changed).sum())
    assert removed_brain > 500
    assert result.qc["brain_voxels_changed"] == removed_brain
