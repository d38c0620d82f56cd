"""`quickshear`: the published geometric defacer (Schimke & Hale 2011; nipy/quickshear).

The brain mask is collapsed onto the sagittal plane, the lower convex hull of its outline is found (Andrew's
monotone chain, `quickshear.convex_hull` from the quickshear package), the hull's first segment from the front
defines the shearing plane, which is lowered by `buffer_mm` (the package's buffer is in voxels; here it is in mm so
it means the same on any grid), and everything anterior-inferior of the plane becomes air.
The brain mask comes from harness.imaging.brainmask (MR: threshold + morphology, CT: intracranial HU).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import quickshear as qs

from defacers.base import DefacerError, DefacerOutput, air_value
from defacers.registration import REG_VERSION
from defacers.registry import register_defacer
from defacers.template import TemplateDefacer, fit_template
from harness.core.volume import Volume
from harness.imaging.brainmask import BRAINMASK_VERSION, brain_mask


def shear_region(brain: np.ndarray, spacing, buffer_mm: float) -> np.ndarray:
    """Voxels below the shearing plane (bool, canonical RAS grid)."""
    if not brain.any():
        raise DefacerError("quickshear: the brain mask is empty; cannot place the shearing plane")
    # quickshear works on the sagittal profile with axes (posterior, superior): flip our anterior axis.
    profile = qs.edge_mask(brain[:, ::-1, :])
    with warnings.catch_warnings():  # quickshear's np.cross on 2D vectors is deprecated in NumPy 2 (still correct)
        warnings.simplefilter("ignore", DeprecationWarning)
        low = qs.convex_hull(profile)
    if low.shape[1] < 2:
        raise DefacerError("quickshear: the brain mask outline is degenerate; cannot place the shearing plane")
    sa, ss = float(spacing[1]), float(spacing[2])
    p_mm, s_mm = low[0] * sa, low[1] * ss
    dp = p_mm[1] - p_mm[0]
    slope = (s_mm[1] - s_mm[0]) / dp if dp > 0 else 0.0
    n_a, n_s = brain.shape[1], brain.shape[2]
    p_of_j = (n_a - 1 - np.arange(n_a)) * sa  # posterior distance of each anterior index j
    plane_s = s_mm[0] + slope * (p_of_j - p_mm[0]) - buffer_mm  # (n_a,)
    s_of_k = np.arange(n_s) * ss
    below = s_of_k[None, :] < plane_s[:, None]  # (j, k)
    return np.broadcast_to(below[None, :, :], brain.shape)


@register_defacer
class Quickshear(TemplateDefacer):
    name = "quickshear"
    version = f"1+{REG_VERSION}+{BRAINMASK_VERSION}"  # the registration and brain mask decide the output and its QC
    family, modalities, runs = "shear", ("MR", "CT"), "native"
    accepts = ("buffer_mm",)

    def __init__(self, buffer_mm: float = 10.0):
        if not 0 <= float(buffer_mm) <= 50:
            raise DefacerError(f"quickshear: buffer_mm must be between 0 and 50, got {buffer_mm}")
        super().__init__(buffer_mm=float(buffer_mm))

    def _deface(self, volume: Volume) -> DefacerOutput:
        fit = fit_template(volume)  # for the QC face region, and to refuse flipped / skull-stripped input
        start = time.perf_counter()
        brain = brain_mask(volume)
        t_mask = time.perf_counter() - start
        start = time.perf_counter()
        cut = shear_region(brain, volume.spacing, self.params["buffer_mm"])
        data = np.where(cut, air_value(volume), volume.data)
        timings = {"qc_registration": fit.seconds, "brain_mask": t_mask, "deface": time.perf_counter() - start}
        return DefacerOutput(data, fit.face, fit.registration, timings, original_brain=brain)
