"""A Case: one subject of a task - its volumes by role, its ground truth and PHI-free metadata.

Cases come from cohort sources (harness.data.cohort.load_cohort): a manifest, a BIDS tree, a folder of DICOM studies,
the UPENN-GBM layout, a Hugging Face dataset, or the built-in sample cohort. The truth schema of each task is
declared by the task (`harness tasks` lists the fields).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from harness.core.errors import HarnessError
from harness.core.volume import Volume

# Roles a case may carry. "ct" is a DICOM series folder or NIfTI file; "ct_nifti" the same scan as NIfTI.
ROLES = ("t1", "t1c", "t2", "flair", "ct", "ct_nifti")
CT_ROLES = ("ct", "ct_nifti")


class CaseError(HarnessError):
    pass


@dataclass(frozen=True)
class Case:
    id: str
    task: str
    volumes: Mapping[str, Path]
    truth: dict
    meta: dict = field(default_factory=dict)
    # Volumes defaced elsewhere, {defacer name: {role: path}}: the files `--defacer precomputed:NAME` shows.
    defaced: Mapping[str, Mapping[str, Path]] = field(default_factory=dict)
    # Label maps made elsewhere, {condition: path} (condition: "original", a defacer as typed, "precomputed:NAME"),
    # and the label table that reads them ("freesurfer", "slant" or a TSV path): what `seg-fidelity` compares.
    label_maps: Mapping[str, Path] = field(default_factory=dict)
    label_table: str = ""

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.volumes)

    def load(self, role: str) -> Volume:
        """The volume of this role, as a canonical-RAS Volume (CT roles in HU)."""
        from harness.imaging.io import load_volume

        path, modality = self.source(role)
        return load_volume(path, modality=modality)

    def load_remembered(self, role: str, cache_dir):
        """As load(), but lazy when the file's content hash is remembered under cache_dir (see imaging.io.lazy)."""
        from harness.imaging.io.lazy import remembered_volume

        path, modality = self.source(role)
        return remembered_volume(path, lambda: self.load(role), cache_dir, modality=modality)

    def source(self, role: str) -> tuple[Path, str]:
        """(file or DICOM folder, modality) of a role."""
        if role not in self.volumes:
            raise CaseError(f"case {self.id} has no {role!r} volume; it has {', '.join(self.volumes) or 'none'}")
        return Path(self.volumes[role]), ("CT" if role in CT_ROLES else "MR")
