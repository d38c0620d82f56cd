"""NIfTI loading and saving: geometry, scaling, canonical orientation, dtype safety and every bad input."""

import gzip
import warnings

import nibabel as nib
import numpy as np
import pytest

from harness.core.errors import HarnessWarning, VolumeError
from harness.imaging.io import load_volume, save_nifti
from harness.core.volume import Volume
from tests.conftest import make_head


def _save(data, affine, path, **header):
    img = nib.Nifti1Image(data, affine)
    for key, value in header.items():
        img.header[key] = value
    nib.save(img, str(path))
    return path


def _reorient(volume: Volume, codes: str):
    """The same head stored with array axes in another orientation (data permuted/flipped, affine to match)."""
    target = nib.orientations.axcodes2ornt(codes)
    transform = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), target)
    data = nib.orientations.apply_orientation(volume.data, transform)
    affine = volume.affine @ nib.orientations.inv_ornt_aff(transform, volume.shape)
    return data, affine


@pytest.mark.parametrize("codes", ["LPS", "PIR", "ASL", "LAI"])
def test_any_storage_orientation_loads_to_the_same_ras_volume(tmp_path, small_head, codes):
    data, affine = _reorient(small_head, codes)
    assert "".join(nib.aff2axcodes(affine)) == codes
    v = load_volume(_save(data, affine, tmp_path / f"{codes}.nii.gz"))
    assert v.orientation == "RAS"
    assert v.meta["stored_orientation"] == codes
    np.testing.assert_array_equal(v.data, small_head.data)
    np.testing.assert_allclose(v.affine, small_head.affine, atol=1e-5)


def test_scl_slope_and_intercept_are_applied(tmp_path):
    raw = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(2.0, -1024.0)
    nib.save(img, str(tmp_path / "ct.nii.gz"))
    v = load_volume(tmp_path / "ct.nii.gz")
    np.testing.assert_array_equal(v.data, raw.astype(np.float32) * 2 - 1024)
    assert v.modality == "CT"  # values down to -1024 HU can only be CT
    assert v.data.dtype == np.float32


def test_nan_slope_means_unscaled_as_in_colin27(colin27):
    assert np.isnan(nib.load(str(colin27)).header["scl_slope"])
    v = load_volume(colin27)
    assert v.intensity_range == (0.0, 254.0)
    assert v.shape == (181, 217, 181) and v.spacing == (1.0, 1.0, 1.0) and v.modality == "MR"


def test_sform_wins_over_qform_and_qform_is_used_alone(tmp_path):
    data = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32)
    sform = np.diag([2.0, 2.0, 2.0, 1.0])
    qform = np.diag([1.0, 1.0, 3.0, 1.0])
    img = nib.Nifti1Image(data, None)
    img.set_sform(sform, code=2)
    img.set_qform(qform, code=1)
    nib.save(img, str(tmp_path / "both.nii"))
    assert load_volume(tmp_path / "both.nii").spacing == (2.0, 2.0, 2.0)
    img.set_sform(sform, code=0)
    nib.save(img, str(tmp_path / "qonly.nii"))
    assert load_volume(tmp_path / "qonly.nii").spacing == (1.0, 1.0, 3.0)


def test_missing_sform_and_qform_warns(tmp_path):
    img = nib.Nifti1Image(np.ones((5, 5, 5), np.float32), None)
    img.set_sform(None, code=0)
    img.set_qform(None, code=0)
    nib.save(img, str(tmp_path / "nogeom.nii"))
    with pytest.warns(HarnessWarning, match="neither sform nor qform"):
        load_volume(tmp_path / "nogeom.nii")


def test_modality_override(tmp_path, small_head):
    path = save_nifti(small_head, tmp_path / "head.nii.gz")
    assert load_volume(path, modality="CT").modality == "CT"
    with pytest.raises(VolumeError, match="head.nii.gz: modality must be MR or CT, got 'PET'"):
        load_volume(path, modality="PET")


