"""DICOM series -> Volume: ordering, Hounsfield units, series choice, multi-frame, codecs, the dcm2niix reference,
and a clear error for each way a real series goes wrong."""

import gzip
import shutil
import subprocess
import warnings
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


def _assert_shows_the_tilted_slices(v, paths, at_least: int) -> np.ndarray:
    """Every voxel inside the head shows what the tilted slices show at that world point (at least `at_least` voxels);
    returns those slices' values per voxel (-2000 where no slice covers it)."""
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in v.shape), indexing="ij"), -1).reshape(-1, 3)
    truth = _tilted_truth(sorted(paths), v.voxel_to_world(ijk))
    inside = (truth > -2000) & (v.data.reshape(-1) > -1000)
    assert inside.sum() > at_least
    np.testing.assert_allclose(v.data.reshape(-1)[inside], truth[inside], atol=1e-3)
    return truth


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
    _assert_shows_the_tilted_slices(v, paths, at_least=10000)


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
    with pytest.warns(HarnessWarning, match=r"study: 2 series found; using the largest, 1.2.3.4. Choose with --series. Series: 1.2.3.4 \(18 images\), 1.2.3.5 \(10 images\)$"):
        assert load_volume(tmp_path / "study").shape == (20, 24, 18)
    assert load_volume(tmp_path / "study", series_uid="1.2.3.5").shape == (20, 24, 10)
    with pytest.raises(VolumeError, match="study: series 9.9 not found; available: 1.2.3.4, 1.2.3.5"):
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
    with pytest.raises(VolumeError, match=r"series: missing slice\(s\): gap of 4.00 mm .* about 1 missing"):
        load_volume(series[0].parent)


def test_duplicate_slice(series, tmp_path):
    shutil.copy(series[3], series[0].parent / "copy.dcm")
    with pytest.raises(VolumeError, match="series: duplicate slices at position .*(IM00004.dcm, copy.dcm|copy.dcm, IM00004.dcm)"):
        load_volume(series[0].parent)


def test_inconsistent_spacing(series):
    edit_slices(series[5:], lambda ds, n: setattr(ds, "ImagePositionPatient", [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 0.7]))
    with pytest.raises(VolumeError, match="series: inconsistent slice spacing"):
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
    with pytest.raises(VolumeError, match=r"sr: no image series, only non-image DICOM objects \(SR x1\)"):
        load_volume(tmp_path / "sr")


def test_real_segmentation_object_is_not_an_image(tmp_path):
    seg = Path(pydicom.data.get_testdata_file("liver_1frame.dcm"))
    shutil.copy(seg, tmp_path / "seg.dcm")
    with pytest.raises(VolumeError, match=r"only non-image DICOM objects \(SEG x1\)"):
        load_volume(tmp_path)


def test_single_2d_image(series):
    with pytest.raises(VolumeError, match="IM00001.dcm: holds a single 2D image; a 3D volume needs a series of slices"):
        load_volume(series[0])


def test_truncated_file(series):
    blob = series[3].read_bytes()
    series[3].write_bytes(blob[: len(blob) - 300])
    with pytest.raises(VolumeError, match="IM00004.dcm: .*(corrupt|truncated|cannot be decoded|does not match)"):
        load_volume(series[0].parent)


def test_corrupt_header(series):
    series[2].write_bytes(series[2].read_bytes()[:170])  # cut inside the file meta header
    with pytest.raises(VolumeError, match="IM00003.dcm: truncated DICOM file: nothing after the file meta header"):
        load_volume(series[0].parent)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VolumeError, match="empty: folder is empty: no DICOM files found"):
        load_volume(tmp_path / "empty")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("hello")
    with pytest.raises(VolumeError, match=r"docs: no DICOM files found \(1 other files ignored\)"):
        load_volume(tmp_path / "docs")


def test_stray_non_dicom_files_are_ignored_with_a_warning(series):
    (series[0].parent / "README.txt").write_text("exported by PACS")
    with pytest.warns(HarnessWarning, match=r"series: ignored 1 files that are not DICOM \(e.g. README.txt\)"):
        assert load_volume(series[0].parent).shape == (16, 20, 10)


