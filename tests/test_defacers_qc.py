"""The QC record every defacer gets from the base class (`Defacer.deface`), whatever its `_deface` returns."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import defacers
from defacers import Defacer, DefacerError, DefacerOutput
from harness.core.volume import Volume
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


def test_co_registered_contrasts_are_measured_with_the_reference_brain_mask(tmp_path):
    flair = make_head()
    # another contrast of the case on the same grid, whose brain sits further back: its mask must be the one used
    t1 = flair.with_data(np.roll(flair.data, -8, axis=1))
    remover = FrontHalfRemover()
    own = remover.deface(flair)
    assert own.qc["brain_mask_from"] == "own"
    measured = remover.deface(flair, brain_reference=t1)
    assert measured.qc["brain_mask_from"] == "reference"
    expected = int((brain_mask(t1) & measured.changed).sum())
    assert measured.qc["brain_voxels_changed"] == expected != own.qc["brain_voxels_changed"]
    assert measured.qc["brain_voxels"] == int(brain_mask(t1).sum())
    np.testing.assert_array_equal(measured.volume.data, own.volume.data)  # only the QC depends on the reference
    # a reference on another grid is not used, and the record says why
    moved = t1.affine.copy()
    moved[0, 3] += 2.0
    shifted = Volume(t1.data, moved, "MR", {})
    other = remover.deface(flair, brain_reference=shifted)  # (the same voxels, one world position moved)
    assert other.qc["brain_mask_from"] == "own (the reference is on another grid)"
    assert other.qc["brain_voxels_changed"] == own.qc["brain_voxels_changed"]
    cropped = Volume(t1.data[:, :, :-2], t1.affine, "MR", {})  # same mapping, fewer slices
    assert remover.deface(flair, brain_reference=cropped).qc["brain_mask_from"] == "own (the reference is on another grid)"
    # the cache keeps the two measures apart: same volume and defacer, another reference, another entry
    cached = defacers.deface_cached(remover, flair, tmp_path, brain_reference=t1)
    assert cached.qc["brain_voxels_changed"] == expected
    assert defacers.deface_cached(remover, flair, tmp_path).qc["brain_voxels_changed"] == own.qc["brain_voxels_changed"]
    assert defacers.deface_cached(remover, flair, tmp_path, brain_reference=t1).from_cache


def test_the_deface_stage_measures_every_tumour_contrast_with_the_t1_mask(tmp_path):
    from types import SimpleNamespace

    from harness.data.case import Case
    from harness.engine.deface_stage import DefaceStage, deface_job
    from harness.engine.grid import WorkItem
    from harness.engine.runner import Runner
    from harness.imaging.io import save_nifti
    from tasks import get_task

    flair = make_head()
    t1 = flair.with_data(np.roll(flair.data, -8, axis=1))
    paths = {role: save_nifti(v, tmp_path / f"{role}.nii.gz") for role, v in (("t1", t1), ("t1c", flair), ("t2", flair), ("flair", flair))}
    tumor, nph = get_task("tumor-dx"), get_task("nph-evans")
    cases = {("tumor-dx", "c1"): Case("c1", "tumor-dx", paths, {}), ("nph-evans", "c1"): Case("c1", "nph-evans", {"t1": paths["flair"]}, {})}
    ctx = SimpleNamespace(tasks={"tumor-dx": tumor, "nph-evans": nph}, case=lambda task, case_id: cases[task, case_id],
                          case_defacer_spec=lambda condition, case, role: (condition, {}))
    ctx.brain_reference_file = lambda task, case, role: Runner.brain_reference_file(ctx, task, case, role)
    items = [WorkItem("s1", "tumor-dx", "c1", "test:front-half", "m", "single", {}),
             WorkItem("s2", "nph-evans", "c1", "test:front-half", "m", "single", {})]
    jobs = DefaceStage(ctx).jobs(items)
    t1_path = str(paths["t1"])
    assert jobs[(str(paths["t1"]), "test:front-half", "{}", "")] == [("tumor-dx", "c1", "t1", "test:front-half")]
    assert (str(paths["flair"]), "test:front-half", "{}", t1_path) in jobs
    # the same file read by a task without co-registered contrasts is measured with its own mask: a job apart
    assert jobs[(str(paths["flair"]), "test:front-half", "{}", "")] == [("nph-evans", "c1", "t1", "test:front-half")]
    with defacers.defacer_registry.override("test:front-half", FrontHalfRemover):
        measured = deface_job(str(paths["flair"]), "MR", "test:front-half", {}, str(tmp_path / "cache"), t1_path)
        missing = deface_job(str(paths["flair"]), "MR", "test:front-half", {}, str(tmp_path / "cache"), str(tmp_path / "no-t1.nii.gz"))
    assert measured["status"] == "ok" and measured["qc"]["brain_mask_from"] == "reference"
    assert measured["qc"]["brain_voxels"] == int(brain_mask(t1).sum())
    assert missing["status"] == "failed" and "no-t1.nii.gz" in missing["error"]["message"]