@pytest.mark.parametrize(
    "values, dtype",
    [
        ([0, 1, 254], np.uint8),
        ([-1024, 0, 3071], np.int16),
        ([0, 1, 70000], np.int32),  # would wrap around in int16 or uint8
        ([0.0, 0.5, 1.25], np.float32),
    ],
)
def test_save_round_trip_chooses_a_dtype_that_cannot_overflow(tmp_path, values, dtype):
    data = np.zeros((4, 4, 4), np.float32)
    data.flat[: len(values)] = values
    v = Volume(data, np.diag([1.0, 1.2, 3.0, 1.0]), "CT" if min(values) < 0 else "MR")
    path = save_nifti(v, tmp_path / "out.nii.gz")
    assert nib.load(str(path)).get_data_dtype() == np.dtype(dtype)
    back = load_volume(path, modality=v.modality)
    np.testing.assert_array_equal(back.data, v.data)
    np.testing.assert_allclose(back.affine, v.affine)


def test_save_rejects_other_suffixes(tmp_path, small_head):
    with pytest.raises(VolumeError, match=r"\.nii or \.nii\.gz"):
        save_nifti(small_head, tmp_path / "out.img")


def test_2d_image_is_refused(tmp_path):
    path = _save(np.ones((64, 64), np.float32), np.eye(4), tmp_path / "slice.nii")
    with pytest.raises(VolumeError, match="slice.nii: is a 2D image"):
        load_volume(path)
    path = _save(np.ones((64, 64, 1), np.float32), np.eye(4), tmp_path / "slice3.nii")
    with pytest.raises(VolumeError, match="2D image"):
        load_volume(path)


def test_4d_needs_a_frame(tmp_path):
    data = np.stack([np.full((5, 6, 7), t, np.float32) for t in range(3)], axis=-1)
    path = _save(data, np.eye(4), tmp_path / "bold.nii.gz")
    with pytest.raises(VolumeError, match="4D with 3 frames.*--frame"):
        load_volume(path)
    v = load_volume(path, frame=2)
    assert v.shape == (5, 6, 7) and float(v.data.mean()) == 2.0 and v.meta["frame"] == 2
    with pytest.raises(VolumeError, match="frame 3 does not exist"):
        load_volume(path, frame=3)


def test_4d_with_one_frame_is_3d(tmp_path):
    path = _save(np.ones((5, 6, 7, 1), np.float32), np.eye(4), tmp_path / "one.nii")
    assert load_volume(path).shape == (5, 6, 7)


def test_5d_is_refused(tmp_path):
    path = _save(np.ones((5, 6, 7, 2, 3), np.float32), np.eye(4), tmp_path / "five.nii")
    with pytest.raises(VolumeError, match="only 3D or 4D"):
        load_volume(path)


def test_nan_and_inf_voxels_are_refused(tmp_path):
    data = np.ones((5, 6, 7), np.float32)
    data[0, 0, 0] = np.nan
    data[1, 1, 1] = np.inf
    with pytest.raises(VolumeError, match="nan.nii: 2 voxels are NaN or infinite"):
        load_volume(_save(data, np.eye(4), tmp_path / "nan.nii"))


def test_truncated_gzip_is_a_clear_error(tmp_path, small_head):
    path = save_nifti(small_head, tmp_path / "head.nii.gz")
    blob = path.read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(VolumeError, match="cut.nii.gz: .*(truncated|corrupt|not a readable)"):
        load_volume(tmp_path / "cut.nii.gz")


def test_garbage_file_is_a_clear_error(tmp_path):
    (tmp_path / "junk.nii").write_bytes(b"this is not a nifti file at all" * 3)
    with pytest.raises(VolumeError, match="junk.nii: not a readable NIfTI"):
        load_volume(tmp_path / "junk.nii")
    (tmp_path / "junk.nii.gz").write_bytes(gzip.compress(b"short"))
    with pytest.raises(VolumeError, match="junk.nii.gz"):
        load_volume(tmp_path / "junk.nii.gz")


