"""NIfTI loading and saving: geometry, scaling, canonical orientation, dtype safety and every bad input."""

import gzip

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
    with pytest.raises(VolumeError, match="modality must be MR or CT"):
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
    with pytest.raises(VolumeError, match="no such file or folder"):
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
