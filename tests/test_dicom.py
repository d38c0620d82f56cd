"""DICOM series -> Volume: ordering, Hounsfield units, series choice, multi-frame, codecs, the dcm2niix reference,
and a clear error for each way a real series goes wrong."""

import gzip
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from harness.core.errors import HarnessWarning, VolumeError
from harness.imaging.io import load_volume
from harness.imaging.io.dicom_write import write_dicom_series
from harness.core.volume import Volume
from tests.conftest import make_head
from tests.dicom_factory import edit_slices, tilt_series, write_enhanced, write_sr


def _oblique(volume: Volume, degrees: float = 12.0) -> Volume:
    """The same voxels with a rotated affine (about the left-right axis), as on a tilted head scan."""
    t = np.radians(degrees)
    rot = np.eye(4)
    rot[1:3, 1:3] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    return Volume(volume.data, rot @ volume.affine, volume.modality, {})


def _dcm2niix(folder: Path, out: Path) -> Volume:
    out.mkdir()
    subprocess.run(["dcm2niix", "-z", "y", "-f", "ref", "-o", str(out), str(folder)], check=True, capture_output=True)
    niftis = sorted(out.glob("*.nii.gz"))
    # with a gantry tilt dcm2niix writes the raw stack and a corrected one (suffix _Tilt_1): compare the corrected one
    tilted = [p for p in niftis if "Tilt" in p.name]
    return load_volume(tilted[0] if tilted else niftis[0])


@pytest.mark.parametrize("modality", ["MR", "CT"])
def test_series_round_trip_in_any_file_order(tmp_path, modality):
    head = make_head(modality=modality)
    paths = write_dicom_series(head, tmp_path / "series")
    # scramble file names so that only ImagePositionPatient can give the order
    for n, p in enumerate(np.random.default_rng(1).permutation(paths)):
        p.rename(p.with_name(f"x{n:03d}"))
    v = load_volume(tmp_path / "series")
    assert v.modality == modality
    np.testing.assert_allclose(v.data, head.data, atol=0.02 if modality == "MR" else 0)
    np.testing.assert_allclose(v.affine, head.affine, atol=1e-4)


def test_ct_is_in_hounsfield_units_from_rescale_slope_and_intercept(tmp_path):
    head = make_head(modality="CT")
    paths = write_dicom_series(head, tmp_path / "ct")
    hu = np.round(head.data)

    def store_shifted(ds, n):
        # the typical scanner encoding: unsigned-looking values with intercept -1024, slope 1 (and 2 on odd slices)
        slope = 2.0 if n % 2 else 1.0
        raw = ds.pixel_array.astype(np.int32)
        ds.PixelData = np.round((raw + 1024) / slope).astype(np.int16).tobytes()
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", str(slope)

    edit_slices(paths, store_shifted)
    v = load_volume(tmp_path / "ct")
    assert v.modality == "CT"
    expected = np.where(np.arange(hu.shape[2]) % 2, np.round((hu + 1024) / 2) * 2 - 1024, hu)
    np.testing.assert_array_equal(v.data, expected.astype(np.float32))
    assert v.data.min() == -1000


@pytest.mark.parametrize("oblique", [False, True])
def test_matches_dcm2niix(tmp_path, dcm2niix, oblique):
    head = make_head(modality="CT")
    head = _oblique(head) if oblique else head
    write_dicom_series(head, tmp_path / "series")
    ours = load_volume(tmp_path / "series")
    ref = _dcm2niix(tmp_path / "series", tmp_path / "ref")
    np.testing.assert_allclose(ours.data, ref.data, atol=1e-3)
    np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-3)


def test_real_enhanced_mr_file_matches_dcm2niix(tmp_path, dcm2niix):
    """nibabel's test data ships a real Philips enhanced multi-frame MPRAGE header (pixel values zeroed)."""
    src = resources.files("nibabel") / "nicom" / "tests" / "data" / "philips_mprage.dcm.gz"
    if not src.is_file():
        pytest.skip("nibabel was installed without its test data")
    folder = tmp_path / "philips"
    folder.mkdir()
    (folder / "mprage.dcm").write_bytes(gzip.decompress(src.read_bytes()))
    ours = load_volume(folder / "mprage.dcm")
    ref = _dcm2niix(folder, tmp_path / "ref")
    assert ours.shape == ref.shape == (176, 256, 256)
    assert ours.meta["stored_orientation"] == "PIR"
    np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-3)