def test_missing_path(tmp_path):
    with pytest.raises(VolumeError, match="nothing.nii.gz: no such file or folder"):
        load_volume(tmp_path / "nothing.nii.gz")


def test_singular_affine_is_refused(tmp_path):
    path = _save(np.ones((5, 6, 7), np.float32), np.eye(4), tmp_path / "flat.nii")
    blob = bytearray(path.read_bytes())
    blob[296:312] = np.zeros(4, "<f4").tobytes()  # srow_y := 0: the sform collapses one axis
    path.write_bytes(bytes(blob))
    with pytest.raises(VolumeError, match="singular"):
        load_volume(path)


def test_volume_is_immutable_and_hash_depends_on_content(small_head):
    with pytest.raises(ValueError):
        small_head.data[0, 0, 0] = 1
    other = small_head.with_data(small_head.data + 1)
    assert other.content_hash != small_head.content_hash
    assert make_head().content_hash == small_head.content_hash
    with pytest.raises(ValueError, match="allow-list"):
        Volume(small_head.data, small_head.affine, "MR", {"patient_name": "Doe^Jane"})


# ---- edges of what is accepted, and what a saved file holds for other tools ------------------------------------------


def test_errors_name_the_file(tmp_path):
    five = _save(np.ones((5, 6, 7, 2, 3), np.float32), np.eye(4), tmp_path / "five.nii")
    with pytest.raises(VolumeError, match=r"five.nii: has 5 dimensions \(shape \(5, 6, 7, 2, 3\)\)"):
        load_volume(five)
    bold = _save(np.ones((5, 6, 7, 3), np.float32), np.eye(4), tmp_path / "bold.nii")
    with pytest.raises(VolumeError, match=r"bold.nii: is 4D with 3 frames"):
        load_volume(bold)
    with pytest.raises(VolumeError, match=r"bold.nii: frame -1 does not exist; the volume has frames 0..2$"):
        load_volume(bold, frame=-1)


def test_first_frame_and_two_frame_4d(tmp_path):
    data = np.stack([np.full((5, 6, 7), t + 10, np.int16) for t in range(2)], axis=-1)
    path = _save(data, np.eye(4), tmp_path / "two.nii.gz")
    first, second = load_volume(path, frame=0), load_volume(path, frame=1)
    assert float(first.data.max()) == 10.0 and float(second.data.max()) == 11.0
    assert first.data.dtype == np.float32 and first.meta["frame"] == 0


def test_a_3d_volume_ignores_frame_and_does_not_record_one(tmp_path):
    path = _save(np.ones((5, 6, 7), np.float32), np.eye(4), tmp_path / "three.nii")
    v = load_volume(path, frame=0)
    assert v.shape == (5, 6, 7) and "frame" not in v.meta and v.meta["source_format"] == "nifti"


def test_two_slices_are_still_a_volume(tmp_path):
    assert load_volume(_save(np.ones((5, 6, 2), np.float32), np.eye(4), tmp_path / "thin.nii")).shape == (5, 6, 2)


def test_ct_guess_needs_values_below_minus_500(tmp_path):
    data = np.zeros((4, 4, 4), np.float32)
    data[0, 0, 0] = -500.0
    assert load_volume(_save(data, np.eye(4), tmp_path / "a.nii")).modality == "MR"
    data[0, 0, 0] = -501.0
    assert load_volume(_save(data, np.eye(4), tmp_path / "b.nii")).modality == "CT"


