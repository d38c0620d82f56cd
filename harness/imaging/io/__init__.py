"""Reading and writing volumes: NIfTI files and DICOM series, always returning canonical-RAS Volumes."""

from __future__ import annotations

from pathlib import Path

from harness.core.errors import VolumeError
from harness.imaging.io.dicom import load_dicom
from harness.imaging.io.nifti import load_nifti, save_nifti
from harness.core.volume import Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def load_volume(path, *, modality: str | None = None, series_uid: str | None = None, frame: int | None = None) -> Volume:
    """Load a NIfTI file, a DICOM file or a folder of DICOM files as a canonical-RAS Volume.

    modality: "MR" or "CT" to override what the file says (or, for NIfTI, what the intensities suggest).
    series_uid: which DICOM series to take when a folder holds several (default: the largest, with a warning).
    frame: which 3D frame to take from a 4D volume (4D input is refused without it).
    """
    path = Path(path)
    if not path.exists():
        raise VolumeError(path, "no such file or folder")
    if not (path.is_file() or path.is_dir()):
        raise VolumeError(path, "not a regular file or folder (a device, pipe or socket); refusing to read it")
    if modality is not None and modality not in ("MR", "CT"):
        raise VolumeError(path, f"modality must be MR or CT, got {modality!r}")
    if path.is_dir() or not is_nifti(path):
        return load_dicom(path, modality=modality, series_uid=series_uid, frame=frame)
    return load_nifti(path, modality=modality, frame=frame)


__all__ = ["load_volume", "load_nifti", "load_dicom", "save_nifti", "is_nifti"]
