"""`deface`: template face-mask removal (pydeface / mri_deface family).

The average head is registered (affine) onto the subject, its face mask is carried over, and face voxels become
air (MR: the volume's minimum, CT: -1000 HU). Works across modality (the MR template onto a CT head).
"""

from __future__ import annotations

import time

import numpy as np

from defacers.base import DefacerOutput, air_value
from defacers.registration import REG_VERSION
from defacers.registry import register_defacer
from defacers.template import TemplateDefacer, fit_template
from harness.core.volume import Volume
from harness.imaging.brainmask import BRAINMASK_VERSION


@register_defacer
class Deface(TemplateDefacer):
    name = "deface"
    version = f"1+{REG_VERSION}+{BRAINMASK_VERSION}"  # the registration and brain mask decide the output and its QC
    family, modalities, runs = "mask", ("MR", "CT"), "native"

    def _deface(self, volume: Volume) -> DefacerOutput:
        fit = fit_template(volume)
        start = time.perf_counter()
        data = np.where(fit.face, air_value(volume), volume.data)
        timings = {"registration": fit.seconds, "deface": time.perf_counter() - start}
        return DefacerOutput(data, fit.face, fit.registration, timings)
