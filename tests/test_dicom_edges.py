"""DICOM edge cases: enhanced files with anisotropic pixels or no rescale, malformed values inside functional
groups, rescale left out or empty, MONOCHROME1 with a non-zero minimum, slightly non-unit orientation vectors,
a gantry tilt along the row direction, and 4D frames ordered by InstanceNumber alone."""

import warnings

import numpy as np
import pydicom
import pytest

from harness.core.errors import HarnessWarning, VolumeError
from harness.core.volume import Volume
from harness.imaging.io import load_volume
from harness.imaging.io.dicom_write import write_dicom_series
from tests.conftest import make_head
from tests.dicom_factory import edit_slices, write_enhanced
from tests.test_dicom import _assert_shows_the_tilted_slices

# ---- enhanced multi-frame files ----------------------------------------------------------------------------------


def test_enhanced_file_keeps_anisotropic_pixel_spacing_in_order(tmp_path):
    head = make_head(shape=(12, 10, 6), spacing=(0.8, 1.2, 2.0), modality="CT")
    v = load_volume(write_enhanced(head, tmp_path / "enh.dcm"))
    assert v.spacing == pytest.approx((0.8, 1.2, 2.0), abs=1e-6)
    np.testing.assert_allclose(v.affine, head.affine, atol=1e-5)
    np.testing.assert_array_equal(v.data, np.round(head.data))


def test_enhanced_file_without_any_rescale_keeps_stored_values(tmp_path):
    head = make_head(shape=(12, 12, 6), modality="CT")
    path = write_enhanced(head, tmp_path / "enh.dcm")
    ds = pydicom.dcmread(path)
    del ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence
    assert "RescaleSlope" not in ds and "RescaleIntercept" not in ds
    ds.save_as(path)
    np.testing.assert_array_equal(load_volume(path).data, np.round(head.data))


def test_enhanced_transformation_without_slope_or_intercept_is_identity(tmp_path):
    head = make_head(shape=(12, 12, 6), modality="CT")
    path = write_enhanced(head, tmp_path / "enh.dcm")
    ds = pydicom.dcmread(path)
    trans = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    del trans.RescaleSlope
    del trans.RescaleIntercept
    ds.save_as(path)
    np.testing.assert_array_equal(load_volume(path).data, np.round(head.data))


def _shared(ds, seq):
    return ds.SharedFunctionalGroupsSequence[0][seq].value[0]


@pytest.mark.parametrize(
    "field, plant",
    [
        ("PixelSpacing", lambda ds: _shared(ds, "PixelMeasuresSequence").add_new(0x00280030, "LO", "1\\abc")),
        ("ImageOrientationPatient", lambda ds: _shared(ds, "PlaneOrientationSequence").add_new(0x00200037, "LO", "1\\0\\0\\0\\abc\\0")),
        ("ImagePositionPatient", lambda ds: ds.PerFrameFunctionalGroupsSequence[2].PlanePositionSequence[0].add_new(0x00200032, "LO", "0\\x\\0")),
    ],
)
def test_malformed_functional_group_values_name_the_file_and_field(tmp_path, field, plant):
    path = write_enhanced(make_head(shape=(12, 12, 6), modality="CT"), tmp_path / "enh.dcm")
    ds = pydicom.dcmread(path)
    plant(ds)
    ds.save_as(path)
    with pytest.raises(VolumeError, match=rf"enh\.dcm: {field} is malformed \(\["):
        load_volume(path)


# ---- classic single-frame series ---------------------------------------------------------------------------------


@pytest.fixture
def series(tmp_path):
    return write_dicom_series(make_head(shape=(16, 20, 10), modality="CT"), tmp_path / "series")


def test_malformed_orientation_names_the_file_and_field(series):
    edit_slices(series[2:3], lambda ds, n: ds.add_new(0x00200037, "LO", "1\\0\\0\\0\\abc\\0"))
    with pytest.raises(VolumeError, match=r"IM00003\.dcm: ImageOrientationPatient is malformed \(\['1', '0', '0', '0', 'abc', '0'\]\)"):
        load_volume(series[0].parent)


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_missing_or_empty_rescale_is_slope_one_intercept_zero(series, how):
    expected = load_volume(series[0].parent).data  # written with slope 1, intercept 0

    def strip(ds, n):
        if how == "missing":
            del ds.RescaleSlope
            del ds.RescaleIntercept
        else:
            ds.RescaleSlope, ds.RescaleIntercept = "", ""

    edit_slices(series, strip)
    np.testing.assert_array_equal(load_volume(series[0].parent).data, expected)


