"""Tasks and the ground truth each one carries in `Case.truth` (JSON-able dicts; paths are absolute strings).

nph-evans (T1 MR; role "t1")
    evans_ratio            float   max frontal-horn left-right width / inner-skull width on the same axial slice
    frontal_horn_width_mm  float   (optional) that frontal-horn width
    inner_skull_width_mm   float   (optional) inner-skull left-right width on that slice
    slice_index            int     (optional) axial slice (third array axis of the canonical volume) measured on
    masks                  dict    (optional) name -> NIfTI path: frontal_horns, ventricles, intracranial
  Widths count whole voxels along the left-right axis (max index - min index + 1) x voxel size; the slice is the
  one with the widest frontal horns. Enlargement (ER > 0.3) is the clinical threshold.

tumor-slice (roles "t1", "t1c", "t2", "flair")
    best_slice             int     axial slice with the largest tumour area (any label > 0)
    best_slice_mm          float   (optional) world z of that slice centre
    areas_mm2              list    (optional) tumour area per axial slice (index = slice)
    enhancing_areas_mm2    list    (optional) enhancing-tumour area per axial slice
    masks                  dict    (optional) seg -> NIfTI path, BraTS labels 1 necrosis/non-enhancing core,
                                   2 oedema, 3 enhancing (older data: 4 enhancing is accepted)

tumor-dx (same roles)
    diagnosis              str     one of DIAGNOSES
    findings               dict    (optional) enhancement (ring|solid|homogeneous|none), location (intra-axial|
                                   extra-axial), lesion_count, hemisphere (left|right|both), lobe, necrosis,
                                   oedema (marked|mild|minimal), mass_effect, max_diameter_mm

ct-report (non-contrast head CT; role "ct": DICOM folder or NIfTI, "ct_nifti" optional)
    report                 str     reference report (FINDINGS / IMPRESSION)
    report_findings        str     (optional) the FINDINGS section; report_impression the IMPRESSION
    findings               dict    (optional) finding key -> bool over FINDING_KEYS
    intracranial           list    (optional) [{type, side, max_thickness_mm | volume_ml | ...}]
    extracranial           list    (optional) same for sinus disease, orbital, scalp haematoma
    midline_shift_mm       float   (optional)
    normal                 bool    (optional) no finding at all
  Intracranial and extracranial findings are kept apart because defacers cut where the extracranial ones lie.
"""

from __future__ import annotations

import math

TASKS = ("nph-evans", "tumor-slice", "tumor-dx", "ct-report")
DIAGNOSES = ("glioblastoma", "low-grade glioma", "metastases", "meningioma")
INTRACRANIAL_FINDINGS = ("iph", "sdh", "edh", "sah", "ivh", "midline_shift", "hydrocephalus", "chronic_infarct", "skull_fracture")
EXTRACRANIAL_FINDINGS = ("sinus_disease", "orbital", "scalp_haematoma")
FINDING_KEYS = INTRACRANIAL_FINDINGS + EXTRACRANIAL_FINDINGS
TASK_ROLES = {"nph-evans": ("t1",), "tumor-slice": ("t1", "t1c", "t2", "flair"), "tumor-dx": ("t1", "t1c", "t2", "flair"), "ct-report": ("ct",)}
REQUIRED = {"nph-evans": ("evans_ratio",), "tumor-slice": ("best_slice",), "tumor-dx": ("diagnosis",), "ct-report": ("report",)}


def check_task(task: str) -> str:
    from harness.core.errors import HarnessError

    if task not in TASKS:
        raise HarnessError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    return task


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def normalize_truth(task: str, truth: dict) -> tuple[dict, list[str]]:
    """Coerce the required truth fields to their types; returns (truth, problems). Empty problems = usable."""
    truth = dict(truth)
    problems = []
    for key in REQUIRED[task]:
        if truth.get(key) in (None, ""):
            problems.append(f"missing ground truth {key!r}")
    if problems:
        return truth, problems
    if task == "nph-evans":
        er = _number(truth["evans_ratio"])
        if er is None or not 0.05 < er < 1.0:
            problems.append(f"evans_ratio must be a number between 0.05 and 1, got {truth['evans_ratio']!r}")
        else:
            truth["evans_ratio"] = er
    elif task == "tumor-slice":
        k = _number(truth["best_slice"])
        if k is None or k < 0 or k != int(k):
            problems.append(f"best_slice must be a non-negative integer, got {truth['best_slice']!r}")
        else:
            truth["best_slice"] = int(k)
    elif task == "tumor-dx":
        dx = str(truth["diagnosis"]).strip().lower()
        if dx not in DIAGNOSES:
            problems.append(f"diagnosis {truth['diagnosis']!r} is not one of {', '.join(DIAGNOSES)}")
        else:
            truth["diagnosis"] = dx
    elif task == "ct-report":
        if not isinstance(truth["report"], str) or not truth["report"].strip():
            problems.append("report must be non-empty text")
        findings = truth.get("findings")
        if findings is not None:
            if not isinstance(findings, dict):
                problems.append("findings must be an object of finding -> true/false")
            else:
                unknown = sorted(set(findings) - set(FINDING_KEYS))
                if unknown:
                    problems.append(f"unknown finding keys {unknown}; known: {', '.join(FINDING_KEYS)}")
    return truth, problems
