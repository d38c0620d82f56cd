"""`original`: the identity defacer, so the undefaced condition goes through the same path as every other."""

from __future__ import annotations

import time

import numpy as np

from defacers.base import DefacedVolume, Defacer
from defacers.registry import register_defacer
from harness.core.volume import Volume


@register_defacer
class Original(Defacer):
    name = "original"
    version = "1"
    family, modalities, runs = "identity", ("MR", "CT"), "native"

    def deface(self, volume: Volume, brain_reference: Volume | None = None) -> DefacedVolume:
        # The one defacer that skips the shared QC: nothing changes, so there is nothing to measure and no brain
        # mask worth computing; the record says so directly, and the input itself is returned.
        start = time.perf_counter()
        qc = {
            "defacer": self.identity,
            "voxels_changed": 0,
            "brain_voxels_changed": 0,
            "face_fraction_changed": 0.0,
            "face_surface_change_mm": 0.0,
        }
        changed = np.zeros(volume.shape, dtype=bool)
        return DefacedVolume(volume, changed, qc, {"deface": 0.0, "total": time.perf_counter() - start})