def _tilted_truth(files: list[Path], world_ras: np.ndarray) -> np.ndarray:
    """What a tilted series shows at world points, straight from the DICOM geometry: find the slice along the normal,
    then the in-plane pixel relative to that slice's own (offset) ImagePositionPatient."""
    from scipy.ndimage import map_coordinates

    dss = [pydicom.dcmread(f) for f in files]
    px = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in dss], -1)
    iop = np.array(dss[0].ImageOrientationPatient, float)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    ipp = np.array([np.array(ds.ImagePositionPatient, float) for ds in dss])
    dr, dc = (float(v) for v in dss[0].PixelSpacing)
    step = (ipp[-1] - ipp[0]) / (len(dss) - 1)
    rel = world_ras * np.array([-1, -1, 1]) - ipp[0]  # RAS -> LPS
    k = rel @ normal / (step @ normal)
    in_plane = rel - k[:, None] * step
    return map_coordinates(px, np.stack([in_plane @ col / dr, in_plane @ row / dc, k]), order=1, cval=-2000)


def test_gantry_tilt_is_corrected_by_resampling(tmp_path):
    head = make_head(modality="CT", shape=(40, 48, 24), spacing=(1.0, 1.0, 2.5))
    paths = write_dicom_series(head, tmp_path / "tilted")
    tilt_series(paths, shift_mm_per_slice=0.5)  # ~11 degrees
    with pytest.warns(HarnessWarning, match="gantry tilt of 11.3"):
        v = load_volume(tmp_path / "tilted")
    assert v.meta["gantry_tilt_deg"] == pytest.approx(11.31, abs=0.01)
    # the affine stays orthogonal (no shear) and every voxel shows what the tilted slices show at that world point
    cols = v.affine[:3, :3] / np.linalg.norm(v.affine[:3, :3], axis=0)
    np.testing.assert_allclose(cols.T @ cols, np.eye(3), atol=1e-9)
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in v.shape), indexing="ij"), -1).reshape(-1, 3)
    truth = _tilted_truth(sorted(paths), v.voxel_to_world(ijk))
    inside = (truth > -2000) & (v.data.reshape(-1) > -1000)
    assert inside.sum() > 10000
    np.testing.assert_allclose(v.data.reshape(-1)[inside], truth[inside], atol=1e-3)


def test_enhanced_multiframe_with_shuffled_frames(tmp_path):
    head = make_head(modality="CT")
    v = load_volume(write_enhanced(head, tmp_path / "enhanced.dcm", shuffle_frames=True))
    np.testing.assert_array_equal(v.data, np.round(head.data))
    np.testing.assert_allclose(v.affine, head.affine, atol=1e-4)


def test_rle_compressed_series_decodes(tmp_path):
    head = make_head(modality="CT", shape=(24, 28, 12))
    write_dicom_series(head, tmp_path / "rle", transfer_syntax=RLELossless)
    assert pydicom.dcmread(next((tmp_path / "rle").iterdir())).file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_array_equal(load_volume(tmp_path / "rle").data, np.round(head.data))


def test_largest_series_is_chosen_with_a_warning_and_series_uid_selects(tmp_path):
    big, small = make_head(shape=(20, 24, 18)), make_head(shape=(20, 24, 10), seed=3)
    write_dicom_series(big, tmp_path / "study" / "a", series_uid="1.2.3.4")
    write_dicom_series(small, tmp_path / "study" / "b", series_uid="1.2.3.5")
    with pytest.warns(HarnessWarning, match="2 series found; using the largest, 1.2.3.4"):
        assert load_volume(tmp_path / "study").shape == (20, 24, 18)
    assert load_volume(tmp_path / "study", series_uid="1.2.3.5").shape == (20, 24, 10)
    with pytest.raises(VolumeError, match="series 9.9 not found; available: 1.2.3.4, 1.2.3.5"):
        load_volume(tmp_path / "study", series_uid="9.9")


def test_patient_identity_never_reaches_the_volume(tmp_path):
    write_dicom_series(make_head(shape=(16, 16, 8)), tmp_path / "s", extra={
        "PatientName": "Doe^Jane", "PatientID": "MRN12345", "PatientBirthDate": "19700101",
        "InstitutionName": "General Hospital", "StudyDate": "20250102", "SeriesDescription": "Jane head",
        "Manufacturer": "ACME"})
    v = load_volume(tmp_path / "s")
    text = repr(dict(v.meta))
    for phi in ("Doe", "Jane", "MRN12345", "1970", "General Hospital", "20250102"):
        assert phi not in text
    assert v.meta["manufacturer"] == "ACME"


# ---- bad input: each gets a clear error naming the problem --------------------------------------------------------

