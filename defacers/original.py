"""`original`: the identity defacer, so the undefaced condition goes through the same path as every other."""

from __future__ import annotations

import numpy as np

from defacers.base import DefacedVolume, Defacer
from harness.core.volume import Volume


class Original(Defacer):
    name = "original"
    version = "1"

    def _deface(self, volume: Volume) -> DefacedVolume:
        qc = {
            "defacer": self.identity,
            "voxels_changed": 0,
            "brain_voxels_changed": 0,
            "face_fraction_changed": 0.0,
            "face_surface_change_mm": 0.0,
        }
        return DefacedVolume(volume, np.zeros(volume.shape, dtype=bool), qc, {"deface": 0.0})