def test_monochrome1_is_flipped_over_the_series_range_and_never_for_ct(tmp_path):
    """Inversion swaps the two ends of the series' stored range (here 10..100, a non-zero minimum), so slices whose
    own ranges differ (a slice without the bright block) map alike.
    A CT's rescale gives Hounsfield units whatever the display convention: not flipped."""
    data = np.full((6, 8, 4), 10.0, np.float32)
    data[2:4, 2:6, 1:] = 100.0  # slice 0 holds only the background
    paths = write_dicom_series(Volume(data, np.eye(4), "MR"), tmp_path / "mr")

    def invert(ds, n):
        ds.PixelData = (110 - ds.pixel_array).astype(np.int16).tobytes()  # series range 10..100, inverted
        ds.PhotometricInterpretation = "MONOCHROME1"

    edit_slices(paths, invert)
    np.testing.assert_array_equal(load_volume(tmp_path / "mr").data, data)
    ct = np.full((6, 8, 4), -1000.0, np.float32)
    ct[2:4, 2:6, :] = 40.0
    paths = write_dicom_series(Volume(ct, np.eye(4), "CT"), tmp_path / "ct")
    edit_slices(paths, lambda ds, n: setattr(ds, "PhotometricInterpretation", "MONOCHROME1"))
    np.testing.assert_array_equal(load_volume(tmp_path / "ct").data, ct)


def test_orientation_vectors_slightly_off_unit_length_do_not_scale_the_slice_step(series):
    # some writers round ImageOrientationPatient loosely: vectors of norm 1.004 are accepted, and the slice step
    # still comes from the positions (2 mm), not from the positions times the normal's length
    edit_slices(series, lambda ds, n: setattr(ds, "ImageOrientationPatient", [float(v) * 1.004 for v in ds.ImageOrientationPatient]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", HarnessWarning)  # and no spurious gantry tilt
        v = load_volume(series[0].parent)
    assert v.shape == (16, 20, 10)
    assert v.spacing[2] == pytest.approx(2.0, abs=1e-4)
    assert "gantry_tilt_deg" not in v.meta


def test_4d_frames_follow_instance_number_when_nothing_else_orders_them(tmp_path):
    first = make_head(shape=(12, 14, 6), modality="CT")
    second = first.with_data(first.data + 100)
    uid = pydicom.uid.generate_uid()
    a = write_dicom_series(second, tmp_path / "dyn" / "a", series_uid=uid)  # sorts first by name, acquired second
    write_dicom_series(first, tmp_path / "dyn" / "b", series_uid=uid)
    edit_slices(a, lambda ds, n: setattr(ds, "InstanceNumber", 101 + n))
    np.testing.assert_array_equal(load_volume(tmp_path / "dyn", frame=0).data, np.round(first.data))
    np.testing.assert_array_equal(load_volume(tmp_path / "dyn", frame=1).data, np.round(second.data))


# ---- gantry tilt along the row direction ---------------------------------------------------------------------------


def test_gantry_tilt_along_rows_and_columns_on_anisotropic_pixels(tmp_path):
    head = make_head(modality="CT", shape=(40, 30, 20), spacing=(0.8, 1.6, 2.5))
    paths = write_dicom_series(head, tmp_path / "tilted")

    def shift(ds, n):
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        offset = n * (0.4 * iop[:3] + 0.3 * iop[3:])  # mm per slice along the row and the column direction
        ds.ImagePositionPatient = [float(v) + d for v, d in zip(ds.ImagePositionPatient, offset)]

    edit_slices(paths, shift)
    expected_tilt = np.degrees(np.arctan2(0.5, 2.5))
    with pytest.warns(HarnessWarning, match=f"gantry tilt of {expected_tilt:.2f} degrees"):
        v = load_volume(tmp_path / "tilted")
    recorded = v.meta["gantry_tilt_deg"]
    assert recorded == pytest.approx(expected_tilt, abs=1e-3)
    assert recorded == round(recorded, 3)  # recorded to a thousandth of a degree
    truth = _assert_shows_the_tilted_slices(v, paths, at_least=5000)
    # what the shift uncovers is filled with the image minimum (air), not with 0 (water)
    assert v.data.min() == -1000
    np.testing.assert_array_equal(v.data.reshape(-1)[truth == -2000], -1000)
