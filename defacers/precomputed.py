"""`precomputed:NAME`: volumes defaced elsewhere, given by the cohort, as a condition like any other.

Outputs of tools that cannot run here (mri_reface's MATLAB runtime, AFNI, FSL) or of defacing done before the data
was shared enter a run through the cohort: a manifest row's `"defaced": {"mri_reface": {"t1": "path"}}` (a flat
`t1@mri_reface` column in CSV) or a BIDS `derivatives/mri_reface/` folder (harness/data/sources/manifest.py, bids.py).
`--defacer precomputed:mri_reface` then shows each case volume as its file, and the QC is measured as for native
defacers: brain voxels changed against the ORIGINAL's brain mask, face measures in the template face region placed
on the original (with the registration's QC). `harness deface ORIGINAL --defacer precomputed:NAME -p path=FILE`
measures one file the same way.

- The file's content hash is part of the defacer's identity, so sample ids and cache keys change with the file.
- On another grid than the original it is resampled onto it (linear, air outside its field of view) and the QC's
  `resampled_from` names the file's grid: interpolation changes voxels by itself.
- Missing or unreadable: DefacerInputError, which fails the samples that need it, with the reason.
- Identical to the original: the QC says `nothing_changed` (as for any defacer that changed nothing).
- When the template cannot be placed on the original, the face measures are left out with the reason; the volume
  itself is still used (there is nothing to refuse: the defacing happened elsewhere).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping

from defacers.base import DefacerInputError, DefacerOutput, air_value
from defacers.registration import REG_VERSION, RegistrationError, resample_onto
from defacers.registry import FAMILY_SUFFIX, register_defacer
from defacers.template import TemplateDefacer, fit_template
from harness.core.errors import HarnessError
from harness.core.hashing import fingerprint
from harness.core.volume import Volume
from harness.imaging.brainmask import BRAINMASK_VERSION
from harness.imaging.io import load_volume

PREFIX = "precomputed"
GRID_ATOL_MM = 1e-3  # affines closer than this are one grid (NIfTI stores them as float32)


@register_defacer(PREFIX + FAMILY_SUFFIX)
class Precomputed(TemplateDefacer):
    name = PREFIX + FAMILY_SUFFIX
    version = f"1+{REG_VERSION}+{BRAINMASK_VERSION}"  # the registration and brain mask decide its QC
    family, modalities, runs = "precomputed", ("MR", "CT"), "precomputed"
    accepts = ("path",)

    def __init__(self, source: str, path: str = ""):
        super().__init__(path=str(path))
        self.source = source
        self.name = f"{PREFIX}:{source}"

    @property
    def path(self) -> str:
        return self.params["path"]

    @property
    def identity(self) -> dict:
        """Where the file lies is no part of the result, what it holds is: its sha256 replaces its path."""
        identity = super().identity
        identity["params"] = {k: v for k, v in identity["params"].items() if k != "path"}
        if self.path:
            identity["file_sha256"] = fingerprint(self.path)
        return identity

    def case_params(self, defaced: Mapping[str, Mapping[str, Path]], role: str) -> dict:
        path = (defaced.get(self.source) or {}).get(role)
        return {"path": str(path)} if path else {}

    def _deface(self, volume: Volume) -> DefacerOutput:
        if not self.path:
            raise DefacerInputError(
                f"{self.name}: the cohort gives no {self.source!r} volume for this case and role (a manifest's "
                f"\"defaced\": {{{self.source!r}: {{ROLE: PATH}}}}, a ROLE@{self.source} column, or BIDS derivatives/{self.source}/)")
        start = time.perf_counter()
        try:
            given = load_volume(self.path, modality=volume.modality)
        except HarnessError as exc:
            raise DefacerInputError(f"{self.name}: cannot use the precomputed volume: {exc}") from None
        qc: dict = {}
        data = given.data
        if given.shape != volume.shape or not (abs(given.affine - volume.affine) <= GRID_ATOL_MM).all():
            data = resample_onto(given.data, given.affine, volume, linear=True, outside=air_value(volume))
            qc["resampled_from"] = {"shape": list(given.shape), "spacing_mm": [round(s, 3) for s in given.spacing]}
        timings = {"load": time.perf_counter() - start}
        try:
            fit = fit_template(volume)
        except RegistrationError as exc:
            qc["face_measures"] = f"not measured: {exc}"
            return DefacerOutput(data, None, timings=timings, qc=qc)
        timings["qc_registration"] = fit.seconds
        return DefacerOutput(data, fit.face, fit.registration, timings, qc=qc)