def test_localizer_without_position(series):
    edit_slices(series[:1], lambda ds, n: delattr(ds, "ImagePositionPatient"))
    with pytest.raises(VolumeError, match="IM00001.dcm: has no ImagePositionPatient"):
        load_volume(series[0].parent)


def test_unsupported_modality_can_be_overridden(tmp_path):
    paths = write_dicom_series(make_head(shape=(16, 16, 6)), tmp_path / "pt")
    edit_slices(paths, lambda ds, n: setattr(ds, "Modality", "PT"))
    with pytest.raises(VolumeError, match=r"pt: modality PT is not supported \(CT or MR\)"):
        load_volume(tmp_path / "pt")
    assert load_volume(tmp_path / "pt", modality="MR").modality == "MR"


# ---- the writer: a series other DICOM readers accept, with exact values where the volume allows --------------------


def test_written_series_is_one_consistent_series(tmp_path):
    head = make_head(shape=(12, 14, 5), spacing=(1.0, 1.5, 2.5))
    paths = write_dicom_series(head, tmp_path / "s", study_uid="1.2.3", series_number=7)
    dss = [pydicom.dcmread(p) for p in paths]
    assert write_dicom_series(head, tmp_path / "s") == paths  # writing again into an existing folder replaces it
    assert [ds.InstanceNumber for ds in dss] == [1, 2, 3, 4, 5]
    assert {ds.StudyInstanceUID for ds in dss} == {"1.2.3"} and {ds.SeriesNumber for ds in dss} == {7}
    assert len({ds.SeriesInstanceUID for ds in dss}) == 1 and len({ds.FrameOfReferenceUID for ds in dss}) == 1
    assert dss[0].FrameOfReferenceUID and dss[0].SeriesInstanceUID
    assert len({ds.SOPInstanceUID for ds in dss}) == 5
    for ds in dss:
        assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.4"  # MR image storage
        assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
        assert (str(ds.PatientName), ds.PatientID) == ("Phantom^Sample", "PHANTOM")  # the phantom identity, never a person
        assert float(ds.SliceThickness) == 2.5
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 16, 15, 1)
    other = pydicom.dcmread(write_dicom_series(head, tmp_path / "t")[0])
    assert other.StudyInstanceUID != "1.2.3" and other.SeriesNumber == 1


@pytest.mark.parametrize("lo, hi, exact", [(-32768, 32767, True), (-1024, 32768, False), (-32769, 100, False)])
def test_integer_volumes_are_stored_exactly_when_int16_holds_them(tmp_path, lo, hi, exact):
    data = np.zeros((6, 6, 3), np.float32)
    data[0, 0, :], data[1, 1, :] = lo, hi
    paths = write_dicom_series(Volume(data, np.eye(4), "CT"), tmp_path / "s")
    ds = pydicom.dcmread(paths[0])
    assert (float(ds.RescaleSlope) == 1.0) is exact
    back = load_volume(tmp_path / "s").data
    if exact:
        np.testing.assert_array_equal(back, data)
    else:  # scaled to fit: within half a step of (hi - lo) / 65000
        np.testing.assert_allclose(back, data, atol=(hi - lo) / 65000 / 2 + 1e-3)


def test_constant_fractional_volume_round_trips(tmp_path):
    v = Volume(np.full((4, 5, 3), 0.25, np.float32), np.eye(4), "MR")
    write_dicom_series(v, tmp_path / "s")
    np.testing.assert_allclose(load_volume(tmp_path / "s").data, 0.25, atol=1e-6)


# ---- header metadata: an allow-list with typed values ---------------------------------------------------------------