@pytest.fixture
def series(tmp_path):
    return write_dicom_series(make_head(shape=(16, 20, 10), modality="CT"), tmp_path / "series")


def test_missing_slice(series):
    series[4].unlink()
    with pytest.raises(VolumeError, match=r"missing slice\(s\): gap of 4.00 mm .* about 1 missing"):
        load_volume(series[0].parent)


def test_duplicate_slice(series, tmp_path):
    shutil.copy(series[3], series[0].parent / "copy.dcm")
    with pytest.raises(VolumeError, match="duplicate slices at position .*(IM00004.dcm, copy.dcm|copy.dcm, IM00004.dcm)"):
        load_volume(series[0].parent)


def test_inconsistent_spacing(series):
    edit_slices(series[5:], lambda ds, n: setattr(ds, "ImagePositionPatient", [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 0.7]))
    with pytest.raises(VolumeError, match="inconsistent slice spacing"):
        load_volume(series[0].parent)


def test_inconsistent_orientation(series):
    edit_slices(series[2:3], lambda ds, n: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0.8, -0.6]))
    with pytest.raises(VolumeError, match="inconsistent orientation within the series"):
        load_volume(series[0].parent)


def test_repeated_acquisition_is_4d_and_needs_a_frame(tmp_path):
    a = make_head(shape=(16, 20, 8), modality="CT")
    b = a.with_data(a.data + 100)
    uid = pydicom.uid.generate_uid()
    write_dicom_series(a, tmp_path / "dyn" / "t0", series_uid=uid, extra={"AcquisitionNumber": 1})
    write_dicom_series(b, tmp_path / "dyn" / "t1", series_uid=uid, extra={"AcquisitionNumber": 2})
    with pytest.raises(VolumeError, match="is 4D: 2 images at each of 8 positions; choose one with --frame"):
        load_volume(tmp_path / "dyn")
    v = load_volume(tmp_path / "dyn", frame=1)
    np.testing.assert_array_equal(v.data, np.round(b.data))
    assert v.meta["n_frames"] == 2


def test_structured_report_only(tmp_path):
    write_sr(tmp_path / "sr" / "report.dcm")
    with pytest.raises(VolumeError, match=r"no image series, only non-image DICOM objects \(SR x1\)"):
        load_volume(tmp_path / "sr")


def test_real_segmentation_object_is_not_an_image(tmp_path):
    seg = Path(pydicom.data.get_testdata_file("liver_1frame.dcm"))
    shutil.copy(seg, tmp_path / "seg.dcm")
    with pytest.raises(VolumeError, match=r"only non-image DICOM objects \(SEG x1\)"):
        load_volume(tmp_path)


def test_single_2d_image(series):
    with pytest.raises(VolumeError, match="single 2D image"):
        load_volume(series[0])


def test_truncated_file(series):
    blob = series[3].read_bytes()
    series[3].write_bytes(blob[: len(blob) - 300])
    with pytest.raises(VolumeError, match="IM00004.dcm: .*(corrupt|truncated|cannot be decoded|does not match)"):
        load_volume(series[0].parent)


def test_corrupt_header(series):
    series[2].write_bytes(series[2].read_bytes()[:170])  # cut inside the file meta header
    with pytest.raises(VolumeError, match="IM00003.dcm"):
        load_volume(series[0].parent)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VolumeError, match="empty: folder is empty"):
        load_volume(tmp_path / "empty")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("hello")
    with pytest.raises(VolumeError, match=r"no DICOM files found \(1 other files ignored\)"):
        load_volume(tmp_path / "docs")


def test_stray_non_dicom_files_are_ignored_with_a_warning(series):
    (series[0].parent / "README.txt").write_text("exported by PACS")
    with pytest.warns(HarnessWarning, match="ignored 1 files that are not DICOM"):
        assert load_volume(series[0].parent).shape == (16, 20, 10)


def test_localizer_without_position(series):
    edit_slices(series[:1], lambda ds, n: delattr(ds, "ImagePositionPatient"))
    with pytest.raises(VolumeError, match="IM00001.dcm: has no ImagePositionPatient"):
        load_volume(series[0].parent)


def test_unsupported_modality_can_be_overridden(tmp_path):
    paths = write_dicom_series(make_head(shape=(16, 16, 6)), tmp_path / "pt")
    edit_slices(paths, lambda ds, n: setattr(ds, "Modality", "PT"))
    with pytest.raises(VolumeError, match="modality PT is not supported"):
        load_volume(tmp_path / "pt")
    assert load_volume(tmp_path / "pt", modality="MR").modality == "MR"
