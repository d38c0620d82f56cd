"""Montages of cohort cases, for people checking that cases look like what their truth says."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.core.files import atomic_write_bytes
from harness.imaging.overlay import sheet, tile


def _truth_slice(case, volume) -> int:
    t = case.truth
    for key in ("best_slice", "slice_index"):
        if isinstance(t.get(key), int) and 0 <= t[key] < volume.shape[2]:
            return t[key]
    seg = _mask(case, "seg", volume)
    if seg is not None and seg.any():
        return int(np.argmax((seg > 0).sum(axis=(0, 1))))
    return volume.shape[2] // 2


def _mask(case, name: str, volume):
    from harness.imaging.io import load_volume

    path = (case.truth.get("masks") or {}).get(name)
    if not path:
        return None
    m = load_volume(path, modality="MR")
    return np.rint(m.data).astype(np.int16) if m.shape == volume.shape else None


def case_montage(case, size: int = 256) -> bytes:
    """Row 1: each role at the truth slice (CT: brain and bone windows); row 2: the same with masks, where any."""
    rows = []
    first = case.load(case.roles[0])
    k = _truth_slice(case, first)
    plain, overlaid = [], []
    for role in case.roles:
        if role == "ct_nifti":
            continue
        v = first if role == case.roles[0] else case.load(role)
        kk = min(k, v.shape[2] - 1)
        if v.modality == "CT":
            for frac in (0.35, 0.55, 0.7):
                plain.append(tile(v, int(frac * (v.shape[2] - 1)), window="brain", size=size))
            plain.append(tile(v, int(0.6 * (v.shape[2] - 1)), window="bone", size=size))
            plain.append(tile(v, v.shape[0] // 2, plane="sagittal", window="brain", size=size))
        else:
            plain.append(tile(v, kk, size=size))
            mask = None
            for name in ("seg", "frontal_horns"):
                mask = mask if mask is not None else _mask(case, name, v)
            if mask is not None:
                overlaid.append(tile(v, kk, labels=mask, size=size))
    rows.append(plain)
    if overlaid:
        rows.append(overlaid)
    return sheet(rows)


def write_case_montages(cohort, out) -> list[Path]:
    out = Path(out)
    return [atomic_write_bytes(out / f"{case.id}.png", case_montage(case)) for case in cohort.cases]