def test_allow_listed_metadata_is_kept_with_its_type(tmp_path):
    write_dicom_series(make_head(shape=(12, 12, 4)), tmp_path / "s", extra={
        "BodyPartExamined": "HEAD", "KVP": 120, "ConvolutionKernel": ["FC21", "AXIAL"], "Manufacturer": "ACME",
        "ManufacturerModelName": "Scan 9000", "MagneticFieldStrength": 3, "RepetitionTime": 2300, "EchoTime": 2.98,
        "PatientName": "Doe^Jane", "PatientID": "MRN1", "StudyDate": "20250102", "AccessionNumber": "ACC9"})
    v = load_volume(tmp_path / "s")
    assert v.meta == {
        "source_format": "dicom", "stored_orientation": "RAS", "body_part": "HEAD", "slice_thickness_mm": 2.0,
        "kvp": 120.0, "convolution_kernel": "FC21\\AXIAL", "manufacturer": "ACME", "manufacturer_model": "Scan 9000",
        "field_strength_t": 3.0, "repetition_time_ms": 2300.0, "echo_time_ms": 2.98,
    }
    assert all(type(v.meta[k]) is float for k in ("slice_thickness_mm", "kvp", "field_strength_t", "repetition_time_ms"))


def test_empty_or_unreadable_metadata_values_are_left_out(tmp_path):
    paths = write_dicom_series(make_head(shape=(12, 12, 4)), tmp_path / "s", extra={"BodyPartExamined": "", "EchoTime": 4.5})

    def malformed(ds, n):
        ds.add_new(0x00180087, "LO", "1.5T")  # MagneticFieldStrength as text: not a number of tesla

    edit_slices(paths, malformed)
    meta = load_volume(tmp_path / "s").meta
    assert "body_part" not in meta and "field_strength_t" not in meta
    assert meta["echo_time_ms"] == 4.5  # the fields after an unreadable one are still read


def test_pixels_read_from_the_buffer_equal_pydicom_decoding(series, tmp_path):
    """The loader decodes uncompressed pixels itself (fast path): it must give exactly what pydicom gives, for
    signed CT values below zero, for unsigned 8-bit, and for MONOCHROME1."""
    from harness.imaging.io.dicom import _native_pixels

    def unsigned8(ds, n):
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = (np.arange(ds.Rows * ds.Columns) % 251).astype(np.uint8).tobytes()

    for path in series:
        ds = pydicom.dcmread(path)
        assert ds.pixel_array.min() < 0 and np.array_equal(_native_pixels(ds), ds.pixel_array)
    edit_slices(series, unsigned8)
    ds = pydicom.dcmread(series[0])
    assert np.array_equal(_native_pixels(ds), ds.pixel_array) and _native_pixels(ds).dtype == np.uint8
    rle = write_dicom_series(make_head(shape=(8, 8, 4), modality="CT"), tmp_path / "rle", transfer_syntax=RLELossless)
    assert _native_pixels(pydicom.dcmread(rle[0])) is None  # compressed: left to pydicom


# ---- pixel data the loader cannot use ---------------------------------------------------------------------------


def test_colour_slice_is_refused_naming_the_file(series):
    def rgb(ds, n):
        plane = ds.pixel_array.astype(np.uint8)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = np.repeat(plane[..., None], 3, axis=-1).tobytes()

    edit_slices(series[2:3], rgb)
    with pytest.raises(VolumeError, match=r"IM00003.dcm: colour image \(RGB\); CT/MR volumes are greyscale"):
        load_volume(series[0].parent)


def test_undecodable_pixel_data_names_the_file_and_transfer_syntax(series):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless

    def fake_jpegls(ds, n):
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless
        ds.PixelData = encapsulate([b"\xff\xd8 not a JPEG-LS stream \xff\xd9"])
        ds["PixelData"].VR = "OB"

    edit_slices(series[4:5], fake_jpegls)
    with pytest.raises(VolumeError, match=r"IM00005.dcm: pixel data cannot be decoded \(transfer syntax JPEG-LS Lossless"):
        load_volume(series[0].parent)


def test_monochrome1_is_inverted_to_bright_tissue(tmp_path):
    """MONOCHROME1 shows low values white: flipped so that, as everywhere else, high values are bright."""
    data = np.zeros((6, 8, 4), np.float32)
    data[2:4, 2:6, :] = 100.0
    data[0, 0, :] = 10.0
    paths = write_dicom_series(Volume(data, np.eye(4), "MR"), tmp_path / "s")

    def invert(ds, n):
        ds.PixelData = (100 - ds.pixel_array).astype(np.int16).tobytes()  # the same image, stored inverted
        ds.PhotometricInterpretation = "MONOCHROME1"

    edit_slices(paths, invert)
    np.testing.assert_array_equal(load_volume(tmp_path / "s").data, data)