def test_qform_only_loads_without_a_warning(tmp_path):
    img = nib.Nifti1Image(np.ones((5, 6, 7), np.float32), None)
    img.set_qform(np.diag([1.0, 2.0, 3.0, 1.0]), code=1)
    img.set_sform(None, code=0)
    nib.save(img, str(tmp_path / "q.nii"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", HarnessWarning)
        assert load_volume(tmp_path / "q.nii").spacing == (1.0, 2.0, 3.0)


def test_singular_scanner_sform_is_refused_naming_the_sform(tmp_path):
    img = nib.Nifti1Image(np.ones((5, 6, 7), np.float32), None)
    img.set_sform(np.diag([1.0, 0.0, 1.0, 1.0]), code=1)  # scanner coordinates, one axis collapsed
    img.set_qform(np.eye(4), code=1)
    nib.save(img, str(tmp_path / "s.nii"))
    with pytest.raises(VolumeError, match="s.nii: header sform is singular or not finite"):
        load_volume(tmp_path / "s.nii")


def test_non_finite_qform_is_refused_naming_the_file(tmp_path):
    img = nib.Nifti1Image(np.ones((5, 6, 7), np.float32), None)
    img.set_sform(None, code=0)
    img.set_qform(np.eye(4), code=1)
    nib.save(img, str(tmp_path / "q0.nii"))
    blob = bytearray((tmp_path / "q0.nii").read_bytes())
    blob[268:272] = np.array([np.nan], "<f4").tobytes()  # qoffset_x := NaN: the origin is unknown
    (tmp_path / "q0.nii").write_bytes(bytes(blob))
    with pytest.raises(VolumeError, match="q0.nii: header affine is singular or not finite"):
        load_volume(tmp_path / "q0.nii")


def test_saved_file_carries_geometry_in_sform_and_qform_with_units(tmp_path):
    t = np.radians(10.0)
    affine = np.array([[1.0, 0, 0, -10], [0, 2 * np.cos(t), -3 * np.sin(t), -20], [0, 2 * np.sin(t), 3 * np.cos(t), -30], [0, 0, 0, 1]])
    v = Volume(np.arange(60, dtype=np.float32).reshape(3, 4, 5), affine, "MR")
    for name in ("plain.nii", "packed.nii.gz"):
        path = save_nifti(v, tmp_path / name)
        img = nib.load(str(path))
        sform, scode = img.header.get_sform(coded=True)
        qform, qcode = img.header.get_qform(coded=True)
        assert (int(scode), int(qcode)) == (1, 1)  # scanner coordinates, readable by tools that look at either
        np.testing.assert_allclose(sform, affine, atol=1e-5)
        np.testing.assert_allclose(qform, affine, atol=1e-5)
        assert img.header.get_xyzt_units() == ("mm", "sec")
        np.testing.assert_array_equal(load_volume(path).data, v.data)
    assert (tmp_path / "packed.nii.gz").read_bytes()[:2] == b"\x1f\x8b"  # gzip
    assert (tmp_path / "plain.nii").read_bytes()[344:348] == b"n+1\x00"  # an uncompressed single-file NIfTI-1


def test_explicit_dtype_clips_instead_of_wrapping(tmp_path):
    data = np.zeros((3, 3, 3), np.float32)
    data.flat[:3] = [-5.0, 300.0, 7.6]
    path = save_nifti(Volume(data, np.eye(4), "MR"), tmp_path / "mask.nii.gz", dtype=np.uint8)
    assert nib.load(str(path)).get_data_dtype() == np.uint8
    assert list(load_volume(path).data.flat[:3]) == [0.0, 255.0, 8.0]


@pytest.mark.parametrize("values, dtype", [([0, 255], np.uint8), ([0, 256], np.int16), ([-32768, 32767], np.int16),
                                           ([-32769, 0], np.int32), ([0, 32768], np.int32)])
def test_storage_dtype_at_the_edges_of_each_integer_range(tmp_path, values, dtype):
    data = np.zeros((3, 3, 3), np.float32)
    data.flat[:2] = values
    path = save_nifti(Volume(data, np.eye(4), "MR"), tmp_path / "edge.nii")
    assert nib.load(str(path)).get_data_dtype() == np.dtype(dtype)
    np.testing.assert_array_equal(load_volume(path).data, data)


def test_save_refusal_names_the_file(tmp_path, small_head):
    with pytest.raises(VolumeError, match=r"out.img: output name must end in \.nii or \.nii\.gz"):
        save_nifti(small_head, tmp_path / "out.img")
