"""Writers for DICOM test series: the good case and each way a real series goes wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from harness.imaging.io.dicom_write import write_dicom_series
from harness.core.volume import Volume


def edit_slices(paths: list[Path], fn) -> None:
    """Apply fn(dataset, index) to each file and save it in place."""
    for n, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        fn(ds, n)
        ds.save_as(p)


def tilt_series(paths: list[Path], shift_mm_per_slice: float) -> None:
    """Offset each slice's position along its column direction, as a gantry-tilted CT acquisition does."""

    def shift(ds, n):
        col_dir = np.array([float(v) for v in ds.ImageOrientationPatient[3:]])
        ds.ImagePositionPatient = [float(v) + n * shift_mm_per_slice * d for v, d in zip(ds.ImagePositionPatient, col_dir)]

    edit_slices(paths, shift)


def write_enhanced(volume: Volume, path: Path, *, shuffle_frames: bool = False) -> Path:
    """One Enhanced CT/MR multi-frame file with per-frame positions and shared orientation/spacing/rescale."""
    tmp = path.parent / (path.stem + "_frames")
    slices = [pydicom.dcmread(p) for p in write_dicom_series(volume, tmp)]
    order = list(range(len(slices)))
    if shuffle_frames:
        order = list(np.random.default_rng(0).permutation(order))
    first = slices[0]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1" if volume.modality == "CT" else "1.2.840.10008.5.1.4.1.1.4.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    for tag in ("Modality", "PatientName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
                "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored",
                "HighBit", "PixelRepresentation"):
        setattr(ds, tag, getattr(first, tag))
    ds.NumberOfFrames = len(slices)
    shared = Dataset()
    ori, meas, trans = Dataset(), Dataset(), Dataset()
    ori.ImageOrientationPatient = first.ImageOrientationPatient
    meas.PixelSpacing = first.PixelSpacing
    meas.SliceThickness = first.SliceThickness
    trans.RescaleSlope, trans.RescaleIntercept, trans.RescaleType = first.RescaleSlope, first.RescaleIntercept, "HU" if volume.modality == "CT" else "US"
    shared.PlaneOrientationSequence = Sequence([ori])
    shared.PixelMeasuresSequence = Sequence([meas])
    shared.PixelValueTransformationSequence = Sequence([trans])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for idx in order:
        item, pos = Dataset(), Dataset()
        pos.ImagePositionPatient = slices[idx].ImagePositionPatient
        item.PlanePositionSequence = Sequence([pos])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = b"".join(slices[idx].PixelData for idx in order)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_sr(path: Path) -> Path:
    """A structured report: a DICOM object with no pixels."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.SeriesInstanceUID = generate_uid()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