def test_a_broken_file_that_claims_to_be_dicom_is_an_error_not_a_stray_file(series, monkeypatch):
    """Whatever pydicom makes of it, a file with the DICOM preamble ('DICM' at byte 128) that does not parse is
    reported, while a file without it is skipped as a stray."""
    import harness.imaging.io.dicom as dicom_io

    real = dicom_io.pydicom.dcmread

    def strict(path, *args, **kwargs):
        if Path(path).name in ("broken.dcm", "notes.dcm"):
            raise pydicom.errors.InvalidDicomError("not parseable")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(dicom_io.pydicom, "dcmread", strict)
    (series[0].parent / "notes.dcm").write_bytes(b"\0" * 128 + b"dicm, but lower case")
    with pytest.warns(HarnessWarning, match="ignored 1 files that are not DICOM"):
        load_volume(series[0].parent)
    (series[0].parent / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    with pytest.raises(VolumeError, match="broken.dcm: corrupt or truncated DICOM file"):
        load_volume(series[0].parent)


# ---- each inconsistency names the folder (or file) and what differs ------------------------------------------------


def test_slice_of_another_size_is_named(series):
    def smaller(ds, n):
        ds.PixelData = ds.pixel_array[:10].tobytes()
        ds.Rows = 10

    edit_slices(series[1:2], smaller)
    with pytest.raises(VolumeError, match=r"IM00002.dcm: slice size 10x16 differs from 20x16 in IM00001.dcm"):
        load_volume(series[0].parent)


def test_inconsistent_orientation_names_both_slices(series):
    edit_slices(series[1:2], lambda ds, n: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0.8, -0.6]))
    with pytest.raises(VolumeError, match=r"series: inconsistent orientation within the series \(IM00002.dcm vs IM00001.dcm\)"):
        load_volume(series[0].parent)


def test_inconsistent_pixel_spacing_is_refused(series):
    edit_slices(series[1:2], lambda ds, n: setattr(ds, "PixelSpacing", [2.0, 2.5]))
    with pytest.raises(VolumeError, match=r"series: inconsistent pixel spacing within the series \(IM00002.dcm: \(2.0, 2.5\) vs \(2.0, 2.0\)\)"):
        load_volume(series[0].parent)


def test_pixel_spacing_rounding_is_tolerated(series):
    edit_slices(series[1:2], lambda ds, n: setattr(ds, "PixelSpacing", [2.0, 2.0005]))
    assert load_volume(series[0].parent).shape == (16, 20, 10)


def test_orientation_that_is_not_two_unit_vectors_is_refused(series):
    edit_slices(series, lambda ds, n: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0.5, 0]))
    with pytest.raises(VolumeError, match=r"IM00001.dcm: ImageOrientationPatient \[1.0, 0.0, 0.0, 0.0, 0.5, 0.0\] is not two orthogonal unit vectors"):
        load_volume(series[0].parent)


def test_position_jitter_within_two_percent_of_the_step_is_accepted(series):
    # scanners round positions: 0.03 mm on a 2 mm step is noise, not a gap
    edit_slices(series[3:4], lambda ds, n: setattr(ds, "ImagePositionPatient", [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 0.03]))
    v = load_volume(series[0].parent)
    assert v.shape == (16, 20, 10) and v.spacing[2] == pytest.approx(2.0)


def test_a_gap_of_one_and_a_half_steps_is_inconsistent_not_missing(tmp_path):
    paths = write_dicom_series(make_head(shape=(16, 16, 8), spacing=(1.0, 1.0, 6.0), modality="CT"), tmp_path / "s")
    edit_slices(paths[4:], lambda ds, n: setattr(ds, "ImagePositionPatient", [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 3.0]))
    with pytest.raises(VolumeError, match=r"s: inconsistent slice spacing: steps range 6.000-9.000 mm"):
        load_volume(tmp_path / "s")


