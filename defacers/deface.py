"""`deface`: template face-mask removal (pydeface / mri_deface family).

The average head is registered (affine) onto the subject, its face mask is carried over, and face voxels become
air (MR: the volume's minimum, CT: -1000 HU). Works across modality (the MR template onto a CT head).
"""

from __future__ import annotations

import time

import numpy as np

from defacers.base import DefacedVolume, air_value, finish
from defacers.template import TemplateDefacer, fit_template
from defacers import qc as privacy
from harness.imaging.brainmask import BRAINMASK_VERSION
from defacers.registration import REG_VERSION
from harness.imaging.brainmask import brain_mask
from harness.core.volume import Volume


class Deface(TemplateDefacer):
    name = "deface"
    version = f"1+{REG_VERSION}+{BRAINMASK_VERSION}"  # the registration and brain mask decide the output and its QC

    def _deface(self, volume: Volume) -> DefacedVolume:
        fit = fit_template(volume)
        start = time.perf_counter()
        defaced, changed = finish(volume, np.where(fit.face, air_value(volume), volume.data))
        t_deface = time.perf_counter() - start
        start = time.perf_counter()
        qc = privacy.measure(volume, defaced, changed, face=fit.face, brain=brain_mask(volume), registration=fit.registration)
        qc["defacer"] = self.identity
        timings = {"registration": fit.seconds, "deface": t_deface, "qc": time.perf_counter() - start}
        return DefacedVolume(defaced, changed, qc, timings)
