"""The harness's own T1 segmentation (the direct route when a cohort gives no label maps), written in FreeSurfer's
label numbers so that it is read by the same table as an aseg.mgz: lateral ventricles (4 left / 43 right, the
nph-evans segmentation), cerebral white matter (2 / 41) and cerebral grey matter (3 / 42) = the rest of the brain
mask split by intensity. It is deliberately simple - no caudate, putamen, thalamus, brainstem or cerebellum (those
regions are absent from its answers, not zero) - and exists so that `seg-fidelity` runs end to end without external
tools; it measures how defacing moves a threshold-and-morphology segmenter. Left and right are split at the centre
of the ventricles' (else the brain's) left-right extent, as in the phantoms' written label maps.
"""

from __future__ import annotations

import numpy as np

from harness.core.volume import Volume
from harness.imaging.brainmask import brain_mask
from tasks.nph_evans.analysis import head_region, normalise, segment_ventricles

WM_LEVEL = 0.85  # relative to white matter (the brain's 80th percentile): grey matter ~0.7, white matter ~1
SEGMENTED_REGIONS = ("whole_brain", "ventricles", "cerebral_wm", "cerebral_gm")  # what this segmentation labels
LEFT_RIGHT = {"ventricle": (4, 43), "wm": (2, 41), "gm": (3, 42)}  # FreeSurfer: Left-*, Right-*


def midline_x(*masks: np.ndarray) -> float:
    """The centre of the first non-empty mask's left-right (first axis) extent."""
    for mask in masks:
        xs = np.nonzero(mask.any(axis=(1, 2)))[0]
        if xs.size:
            return (xs[0] + xs[-1]) / 2.0
    return 0.0


def paint(labels: np.ndarray, mask: np.ndarray, pair: tuple[int, int], mid: float) -> None:
    """Label `mask` with pair[0] left of the midline (lower x: canonical RAS runs towards the right) and pair[1] right."""
    right = (np.arange(labels.shape[0]) > mid)[:, None, None]
    labels[mask & ~right] = pair[0]
    labels[mask & right] = pair[1]


def segment_tissues(volume: Volume) -> np.ndarray:
    """int32 FreeSurfer-numbered label map of a T1 volume (see the module docstring)."""
    norm = normalise(volume)
    ventricles = segment_ventricles(norm, head_region(norm), volume.spacing)
    brain = brain_mask(volume) & ~ventricles
    mid = midline_x(ventricles, brain)
    labels = np.zeros(volume.shape, dtype=np.int32)
    paint(labels, brain & (norm >= WM_LEVEL), LEFT_RIGHT["wm"], mid)
    paint(labels, brain & (norm < WM_LEVEL), LEFT_RIGHT["gm"], mid)
    paint(labels, ventricles, LEFT_RIGHT["ventricle"], mid)
    return labels
