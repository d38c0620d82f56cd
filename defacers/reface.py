"""`reface`: the face replaced by the population-average face (mri_reface / afni_refacer family).

Same template fit as `deface`; inside the face region the warped template replaces the subject, so the result is a
natural-looking head with somebody else's (an average) face:
- intensities: quantile matching of template head voxels onto subject head voxels (global histogram matching
  darkens the new face); for CT the template's head maps onto the subject's soft-tissue range (-150..150 HU)
  and its air onto -1000 HU, since a T1 template carries no bone density;
- a feathered edge: the blend weight rises from 0 at the face-region border to 1 inside (Gaussian, sigma 1.5
  voxels), so no voxel outside the face region changes and no seam shows;
- noise like the subject's: Gaussian noise with the subject's high-pass noise level (head and background
  separately), seeded from the volume's content hash so the output is reproducible.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage

from defacers.base import DefacerOutput, air_value
from defacers.registration import REG_VERSION
from defacers.registry import register_defacer
from defacers.template import TemplateDefacer, fit_template, pydeface_template
from harness.core.volume import Volume
from harness.imaging.brainmask import BRAINMASK_VERSION, head_mask, head_threshold

FEATHER_SIGMA_VOX = 1.5
MARGIN_VOX = 8
# Residual std of white noise after subtracting its own sigma-1 Gaussian blur (3D): sqrt(1 - 2 g0 + sum g^2).
HIGHPASS_GAIN = 0.947
CT_SOFT_TISSUE_HU = (-150.0, 150.0)


# The average head has a faint halo (~10 % of its range, ~12 mm deep) in front of its blurred skin: faces averaged
# at slightly different positions. Below this fraction of its 99th percentile the template counts as air, so the
# halo does not become a ghost layer of skin on the refaced head.
TEMPLATE_AIR_FRACTION = 0.2


def template_air_level(template: Volume) -> float:
    lo = float(template.data.min())
    return lo + TEMPLATE_AIR_FRACTION * (float(np.percentile(template.data[::3, ::3, ::3], 99.0)) - lo)


def _bbox(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _noise_std(data: np.ndarray, where: np.ndarray) -> float:
    """Noise level from the high-pass residual in the flattest quarter of `where` (edges are anatomy, not noise)."""
    if where.sum() < 400:
        return 0.0
    smooth = ndimage.gaussian_filter(data, 1.0)
    residual = (data - smooth)[where]
    slope = ndimage.gaussian_gradient_magnitude(smooth, 1.0)[where]
    r = residual[slope <= np.percentile(slope, 25)]
    return float(1.4826 * np.median(np.abs(r - np.median(r))) / HIGHPASS_GAIN)


def _increasing(x: np.ndarray) -> np.ndarray:
    return np.maximum.accumulate(x) + np.arange(x.size) * 1e-6 * (abs(float(x[-1] - x[0])) + 1.0)


def intensity_map(volume: Volume, warped_template: np.ndarray, template_threshold: float, near: tuple[slice, ...]):
    """Piecewise-linear template -> subject intensity map from matched quantiles of head voxels, air to air."""
    q = np.linspace(0.0, 100.0, 101)
    sub = volume.data[near]
    template_head = warped_template[near][warped_template[near] > template_threshold]
    if volume.modality == "CT":
        lo, hi = CT_SOFT_TISSUE_HU
        target = sub[(sub > lo) & (sub < hi)]
    else:
        target = sub[head_mask(volume)[near]]
    if template_head.size < 100 or target.size < 100:
        target = volume.data[head_mask(volume)]
        template_head = warped_template[warped_template > template_threshold]
    # Template air (anything below its head threshold, including the haze around an average head) becomes air.
    air = air_value(volume)
    src = np.concatenate([[0.0, template_threshold], np.percentile(template_head, q)])
    dst = np.concatenate([[air, air], np.percentile(target, q)])
    return _increasing(src), np.maximum.accumulate(dst)


@register_defacer
class Reface(TemplateDefacer):
    name = "reface"
    version = f"1+{REG_VERSION}+{BRAINMASK_VERSION}"  # the registration and brain mask decide the output and its QC
    family, modalities, runs = "replace", ("MR", "CT"), "native"

    def _deface(self, volume: Volume) -> DefacerOutput:
        fit = fit_template(volume)
        start = time.perf_counter()
        box = _bbox(fit.face, MARGIN_VOX)
        face = fit.face[box]
        template_threshold = template_air_level(pydeface_template().head)
        src, dst = intensity_map(volume, fit.template_on_subject, template_threshold, box)
        new_face = np.interp(fit.template_on_subject[box], src, dst).astype(np.float32)

        original = volume.data[box]
        head = head_mask(volume)[box]
        head_std = _noise_std(original, head & ~face)
        background = ~ndimage.binary_dilation(head, iterations=2)
        bg_std = _noise_std(original, background & ~face)
        rng = np.random.default_rng(int(volume.content_hash[:12], 16))
        std = np.where(new_face > head_threshold(volume), head_std, bg_std).astype(np.float32)
        new_face += rng.standard_normal(new_face.shape, dtype=np.float32) * std
        if volume.modality == "MR":
            new_face = np.maximum(new_face, air_value(volume))

        weight = np.clip(2.0 * ndimage.gaussian_filter(face.astype(np.float32), FEATHER_SIGMA_VOX) - 1.0, 0.0, 1.0)
        weight[~face] = 0.0
        blended = volume.data.copy()
        blended[box] = weight * new_face + (1.0 - weight) * original
        timings = {"registration": fit.seconds, "deface": time.perf_counter() - start}
        noise = {"noise_std": {"head": round(head_std, 4), "background": round(bg_std, 4)}}
        return DefacerOutput(blended, fit.face, fit.registration, timings, qc=noise)
