"""Native defacers on real heads (Colin27, the pydeface average head) and a synthetic CT made from Colin27."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import defacers
from tests.defacer_helpers import COLIN27, COLIN27_BRAIN, colin27, pydeface_head_path, synthetic_ct
from defacers.base import DefacerError
from defacers import registration
from harness.imaging.io import load_nifti, load_volume, save_nifti
from defacers.registration import RegistrationError
from harness.core.volume import Volume

needs_colin = pytest.mark.skipif(not COLIN27.is_file(), reason="Colin27 (Debian package mricron-data) is not installed")
NATIVE = ("quickshear", "deface", "reface")


@pytest.fixture(scope="module")
def colin():
    if not COLIN27.is_file():
        pytest.skip("Colin27 (Debian package mricron-data) is not installed")
    return colin27()


@pytest.fixture(scope="module")
def colin_results(colin):
    return {name: defacers.get(name).deface(colin) for name in NATIVE}


@pytest.fixture(scope="module")
def ct(colin):
    return synthetic_ct(colin)


@pytest.fixture(scope="module")
def ct_results(ct):
    return {name: defacers.get(name).deface(ct) for name in NATIVE}


def test_registry_names_identity_and_unknown():
    assert {"original", "quickshear", "deface", "reface", "external:pydeface", "external:cmd"} <= set(defacers.names())
    d = defacers.get("quickshear", buffer_mm=5)
    assert d.identity["name"] == "quickshear" and d.identity["params"] == {"buffer_mm": 5.0}
    assert d.identity["version"] == d.version and len(d.identity["template"]) == 16  # the template's content key
    assert defacers.get("quickshear").identity != d.identity
    with pytest.raises(DefacerError, match="unknown defacer 'nope'"):
        defacers.get("nope")
    with pytest.raises(DefacerError, match="does not take"):
        defacers.get("deface", strength=3)


def test_original_changes_nothing():
    v = Volume(np.arange(27, dtype=np.float32).reshape(3, 3, 3), np.eye(4), "MR")
    out = defacers.get("original").deface(v)
    assert out.volume is v and not out.changed.any()
    assert out.qc["brain_voxels_changed"] == 0 and out.qc["face_fraction_changed"] == 0.0


def _check_common(original: Volume, result, name: str):
    assert result.volume.shape == original.shape
    np.testing.assert_array_equal(result.volume.affine, original.affine)
    assert result.volume.modality == original.modality
    np.testing.assert_array_equal(result.changed, result.volume.data != original.data)
    qc = result.qc
    assert qc["defacer"]["name"] == name
    assert qc["face_fraction_changed"] > 0.3, qc
    # a new face sits close to where the old one was; removal leaves a hole
    assert qc["face_surface_change_mm"] > (2.0 if name == "reface" else 5.0), qc
    assert qc["registration"]["metric"] < qc["registration"]["max_metric"]
    if name in ("deface", "reface"):
        assert qc["brain_voxels_changed"] == 0
        assert qc["changed_outside_face_region"] == 0
        assert qc["face_fraction_changed"] > 0.9
    lo, hi = original.intensity_range
    assert result.volume.data.min() >= lo and result.volume.data.max() <= hi


@pytest.mark.parametrize("name", NATIVE)
def test_native_defacers_on_colin27(colin, colin_results, name):
    _check_common(colin, colin_results[name], name)


@pytest.mark.parametrize("name", NATIVE)
def test_native_defacers_on_synthetic_ct(ct, ct_results, name):
    _check_common(ct, ct_results[name], name)


def test_deface_makes_face_air(colin, colin_results, ct, ct_results):
    mr, c = colin_results["deface"], ct_results["deface"]
    assert np.all(mr.volume.data[mr.changed] == colin.data.min())
    assert np.all(c.volume.data[c.changed] == -1000.0)


def test_quickshear_cuts_anterior_inferior_only(colin, colin_results):
    changed = colin_results["quickshear"].changed
    idx = np.argwhere(changed)
    # everything removed lies in front of the head's centre; the plane rises towards the front, so it may clip
    # the lower forehead, but never the top of the head
    assert idx[:, 1].min() > colin.shape[1] * 0.3
    assert idx[:, 2].max() < colin.shape[2] * 0.7


def test_reface_is_a_head_not_a_hole(colin, colin_results, ct_results):
    from harness.imaging.brainmask import head_threshold

    mr = colin_results["reface"]
    new = mr.volume.data[mr.changed]
    head_level = head_threshold(colin)
    # much of the replaced region is tissue again, with intensities in the subject's own head range
    assert np.mean(new > head_level) > 0.3
    assert np.percentile(new, 99) <= np.percentile(colin.data[colin.data > head_level], 99.9)
    ct_new = ct_results["reface"].volume.data[ct_results["reface"].changed]
    tissue = ct_new[ct_new > -300]
    assert tissue.size > 1000 and np.all(tissue < 250)  # soft tissue, no bone invented


def test_reface_is_reproducible(colin, colin_results):
    again = defacers.get("reface").deface(colin)
    np.testing.assert_array_equal(again.volume.data, colin_results["reface"].volume.data)


@needs_colin
def test_refuses_flipped_header(colin):
    flipped = colin.with_data(colin.data[:, ::-1, :].copy())
    with pytest.raises(RegistrationError, match="anterior-posterior"):
        defacers.get("deface").deface(flipped)


@needs_colin
def test_refuses_skull_stripped():
    if not COLIN27_BRAIN.is_file():
        pytest.skip("ch2bet (Debian package mricron-data) is not installed")
    brain = load_nifti(COLIN27_BRAIN)
    with pytest.raises(RegistrationError, match="skull-stripped"):
        defacers.get("reface").deface(brain)


@pytest.mark.slow
def test_refuses_flipped_and_skull_stripped_ct(ct):
    from harness.imaging.brainmask import brain_mask

    with pytest.raises(RegistrationError, match="anterior-posterior"):
        defacers.get("reface").deface(ct.with_data(ct.data[:, ::-1, :].copy()))
    with pytest.raises(RegistrationError, match="skull-stripped"):
        defacers.get("deface").deface(ct.with_data(np.where(brain_mask(ct), ct.data, -1000.0)))


def test_refuses_blank():
    blank = Volume(np.zeros((60, 70, 60), np.float32), np.eye(4), "MR")
    for name in NATIVE:
        with pytest.raises(RegistrationError, match="blank"):
            defacers.get(name).deface(blank)


@pytest.mark.parametrize("name", NATIVE)
def test_dtype_round_trip(tmp_path, colin, colin_results, ct, ct_results, name):
    for original, result, dtype in ((colin, colin_results[name], np.uint8), (ct, ct_results[name], np.int16)):
        path = save_nifti(result.volume, tmp_path / f"{name}.nii.gz")
        assert nib.load(str(path)).get_data_dtype() == dtype
        back = load_nifti(path, modality=original.modality)
        np.testing.assert_array_equal(back.data, result.volume.data)


@pytest.mark.slow
def test_float_input_stays_float(tmp_path, colin):
    v = colin.with_data(colin.data * np.float32(0.37))
    result = defacers.get("deface").deface(v)
    path = save_nifti(result.volume, tmp_path / "f.nii.gz")
    assert nib.load(str(path)).get_data_dtype() == np.float32
    np.testing.assert_array_equal(load_nifti(path).data, result.volume.data)


def test_cache_hit_does_not_recompute(tmp_path, colin, monkeypatch):
    d = defacers.get("quickshear")
    first = defacers.deface_cached(d, colin, tmp_path)
    assert not first.from_cache
    monkeypatch.setattr(d, "_deface", lambda v: pytest.fail("recomputed despite a cache hit"))
    second = defacers.deface_cached(d, colin, tmp_path)
    assert second.from_cache
    np.testing.assert_array_equal(second.volume.data, first.volume.data)
    np.testing.assert_array_equal(second.changed, first.changed)
    assert second.volume.content_hash == first.volume.content_hash
    assert second.qc["face_surface_change_mm"] == pytest.approx(first.qc["face_surface_change_mm"])
    # another defacer identity is another entry
    other = defacers.deface_cached(defacers.get("quickshear", buffer_mm=4), colin, tmp_path)
    assert not other.from_cache
    assert len(list((tmp_path / "defaced").iterdir())) == 2


def test_a_sample_reads_only_the_defaced_voxels_of_a_cached_entry(tmp_path, colin):
    """A cached defaced volume is shown without reading the original's voxels or the change mask; what it shows
    is what deface_cached gives."""
    from harness.imaging.io.lazy import LazyVolume, remembered_volume

    path = save_nifti(colin, tmp_path / "colin.nii.gz")
    load = lambda: load_nifti(path, modality="MR")  # noqa: E731
    cache = tmp_path / "cache"
    original = remembered_volume(path, load, cache, modality="MR")
    d = defacers.get("quickshear")
    expected = defacers.deface_cached(d, original, cache)
    defacers.defaced_volume(d, original, cache)  # remembers the defaced file's hash
    (cache / "defaced" / next(p.name for p in (cache / "defaced").iterdir()) / "changed.nii.gz").unlink()
    lazy_original = remembered_volume(path, load, cache, modality="MR")
    shown = defacers.defaced_volume(d, lazy_original, cache)
    assert isinstance(lazy_original, LazyVolume) and isinstance(shown, LazyVolume)
    np.testing.assert_array_equal(shown.data, expected.volume.data)
    assert dict(shown.meta) == dict(expected.volume.meta) and shown.content_hash == expected.volume.content_hash
    assert not lazy_original.loaded  # its header came from the memo


@pytest.mark.slow
@pytest.mark.parametrize("codes", [("L", "P", "S"), ("P", "I", "R"), ("A", "S", "L")])
def test_orientation_invariance(tmp_path, colin, colin_results, codes):
    """The same head stored LPS / PIR / ASL gives the same defaced voxels once loaded (canonical RAS)."""
    ras = nib.Nifti1Image(colin.data.astype(np.uint8), colin.affine)
    transform = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt(codes))
    stored = ras.as_reoriented(transform)
    assert nib.aff2axcodes(stored.affine) == codes
    path = tmp_path / "stored.nii.gz"
    nib.save(stored, str(path))
    v = load_volume(path)
    registration.clear_memo()
    for name in ("deface", "reface"):
        result = defacers.get(name).deface(v)
        np.testing.assert_array_equal(result.volume.data, colin_results[name].volume.data)


@pytest.mark.slow
def test_native_defacers_on_pydeface_template():
    head = load_nifti(pydeface_head_path())
    for name in NATIVE:
        _check_common(head, defacers.get(name).deface(head), name)
