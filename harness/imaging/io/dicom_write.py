"""Write a Volume as a classic single-frame DICOM series (one file per axial slice).

Used by the sample cohort (so the DICOM path is exercised end to end) and by tests. Patient identity fields are
filled with a fixed phantom identity; callers may pass extra header fields (tests use this to plant fake PHI).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from harness.core.volume import Volume

SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _stored_values(volume: Volume) -> tuple[np.ndarray, float, float]:
    """Integer pixel values plus (slope, intercept) that reproduce the voxels: exact for integer-valued volumes."""
    data = volume.data.astype(np.float64)
    lo, hi = float(data.min()), float(data.max())
    integral = np.array_equal(data, np.round(data))
    if integral and lo >= -32768 and hi <= 32767:
        return np.round(data).astype(np.int16), 1.0, 0.0
    slope = (hi - lo) / 65000.0 if hi > lo else 1.0
    intercept = lo + 32500 * slope
    return np.round((data - intercept) / slope).astype(np.int16), slope, intercept


def write_dicom_series(
    volume: Volume,
    folder,
    *,
    series_uid: str | None = None,
    study_uid: str | None = None,
    series_number: int = 1,
    extra: dict | None = None,
    transfer_syntax=ExplicitVRLittleEndian,
) -> list[Path]:
    """One file per slice along the volume's third axis, named by instance number. Returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    affine = LPS_FROM_RAS @ volume.affine
    di, dj, _ = volume.spacing
    row_dir = affine[:3, 0] / di
    col_dir = affine[:3, 1] / dj
    stored, slope, intercept = _stored_values(volume)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    paths = []
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SOP_CLASS[volume.modality]
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = volume.modality
        ds.PatientName = "Phantom^Sample"
        ds.PatientID = "PHANTOM"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [float(f"{v:.8f}") for v in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [float(f"{v:.6f}") for v in (affine[:3, :3] @ np.array([0.0, 0.0, k]) + affine[:3, 3])]
        ds.PixelSpacing = [float(f"{dj:.6f}"), float(f"{di:.6f}")]
        ds.SliceThickness = float(f"{volume.spacing[2]:.6f}")
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        plane = np.ascontiguousarray(stored[:, :, k].T)  # data[c, r] -> pixel[r, c]
        ds.Rows, ds.Columns = plane.shape
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = f"{slope:.10g}"
        ds.RescaleIntercept = f"{intercept:.10g}"
        ds.PixelData = plane.tobytes()
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        if transfer_syntax != ExplicitVRLittleEndian:
            ds.compress(transfer_syntax)
        path = folder / f"IM{k + 1:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