def test_two_missing_slices_are_located(series):
    series[4].unlink()
    series[5].unlink()
    z = [float(pydicom.dcmread(p).ImagePositionPatient[2]) for p in (series[3], series[6])]
    with pytest.raises(VolumeError, match=rf"series: missing slice\(s\): gap of 6.00 mm between positions {z[0]:.2f} and {z[1]:.2f} mm \(expected 2.00 mm\); about 2 missing$"):
        load_volume(series[0].parent)


def test_frame_of_a_3d_series(series):
    np.testing.assert_array_equal(load_volume(series[0].parent, frame=0).data, load_volume(series[0].parent).data)
    with pytest.raises(VolumeError, match="series: frame 1 does not exist: the series is 3D"):
        load_volume(series[0].parent, frame=1)


def test_frames_of_a_4d_series(tmp_path):
    a = make_head(shape=(16, 20, 8), modality="CT")
    uid = pydicom.uid.generate_uid()
    write_dicom_series(a, tmp_path / "dyn" / "t0", series_uid=uid, extra={"AcquisitionNumber": 1})
    write_dicom_series(a.with_data(a.data + 100), tmp_path / "dyn" / "t1", series_uid=uid, extra={"AcquisitionNumber": 2})
    v = load_volume(tmp_path / "dyn", frame=0)
    np.testing.assert_array_equal(v.data, np.round(a.data))
    assert (v.meta["frame"], v.meta["n_frames"]) == (0, 2)
    for frame in (2, -1):
        with pytest.raises(VolumeError, match=rf"dyn: frame {frame} does not exist; the series has frames 0..1$"):
            load_volume(tmp_path / "dyn", frame=frame)
    with pytest.raises(VolumeError, match="dyn: is 4D: 2 images at each of 8 positions"):
        load_volume(tmp_path / "dyn")


def test_duplicate_frames_of_an_enhanced_file_are_named(tmp_path):
    path = write_enhanced(make_head(shape=(12, 12, 6), modality="CT"), tmp_path / "enh.dcm")
    ds = pydicom.dcmread(path)
    frames = ds.PerFrameFunctionalGroupsSequence
    frames[3].PlanePositionSequence[0].ImagePositionPatient = frames[2].PlanePositionSequence[0].ImagePositionPatient
    ds.save_as(path)
    with pytest.raises(VolumeError, match=r"enh.dcm: duplicate slices at position .* mm \(enh.dcm\[frame 2\], enh.dcm\[frame 3\]\)"):
        load_volume(path)


# ---- enhanced multi-frame files: rescale from the functional groups, and what a frame must carry -------------------


def _enhanced(tmp_path, shape=(12, 12, 6)):
    head = make_head(shape=shape, modality="CT")
    return head, write_enhanced(head, tmp_path / "enh.dcm")


def test_enhanced_rescale_comes_from_the_functional_groups(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    head, path = _enhanced(tmp_path)
    raw = np.round(head.data)
    ds = pydicom.dcmread(path)
    trans = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    trans.RescaleSlope, trans.RescaleIntercept = "2", "-1024"
    own = Dataset()
    own.RescaleIntercept = "-1000"  # frame 0 overrides the shared transformation; no slope given: 1
    ds.PerFrameFunctionalGroupsSequence[0].PixelValueTransformationSequence = Sequence([own])
    ds.save_as(path)
    expected = raw * 2 - 1024
    expected[:, :, 0] = raw[:, :, 0] - 1000
    np.testing.assert_array_equal(load_volume(path).data, expected)
    # without any transformation sequence, the file's top-level rescale applies
    del ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence
    del ds.PerFrameFunctionalGroupsSequence[0].PixelValueTransformationSequence
    ds.RescaleSlope, ds.RescaleIntercept = "3", "-10"
    ds.save_as(path)
    np.testing.assert_array_equal(load_volume(path).data, raw * 3 - 10)


def test_two_frame_enhanced_file_is_a_volume(tmp_path):
    head, path = _enhanced(tmp_path, shape=(12, 12, 2))
    np.testing.assert_array_equal(load_volume(path).data, np.round(head.data))


def test_multi_frame_file_without_per_frame_positions_is_refused(tmp_path):
    _, path = _enhanced(tmp_path)
    ds = pydicom.dcmread(path)
    del ds.PerFrameFunctionalGroupsSequence
    ds.save_as(path)
    with pytest.raises(VolumeError, match=r"enh.dcm: multi-frame file with 6 frames but no per-frame positions"):
        load_volume(path)


@pytest.mark.parametrize("what", ["position", "orientation"])
def test_frame_without_position_or_orientation_is_refused(tmp_path, what):
    _, path = _enhanced(tmp_path)
    ds = pydicom.dcmread(path)
    if what == "position":
        del ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence
    else:
        del ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence
    ds.save_as(path)
    frame = 1 if what == "position" else 0
    with pytest.raises(VolumeError, match=rf"enh.dcm: frame {frame} lacks plane position, orientation or pixel spacing"):
        load_volume(path)


def test_malformed_geometry_values_name_the_file(series):
    edit_slices(series[2:3], lambda ds, n: setattr(ds, "ImagePositionPatient", [0.0, 1.0]))
    with pytest.raises(VolumeError, match=r"IM00003.dcm: ImagePositionPatient must have 3 finite numbers, got \[0.0, 1.0\]"):
        load_volume(series[0].parent)
    edit_slices(series[2:3], lambda ds, n: ds.add_new(0x00280030, "LO", "1\\abc"))  # PixelSpacing as free text
    with pytest.raises(VolumeError, match=r"IM00003.dcm: PixelSpacing is malformed \(\['1', 'abc'\]\)"):
        load_volume(series[0].parent)


# ---- 4D: frames follow the acquisition/temporal order, not the file order ---------------------------------------


@pytest.mark.parametrize("tag", ["AcquisitionNumber", "TemporalPositionIdentifier"])
def test_4d_frames_follow_acquisition_or_temporal_order_not_file_names(tmp_path, tag):
    first = make_head(shape=(12, 14, 6), modality="CT")
    second = first.with_data(first.data + 100)
    uid = pydicom.uid.generate_uid()
    write_dicom_series(second, tmp_path / "dyn" / "a", series_uid=uid, extra={tag: 2})  # sorts first by name
    write_dicom_series(first, tmp_path / "dyn" / "b", series_uid=uid, extra={tag: 1})
    np.testing.assert_array_equal(load_volume(tmp_path / "dyn", frame=0).data, np.round(first.data))
    np.testing.assert_array_equal(load_volume(tmp_path / "dyn", frame=1).data, np.round(second.data))


def test_4d_enhanced_frames_follow_the_temporal_position_index(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    first = make_head(shape=(12, 14, 6), modality="CT")
    second = first.with_data(first.data + 100)
    a = pydicom.dcmread(write_enhanced(second, tmp_path / "a" / "a.dcm"))  # stored first, acquired second
    b = pydicom.dcmread(write_enhanced(first, tmp_path / "b" / "b.dcm"))
    frames = list(a.PerFrameFunctionalGroupsSequence) + list(b.PerFrameFunctionalGroupsSequence)
    for n, item in enumerate(frames):
        content = Dataset()
        content.TemporalPositionIndex = 2 if n < 6 else 1
        item.FrameContentSequence = Sequence([content])
    a.PerFrameFunctionalGroupsSequence = Sequence(frames)
    a.NumberOfFrames = 12
    a.PixelData = a.PixelData + b.PixelData
    a.save_as(tmp_path / "dyn.dcm")
    with pytest.raises(VolumeError, match="dyn.dcm: is 4D: 2 images at each of 6 positions"):
        load_volume(tmp_path / "dyn.dcm")
    np.testing.assert_array_equal(load_volume(tmp_path / "dyn.dcm", frame=0).data, np.round(first.data))
    np.testing.assert_array_equal(load_volume(tmp_path / "dyn.dcm", frame=1).data, np.round(second.data))


# ---- smallest volumes, tilt on anisotropic pixels, and what the folder scan skips ----------------------------------


def test_two_slices_are_a_volume(tmp_path):
    head = make_head(shape=(12, 14, 2), modality="CT")
    write_dicom_series(head, tmp_path / "s")
    np.testing.assert_array_equal(load_volume(tmp_path / "s").data, np.round(head.data))


def test_4d_with_one_position_is_a_single_image_per_frame(tmp_path):
    a = make_head(shape=(12, 14, 1), modality="CT")
    uid = pydicom.uid.generate_uid()
    write_dicom_series(a, tmp_path / "dyn" / "t0", series_uid=uid, extra={"AcquisitionNumber": 1})
    write_dicom_series(a, tmp_path / "dyn" / "t1", series_uid=uid, extra={"AcquisitionNumber": 2})
    with pytest.raises(VolumeError, match="dyn: holds a single 2D image per frame; a 3D volume needs a series of slices"):
        load_volume(tmp_path / "dyn", frame=0)


def test_gantry_tilt_on_anisotropic_pixels(tmp_path):
    head = make_head(modality="CT", shape=(40, 30, 20), spacing=(0.8, 1.6, 2.5))
    paths = write_dicom_series(head, tmp_path / "tilted")
    tilt_series(paths, shift_mm_per_slice=0.6)
    with pytest.warns(HarnessWarning, match="gantry tilt"):
        v = load_volume(tmp_path / "tilted")
    _assert_shows_the_tilted_slices(v, paths, at_least=5000)


def test_series_without_modality_needs_an_override(tmp_path):
    paths = write_dicom_series(make_head(shape=(12, 12, 4)), tmp_path / "s")
    edit_slices(paths, lambda ds, n: delattr(ds, "Modality"))
    with pytest.raises(VolumeError, match=r"s: modality unknown is not supported \(CT or MR\); override with --modality"):
        load_volume(tmp_path / "s")
    assert load_volume(tmp_path / "s", modality="MR").shape == (12, 12, 4)


def test_a_clean_single_series_loads_without_warnings(series):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_volume(series[0].parent).shape == (16, 20, 10)


def test_largest_series_counts_the_frames_of_enhanced_files(tmp_path):
    enhanced_head = make_head(shape=(12, 12, 9), modality="CT")
    write_enhanced(enhanced_head, tmp_path / "study" / "enh.dcm")
    shutil.rmtree(tmp_path / "study" / "enh_frames")
    write_dicom_series(make_head(shape=(12, 12, 4), modality="CT", seed=2), tmp_path / "study" / "classic")
    with pytest.warns(HarnessWarning, match=r"\(9 images\), .* \(4 images\)$"):
        v = load_volume(tmp_path / "study")
    np.testing.assert_array_equal(v.data, np.round(enhanced_head.data))


def test_hidden_files_and_dicomdir_are_not_read(series):
    (series[0].parent / ".DS_Store").write_bytes(b"\0\1\2 finder junk")
    (series[0].parent / "DICOMDIR").write_bytes(b"not even a real DICOMDIR")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing was read, so nothing to ignore
        assert load_volume(series[0].parent).shape == (16, 20, 10)


def test_a_stray_file_before_the_slices_does_not_hide_them(series):
    (series[0].parent / "0_export_log.txt").write_text("exported by PACS")
    with pytest.warns(HarnessWarning, match=r"ignored 1 files that are not DICOM \(e.g. 0_export_log.txt\)"):
        assert load_volume(series[0].parent).shape == (16, 20, 10)


def test_header_that_cannot_be_parsed_names_the_file(series):
    blob = series[1].read_bytes()
    i = blob.find(b"\x02\x00\x10\x00UI")  # the transfer syntax element of the file meta header
    series[1].write_bytes(blob[: i + 4] + b"ZZ" + blob[i + 6 :])  # an impossible value representation
    with pytest.raises(VolumeError, match=r"IM00002.dcm: corrupt or truncated DICOM file \(NotImplementedError: "):
        load_volume(series[0].parent)


def test_non_image_object_without_a_modality(tmp_path):
    write_sr(tmp_path / "x" / "obj.dcm")
    edit_slices([tmp_path / "x" / "obj.dcm"], lambda ds, n: delattr(ds, "Modality"))
    with pytest.raises(VolumeError, match=r"x: no image series, only non-image DICOM objects \(\? x1\)"):
        load_volume(tmp_path / "x")
